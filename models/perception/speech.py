"""Speech to text with Whisper (faster-whisper / CTranslate2), one language per window or part.

The audio is cut into speech *parts* with Silero VAD (silence, tones and music give none, so
they never reach Whisper, which would otherwise invent words for them). The parts' speech is
decoded the way faster-whisper decodes a file (concatenated, 30 s windows, the previous text
as prompt); without a given language each window's language is detected on the very encoder
output it is decoded from, so detection costs no extra encoder pass. When Whisper is unsure
of a window's language (below :data:`LANGUAGE_SURE`: it may hold two), the buffer is decoded
again in windows of whole parts, and a window in doubt is detected part by part, each run of
parts in one language decoded on its own: a video that switches language is transcribed part
by part. Long audio is fed in chunks (:meth:`SpeechRecognizer.transcribe_chunks`): a part cut
by a chunk's end is carried into the next chunk, never split mid-word.

>>> recognizer = SpeechRecognizer("base")        # once per worker process
>>> transcript = recognizer.transcribe_file("talk.mp4")
>>> [(s.start, s.language, s.text) for s in transcript.segments]
"""

from __future__ import annotations

import inspect
import logging
import math
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.perception import weights
from models.perception.result import SpeechSegment, Transcript, Word

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000  # Whisper's only input rate
MAX_PART_S = 30.0  # one Whisper window
PAUSE_S = 0.8  # silence that ends a part (a language may change there)
PAD_S = 0.4  # speech kept either side of a VAD region (faster-whisper's default pad)
# Whisper's hallucination guards, faster-whisper 1.2.1's defaults: a window whose text
# compresses too well (repetition loops) is decoded again hotter, then dropped if still so;
# a window Whisper thinks holds no speech and whose text it is unsure of is dropped.
COMPRESSION_RATIO_THRESHOLD = 2.4
LOG_PROB_THRESHOLD = -1.0
NO_SPEECH_THRESHOLD = 0.6
TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
PROMPT_RESET_ON_TEMPERATURE = 0.5  # a window decoded hotter than this is not used as prompt
BEAM_SIZE = 5
# A window's language is taken as is when Whisper gives it at least this probability. On
# speech in one language Whisper's detection puts nearly all of its mass on that language; a
# tenth or more elsewhere means the window may hold a second language (or one Whisper confuses
# with a neighbour), so its parts are detected one by one. Erring low only costs time (one
# encoder pass per part), erring high would decode a part in the wrong language.
LANGUAGE_SURE = 0.9
UNHEARD_MIN_S = 1.0  # a wordless speech part at least this long is heard again on its own
WINDOW_SAMPLES = int(MAX_PART_S * SAMPLE_RATE)
PROMPT_TOKENS = 223  # the previous text Whisper's prompt holds (half its 448 tokens, less one)

ProgressFn = Callable[[float], None]


@dataclass
class _Part:
    """Speech between pauses, in samples of the current buffer.

    ``start``/``end`` are the unpadded VAD bounds, ``lo``/``hi`` the padded span decoded.
    """

    start: int
    end: int
    lo: int = 0
    hi: int = 0
    language: str = ""
    probability: float = 1.0
    encoded: Any = None  # the encoder's output for this part alone (per-part detection)


@dataclass
class _Context:
    """The previous window's text (tokens) and language: the next window's prompt; and
    ``tick``, called after every decoded segment (the caller's progress hook, which may raise
    to stop a long transcription: a cancel, a timeout elsewhere)."""

    language: str = ""
    tokens: list[int] = field(default_factory=list)
    tick: Callable[[], None] = lambda: None


class _Detections:
    """Stands for CTranslate2's Whisper while faster-whisper decodes, to see its detections.

    With ``multilingual`` decoding, faster-whisper detects each window's language on the
    encoder output it then decodes; this records how sure Whisper was and, for translation,
    transcribes English windows as spoken (the task token follows the language).
    """

    def __init__(self, model: Any, tokenizer: Any, task: str) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.task = task
        self.probability = 1.0
        self.sure = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def detect_language(self, *args: Any, **kwargs: Any) -> Any:
        results = self.model.detect_language(*args, **kwargs)
        token, probability = results[0][0]
        self.probability = float(probability)
        self.sure = self.sure and self.probability >= LANGUAGE_SURE
        if self.task == "translate":
            task = "transcribe" if token == "<|en|>" else "translate"
            self.tokenizer.task = self.tokenizer.tokenizer.token_to_id(f"<|{task}|>")
        return results


def _threads(cpu_threads: int) -> int:
    if cpu_threads > 0:
        return cpu_threads
    return max(1, len(os.sched_getaffinity(0)))


def _cuda_available() -> bool:
    try:
        import ctranslate2

        if ctranslate2.get_cuda_device_count() > 0:
            return True
    except Exception:  # a CPU-only build may raise instead of answering 0
        pass
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:
        return False


class SpeechRecognizer:
    """Whisper with VAD, per-part languages, word timings and hallucination guards.

    Load one per worker process (loading takes about a second); it is not thread-safe.

    Args:
        model: ``tiny.en`` or ``base`` (packaged, sha256-checked), or the path of a
            CTranslate2 Whisper directory (e.g. a converted ``small``).
        device: ``cuda`` or ``cpu`` (default: CUDA when a GPU is visible).
        compute_type: CTranslate2 compute type (default: float16 on CUDA, int8 on CPU).
        cpu_threads: CPU threads (0: one per CPU this process may use).
        beam_size: Beam width (faster-whisper's default, 5).

    Raises:
        WeightsError: Packaged weights missing or not the files vidcap was tested with.
        FileNotFoundError: A model path that is not a CTranslate2 model directory.
    """

    def __init__(
        self,
        model: str = "base",
        *,
        device: str | None = None,
        compute_type: str | None = None,
        cpu_threads: int = 0,
        beam_size: int = BEAM_SIZE,
    ) -> None:
        from faster_whisper import WhisperModel

        if model in weights.WHISPER_MODELS:
            folder = weights.whisper_dir(model)
            self.name = model
        else:
            folder = Path(model)
            if not (folder / "model.bin").is_file():
                raise FileNotFoundError(
                    f"{model!r} is neither a packaged Whisper model "
                    f"({', '.join(weights.WHISPER_MODELS)}) nor a CTranslate2 Whisper directory"
                    " (a folder with model.bin, config.json and tokenizer.json)"
                )
            self.name = folder.name
        weights.verified("silero-vad")
        self.device = device or ("cuda" if _cuda_available() else "cpu")
        self.compute_type = compute_type or ("float16" if self.device == "cuda" else "int8")
        self.cpu_threads = _threads(cpu_threads)
        self.beam_size = beam_size
        self.model = WhisperModel(
            str(folder),
            device=self.device,
            compute_type=self.compute_type,
            cpu_threads=self.cpu_threads,
            local_files_only=True,
        )
        self.multilingual = bool(self.model.model.is_multilingual)
        # faster-whisper's own defaults for what we do not choose (its punctuation sets).
        self._defaults = {
            name: param.default
            for name, param in inspect.signature(WhisperModel.transcribe).parameters.items()
        }

    # ------------------------------------------------------------------ public API

    def transcribe(
        self,
        audio: np.ndarray | None,
        *,
        language: str | None = None,
        task: str = "transcribe",
        sample_rate: int = SAMPLE_RATE,
        offset: float = 0.0,
        on_progress: ProgressFn | None = None,
    ) -> Transcript:
        """Transcribe (or translate) mono float32 audio.

        Args:
            audio: Mono samples in [-1, 1]; None or empty gives an empty transcript.
            language: ISO 639-1 code of all the speech (default: detected per part).
            task: ``transcribe`` or ``translate`` (English text; English parts as spoken).
            sample_rate: The audio's rate (resampled to 16 kHz when different).
            offset: Where sample 0 lies on the video's timeline, seconds.
            on_progress: Called with the share of the audio done so far, in [0, 1].

        Returns:
            A :class:`Transcript`; empty (language None) when nothing is said.

        Raises:
            ValueError: Unknown task, or translation asked of an English-only model.
        """
        if audio is None:
            self._check(task)
            return Transcript(task=task, model=self.name)
        return self.transcribe_chunks(
            [(offset, audio)],
            language=language,
            task=task,
            sample_rate=sample_rate,
            on_progress=on_progress,
            total_s=offset + len(audio) / sample_rate,
        )

    def transcribe_chunks(
        self,
        chunks: Iterable[tuple[float, np.ndarray]],
        *,
        language: str | None = None,
        task: str = "transcribe",
        sample_rate: int = SAMPLE_RATE,
        on_progress: ProgressFn | None = None,
        total_s: float | None = None,
    ) -> Transcript:
        """Transcribe long audio given as consecutive ``(offset_s, audio)`` chunks.

        Holds one chunk plus a carry-over (the speech part a chunk's end cut, at most
        :data:`MAX_PART_S` and its pad) at a time. Arguments as :meth:`transcribe`;
        ``on_progress`` gets the share of ``total_s`` (the audio's end on the timeline) done,
        or the timeline position in seconds when ``total_s`` is not given.
        """

        def report(position: float) -> None:
            if on_progress is not None:
                on_progress(min(position / total_s, 1.0) if total_s else position)

        self._check(task)
        language = self._language(language)
        segments: list[SpeechSegment] = []
        # language -> [speech seconds, probability * seconds]
        heard: dict[str, list[float]] = {}
        position = [0.0]  # the timeline position reported last
        context = _Context(tick=lambda: report(position[0]))
        carry = np.zeros(0, dtype=np.float32)
        carry_at = 0.0
        for chunk_at, chunk in self._resampled(chunks, sample_rate):
            if len(carry) and abs(carry_at + len(carry) / SAMPLE_RATE - chunk_at) > 0.05:
                # Not contiguous with what is carried: finish that first.
                segments += self._buffer(carry, carry_at, language, task, heard, context)
                carry = np.zeros(0, dtype=np.float32)
            buffer = np.concatenate([carry, chunk]) if len(carry) else chunk
            at = chunk_at - len(carry) / SAMPLE_RATE
            done, regions, carry, carry_at = self._split_final(buffer, at)
            segments += self._buffer(done, at, language, task, heard, context, regions)
            position[0] = carry_at
            report(carry_at)
        if len(carry):
            segments += self._buffer(carry, carry_at, language, task, heard, context)
        report(total_s or carry_at + len(carry) / SAMPLE_RATE)
        if not segments:
            return Transcript(task=task, model=self.name)
        main = max(heard, key=lambda lang: heard[lang][0])
        seconds, weighted = heard[main]
        return Transcript(
            language=main,
            language_probability=round(weighted / seconds, 4) if seconds else 0.0,
            segments=tuple(sorted(segments, key=lambda s: s.start)),
            task=task,
            model=self.name,
        )

    def transcribe_file(
        self,
        path: str | os.PathLike[str],
        *,
        language: str | None = None,
        task: str = "transcribe",
        chunk_s: float = 300.0,
        on_progress: ProgressFn | None = None,
        limits: Any = None,
        isolate: bool = True,
        info: Any = None,
    ) -> Transcript:
        """Transcribe a video file's audio track, read ``chunk_s`` seconds at a time.

        A file without an audio track gives an empty transcript. ``info``: the file's
        :class:`~models.media.MediaInfo`, when the caller has probed it already.

        Raises:
            MediaError: The file is not an acceptable video (see :mod:`models.media`).
        """
        from models.media.reader import iter_audio, probe

        info = info or probe(path, limits=limits, isolate=isolate)
        chunks = iter_audio(
            path, chunk_s, sample_rate=SAMPLE_RATE, limits=limits, isolate=isolate, info=info
        )
        return self.transcribe_chunks(
            chunks, language=language, task=task, on_progress=on_progress, total_s=info.duration_s
        )

    # ------------------------------------------------------------------ steps

    def _check(self, task: str) -> None:
        if task not in ("transcribe", "translate"):
            raise ValueError(f"task must be 'transcribe' or 'translate', got {task!r}")
        if task == "translate" and not self.multilingual:
            raise ValueError(
                f"the Whisper model {self.name!r} is English-only: it cannot translate (it"
                " understands only English speech); use a multilingual model such as 'base'"
            )

    def _language(self, language: str | None) -> str | None:
        if not self.multilingual:
            return "en"
        if language is not None and language not in self.model.supported_languages:
            raise ValueError(f"Whisper does not know the language {language!r}")
        return language

    @staticmethod
    def _resampled(
        chunks: Iterable[tuple[float, np.ndarray]], sample_rate: int
    ) -> Iterator[tuple[float, np.ndarray]]:
        for at, audio in chunks:
            audio = np.asarray(audio, dtype=np.float32)
            if audio.ndim != 1:
                raise ValueError(f"audio must be mono, shape (N,); got shape {audio.shape}")
            if sample_rate != SAMPLE_RATE and len(audio):
                n = round(len(audio) * SAMPLE_RATE / sample_rate)
                audio = np.interp(
                    np.arange(n) * (sample_rate / SAMPLE_RATE), np.arange(len(audio)), audio
                ).astype(np.float32)
            yield float(at), audio

    def _speech(self, audio: np.ndarray) -> list[tuple[int, int]]:
        """Unpadded VAD regions (samples), split at pauses of PAUSE_S."""
        from faster_whisper.vad import VadOptions, get_speech_timestamps

        if len(audio) < SAMPLE_RATE // 10:
            return []
        options = VadOptions(
            min_silence_duration_ms=int(PAUSE_S * 1000),
            speech_pad_ms=0,
            max_speech_duration_s=MAX_PART_S - 2 * PAD_S,
        )
        return [(c["start"], c["end"]) for c in get_speech_timestamps(audio, options)]

    def _split_final(
        self, buffer: np.ndarray, at: float
    ) -> tuple[np.ndarray, list[tuple[int, int]], np.ndarray, float]:
        """Cut the buffer before the speech its end may have cut:
        ``(done, done's VAD regions, carry, carry_at)``."""
        regions = self._speech(buffer)
        reach = len(buffer) - int(PAUSE_S * SAMPLE_RATE)
        if not regions or regions[-1][1] < reach:
            # Speech may still start right at the end: keep the last pause as context.
            cut = max(len(buffer) - int(PAUSE_S * SAMPLE_RATE), 0)
            if regions:
                cut = max(cut, regions[-1][1] + int(PAD_S * SAMPLE_RATE))
            cut = min(cut, len(buffer))
        else:
            cut = max(regions[-1][0] - int(PAD_S * SAMPLE_RATE), 0)
            if cut == 0 and len(buffer) > 2 * MAX_PART_S * SAMPLE_RATE:
                cut = len(buffer)  # cannot happen with VAD's 30 s cap; bounds memory anyway
        # Every region that ends before the cut is done's own (VAD runs once per buffer).
        done = [r for r in regions if r[1] <= cut]
        return buffer[:cut], done, buffer[cut:].copy(), at + cut / SAMPLE_RATE

    def _buffer(
        self,
        audio: np.ndarray,
        at: float,
        language: str | None,
        task: str,
        heard: dict[str, list[float]],
        context: _Context,
        regions: list[tuple[int, int]] | None = None,
    ) -> list[SpeechSegment]:
        """Transcribe one buffer: parts, windows, languages. ``regions``: its VAD regions,
        when known already."""
        parts = self._parts(audio, regions)
        if not parts:
            return []
        # All the buffer's speech, as faster-whisper decodes a file; without a language,
        # each window's language comes from the encoder output it is decoded from.
        found, sure = self._decode(audio, parts, language, task, None, context)
        if not sure:
            # Whisper was unsure of some window's language (it may hold two): decode again
            # window by window, detecting part by part where a window is in doubt.
            found = []
            for window in self._windows(parts):
                encoded = self._encode(self._speech_of(audio, window))
                for run, lang, run_encoded in self._detect(audio, window, encoded):
                    found += self._decode(audio, run, lang, task, run_encoded, context)[0]
        if language is None and len(parts) > 1:
            found += self._unheard(audio, parts, found, task, context)
            found.sort(key=lambda item: float(item[0].start))
        out = []
        for s, lang, probability in found:
            out.append(self._segment(s, lang, at))
            entry = heard.setdefault(lang, [0.0, 0.0])
            seconds = max(float(s.end - s.start), 0.0)
            entry[0] += seconds
            entry[1] += seconds * probability
        return [s for s in out if s.text]

    def _unheard(
        self,
        audio: np.ndarray,
        parts: list[_Part],
        found: list[tuple[Any, str, float]],
        task: str,
        context: _Context,
    ) -> list[tuple[Any, str, float]]:
        """Speech in another language that the window's decode left without words.

        Whisper decodes a 30 s window in the one language it detects there; when most of the
        window is English and its last seconds Russian, it can be sure of English and give
        the Russian part no words at all. A part of at least :data:`UNHEARD_MIN_S` that no
        segment with words overlaps is detected on its own audio, and decoded on its own when
        Whisper is sure (:data:`LANGUAGE_SURE`) that it is another language than the
        segments around it. Only beside speech that was heard: noise that VAD took for speech
        is rarely sure of any language, and the usual no-speech and log-probability guards
        still apply to what it gives.
        """
        spoken = [
            (float(s.start), float(s.end), lang) for s, lang, _ in found if (s.text or "").strip()
        ]
        extra: list[tuple[Any, str, float]] = []
        if not spoken:  # nothing heard at all: each window was detected on its own sound
            return extra
        for part in parts:
            start, end = part.start / SAMPLE_RATE, part.end / SAMPLE_RATE
            if end - start < UNHEARD_MIN_S or any(a < end and b > start for a, b, _ in spoken):
                continue
            encoded = self._encode(audio[part.lo : part.hi])
            lang, probability = self._languages(encoded)[0]
            near = {
                x for a, b, x in spoken if abs(a - end) < MAX_PART_S or abs(b - start) < MAX_PART_S
            }
            if probability < LANGUAGE_SURE or lang in near:
                continue
            part.language, part.probability = lang, probability
            extra += self._decode(audio, [part], lang, task, encoded, context)[0]
        return extra

    def _parts(
        self, audio: np.ndarray, regions: list[tuple[int, int]] | None = None
    ) -> list[_Part]:
        """VAD parts, each padded by PAD_S either side, never past a neighbour's midpoint."""
        found = self._speech(audio) if regions is None else regions
        parts = [_Part(start, end) for start, end in found]
        pad = int(PAD_S * SAMPLE_RATE)
        for i, part in enumerate(parts):
            lo = part.start - pad
            hi = part.end + pad
            if i > 0:
                lo = max(lo, (parts[i - 1].end + part.start) // 2)
            if i + 1 < len(parts):
                hi = min(hi, (part.end + parts[i + 1].start) // 2)
            part.lo, part.hi = max(lo, 0), min(hi, len(audio))
        return parts

    @staticmethod
    def _windows(parts: list[_Part]) -> list[list[_Part]]:
        """Consecutive parts packed into windows of at most 30 s of padded speech."""
        windows: list[list[_Part]] = []
        size = 0
        for part in parts:
            length = part.hi - part.lo
            if windows and size + length <= WINDOW_SAMPLES:
                windows[-1].append(part)
                size += length
            else:
                windows.append([part])
                size = length
        return windows

    @staticmethod
    def _runs(parts: list[_Part]) -> list[list[_Part]]:
        runs: list[list[_Part]] = []
        for part in parts:
            if runs and runs[-1][-1].language == part.language:
                runs[-1].append(part)
            else:
                runs.append([part])
        return runs

    @staticmethod
    def _speech_of(audio: np.ndarray, parts: list[_Part]) -> np.ndarray:
        """The parts' padded spans, concatenated."""
        return np.concatenate([audio[p.lo : p.hi] for p in parts])

    def _features(self, audio: np.ndarray) -> np.ndarray:
        return self.model.feature_extractor(audio)  # (n_mels, frames)

    def _encode(self, speech: np.ndarray) -> Any:
        """Whisper's encoder output for at most one window of speech."""
        from faster_whisper.audio import pad_or_trim

        return self.model.encode(pad_or_trim(self._features(speech)))

    def _languages(self, encoded: Any) -> list[tuple[str, float]]:
        """Whisper's language probabilities for one encoded window, best first."""
        return [
            (token[2:-2], float(p)) for token, p in self.model.model.detect_language(encoded)[0]
        ]

    def _detect(
        self, audio: np.ndarray, window: list[_Part], encoded: Any
    ) -> list[tuple[list[_Part], str, Any]]:
        """The window's runs of parts in one language, each with its encoder output.

        The window's language comes from its own encoder output (no extra pass). Only when
        Whisper is unsure of it (below :data:`LANGUAGE_SURE`) and the window holds several
        parts is each part detected on its own audio; consecutive parts in one language then
        form a run, decoded apart (a run that is the whole window, or one part, reuses the
        encoder output at hand).
        """
        language, probability = self._languages(encoded)[0]
        if probability >= LANGUAGE_SURE or len(window) == 1:
            for part in window:
                part.language, part.probability = language, probability
            return [(window, language, encoded)]
        for part in window:
            part.encoded = self._encode(audio[part.lo : part.hi])
            part.language, part.probability = self._languages(part.encoded)[0]
        runs = self._runs(window)
        out = []
        for run in runs:
            if len(runs) == 1:
                run_encoded = encoded
            elif len(run) == 1:
                run_encoded = run[0].encoded
            else:
                speech = self._speech_of(audio, run)
                run_encoded = self._encode(speech)
            out.append((run, run[0].language, run_encoded))
        for part in window:
            part.encoded = None  # bounded memory: only the window at hand is kept
        return out

    def _decode(
        self,
        audio: np.ndarray,
        run: list[_Part],
        language: str | None,
        task: str,
        encoded: Any,
        context: _Context,
    ) -> tuple[list[tuple[Any, str, float]], bool]:
        """Decode a run of parts, concatenated: ``([(segment, language, probability)], sure)``.

        With ``language`` None, each 30 s window's language is detected on the encoder output
        it is decoded from (no extra encoder pass); ``sure`` is False when one of them was
        below :data:`LANGUAGE_SURE`. ``encoded``: the run's first window, already encoded.
        The previous text is the prompt when it was in the same language (Whisper's condition
        on previous text, as faster-whisper carries it from window to window).
        """
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import (
            TranscriptionOptions,
            get_suppressed_tokens,
            restore_speech_timestamps,
        )

        speech = self._speech_of(audio, run)
        # English speech is already what translation would give: transcribe it as is.
        run_task = "transcribe" if language == "en" else task
        tokenizer = Tokenizer(
            self.model.hf_tokenizer, self.multilingual, task=run_task, language=language or "en"
        )
        if language is not None and context.language != language:
            context.language, context.tokens = language, []
        model = self.model
        detections = _Detections(model.model, tokenizer, task)
        options = TranscriptionOptions(
            beam_size=self.beam_size,
            best_of=5,
            patience=1,
            length_penalty=1,
            repetition_penalty=1,
            no_repeat_ngram_size=0,
            log_prob_threshold=LOG_PROB_THRESHOLD,
            no_speech_threshold=NO_SPEECH_THRESHOLD,
            compression_ratio_threshold=COMPRESSION_RATIO_THRESHOLD,
            condition_on_previous_text=True,
            prompt_reset_on_temperature=PROMPT_RESET_ON_TEMPERATURE,
            temperatures=list(TEMPERATURES),
            initial_prompt=list(context.tokens) or None,
            prefix=None,
            suppress_blank=True,
            suppress_tokens=get_suppressed_tokens(tokenizer, [-1]),
            without_timestamps=False,
            max_initial_timestamp=1.0,
            word_timestamps=True,
            prepend_punctuations=self._defaults["prepend_punctuations"],
            append_punctuations=self._defaults["append_punctuations"],
            multilingual=language is None,
            max_new_tokens=None,
            clip_timestamps="0",
            hallucination_silence_threshold=None,
            hotwords=None,
        )
        chunks = [{"start": p.lo, "end": p.hi} for p in run]
        found: list[tuple[Any, str, float]] = []
        model.model = detections  # sees each window's language detection
        try:
            generated = model.generate_segments(
                self._features(speech), tokenizer, options, False, encoded
            )
            for s in restore_speech_timestamps(generated, chunks, SAMPLE_RATE):
                if language is None:
                    found.append((s, tokenizer.language_code, detections.probability))
                else:
                    found.append((s, language, 1.0 if encoded is None else run[0].probability))
                context.tokens += s.tokens
                if (s.temperature or 0.0) > PROMPT_RESET_ON_TEMPERATURE:
                    context.tokens = []
                context.tick()
        finally:
            model.model = detections.model
        del context.tokens[:-PROMPT_TOKENS]  # all Whisper's prompt can hold
        if language is None and found:
            context.language = found[-1][1]
        return found, detections.sure

    def _segment(self, s: Any, language: str, at: float) -> SpeechSegment:
        words = tuple(
            Word(
                start=round(at + float(w.start), 3),
                end=round(at + float(w.end), 3),
                text=w.word.strip(),
                probability=round(float(w.probability), 4),
            )
            for w in (s.words or ())
            if w.word.strip()
        )
        text = s.text.strip()
        # Hallucination guards on what survived the window-level ones.
        unsure_silence = (
            s.no_speech_prob > NO_SPEECH_THRESHOLD and s.avg_logprob < LOG_PROB_THRESHOLD
        )
        if unsure_silence or s.compression_ratio > COMPRESSION_RATIO_THRESHOLD:
            text, words = "", ()
        return SpeechSegment(
            start=round(at + float(s.start), 3),
            end=round(at + float(s.end), 3),
            text=text,
            language=language,
            confidence=round(min(max(math.exp(s.avg_logprob), 0.0), 1.0), 4),
            no_speech_prob=round(float(s.no_speech_prob), 4),
            words=words,
        )
