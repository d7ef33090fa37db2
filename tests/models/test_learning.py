"""The first proof that fusion does something: a tiny model learns four real clips.

Four H.264 + AAC files cross two colours with two tones, so the colour can only be read from
the frames and the tone only from the audio, and each caption needs both. After a few hundred
steps of end-to-end training (backbones included) the pipeline, reading the files from disk,
must reproduce every caption and answer both kinds of question; with the audio stream masked
out, the tone questions must fail.
"""

import time
from pathlib import Path

import numpy as np
import torch
from conftest import tiny_config

from models.captioner.features import VideoFeatures
from models.captioner.modeling_captioner import VideoCaptionerModel
from models.captioner.pipeline import CaptionPipeline, window_pixels
from models.media.synth import VideoSpec, write_video

COLOURS = {"red": (220, 30, 30), "blue": (30, 60, 220)}
TONES = {"low": 300.0, "high": 2400.0}
COLOUR_Q = "what colour is the picture?"
SOUND_Q = "which sound plays?"


def _clips(root: Path) -> list[dict]:
    clips = []
    for colour, rgb in COLOURS.items():
        for tone, hz in TONES.items():
            spec = VideoSpec(duration=2.0, width=64, height=48, background=rgb, tone_hz=hz)
            path = write_video(root / f"{colour}-{tone}.mp4", spec)
            clips.append(
                {
                    "path": path,
                    "caption": f"a {colour} picture with a {tone} tone",
                    "answers": {COLOUR_Q: colour, SOUND_Q: f"{tone} tone"},
                }
            )
    return clips


def _train(pipe: CaptionPipeline, clips: list[dict], steps: int) -> tuple[int, float]:
    """Caption + both questions for every clip, each step; returns (steps, final loss)."""
    tok, model = pipe.tokenizer, pipe.model
    decoded = [pipe.decode(c["path"]) for c in clips]
    pixels = torch.cat([window_pixels(d.images) for d in decoded])  # (4, T, 3, S, S)
    audio = torch.stack([torch.from_numpy(d.windows) for d in decoded])  # (4, T, W)
    heard = torch.stack([torch.from_numpy(d.heard) for d in decoded])  # (4, T)
    rows = [(i, None, c["caption"]) for i, c in enumerate(clips)]
    rows += [(i, q, a) for i, c in enumerate(clips) for q, a in c["answers"].items()]
    index = torch.tensor([r[0] for r in rows])
    labels = tok(text_target=[r[2] for r in rows], padding=True, return_tensors="pt")["input_ids"]
    labels[labels == tok.pad_token_id] = -100
    # Caption rows get an all-padding question: masked out, it is the same as none.
    q = tok([r[1] or "" for r in rows], padding=True, return_tensors="pt")
    q["attention_mask"][[k for k, r in enumerate(rows) if r[1] is None]] = 0

    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    loss = torch.tensor(float("inf"))
    done = 0
    while done < steps:
        done += 1
        # Backbones run once per clip; their features (and gradients) are shared by its rows.
        visual, sound = model.extract_features(pixels, audio)  # (4, T, Dv), (4, T, Da)
        loss = model(
            visual_features=visual[index],
            audio_features=sound[index],
            audio_mask=heard[index],
            question_ids=q["input_ids"],
            question_mask=q["attention_mask"],
            labels=labels,
        ).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if loss.item() < 0.01:
            break
    model.eval()
    return done, loss.item()


def _without_audio(f: VideoFeatures) -> VideoFeatures:
    return VideoFeatures(**{**f.__dict__, "audio_mask": torch.zeros_like(f.audio_mask)})


def test_tiny_model_learns_captions_and_needs_audio_for_sound_questions(
    tmp_path: Path, tiny_tokenizer
) -> None:
    began = time.perf_counter()
    torch.manual_seed(0)
    clips = _clips(tmp_path)
    model = VideoCaptionerModel(tiny_config(len(tiny_tokenizer)))
    pipe = CaptionPipeline(model, tiny_tokenizer, device="cpu")
    steps, loss = _train(pipe, clips, steps=400)
    assert loss < 0.1, f"did not fit four clips in {steps} steps (loss {loss:.3f})"

    # Read the files again through the pipeline (features from the trained backbones).
    pipe = CaptionPipeline(pipe.model, tiny_tokenizer, device="cpu")
    features = pipe.extract([c["path"] for c in clips])
    assert pipe.caption(features) == [c["caption"] for c in clips]
    assert pipe.answer(features, [COLOUR_Q] * 4) == [c["answers"][COLOUR_Q] for c in clips]
    assert pipe.answer(features, [SOUND_Q] * 4) == [c["answers"][SOUND_Q] for c in clips]

    # Without the audio stream the tone cannot be known: each colour pairs with both tones,
    # so at most one of each pair can be right.
    deaf = pipe.answer([_without_audio(f) for f in features], [SOUND_Q] * 4)
    right = np.mean([a == c["answers"][SOUND_Q] for a, c in zip(deaf, clips, strict=True)])
    assert right <= 0.5, deaf
    # ... while the colour, seen in the frames, is still known.
    seen = pipe.answer([_without_audio(f) for f in features], [COLOUR_Q] * 4)
    assert seen == [c["answers"][COLOUR_Q] for c in clips]
    print(f"trained {steps} steps to loss {loss:.4f}; {time.perf_counter() - began:.1f} s in all")
