"""The vidcap command line, run as a user runs it: a real process, real files."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from models.media import synth


def vidcap(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "vidcap.cli", *args]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})}
    )


def test_probe_prints_media_info_as_json(make_video):
    result = vidcap("probe", str(make_video("vp9_opus_webm")))
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["container"] == "webm" and info["video_codec"] == "vp9"
    assert info["frame_count"] == 60 and info["has_audio"] is True


@pytest.mark.parametrize(
    ("kind", "code"), [("text", "not_a_video"), ("audio_only", "no_video_stream")]
)
def test_probe_bad_file_prints_error_json_and_exits_2(make_video, kind, code):
    result = vidcap("probe", str(make_video(kind)))
    assert result.returncode == 2
    error = json.loads(result.stdout)["error"]
    assert error["code"] == code and error["message"]


def test_probe_limits_come_from_the_environment(make_video):
    result = vidcap(
        "probe", str(make_video("h264_aac_mp4")), env={"VIDCAP_MEDIA_MAX_DURATION_S": "1"}
    )
    assert result.returncode == 2
    assert json.loads(result.stdout)["error"]["code"] == "video_too_long"


def test_frames_writes_pngs_a_person_can_open(make_video, tmp_path):
    out = tmp_path / "frames"
    result = vidcap(
        "frames",
        str(make_video("rotated_mp4")),
        "--num-frames",
        "4",
        "--size",
        "96",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)["frames"]
    assert len(listed) == 4 == len(list(out.glob("*.png")))
    first = np.asarray(Image.open(listed[0]["file"]))
    assert first.shape == (96, 96, 3)
    assert first[:2, :, 0].mean() > 200  # upright: the red band is on top
    assert [x["time_s"] for x in listed] == pytest.approx([0.233, 0.733, 1.233, 1.733], abs=1e-3)


def test_frames_on_a_bad_file_exits_2(make_video, tmp_path):
    result = vidcap("frames", str(make_video("empty")), "--out", str(tmp_path))
    assert result.returncode == 2
    assert json.loads(result.stdout)["error"]["code"] == "not_a_video"
    assert list(tmp_path.iterdir()) == []


def test_frames_rejects_contradictory_options(make_video, tmp_path):
    path = str(make_video("h264_aac_mp4"))
    result = vidcap("frames", path, "-n", "4", "--fps", "2", "--out", str(tmp_path))
    assert result.returncode == 2
    assert "exactly one of num_frames or fps" in result.stderr


def test_synth_pattern_reads_back_at_any_size():
    for index in (0, 1, 77, 4095):
        image = synth.pattern_frame(index, 640, 360)
        small = np.asarray(Image.fromarray(image).resize((100, 56)))
        assert synth.frame_index(small) == index


# ---------------------------------------------------------------------- vidcap transcribe


def words(text):
    """Lower case, no punctuation, no line breaks: what a person reads."""
    return " ".join("".join(c if c.isalnum() or c.isspace() else " " for c in text.lower()).split())


@pytest.mark.slow
def test_transcribe_writes_subtitles_of_real_speech(real_data, real_manifest, tmp_path):
    path = real_data / "derived" / "photo_dog_speech.mp4"
    said = real_manifest["derived/photo_dog_speech.mp4"]["speech"][0]
    result = vidcap("transcribe", str(path), "--whisper-model", "tiny.en")
    assert result.returncode == 0, result.stderr
    vtt = result.stdout
    assert vtt.startswith("WEBVTT\n\n00:00:")
    assert "greasy wash water" in words(vtt)
    assert "transcribing" in result.stderr and "100%" in result.stderr  # the progress bar

    # the same as SRT into a file (the format from its suffix), and as JSON
    out = tmp_path / "subs" / "dog.srt"
    result = vidcap("transcribe", str(path), "--whisper-model", "tiny.en", "--output", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    srt = out.read_text()
    assert srt.startswith("1\n00:00:00,") and "greasy wash water" in words(srt)
    assert f"wrote {out}" in result.stderr

    result = vidcap("transcribe", str(path), "-f", "json", "--whisper-model", "tiny.en")
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["language"] == "en" and found["model"] == "tiny.en"
    assert found["task"] == "transcribe"
    (segment,) = found["segments"]
    assert abs(segment["start"] - said["start"]) < 0.5 and abs(segment["end"] - said["end"]) < 0.5
    assert "greasy wash water" in words(segment["text"])
    assert words(" ".join(c["text"] for c in found["cues"])) == words(segment["text"])


@pytest.mark.slow
def test_transcribe_translate_with_a_multilingual_model(real_data):
    # Russian speech, in English (base: the packaged multilingual model).
    path = real_data / "derived" / "photo_kitchen_speech_ru.mp4"
    result = vidcap("transcribe", str(path), "--translate", "-f", "json")
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["task"] == "translate" and found["language"] == "ru"
    text = " ".join(s["text"] for s in found["segments"])
    assert text and all(ord(c) < 0x400 for c in text), text  # Latin script, not Cyrillic


def test_transcribe_a_video_without_sound_gives_an_empty_file(real_data):
    path = real_data / "derived" / "photo_beach_kites_noaudio.mp4"
    result = vidcap("transcribe", str(path), "--whisper-model", "tiny.en")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "WEBVTT\n"
    result = vidcap("transcribe", str(path), "--whisper-model", "tiny.en", "--format", "srt")
    assert result.returncode == 0 and result.stdout == ""


def test_transcribe_a_silent_synthetic_video_gives_an_empty_file(make_video):
    result = vidcap("transcribe", str(make_video("h264_aac_mp4")), "--whisper-model", "tiny.en")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "WEBVTT\n"


def test_transcribe_refuses_bad_files_and_options(make_video, tmp_path):
    result = vidcap("transcribe", str(make_video("text")), "--whisper-model", "tiny.en")
    assert result.returncode == 2
    assert json.loads(result.stdout)["error"]["code"] == "not_a_video"
    assert "not a video" in result.stderr  # said where a person sees it

    result = vidcap("transcribe", str(tmp_path / "nope.mp4"))
    assert result.returncode == 2
    assert json.loads(result.stdout)["error"]["code"] == "file_not_found"

    path = str(make_video("h264_aac_mp4", duration=1))
    result = vidcap("transcribe", path, "--language", "xx")
    assert result.returncode == 2 and "unknown language" in result.stderr

    result = vidcap("transcribe", path, "--whisper-model", str(tmp_path))
    assert result.returncode == 2
    assert json.loads(result.stdout)["error"]["code"] == "model_not_found"

    result = vidcap("transcribe", path, "--whisper-model", "tiny.en", "--translate")
    assert result.returncode == 2
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "invalid_option" and "English-only" in error["message"]
