"""The shapes-and-tones captioner vidcap ships: small enough, and right about clips it has never
seen of its own world."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from models import WORLD_MODEL_DIR
from models.training.data import world
from models.training.evaluate import attribute_accuracy, normalise_answer

pytestmark = pytest.mark.skipif(
    not (WORLD_MODEL_DIR / "config.json").is_file(), reason="no world model shipped"
)


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fresh")
    world.generate(root, {"test": 4}, seed=2026, progress=False)  # a seed it never saw
    return root


def test_world_model_weights_stay_under_30_mb() -> None:
    assert (WORLD_MODEL_DIR / "model.safetensors").stat().st_size < 30 * 2**20


def test_vidcap_caption_with_the_world_model_names_what_the_clip_shows(fresh: Path) -> None:
    record = json.loads((fresh / "test.jsonl").read_text().splitlines()[0])
    env = {k: v for k, v in os.environ.items() if k != "VIDCAP_MODEL"}
    result = subprocess.run(
        [sys.executable, "-m", "vidcap.cli", "caption", str(fresh / record["video"]),
         "--model", str(WORLD_MODEL_DIR)],
        capture_output=True, text=True, timeout=180, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["model"] == str(WORLD_MODEL_DIR)
    scores = attribute_accuracy([out["caption"]], [record])
    assert scores["all"] == 1.0, (out["caption"], record["caption"])


def test_world_model_answers_questions_about_unseen_clips(fresh: Path) -> None:
    from models.captioner.pipeline import CaptionPipeline

    pipe = CaptionPipeline.from_pretrained(WORLD_MODEL_DIR, device="cpu")
    records = [json.loads(line) for line in (fresh / "test.jsonl").read_text().splitlines()]
    features = pipe.extract([fresh / r["video"] for r in records])
    pairs = [(f, q) for f, r in zip(features, records, strict=True) for q in r["questions"]]
    answers = pipe.answer([f for f, _ in pairs], [q["question"] for _, q in pairs])
    right = [
        normalise_answer(a) == normalise_answer(q["answer"])
        for (_, q), a in zip(pairs, answers, strict=True)
    ]
    assert sum(right) / len(right) >= 0.85, [
        (q["question"], q["answer"], a)
        for (_, q), a, ok in zip(pairs, answers, right, strict=True)
        if not ok
    ]
