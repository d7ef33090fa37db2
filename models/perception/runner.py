"""Run every perception expert over one video: speech, on-screen text and visual tags.

>>> perceiver = Perceiver(whisper_model="base")                 # loads each expert once
>>> found, _ = perceiver.run("clip.mp4", segment_seconds=5.0)   # a Perception
>>> found.save("perception.json")

Speech runs in its own thread beside the frame experts: Whisper (CTranslate2), ONNX Runtime
and torch all release the GIL while they compute, so the two overlap on separate cores.
Memory stays bounded whatever the duration: audio is read a few minutes at a time, frames a
window at a time.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from models.media import Fit, MediaInfo, MediaLimits, probe, sample_frames
from models.media.sampling import segment_spans
from models.perception.result import Perception, Tag, Transcript
from models.perception.subtitles import speech_cues

# Frames for the experts: at most one per second, at a size where small text is still legible
# (16:9 fills it exactly; other shapes are padded), a window at a time.
FRAMES_PER_SECOND = 1.0
FRAME_SIZE = (540, 960)
WINDOW_FRAMES = 16

Progress = Callable[[str, float], None]  # (stage, fraction of that stage done)


class _Stopped(Exception):
    """Stops the speech thread when the rest of the run failed (a timeout, a cancel)."""


@dataclass
class _Background:
    """A function running in a thread; its result or its exception is collected by join."""

    target: Callable[[], Any]
    result: Any = None
    error: BaseException | None = None
    seconds: float = 0.0
    thread: threading.Thread | None = field(default=None, repr=False)

    def run(self) -> None:
        began = time.perf_counter()
        try:
            self.result = self.target()
        except BaseException as e:  # re-raised in the caller's thread by join()
            self.error = e
        self.seconds = time.perf_counter() - began

    def start(self) -> _Background:
        self.thread = threading.Thread(target=self.run, name="speech", daemon=True)
        self.thread.start()
        return self

    def join(self) -> Any:
        if self.thread is not None:  # None: it ran in the caller's thread
            self.thread.join()
        if self.error is not None:
            raise self.error
        return self.result


class Perceiver:
    """The perception experts, loaded once per process.

    Args:
        whisper_model: ``tiny.en``, ``base`` or a CTranslate2 Whisper directory.
        device: ``cpu``, ``cuda`` or None (CUDA when present).
        limits: Media limits for decoding.
        isolate: Decode in the media sandbox (keep True for untrusted files).
    """

    def __init__(
        self,
        *,
        whisper_model: str = "base",
        device: str | None = None,
        limits: MediaLimits | None = None,
        isolate: bool = True,
    ) -> None:
        from models.perception.ocr import TextReader
        from models.perception.speech import SpeechRecognizer
        from models.perception.tags import Tagger

        self.limits = limits or MediaLimits()
        self.isolate = isolate
        self.speech = SpeechRecognizer(whisper_model, device=device)
        self.tagger = Tagger(device=device)
        self.reader = TextReader(device=device)
        self.whisper_model = whisper_model

    def frame_count(self, duration_s: float, frame_count: int) -> int:
        """How many frames the frame experts look at in a video of this duration."""
        wanted = math.ceil(duration_s * FRAMES_PER_SECOND)
        return max(1, min(wanted, frame_count, self.limits.max_sample_frames))

    def transcribe(
        self,
        path: str | os.PathLike[str],
        *,
        language: str | None = None,
        translate: bool = False,
        on_progress: Progress | None = None,
        info: MediaInfo | None = None,
    ) -> tuple[Transcript, Transcript | None]:
        """The transcript, and its English translation when asked (None otherwise).

        ``info``: the file's probe, when the caller has it already.
        """
        info = info or probe(path, limits=self.limits, isolate=self.isolate)

        def progress(share: float, offset: float) -> Callable[[float], None]:
            return lambda done: on_progress and on_progress("transcribing", offset + share * done)

        passes = 2 if translate else 1
        transcript = self.speech.transcribe_file(
            path,
            language=language,
            limits=self.limits,
            isolate=self.isolate,
            on_progress=progress(1 / passes, 0.0),
            info=info,
        )
        translation = None
        if translate and transcript.segments:
            translation = self.speech.transcribe_file(
                path,
                language=language,
                task="translate",
                limits=self.limits,
                isolate=self.isolate,
                on_progress=progress(1 / passes, 1 / passes),
                info=info,
            )
        return transcript, translation

    def run(
        self,
        path: str | os.PathLike[str],
        *,
        segment_seconds: float,
        language: str | None = None,
        translate: bool = False,
        on_progress: Progress | None = None,
        during: Callable[[], Any] | None = None,
        overlap: bool = True,
    ) -> tuple[Perception, Any]:
        """Run every expert over a video.

        Args:
            path: The video.
            segment_seconds: The caption's segment length (tags are summarised per segment).
            language: The spoken language, or None to detect it per stretch of speech.
            translate: Also translate the speech to English.
            on_progress: Called with (stage, fraction done) as each expert advances, from the
                thread that runs it; it may raise to stop the run (a cancel).
            during: More work for the calling thread while speech runs in the background
                (the captioner's features); its result is returned.
            overlap: Run speech beside the rest (default); False runs everything one after
                the other in this thread (the benchmark's reference).

        Returns:
            What the experts found, and ``during()``'s result.
        """
        report = on_progress or (lambda stage, done: None)
        info = probe(path, limits=self.limits, isolate=self.isolate)
        stop = threading.Event()  # set when this thread fails: speech stops at its next step

        def speech_progress(stage: str, done: float) -> None:
            if stop.is_set():
                raise _Stopped()
            report(stage, done)

        speech = _Background(
            lambda: self.transcribe(
                path,
                language=language,
                translate=translate,
                on_progress=speech_progress,
                info=info,
            )
        )
        if overlap:
            speech.start()
        else:
            speech.run()
        timings: dict[str, float] = {}
        try:
            frame_tags, texts = self._frames(
                path, info.duration_s, info.frame_count, report, timings
            )
            extra = during() if during is not None else None
            transcript, translation = speech.join()
        except BaseException:  # here or in speech (a timeout may land while waiting for it)
            stop.set()
            if speech.thread is not None:
                speech.thread.join()
            raise
        timings["transcribing"] = speech.seconds  # in its own thread, beside the rest
        video_tags, segment_tags = self.tagger.summarize(
            frame_tags, segment_spans(info.duration_s, segment_seconds)
        )
        found = Perception(
            duration_s=info.duration_s,
            transcript=transcript,
            translation=translation,
            text=tuple(texts),
            tags=tuple(video_tags),
            segment_tags=tuple(segment_tags),
            frame_tags=tuple(frame_tags),
            timings=timings,
            models={
                "speech": f"whisper-{self.whisper_model}",
                "text": "rapidocr-pp-ocrv4",
                "tags": "efficientnet-lite0-imagenet1k",
            },
        )
        return found, extra

    def _frames(
        self,
        path: str | os.PathLike[str],
        duration_s: float,
        frame_count: int,
        report: Progress,
        timings: dict[str, float],
    ) -> tuple[list[Any], list[Any]]:
        total = self.frame_count(duration_s, frame_count)
        step = duration_s / total
        session = self.reader.session()
        frame_tags: list[Any] = []
        for first in range(0, total, WINDOW_FRAMES):
            count = min(WINDOW_FRAMES, total - first)
            t0 = time.perf_counter()
            images, times = sample_frames(
                path,
                num_frames=count,
                start=first * step,
                end=(first + count) * step,
                size=FRAME_SIZE,
                fit=Fit.PAD,
                limits=self.limits,
                isolate=self.isolate,
            )
            t1 = time.perf_counter()
            report("tagging", first / total)
            frame_tags += self.tagger.tag_frames(images, times)
            t2 = time.perf_counter()
            report("reading_text", first / total)
            session.feed(images, times)
            t3 = time.perf_counter()
            for name, seconds in (
                ("perception_decoding", t1 - t0),
                ("tagging", t2 - t1),
                ("reading_text", t3 - t2),
            ):
                timings[name] = timings.get(name, 0.0) + seconds
        t0 = time.perf_counter()
        texts = session.finish()
        timings["reading_text"] = timings.get("reading_text", 0.0) + time.perf_counter() - t0
        report("reading_text", 1.0)
        return frame_tags, texts


def public_view(found: Perception) -> dict[str, Any]:
    """What the API shows of the experts' findings (a caption job's record keeps it): the
    transcript (without word timings, which stay in perception.json), subtitle cues, on-screen
    text and tags, as JSON-able data."""

    def transcript(t: Transcript | None) -> dict[str, Any] | None:
        if t is None:
            return None
        return {
            "language": t.language,
            "language_probability": round(t.language_probability, 4),
            "task": t.task,
            "model": t.model,
            "segments": [
                {
                    "start": round(s.start, 3),
                    "end": round(s.end, 3),
                    "text": s.text,
                    "language": s.language,
                    "confidence": round(s.confidence, 4),
                }
                for s in t.segments
            ],
        }

    def tag(t: Tag) -> dict[str, Any]:
        return {"label": t.label, "names": list(t.names), "score": round(t.score, 4)}

    def cues(t: Transcript | None) -> list[dict[str, Any]]:
        return [] if t is None else speech_cues(t)

    return {
        "transcript": transcript(found.transcript),
        "translation": transcript(found.translation),
        "speech_cues": cues(found.transcript),
        "translation_cues": cues(found.translation),
        "on_screen_text": [
            {
                "start": round(x.start, 3),
                "end": round(x.end, 3),
                "text": x.text,
                "confidence": round(x.confidence, 4),
                "box": [round(v, 4) for v in x.box],
            }
            for x in found.text
        ],
        "tags": {
            "video": [tag(t) for t in found.tags],
            "segments": [
                {
                    "start": round(s.start, 3),
                    "end": round(s.end, 3),
                    "tags": [tag(t) for t in s.tags],
                }
                for s in found.segment_tags
            ],
        },
    }
