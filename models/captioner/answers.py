"""What the captioner says about a video, with the moments it rests on.

Plain data (no torch): the worker stores it as JSON, the API returns it, the page turns each
:class:`Evidence` into a link that seeks the player, the CLI prints it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

EVIDENCE_KINDS = ("speech", "text", "visual", "audio")
NO_ANSWER = "the video does not say"


@dataclass(frozen=True)
class Evidence:
    """A moment an answer or a description rests on.

    Attributes:
        kind: ``speech`` (the transcript), ``text`` (on-screen text), ``visual`` (what the
            tagger saw) or ``audio`` (the soundtrack itself: music, noise, silence, no track).
        start: Start, seconds on the video's timeline.
        end: End, seconds.
        snippet: What is there: the words said, the text read, the tag names, the sound.
    """

    kind: str
    start: float
    end: float
    snippet: str

    def __post_init__(self) -> None:
        if self.kind not in EVIDENCE_KINDS:
            raise ValueError(f"evidence kind must be one of {EVIDENCE_KINDS}, got {self.kind!r}")
        if self.end < self.start:
            raise ValueError(f"evidence ends ({self.end}) before it starts ({self.start})")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (times rounded to milliseconds)."""
        return {
            "kind": self.kind,
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "snippet": self.snippet,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Evidence:
        """The inverse of :meth:`to_dict`."""
        return cls(
            str(data["kind"]), float(data["start"]), float(data["end"]), str(data["snippet"])
        )


@dataclass(frozen=True)
class Answer:
    """An answer to a question about a video.

    Attributes:
        text: The answer (:data:`NO_ANSWER` when the video holds none).
        evidence: The moments it rests on, strongest first (empty for :data:`NO_ANSWER`).
    """

    text: str
    evidence: tuple[Evidence, ...] = field(default_factory=tuple)

    @property
    def answered(self) -> bool:
        """False when the model said the video does not hold the answer."""
        return self.text.strip().lower().rstrip(".") != NO_ANSWER

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {"answer": self.text, "evidence": [e.to_dict() for e in self.evidence]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Answer:
        """The inverse of :meth:`to_dict`."""
        return cls(str(data["answer"]), tuple(Evidence.from_dict(e) for e in data["evidence"]))
