"""`vidcap caption` and `vidcap ask`, run as a user runs them: a real process, real files."""

import json
import os
import subprocess
import sys
from pathlib import Path

STAGES = {"load", "decode", "features", "fusion", "generate", "total"}
EXPERTS = {"load_experts", "perception"}  # a video file (not saved features) is also heard and read


def vidcap(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "vidcap.cli", *args]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=180, env={**os.environ, **(env or {})}
    )


def test_caption_prints_caption_segments_and_timings(
    make_video, tiny_model_dir: Path, tmp_path: Path
):
    video = make_video("h264_aac_mp4", duration=3.0)
    saved = tmp_path / "features.safetensors"
    result = vidcap(
        "caption",
        str(video),
        "--model",
        str(tiny_model_dir),
        "--segments",
        "1.5",
        "--save",
        str(saved),
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert isinstance(out["caption"], str)
    assert out["frames"] == 6 and out["has_audio"] is True
    assert [(s["start"], s["end"]) for s in out["segments"]] == [(0.0, 1.5), (1.5, 3.0)]
    assert set(out["timings_s"]) == STAGES | EXPERTS
    assert out["timings_s"]["total"] >= out["timings_s"]["decode"] > 0
    assert saved.is_file() and out["features"] == str(saved)
    # synthetic tones: no words are invented; no text on screen
    assert out["transcript"]["segments"] == [] and out["speech_cues"] == []
    assert out["on_screen_text"] == []


def test_caption_of_a_real_clip_prints_transcript_tags_and_cues(
    real_data: Path, tiny_model_dir: Path
):
    clip = real_data / "derived" / "photo_dog_speech.mp4"
    result = vidcap("caption", str(clip), "--model", str(tiny_model_dir), "--segments", "3")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["transcript"]["language"] == "en"
    assert "dark suit" in out["transcript"]["segments"][0]["text"].lower()
    assert out["speech_cues"] and out["speech_cues"][0]["start"] < 1.0
    names = {n for tag in out["tags"]["video"] for n in tag["names"]}
    assert "dog" in names, out["tags"]
    assert len(out["tags"]["segments"]) == 2  # 6 s in segments of 3 s
    assert {"transcribing", "tagging", "reading_text"} <= set(out["perception_timings_s"])


def test_ask_answers_from_saved_features_without_decoding(
    make_video, tiny_model_dir: Path, tmp_path: Path
):
    video = make_video("h264_aac_mp4", duration=3.0)
    saved = tmp_path / "features.safetensors"
    assert (
        vidcap(
            "caption", str(video), "--model", str(tiny_model_dir), "--save", str(saved)
        ).returncode
        == 0
    )
    from_file = vidcap("ask", str(video), "which sound plays?", "--model", str(tiny_model_dir))
    from_features = vidcap("ask", str(saved), "which sound plays?", "--model", str(tiny_model_dir))
    assert from_file.returncode == 0 and from_features.returncode == 0, from_features.stderr
    a, b = json.loads(from_file.stdout), json.loads(from_features.stdout)
    assert a["answer"] == b["answer"] and a["question"] == "which sound plays?"
    assert "decode" in a["timings_s"] and "decode" not in b["timings_s"]


def test_model_directory_comes_from_the_environment(make_video, tiny_model_dir: Path):
    result = vidcap(
        "caption", str(make_video("no_audio_mp4")), env={"VIDCAP_MODEL": str(tiny_model_dir)}
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["model"] == str(tiny_model_dir) and out["has_audio"] is False


def test_missing_model_is_an_error_json_and_exit_2(make_video, tmp_path: Path):
    result = vidcap("caption", str(make_video()), "--model", str(tmp_path / "nothing"))
    assert result.returncode == 2
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "model_not_found" and "--model" in error["message"]


def test_bad_video_is_an_error_json_and_exit_2(make_video, tiny_model_dir: Path):
    result = vidcap("ask", str(make_video("text")), "what colour?", "--model", str(tiny_model_dir))
    assert result.returncode == 2
    assert json.loads(result.stdout)["error"]["code"] == "not_a_video"


def test_empty_question_is_a_usage_error(make_video, tiny_model_dir: Path):
    result = vidcap("ask", str(make_video()), "  ", "--model", str(tiny_model_dir))
    assert result.returncode == 2 and "question is empty" in result.stderr
