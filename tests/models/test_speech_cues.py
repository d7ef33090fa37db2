"""speech_cues(): subtitle cues from a transcript, within the reading limits."""

from __future__ import annotations

import itertools

import pytest

from models.perception.result import SpeechSegment, Transcript, Word
from models.perception.subtitles import speech_cues


def timed_segment(text: str, start: float = 0.0, per_word: float = 0.4) -> SpeechSegment:
    """A segment whose words last ``per_word`` seconds each, back to back."""
    words = tuple(
        Word(start + i * per_word, start + (i + 1) * per_word, w, 0.9)
        for i, w in enumerate(text.split())
    )
    return SpeechSegment(start, words[-1].end, text, "en", 0.9, 0.0, words)


LONG = (
    "Printing, in the only sense with which we are at present concerned, differs from most "
    "if not from all the arts and crafts represented in the exhibition. In being comparatively "
    "modern. For although the Chinese took impressions from wood blocks engraved in relief for "
    "centuries before the woodcutters of the Netherlands, by a similar process, produced the "
    "block books."
)


def check_limits(cues: list[dict], max_chars: int = 42) -> None:
    for cue in cues:
        lines = cue["text"].split("\n")
        assert len(lines) <= 2 and all(0 < len(line) <= max_chars for line in lines), cue
        assert cue["end"] - cue["start"] <= 7.0 + 1e-9
    for a, b in itertools.pairwise(cues):
        assert a["start"] < a["end"] <= b["start"]


def test_long_segment_is_cut_within_limits():
    cues = speech_cues(Transcript("en", 1.0, (timed_segment(LONG, per_word=0.3),)))
    check_limits(cues)
    assert " ".join(c["text"].replace("\n", " ") for c in cues) == LONG
    assert all(c["end"] - c["start"] >= 1.0 for c in cues)


def test_cuts_fall_on_sentence_ends_when_they_fit():
    text = "Go forward ten meters. Then turn left. Stop at the door and wait."
    cues = speech_cues(Transcript("en", 1.0, (timed_segment(text, per_word=0.5),)), max_s=4.0)
    check_limits(cues)
    assert [c["text"].replace("\n", " ") for c in cues] == [
        "Go forward ten meters.",
        "Then turn left.",
        "Stop at the door and wait.",
    ]


def test_cut_times_come_from_the_words():
    segment = timed_segment("One two three four five. Six seven eight nine ten.", 3.0, 0.5)
    cues = speech_cues(Transcript("en", 1.0, (segment,)), max_s=3.0)
    assert [(c["start"], c["end"]) for c in cues] == [(3.0, 5.5), (5.5, 8.0)]


def test_clause_marks_are_used_when_a_sentence_is_too_long():
    text = "when the sun rose over the quiet hills, the farmers walked out to the fields again"
    cues = speech_cues(Transcript("en", 1.0, (timed_segment(text, per_word=0.2),)), max_lines=1)
    assert cues[0]["text"] == "when the sun rose over the quiet hills,"


def test_segment_without_words_is_timed_proportionally():
    segment = SpeechSegment(10.0, 20.0, LONG[:160], "en", 0.9)
    cues = speech_cues(Transcript("en", 1.0, (segment,)))
    check_limits(cues)
    assert cues[0]["start"] == 10.0 and 20.0 <= cues[-1]["end"] <= 21.0
    # The first cut is where its characters end, as a share of the segment's 10 s.
    chars = len(cues[0]["text"]) + 1
    total = len(" ".join(LONG[:160].split())) + 1
    assert cues[1]["start"] == pytest.approx(10.0 + 10.0 * chars / total, abs=0.01)


def test_short_cue_is_held_for_a_second():
    segment = timed_segment("Yes.", 2.0, 0.2)
    assert speech_cues(Transcript("en", 1.0, (segment,))) == [
        {"start": 2.0, "end": 3.0, "text": "Yes."}
    ]


def test_empty_transcript_and_empty_text_give_no_cues():
    assert speech_cues(Transcript()) == []
    blank = SpeechSegment(0.0, 1.0, "  ", "en", 0.5)
    assert speech_cues(Transcript("en", 1.0, (blank,))) == []


def test_chinese_words_are_joined_without_spaces() -> None:
    # Whisper's words of Chinese speech are characters; the cue reads as the sentence does
    chars = list("廣州市、佛地產中間協會分析")
    words = tuple(Word(0.2 * i, 0.2 * (i + 1), c, 0.9) for i, c in enumerate(chars))
    segment = SpeechSegment(0.0, words[-1].end, "".join(chars), "zh", 0.9, 0.0, words)
    cues = speech_cues(Transcript("zh", 0.99, (segment,)))
    assert "".join(c["text"].replace("\n", "") for c in cues) == "廣州市、佛地產中間協會分析"
    assert all(" " not in c["text"] for c in cues)
    # and English words beside Chinese ones still get their spaces
    mixed = timed_segment("Guangzhou is 廣州")
    assert speech_cues(Transcript("en", 0.9, (mixed,)))[0]["text"] == "Guangzhou is 廣州"
