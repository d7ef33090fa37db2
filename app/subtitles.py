"""Timed captions as WebVTT and SRT files that real players accept.

Both writers take the same segments, mappings with ``start`` and ``end`` (seconds, floats) and
``text``, and apply the same clean-up, so the two files of one video always hold the same cues:

* Times are rounded to whole milliseconds (half up, on the decimal value the float prints as, so
  ``0.9995`` becomes ``00:00:01.000`` and never ``00:00:00.1000``). Negative times become 0. A
  cue whose end is not after its start once rounded ends 1 ms after it: players drop or choke on
  zero-length cues.
* Cues are sorted by start (ties keep their input order); cues with no text are left out.
* Text is stripped, line by line; blank lines inside a cue are dropped, since a blank line ends
  a cue in both formats. ``-->`` never appears in text (it is what a timing line is recognised
  by); it becomes ``->``. WebVTT text is escaped (``&amp;``, ``&lt;``, ``&gt;``), so ``<b>`` in
  a caption shows as the characters, not as bold. SRT has no escaping, so SRT text is left
  as is.

Files use LF line endings, a blank line between blocks, and end with a newline. With no cues,
WebVTT is just its header (``"WEBVTT\\n"``, plus the NOTE block when a caption is given) and
SRT is the empty string: an SRT file is nothing but cues.

Example:
    >>> print(to_srt([{"start": 0, "end": 1.5, "text": "A dog runs."}]), end="")
    1
    00:00:00,000 --> 00:00:01,500
    A dog runs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

_ARROW = "-->"


@dataclass(frozen=True)
class _Cue:
    start_ms: int
    end_ms: int
    lines: tuple[str, ...]


def _to_ms(seconds: Any, what: str) -> int:
    """Seconds as whole milliseconds, rounded half up; negatives clamp to 0."""
    value = float(seconds)
    if not math.isfinite(value):
        raise ValueError(f"segment {what} must be a finite number of seconds, got {seconds!r}")
    # Decimal(repr(...)) rounds the number as written: the float nearest 0.9995 is a hair below
    # it, and plain round() would give 999 ms where anyone reading the input expects 1000.
    ms = Decimal(repr(value)).scaleb(3).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    return max(0, int(ms))


def _clean_lines(text: str) -> list[str]:
    """Text as non-empty, stripped lines with no ``-->`` in them."""
    lines = []
    # splitlines() also splits on \r and \r\n, so no bare CR survives into an LF file.
    for raw in text.splitlines():
        line = raw.strip()
        # One pass is not enough: "--->" becomes "-->" after a single replace.
        while _ARROW in line:
            line = line.replace(_ARROW, "->")
        if line:
            lines.append(line)
    return lines


def _cues(segments: Sequence[Mapping[str, Any]]) -> list[_Cue]:
    """The segments as cleaned, sorted cues with millisecond times."""
    cues = []
    for segment in segments:
        lines = _clean_lines(str(segment.get("text") or ""))
        if not lines:
            continue
        start = _to_ms(segment["start"], "start")
        end = max(_to_ms(segment["end"], "end"), start + 1)
        cues.append(_Cue(start, end, tuple(lines)))
    cues.sort(key=lambda cue: cue.start_ms)  # stable: equal starts keep the input order
    return cues


def _timestamp(ms: int, separator: str) -> str:
    """``HH:MM:SS<separator>mmm`` with hours always present (more digits past 99 hours)."""
    # Splitting whole milliseconds with integer maths is what rules out "00:00:00.1000".
    seconds, millis = divmod(ms, 1000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{separator}{millis:03d}"


def _escape_vtt(line: str) -> str:
    # & first, or the & of the other two escapes would be escaped again.
    return line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_vtt(segments: Sequence[Mapping[str, Any]], *, caption: str | None = None) -> str:
    """Renders timed segments as a WebVTT file.

    Args:
        segments: Mappings with ``start`` and ``end`` (seconds) and ``text``, in any order.
        caption: The whole-video caption, written as a ``NOTE`` comment block after the header
            (players do not show it). Cleaned like cue text but not escaped, since comments
            are not parsed for markup; left out when it is empty or ``None``.

    Returns:
        The file's text: ``WEBVTT``, a blank line, then the NOTE block and the cues separated
        by blank lines, ending with a newline. With no cues and no caption, ``"WEBVTT\\n"``.

    Raises:
        KeyError: If a segment with text lacks ``start`` or ``end``.
        ValueError: If a time is not a finite number.
    """
    blocks = ["WEBVTT"]
    if caption is not None:
        note = _clean_lines(caption)
        if note:
            blocks.append("\n".join(["NOTE", *note]))
    for cue in _cues(segments):
        timing = f"{_timestamp(cue.start_ms, '.')} {_ARROW} {_timestamp(cue.end_ms, '.')}"
        blocks.append("\n".join([timing, *map(_escape_vtt, cue.lines)]))
    return "\n\n".join(blocks) + "\n"


def to_srt(segments: Sequence[Mapping[str, Any]]) -> str:
    """Renders timed segments as a SubRip (SRT) file.

    Args:
        segments: Mappings with ``start`` and ``end`` (seconds) and ``text``, in any order.

    Returns:
        The file's text: cues numbered from 1, separated by blank lines, ending with a
        newline; the empty string when no segment has text.

    Raises:
        KeyError: If a segment with text lacks ``start`` or ``end``.
        ValueError: If a time is not a finite number.
    """
    blocks = []
    for number, cue in enumerate(_cues(segments), start=1):
        timing = f"{_timestamp(cue.start_ms, ',')} {_ARROW} {_timestamp(cue.end_ms, ',')}"
        blocks.append("\n".join([str(number), timing, *cue.lines]))
    return "\n\n".join(blocks) + "\n" if blocks else ""
