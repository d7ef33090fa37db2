"""The synthetic world: deterministic, and its ground truth agrees with what is rendered."""

import json
import random
from pathlib import Path

import numpy as np
import pytest

from models.media import read_audio, sample_frames
from models.training.data import world


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("world")
    world.generate(root, {"train": 12, "compositional": 6}, seed=7, progress=False)
    return root


def _records(root: Path, split: str) -> list[dict]:
    return [json.loads(line) for line in (root / f"{split}.jsonl").read_text().splitlines()]


def test_same_seed_gives_the_same_clips_and_another_seed_does_not(
    made: Path, tmp_path: Path
) -> None:
    world.generate(tmp_path, {"train": 12}, seed=7, progress=False)
    assert (tmp_path / "train.jsonl").read_text() == (made / "train.jsonl").read_text()
    a = world.make_clip("train", 3, seed=7)
    b = world.make_clip("train", 3, seed=7)
    c = world.make_clip("train", 3, seed=8)
    assert a[0] == b[0] and np.array_equal(a[1], b[1]) and np.array_equal(a[2], b[2])
    assert a[0]["segments"] != c[0]["segments"] or not np.array_equal(a[1], c[1])


def _object_pixels(frame: np.ndarray) -> np.ndarray:
    """(y, x) of the pixels that are not background."""
    return np.argwhere(np.abs(frame.astype(int) - world.BACKGROUND).sum(-1) > 120)


def test_pictures_show_the_colour_and_motion_the_ground_truth_names(made: Path) -> None:
    for record in _records(made, "train")[:6]:
        video = made / record["video"]
        # Two frames near the start and the end of each segment, at the file's own size.
        times = [t for s in record["segments"] for t in (s["start"] + 0.15, s["end"] - 0.15)]
        for k, seg in enumerate(record["segments"]):
            images, _ = sample_frames(
                video,
                num_frames=1,
                start=times[2 * k] - 0.05,
                end=times[2 * k] + 0.05,
                size=(96, 128),
            )
            later, _ = sample_frames(
                video,
                num_frames=1,
                start=times[2 * k + 1] - 0.05,
                end=times[2 * k + 1] + 0.05,
                size=(96, 128),
            )
            first, last = _object_pixels(images[0]), _object_pixels(later[0])
            assert len(first) > 100, record["id"]
            colour = images[0][tuple(first[len(first) // 2])].astype(int)
            nearest = min(world.COLOURS, key=lambda c: np.abs(colour - world.COLOURS[c]).sum())
            assert nearest == seg["colour"], (record["id"], k)
            dy, dx = last.mean(0) - first.mean(0)
            expected = {"left": dx < -20, "right": dx > 20, "up": dy < -15, "down": dy > 15}
            moved = expected.get(seg["motion"], abs(dx) < 3 and abs(dy) < 3)
            assert moved, (record["id"], k, seg["motion"], dx, dy)


def _bursts(audio: np.ndarray, start: float, end: float) -> list[tuple[float, float]]:
    """Stretches (seconds) of a segment where the audio is loud."""
    rate = world.SAMPLE_RATE
    piece = audio[int(start * rate) : int(end * rate)]
    frames = piece[: len(piece) // 160 * 160].reshape(-1, 160)
    loud = np.sqrt((frames**2).mean(1)) > 0.05
    runs, began = [], None
    for i, on in enumerate([*loud, False]):
        if on and began is None:
            began = i
        elif not on and began is not None:
            if i - began > 3:  # longer than 30 ms
                runs.append((began * 0.01, i * 0.01))
            began = None
    return runs


def test_audio_plays_the_sound_pattern_and_pitch_the_ground_truth_names(made: Path) -> None:
    counts = {"once": 1, "twice": 2, "three times": 3}
    checked = 0
    for record in _records(made, "train"):
        audio = read_audio(made / record["video"], sample_rate=world.SAMPLE_RATE)
        assert audio is not None
        for seg in record["segments"]:
            runs = _bursts(audio, seg["start"], seg["end"])
            if seg["sound"] == "silence":
                assert runs == [], record["id"]
            elif seg["pattern"] in counts and seg["sound"] != "drum":
                assert len(runs) == counts[seg["pattern"]], (record["id"], seg)
            elif seg["pattern"] == "continuously" and seg["sound"] != "drum":
                assert len(runs) == 1 and runs[0][1] - runs[0][0] > 1.5, (record["id"], seg)
            if seg["sound"] in ("low tone", "high tone"):
                piece = audio[int(seg["start"] * 16000) : int(seg["end"] * 16000)]
                peak = np.argmax(np.abs(np.fft.rfft(piece))) * 16000 / len(piece)
                want = 300.0 if seg["sound"] == "low tone" else 1500.0
                assert abs(peak - want) < 30, (record["id"], seg, peak)
                checked += 1
    assert checked > 0


def test_held_out_combinations_appear_only_in_the_compositional_split(made: Path) -> None:
    def held(seg: dict) -> bool:
        return (seg["colour"], seg["shape"]) in world.HELD_OUT_LOOKS or (
            seg["motion"],
            seg["sound"],
        ) in world.HELD_OUT_EVENTS

    assert not any(held(s) for r in _records(made, "train") for s in r["segments"])
    assert all(any(held(s) for s in r["segments"]) for r in _records(made, "compositional"))


def test_every_question_has_one_answer_and_every_kind_is_asked(made: Path) -> None:
    kinds = set()
    for record in _records(made, "train"):
        segs = record["segments"]
        for key in ("shape", "colour"):
            assert len({s[key] for s in segs}) == len(segs)  # distinct: "the circle" is one
        heard = [s["sound"] for s in segs if s["sound"] != "silence"]
        assert len(set(heard)) == len(heard)
        for q in record["questions"]:
            kinds.add(q["kind"])
            assert q["answer"] and q["question"].endswith("?")
        assert record["caption"] == record["captions"][0]
        assert all(s["caption"] in record["caption"] for s in segs)
    assert kinds == set(world.KINDS)


def test_sampled_segments_respect_the_rules() -> None:
    rng = random.Random(0)
    for _ in range(200):
        segs = world.sample_segments(rng, compositional=False)
        assert 2 <= len(segs) <= 3
        assert sum(s.sound == "silence" for s in segs) <= 1
        assert all(s.pattern == "" for s in segs if s.sound == "silence")
