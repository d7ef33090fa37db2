"""The model vidcap serves by default (the grounded captioner), on real footage.

The full measurement is `vidcap eval --manifest` (the model card's tables); these tests pin
behaviour a user of the shipped model relies on, on real clips it was never trained on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from models import DEFAULT_MODEL_DIR
from models.training.evaluate_real import world_words

pytestmark = pytest.mark.skipif(
    not (DEFAULT_MODEL_DIR / "model.safetensors").is_file(), reason="no default model shipped"
)


def vidcap(*args: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "VIDCAP_MODEL"}  # the default model
    result = subprocess.run(
        [sys.executable, "-m", "vidcap.cli", *args],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_default_model_is_the_grounded_captioner_under_80_mb() -> None:
    config = json.loads((DEFAULT_MODEL_DIR / "config.json").read_text())
    assert config["model_type"] == "vidcap-grounded"
    assert (DEFAULT_MODEL_DIR / "model.safetensors").stat().st_size < 80 * 2**20


def test_a_silent_real_clip_is_described_by_what_is_seen_not_shapes(real_data: Path) -> None:
    out = vidcap("caption", str(real_data / "clips/cat.mp4"))
    assert out["model"] == str(DEFAULT_MODEL_DIR)
    words = set(out["caption"].lower().replace(";", " ").replace(".", " ").split())
    assert "cat" in words, out["caption"]
    assert not words & (world_words() - {"cat"}), out["caption"]  # no circle, chirp, drum...


def test_no_audio_track_is_answered_with_the_moment_it_rests_on(real_data: Path) -> None:
    video = real_data / "derived/text_safari_park_exit_noaudio.mp4"
    out = vidcap("ask", str(video), "Does the video have an audio track?")
    assert out["answer"].strip().lower().rstrip(".") == "no", out
    assert out["evidence"] and out["evidence"][0]["kind"] == "audio"
    assert 0.0 <= out["evidence"][0]["start"] <= out["evidence"][0]["end"] <= 6.1
