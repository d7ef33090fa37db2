"""All the experts over one real video: one Perception, saved and loaded back; a failure in
the frame experts stops the speech thread too."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.perception.result import Perception
from models.perception.runner import Perceiver, public_view


@pytest.fixture(scope="module")
def experts() -> Perceiver:
    return Perceiver(whisper_model="tiny.en", device="cpu")


class Stop(Exception):
    pass


def test_a_real_clip_gives_one_perception_that_round_trips(
    experts: Perceiver, real_data: Path, tmp_path: Path
) -> None:
    seen: list[tuple[str, float]] = []
    found, extra = experts.run(
        real_data / "derived" / "text_flower_show_speech.mp4",
        segment_seconds=3.0,
        on_progress=lambda stage, done: seen.append((stage, done)),
        during=lambda: "features",
    )
    assert extra == "features"
    assert "amiable" in found.transcript.text.lower()
    assert [x.text.upper() for x in found.text] == ["FLOWER SHOW TODAY"]
    assert len(found.segment_tags) == 2 and len(found.frame_tags) == 6  # 6 s, 1 frame a second
    assert {"transcribing", "tagging", "reading_text"} <= {stage for stage, _ in seen}
    assert max(done for stage, done in seen if stage == "transcribing") == 1.0
    found.save(tmp_path / "perception.json")
    assert Perception.load(tmp_path / "perception.json") == found
    view = public_view(found)
    assert view["speech_cues"] and view["transcript"]["language"] == "en"
    assert "words" not in view["transcript"]["segments"][0]  # word timings stay in the file


def test_a_failure_beside_speech_stops_the_speech_thread(
    experts: Perceiver, real_data: Path
) -> None:
    speech: list[float] = []

    def progress(stage: str, done: float) -> None:
        if stage == "transcribing":
            speech.append(done)
        else:  # the first frame window: fail, as a cancel or a timeout would
            raise Stop()

    with pytest.raises(Stop):
        experts.run(
            real_data / "derived" / "long_ljspeech_printing_slideshow.mp4",
            segment_seconds=5.0,
            on_progress=progress,
        )
    # run() returned only once the speech thread had stopped, long before its 63 s were done
    assert not speech or max(speech) < 1.0
