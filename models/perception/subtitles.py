"""Subtitle cues from a transcript: short, readable, timed by the words (pure Python).

A cue holds at most ``max_lines`` lines of at most ``max_chars`` characters and lasts about
``min_s`` to ``max_s`` seconds. Segments are cut at sentence ends first (. ? !), then at
clause marks (, ; :), then between words; a cut's time is the word's own timestamp, or a
share of the segment proportional to its characters when the segment has no word timings.

>>> cues = speech_cues(transcript)   # [{"start": 0.0, "end": 2.4, "text": "Hello\\nthere."}]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from models.perception.languages import spaceless
from models.perception.result import SpeechSegment, Transcript

# ASCII, then the CJK full-width forms (written as escapes: they look like ASCII).
_SENTENCE_END = (".", "?", "!", "\u3002", "\uff1f", "\uff01", "\u2026")
_CLAUSE_END = (",", ";", ":", "\uff0c", "\uff1b", "\uff1a")


@dataclass(frozen=True)
class _Token:
    text: str
    start: float
    end: float


def _tokens(segment: SpeechSegment) -> list[_Token]:
    """The segment's words with times (proportional to characters without word timings)."""
    words = [w for w in segment.words if w.text.strip()]
    if words:
        return [_Token(w.text.strip(), w.start, max(w.end, w.start)) for w in words]
    texts = segment.text.split()
    if not texts:
        return []
    total = sum(len(t) + 1 for t in texts)
    span = max(segment.end - segment.start, 0.0)
    out, done = [], 0
    for text in texts:
        start = segment.start + span * done / total
        done += len(text) + 1
        out.append(_Token(text, start, segment.start + span * done / total))
    return out


def _unspaced(char: str) -> bool:
    """A character of a script written without spaces, or its full-width punctuation."""
    return spaceless(char) or 0x3000 <= ord(char) <= 0x303F or 0xFF00 <= ord(char) <= 0xFFEF


def _lines(tokens: list[_Token], max_chars: int) -> list[str]:
    """Words wrapped into lines of at most ``max_chars`` (a longer word gets its own line).
    Words join with a space, except between characters of Chinese or Japanese (Whisper's
    words there are characters: "廣州市、佛地產", not "廣 州 市、 佛 地 產")."""
    lines: list[str] = []
    for token in tokens:
        gap = "" if lines and _unspaced(lines[-1][-1]) and _unspaced(token.text[0]) else " "
        if lines and len(lines[-1]) + len(gap) + len(token.text) <= max_chars:
            lines[-1] += gap + token.text
        else:
            lines.append(token.text)
    return lines


def _fits(tokens: list[_Token], max_chars: int, max_lines: int, max_s: float) -> bool:
    return len(_lines(tokens, max_chars)) <= max_lines and tokens[-1].end - tokens[0].start <= max_s


def _cut(tokens: list[_Token], max_chars: int, max_lines: int, min_s: float, max_s: float) -> int:
    """How many tokens the next cue takes.

    The first sentence end after ``min_s`` of speech, when the cue fits up to there; else
    the last sentence end that fits, else the last clause mark, else as many words as fit.
    """
    fit = 1
    while fit < len(tokens) and _fits(tokens[: fit + 1], max_chars, max_lines, max_s):
        fit += 1
    for i in range(1, fit + 1):
        ends = tokens[i - 1].text.endswith(_SENTENCE_END)
        if ends and i < len(tokens) and tokens[i - 1].end - tokens[0].start >= min_s:
            return i
    if fit == len(tokens):
        return fit
    for marks in (_SENTENCE_END, _CLAUSE_END):
        for i in range(fit, 0, -1):
            # Never leave a tiny first cue when a later break would do: at least 1/3 full.
            if tokens[i - 1].text.endswith(marks) and 3 * i >= fit:
                return i
    return fit


def _split(
    tokens: list[_Token], max_chars: int, max_lines: int, min_s: float, max_s: float
) -> list[list[_Token]]:
    groups: list[list[_Token]] = []
    while tokens:
        n = _cut(tokens, max_chars, max_lines, min_s, max_s)
        groups.append(tokens[:n])
        tokens = tokens[n:]
    return groups


def speech_cues(
    transcript: Transcript,
    *,
    max_chars: int = 42,
    max_lines: int = 2,
    min_s: float = 1.0,
    max_s: float = 7.0,
) -> list[dict[str, Any]]:
    """Subtitle cues ``{start, end, text}`` for a transcript, in order and never overlapping.

    Args:
        transcript: What was said.
        max_chars: Characters per line (a single longer word is kept whole).
        max_lines: Lines per cue (joined by "\\n").
        min_s: Shortest cue: a shorter one is held longer, up to the next cue's start.
        max_s: Longest cue (a cue is cut before it would last longer).

    Returns:
        Cues in time order; none for a transcript without text.
    """
    if max_chars < 1 or max_lines < 1 or not 0 < min_s <= max_s:
        raise ValueError(
            f"need max_chars >= 1, max_lines >= 1 and 0 < min_s <= max_s; got {max_chars},"
            f" {max_lines}, {min_s}, {max_s}"
        )
    groups: list[list[_Token]] = []
    for segment in sorted(transcript.segments, key=lambda s: s.start):
        tokens = _tokens(segment)
        if tokens:
            groups += _split(tokens, max_chars, max_lines, min_s, max_s)
    cues: list[dict[str, Any]] = []
    for i, group in enumerate(groups):
        start = group[0].start
        if cues and start < cues[-1]["end"]:
            start = cues[-1]["end"]
        end = max(group[-1].end, start)
        following = groups[i + 1][0].start if i + 1 < len(groups) else float("inf")
        if end - start < min_s:
            end = max(end, min(start + min_s, following))
        end = min(end, start + max_s)
        cues.append(
            {
                "start": round(start, 3),
                "end": round(end, 3),
                "text": "\n".join(_lines(group, max_chars)),
            }
        )
    return cues
