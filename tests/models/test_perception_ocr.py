"""On-screen text: RapidOCR sessions over frames, merged into timed items."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from models.perception.ocr import TextReader, merge_items, same_text
from models.perception.result import TextItem


@pytest.fixture(scope="module")
def reader() -> TextReader:
    return TextReader()


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().casefold()


def _frame(text: str | None, size: tuple[int, int] = (360, 640)) -> np.ndarray:
    image = np.full((*size, 3), (40, 90, 140), np.uint8)
    if text:
        cv2.putText(image, text, (40, 180), cv2.FONT_HERSHEY_SIMPLEX, 1.6, (255, 255, 255), 3)
    return image


def _read_video(reader: TextReader, path: Path, window: int = 4) -> tuple[list[TextItem], int]:
    from models.media import sample_frames

    images, times = sample_frames(path, fps=2.0, size=(540, 960), fit="pad")
    session = reader.session()
    for k in range(0, len(times), window):  # windows, as the worker feeds them
        session.feed(images[k : k + window], times[k : k + window])
    return session.finish(), session.frames_read


def test_same_text_ignores_case_and_spaces():
    assert same_text("SUNRISE RANCH", "sunriseranch") == 1.0
    assert same_text("SUNRISE RANCH", "SUNR1SE RANCH") >= 0.9
    assert same_text("SUNRISE RANCH", "HORSES FOR SALE") < 0.5


def test_merge_items_joins_a_missed_read_and_keeps_the_confident_spelling():
    a = TextItem(0.0, 2.0, "OPEN 24 H0URS", 0.8)
    b = TextItem(2.5, 5.0, "OPEN 24 HOURS", 0.95)
    c = TextItem(9.0, 10.0, "OPEN 24 HOURS", 0.9)  # much later: a new appearance
    merged = merge_items([b, a, c], gap_s=1.0)
    assert [(m.start, m.end, m.text) for m in merged] == [
        (0.0, 5.0, "OPEN 24 HOURS"),
        (9.0, 10.0, "OPEN 24 HOURS"),
    ]


def test_session_on_drawn_text_times_items_and_skips_unchanged_frames(reader: TextReader):
    frames = [_frame("OPEN 24 HOURS")] * 4 + [_frame(None)] * 2 + [_frame("CLOSED")] * 3
    images = np.stack(frames)
    times = np.arange(len(frames), dtype=np.float64) * 0.5  # 2 fps: at most every other is read
    session = reader.session()
    session.feed(images[:5], times[:5])
    session.feed(images[5:], times[5:])
    items = session.finish()
    assert [_norm(i.text) for i in items] == ["open 24 hours", "closed"]
    first, second = items
    assert first.start == 0.0 and 1.5 <= first.end <= 2.5  # gone at 2.0 s
    assert 2.5 <= second.start <= 3.5 and second.end >= 4.0
    assert 0 <= first.box[0] < first.box[2] <= 1 and 0 <= first.box[1] < first.box[3] <= 1
    assert first.confidence > 0.8
    # 9 frames: 5 due by time; the unchanged ones among them are not read
    assert session.frames_read < 5


def test_session_without_text_gives_nothing_and_rejects_bad_frames(reader: TextReader):
    session = reader.session()
    session.feed(np.stack([_frame(None)] * 3), np.arange(3.0))
    assert session.finish() == []
    with pytest.raises(ValueError, match="times"):
        reader.session().feed(np.stack([_frame(None)] * 2), np.zeros(3))


@pytest.mark.slow
def test_text_videos_are_read_exactly(reader: TextReader, real_data: Path, real_manifest):
    videos = sorted(k for k in real_manifest if k.startswith("derived/text_"))
    assert videos
    exact, total, report = 0, 0, []
    for name in videos:
        items, _ = _read_video(reader, real_data / name)
        read = [_norm(i.text) for i in items]
        for text in real_manifest[name]["on_screen_text"]:
            total += 1
            exact += _norm(text) in read
        report.append(f"{name}: {[i.text for i in items]}")
    print(f"exact: {exact}/{total}\n" + "\n".join(report))
    assert exact == total, "\n".join(report)


@pytest.mark.slow
def test_two_captions_are_read_at_their_times(reader: TextReader, real_data: Path, real_manifest):
    name = "derived/text_ranch_two_captions.mp4"
    items, _ = _read_video(reader, real_data / name)
    timed = real_manifest[name]["on_screen_text_timed"]
    assert len(items) == len(timed), items
    for item, truth in zip(items, timed, strict=True):
        assert _norm(item.text) == _norm(truth["text"])
        assert abs(item.start - truth["start"]) <= 1.0, (item, truth)
        assert abs(item.end - truth["end"]) <= 1.0, (item, truth)
    assert items[0].box[1] < 0.5 < items[1].box[1]  # top caption, then bottom caption


@pytest.mark.slow
def test_video_without_text_gives_no_items(reader: TextReader, real_data: Path):
    items, frames_read = _read_video(reader, real_data / "derived/photo_giraffe_silent.mp4")
    assert items == []
    assert frames_read >= 1
