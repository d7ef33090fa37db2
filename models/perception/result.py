"""What the perception experts found in one video: one object, saved beside its features.

Everything here is plain data (no torch), so the worker writes it once as
``perception.json`` and questions and re-renders read it back without running an expert again.
Times are seconds on the video's timeline.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1


@dataclass(frozen=True)
class Word:
    """One recognised word with its timing and Whisper's probability for it."""

    start: float
    end: float
    text: str
    probability: float


@dataclass(frozen=True)
class SpeechSegment:
    """One stretch of speech.

    Attributes:
        start: Start, seconds.
        end: End, seconds.
        text: What was said (in ``language``, or English when translated).
        language: ISO 639-1 code of the speech in this segment.
        confidence: exp(mean token log-probability), in [0, 1].
        no_speech_prob: Whisper's probability that the stretch holds no speech.
        words: Word timings (may be empty).
    """

    start: float
    end: float
    text: str
    language: str
    confidence: float
    no_speech_prob: float = 0.0
    words: tuple[Word, ...] = ()


@dataclass(frozen=True)
class Transcript:
    """Speech of a whole video.

    Attributes:
        language: The language heard most (by speech duration), or None without speech.
        language_probability: Whisper's probability for it (0 without speech).
        segments: In time order.
        task: ``transcribe`` or ``translate`` (text in English).
        model: Which Whisper model wrote it.
    """

    language: str | None = None
    language_probability: float = 0.0
    segments: tuple[SpeechSegment, ...] = ()
    task: str = "transcribe"
    model: str = ""

    @property
    def text(self) -> str:
        """The whole transcript as one string."""
        return " ".join(s.text for s in self.segments).strip()


@dataclass(frozen=True)
class TextItem:
    """A piece of on-screen text, merged over the frames it was read on.

    Attributes:
        start: First frame it was read on, seconds.
        end: Last frame it was read on (plus the reading interval), seconds.
        text: The text as read.
        confidence: The recogniser's confidence, in [0, 1].
        box: Where it is, as fractions of the frame: (left, top, right, bottom).
    """

    start: float
    end: float
    text: str
    confidence: float
    box: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)


@dataclass(frozen=True)
class Tag:
    """An ImageNet class seen in frames.

    Attributes:
        label: Its human-readable name ("golden retriever").
        synset: Its WordNet 3.0 noun id ("n02099601").
        score: Probability (for a segment or video: aggregated over its frames).
        names: Common names from the synset's hypernym chain, most specific first
            ("dog", "animal").
    """

    label: str
    synset: str
    score: float
    names: tuple[str, ...] = ()


@dataclass(frozen=True)
class TimedTags:
    """Tags of one frame (``start == end``) or of a stretch of the video."""

    start: float
    end: float
    tags: tuple[Tag, ...]


@dataclass(frozen=True)
class Perception:
    """Everything the experts found in one video.

    Attributes:
        duration_s: The video's duration.
        transcript: Speech.
        translation: The speech in English, when it was asked for.
        text: On-screen text items, in time order.
        tags: Tags of the whole video, strongest first.
        segment_tags: Tags per segment (the caption's segments).
        frame_tags: Tags per sampled frame.
        timings: Seconds per expert.
        models: Which model each expert ran.
    """

    duration_s: float
    transcript: Transcript = field(default_factory=Transcript)
    translation: Transcript | None = None
    text: tuple[TextItem, ...] = ()
    tags: tuple[Tag, ...] = ()
    segment_tags: tuple[TimedTags, ...] = ()
    frame_tags: tuple[TimedTags, ...] = ()
    timings: dict[str, float] = field(default_factory=dict)
    models: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (tuples become lists)."""
        return {"format": FORMAT_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Perception:
        """The inverse of :meth:`to_dict`.

        Raises:
            ValueError: Data written by another format version.
        """
        if data.get("format") != FORMAT_VERSION:
            raise ValueError(f"perception format {data.get('format')!r}, expected {FORMAT_VERSION}")

        def transcript(t: dict[str, Any]) -> Transcript:
            return Transcript(
                language=t["language"],
                language_probability=t["language_probability"],
                segments=tuple(
                    SpeechSegment(
                        **{k: v for k, v in s.items() if k != "words"},
                        words=tuple(Word(**w) for w in s["words"]),
                    )
                    for s in t["segments"]
                ),
                task=t["task"],
                model=t["model"],
            )

        def tags(items: list[dict[str, Any]]) -> tuple[Tag, ...]:
            return tuple(Tag(**{**x, "names": tuple(x["names"])}) for x in items)

        def timed(items: list[dict[str, Any]]) -> tuple[TimedTags, ...]:
            return tuple(TimedTags(x["start"], x["end"], tags(x["tags"])) for x in items)

        return cls(
            duration_s=data["duration_s"],
            transcript=transcript(data["transcript"]),
            translation=None if data["translation"] is None else transcript(data["translation"]),
            text=tuple(TextItem(**{**x, "box": tuple(x["box"])}) for x in data["text"]),
            tags=tags(data["tags"]),
            segment_tags=timed(data["segment_tags"]),
            frame_tags=timed(data["frame_tags"]),
            timings=dict(data["timings"]),
            models=dict(data["models"]),
        )

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write as JSON, atomically (a reader never sees half a file)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":")))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Perception:
        """Read a file written by :meth:`save`."""
        return cls.from_dict(json.loads(Path(path).read_text()))
