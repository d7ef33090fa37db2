"""Speech to text with Whisper (faster-whisper / CTranslate2), one part per language.

The audio is cut into speech *parts* with Silero VAD (silence, tones and music give none, so
they never reach Whisper, which would otherwise invent words for them). Each part (speech
between pauses, at most 30 s) gets its own language detection; neighbouring parts in the
same language are joined into a *run* and each run is decoded with its language fixed, the
way faster-whisper decodes a whole file (its speech concatenated, 30 s windows, the previous
text as prompt). Long audio is fed in chunks (:meth:`SpeechRecognizer.transcribe_chunks`):
a part cut by a chunk's end is carried into the next chunk, never split mid-word.

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
from dataclasses import dataclass
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
BEAM_SIZE = 5

ProgressFn = Callable[[float], None]


@dataclass
class _Part:
    """Speech between pauses, in samples of the current buffer (unpadded VAD bounds)."""

    start: int
    end: int
    language: str = ""
    probability: float = 1.0
    encoded: Any = None  # the encoder's output for this part alone, reused when it is a run


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
            total_s=len(audio) / sample_rate,
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
        carry = np.zeros(0, dtype=np.float32)
        carry_at = 0.0
        for chunk_at, chunk in self._resampled(chunks, sample_rate):
            if len(carry) and abs(carry_at + len(carry) / SAMPLE_RATE - chunk_at) > 0.05:
                # Not contiguous with what is carried: finish that first.
                segments += self._buffer(carry, carry_at, language, task, heard)
                carry = np.zeros(0, dtype=np.float32)
            buffer = np.concatenate([carry, chunk]) if len(carry) else chunk
            at = chunk_at - len(carry) / SAMPLE_RATE
            done, carry, carry_at = self._split_final(buffer, at)
            segments += self._buffer(done, at, language, task, heard)
            report(carry_at)
        if len(carry):
            segments += self._buffer(carry, carry_at, language, task, heard)
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
    ) -> Transcript:
        """Transcribe a video file's audio track, read ``chunk_s`` seconds at a time.

        A file without an audio track gives an empty transcript.

        Raises:
            MediaError: The file is not an acceptable video (see :mod:`models.media`).
        """
        from models.media.reader import iter_audio, probe

        total_s = probe(path, limits=limits, isolate=isolate).duration_s
        chunks = iter_audio(path, chunk_s, sample_rate=SAMPLE_RATE, limits=limits, isolate=isolate)
        return self.transcribe_chunks(
            chunks, language=language, task=task, on_progress=on_progress, total_s=total_s
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

    def _split_final(self, buffer: np.ndarray, at: float) -> tuple[np.ndarray, np.ndarray, float]:
        """Cut the buffer before the speech its end may have cut: (done, carry, carry_at)."""
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
        return buffer[:cut], buffer[cut:].copy(), at + cut / SAMPLE_RATE

    def _buffer(
        self,
        audio: np.ndarray,
        at: float,
        language: str | None,
        task: str,
        heard: dict[str, list[float]],
    ) -> list[SpeechSegment]:
        """Transcribe one buffer: parts, languages, runs."""
        parts = self._parts(audio)
        if not parts:
            return []
        if language is None:
            for part in parts:
                self._detect(audio, part)
        else:
            for part in parts:
                part.language = language
        out: list[SpeechSegment] = []
        for run in self._runs(parts):
            lang = run[0].language
            found = self._decode(audio, run, lang, task)
            out += [self._segment(s, lang, at) for s in found]
            seconds = sum(p.end - p.start for p in run) / SAMPLE_RATE
            entry = heard.setdefault(lang, [0.0, 0.0])
            entry[0] += seconds
            entry[1] += (
                seconds
                * sum(p.probability * (p.end - p.start) for p in run)
                / (seconds * SAMPLE_RATE)
            )
        return [s for s in out if s.text]

    def _parts(self, audio: np.ndarray) -> list[_Part]:
        return [_Part(start, end) for start, end in self._speech(audio)]

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
    def _padded(audio: np.ndarray, parts: list[_Part]) -> list[tuple[int, int]]:
        """Each part's span with PAD_S either side, never past a neighbour's midpoint."""
        pad = int(PAD_S * SAMPLE_RATE)
        spans = []
        for i, part in enumerate(parts):
            lo = part.start - pad
            hi = part.end + pad
            if i > 0:
                lo = max(lo, (parts[i - 1].end + part.start) // 2)
            if i + 1 < len(parts):
                hi = min(hi, (part.end + parts[i + 1].start) // 2)
            spans.append((max(lo, 0), min(hi, len(audio))))
        return spans

    def _features(self, audio: np.ndarray) -> np.ndarray:
        return self.model.feature_extractor(audio)  # (n_mels, frames)

    def _detect(self, audio: np.ndarray, part: _Part) -> None:
        """Detect the part's language on its own audio (keeping the encoder's output)."""
        from faster_whisper.audio import pad_or_trim

        ((lo, hi),) = self._padded(audio, [part])
        features = self._features(audio[lo:hi])
        encoded = self.model.encode(pad_or_trim(features))
        results = self.model.model.detect_language(encoded)[0]
        token, probability = results[0]
        part.language = token[2:-2]
        part.probability = float(probability)
        part.encoded = encoded

    def _decode(self, audio: np.ndarray, run: list[_Part], language: str, task: str) -> list[Any]:
        """Decode one run's speech, concatenated, with its language fixed."""
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import (
            TranscriptionOptions,
            get_suppressed_tokens,
            restore_speech_timestamps,
        )

        spans = self._padded(audio, run)
        speech = np.concatenate([audio[lo:hi] for lo, hi in spans])
        # English speech is already what translation would give: transcribe it as is.
        run_task = "transcribe" if language == "en" else task
        tokenizer = Tokenizer(
            self.model.hf_tokenizer, self.multilingual, task=run_task, language=language
        )
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
            prompt_reset_on_temperature=0.5,
            temperatures=list(TEMPERATURES),
            initial_prompt=None,
            prefix=None,
            suppress_blank=True,
            suppress_tokens=get_suppressed_tokens(tokenizer, [-1]),
            without_timestamps=False,
            max_initial_timestamp=1.0,
            word_timestamps=True,
            prepend_punctuations=self._defaults["prepend_punctuations"],
            append_punctuations=self._defaults["append_punctuations"],
            multilingual=False,
            max_new_tokens=None,
            clip_timestamps="0",
            hallucination_silence_threshold=None,
            hotwords=None,
        )
        features = self._features(speech)
        # A run of one part was encoded for its language already: reuse that window (only
        # valid when the run's padded audio is exactly what was encoded, at most 30 s).
        encoded = (
            run[0].encoded if len(run) == 1 and len(speech) <= MAX_PART_S * SAMPLE_RATE else None
        )
        chunks = [{"start": lo, "end": hi} for lo, hi in spans]
        found = self.model.generate_segments(features, tokenizer, options, False, encoded)
        return list(restore_speech_timestamps(found, chunks, SAMPLE_RATE))

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
