"""The training script: a short run learns, checkpoints load, and a run resumes."""

import json
import random
from pathlib import Path

import pytest
import torch

from models.captioner.pipeline import CaptionPipeline
from models.training.data import world
from models.training.train import OBJECTIVES, TrainConfig, noise_text, permute_sentences, train


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("world")
    world.generate(root, {"train": 16, "val": 4}, seed=11, progress=False)
    return root


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.timeout(180)
def test_short_run_lowers_the_loss_saves_a_loadable_model_and_resumes(
    data: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    config = TrainConfig.load(
        None, data=str(data), out=str(run), preset="tiny", steps=40, batch_size=8,
        lr=3e-3, warmup_steps=5, log_every=5, eval_every=20, eval_clips=4, save_every=20,
    )  # fmt: skip
    final = train(config, progress=False)
    losses = [m["loss"] for m in _metrics(run) if "loss" in m]
    assert losses[-1] < losses[0] * 0.8, losses
    assert {"caption", "segments", "qa", "aux", "masked", "denoise"} <= set(_metrics(run)[0])
    assert any("val" in m for m in _metrics(run))

    pipe = CaptionPipeline.from_pretrained(final, device="cpu")
    features = pipe.extract(data / "videos" / "val" / "val-000000.mp4")
    assert isinstance(pipe.caption(features), str)
    assert not (final / "trainer_state.pt").exists()
    state = torch.load(run / "checkpoint" / "trainer_state.pt", weights_only=False)
    assert state["step"] == 40 and state["config"]["steps"] == 40

    more = TrainConfig.load(None, **{**state["config"], "steps": 50, "resume_from": None})
    train(more, resume=True, progress=False)
    steps = [m["step"] for m in _metrics(run) if "loss" in m]
    assert steps[-1] == 50 and 45 in steps and steps.count(40) == 1  # went on from 40
    assert torch.load(run / "checkpoint" / "trainer_state.pt", weights_only=False)["step"] == 50


def test_objectives_can_be_switched_off(data: Path, tmp_path: Path) -> None:
    config = TrainConfig.load(
        None, data=str(data), out=str(tmp_path), preset="tiny", steps=2, batch_size=4,
        objectives=["caption", "qa"], log_every=1, eval_every=0, save_every=0,
    )  # fmt: skip
    train(config, progress=False)
    first = _metrics(tmp_path)[0]
    assert "caption" in first and "qa" in first
    assert not {"segments", "aux", "masked", "denoise"} & set(first)


def test_config_file_flags_and_unknown_settings(tmp_path: Path) -> None:
    file = tmp_path / "run.toml"
    file.write_text('steps = 123\nlr = 0.01\nobjectives = ["caption"]\n')
    config = TrainConfig.load(file, lr=0.5)
    assert (config.steps, config.lr, config.objectives) == (123, 0.5, ["caption"])
    file.write_text("stpes = 1\n")
    with pytest.raises(ValueError, match="unknown training settings"):
        TrainConfig.load(file)
    with pytest.raises(ValueError, match="objectives must be some of"):
        TrainConfig.load(None, objectives=["captions"])
    assert set(TrainConfig().objectives) == set(OBJECTIVES)


def test_bart_noise_masks_spans_and_permutes_sentences() -> None:
    rng = random.Random(0)
    ids = list(range(10, 60))
    noised = noise_text(ids, mask_id=4, rng=rng, specials={0, 1, 2})
    assert 4 in noised and noised != ids
    assert [t for t in noised if t != 4] == [t for t in ids if t in noised]  # order is kept
    text = "a red circle moves left, then a blue star stays still, then a drum plays"
    shuffled = {permute_sentences(text, random.Random(s)) for s in range(20)}
    assert len(shuffled) > 1
    assert all(sorted(t.split(", then ")) == sorted(text.split(", then ")) for t in shuffled)
