"""WebVTT and SRT output: exact files, timing edge cases, hostile text, and a parse round trip."""

import re

import pytest

from app.subtitles import to_srt, to_vtt

SEGMENTS = [
    {"start": 2.5, "end": 4.25, "text": "A dog catches a ball."},
    {"start": 0.0, "end": 2.5, "text": "  A man throws a ball.  "},
    {"start": 5.0, "end": 6.0, "text": "   "},  # no text: left out
]


def test_vtt_exact_output() -> None:
    assert to_vtt(SEGMENTS, caption="A man plays fetch with his dog.") == (
        "WEBVTT\n"
        "\n"
        "NOTE\n"
        "A man plays fetch with his dog.\n"
        "\n"
        "00:00:00.000 --> 00:00:02.500\n"
        "A man throws a ball.\n"
        "\n"
        "00:00:02.500 --> 00:00:04.250\n"
        "A dog catches a ball.\n"
    )


def test_srt_exact_output() -> None:
    assert to_srt(SEGMENTS) == (
        "1\n"
        "00:00:00,000 --> 00:00:02,500\n"
        "A man throws a ball.\n"
        "\n"
        "2\n"
        "00:00:02,500 --> 00:00:04,250\n"
        "A dog catches a ball.\n"
    )


def test_empty_files() -> None:
    assert to_vtt([]) == "WEBVTT\n"
    assert to_srt([]) == ""
    assert to_vtt([{"start": 0, "end": 1, "text": "\n \n"}]) == "WEBVTT\n"
    assert to_srt([{"start": 0, "end": 1, "text": ""}]) == ""
    # a caption with no cues is still a valid file: header, blank line, NOTE
    assert to_vtt([], caption="Nothing happens.") == "WEBVTT\n\nNOTE\nNothing happens.\n"
    assert to_vtt([], caption="  \n ") == "WEBVTT\n"


def test_times_over_an_hour() -> None:
    segments = [{"start": 3723.456, "end": 36000 + 59 * 60 + 59.999, "text": "late"}]
    assert "01:02:03.456 --> 10:59:59.999\n" in to_vtt(segments)
    assert "01:02:03,456 --> 10:59:59,999\n" in to_srt(segments)
    # past 99 hours the hours simply get more digits
    assert "100:00:00.000 --> 100:00:01.000" in to_vtt(
        [{"start": 360000, "end": 360001, "text": "x"}]
    )


def test_rounding_carries_into_the_next_second() -> None:
    # 0.9995 s is 1000 ms, not "00:00:00.1000"; 59.9995 s carries into the minute
    vtt = to_vtt([{"start": 0.9995, "end": 59.9995, "text": "x"}])
    assert "00:00:01.000 --> 00:01:00.000\n" in vtt
    assert "00:00:00,999 --> 00:00:01,000\n" in to_srt(
        [{"start": 0.9994, "end": 0.9995, "text": "x"}]
    )
    assert "00:59:59.999 --> 01:00:00.000" in to_vtt(
        [{"start": 3599.999, "end": 3599.9996, "text": "x"}]
    )


def test_end_never_at_or_before_start() -> None:
    segments = [
        {"start": 1.0, "end": 1.0004, "text": "same ms after rounding"},
        {"start": 3.0, "end": 2.0, "text": "backwards"},
        {"start": -0.5, "end": -0.1, "text": "negative"},
    ]
    assert to_srt(segments) == (
        "1\n00:00:00,000 --> 00:00:00,001\nnegative\n\n"
        "2\n00:00:01,000 --> 00:00:01,001\nsame ms after rounding\n\n"
        "3\n00:00:03,000 --> 00:00:03,001\nbackwards\n"
    )


def test_sorted_by_start_and_stable() -> None:
    segments = [
        {"start": 5, "end": 6, "text": "third"},
        {"start": 1, "end": 2, "text": "first"},
        {"start": 1, "end": 3, "text": "second"},
    ]
    texts = [line for line in to_srt(segments).splitlines() if line.isalpha()]
    assert texts == ["first", "second", "third"]


def test_tricky_text_in_vtt() -> None:
    text = "<b>bold</b> & <i>\n\n\n  then --> arrow --->\r\n\r\nlast &amp;  "
    assert to_vtt([{"start": 0, "end": 1, "text": text}]) == (
        "WEBVTT\n"
        "\n"
        "00:00:00.000 --> 00:00:01.000\n"
        "&lt;b&gt;bold&lt;/b&gt; &amp; &lt;i&gt;\n"
        "then -&gt; arrow -&gt;\n"
        "last &amp;amp;\n"
    )


def test_tricky_text_in_srt() -> None:
    text = "<b>bold</b> & x\n\n\n  then --> arrow --->\r\rlast"
    assert to_srt([{"start": 0, "end": 1, "text": text}]) == (
        "1\n00:00:00,000 --> 00:00:01,000\n<b>bold</b> & x\nthen -> arrow ->\nlast\n"
    )


def test_note_is_sanitised() -> None:
    vtt = to_vtt([], caption="A --> B\n\nC <&>")
    assert vtt == "WEBVTT\n\nNOTE\nA -> B\nC <&>\n"


def test_non_finite_times_are_refused() -> None:
    with pytest.raises(ValueError, match="finite"):
        to_vtt([{"start": float("nan"), "end": 1, "text": "x"}])
    with pytest.raises(ValueError, match="finite"):
        to_srt([{"start": 0, "end": float("inf"), "text": "x"}])


# --- a small, independent WebVTT reader for the round trip -------------------------------------

_TIME = r"(\d{2,}):([0-5]\d):([0-5]\d)\.(\d{3})"
_TIMING = re.compile(rf"^{_TIME} --> {_TIME}$")
_UNESCAPE = {"&amp;": "&", "&lt;": "<", "&gt;": ">"}


def _seconds(h: str, m: str, s: str, ms: str) -> float:
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000


def parse_vtt(text: str) -> tuple[list[str], list[tuple[float, float, str]]]:
    """Returns (NOTE texts, cues as (start, end, text)), asserting the file's structure."""
    assert text.endswith("\n") and "\r" not in text
    header, *blocks = text.rstrip("\n").split("\n\n")
    assert header == "WEBVTT"
    notes, cues = [], []
    for block in blocks:
        lines = block.split("\n")
        assert all(line.strip() for line in lines), f"blank line inside block {block!r}"
        if lines[0] == "NOTE":
            assert not any("-->" in line for line in lines)
            notes.append("\n".join(lines[1:]))
            continue
        match = _TIMING.match(lines[0])
        assert match, f"bad timing line {lines[0]!r}"
        start, end = _seconds(*match.groups()[:4]), _seconds(*match.groups()[4:])
        assert end > start
        body = lines[1:]
        assert body and not any("-->" in line or re.search(r"[<>]", line) for line in body)
        cue_text = re.sub(r"&(amp|lt|gt);", lambda m: _UNESCAPE[m.group(0)], "\n".join(body))
        cues.append((start, end, cue_text))
    return notes, cues


def test_vtt_round_trip() -> None:
    segments = [
        {"start": 7261.0015, "end": 7262.5, "text": "over two hours <later>"},
        {"start": 0.1, "end": 0.1, "text": "zero length"},
        {"start": 1.2345, "end": 3.0, "text": "Tom & Jerry\n\nrun -> away"},
        {"start": 4, "end": 5, "text": ""},
    ]
    notes, cues = parse_vtt(to_vtt(segments, caption="A cat chases a mouse."))
    assert notes == ["A cat chases a mouse."]
    assert cues == [
        (0.1, pytest.approx(0.101), "zero length"),
        (pytest.approx(1.235), 3.0, "Tom & Jerry\nrun -> away"),
        (pytest.approx(7261.002), 7262.5, "over two hours <later>"),
    ]
    starts = [start for start, _, _ in cues]
    assert starts == sorted(starts)
