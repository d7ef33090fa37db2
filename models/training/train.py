"""One training script: captions, segment captions, questions, and the seed's pretraining.

    vidcap train --data data/world --out runs/world --steps 6000 [--config train.toml]

Objectives (each can be switched off with ``--objectives``):

- ``caption``: the whole clip's caption (a random paraphrase each time).
- ``segments``: one segment's caption from that segment's frames only (dense captioning).
- ``qa``: answers, the question's tokens attending to the video in BART's encoder.
- ``denoise``: BART's text denoising (token masking, span infilling, sentence permutation).
- ``masked``: VideoBERT-style masked modelling: some time steps of each stream are replaced by
  a learned mask vector and the stream must pick their true features out of the batch (InfoNCE).
- ``aux``: grounding heads on the stream encoders, supervised per time step by the synthetic
  world's ground truth (shape, colour, motion; sound, pattern). Only for data that has it; the
  caption-only path is what trains on real datasets.

Decoded frames and audio windows are cached on disk (``DATA/cache/<key>/``) so only the first
run decodes. A run directory holds ``metrics.jsonl``, ``checkpoint/`` (the model, its tokenizer
and ``trainer_state.pt``: step, optimiser, heads, random states, the run's config) and, at the
end, ``final/``; ``--resume`` continues from ``checkpoint/``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import random
import time
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from models.captioner.configuration_videobert import VideoCaptionerConfig, small_bart_config
from models.captioner.modeling_captioner import VideoCaptionerModel
from models.captioner.pipeline import CaptionPipeline, Decoded, window_pixels
from models.captioner.tokenization import train_tokenizer
from models.training.data import world
from models.training.data.datasets import dataset_from_args

OBJECTIVES = ("caption", "segments", "qa", "denoise", "masked", "aux")
# Per-step labels of the aux heads, from the world's segments.
VISUAL_LABELS = {"shape": world.SHAPES, "colour": tuple(world.COLOURS), "motion": world.MOTIONS}
AUDIO_LABELS = {"sound": world.SOUNDS, "pattern": ("", *world.PATTERNS)}


@dataclass
class TrainConfig:
    """A training run. Every field can come from a TOML file and be overridden by a flag."""

    data: str = "data/world"
    out: str = "runs/world"
    preset: str = "world"  # model size: "world" (the default model), "default" or "tiny"
    model: dict[str, Any] = field(default_factory=dict)  # VideoCaptionerConfig overrides
    vocab_size: int = 512
    steps: int = 6000
    batch_size: int = 24
    questions_per_clip: int = 8
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 200
    grad_clip: float = 1.0
    objectives: list[str] = field(default_factory=lambda: list(OBJECTIVES))
    weights: dict[str, float] = field(
        default_factory=lambda: {"denoise": 0.5, "masked": 0.2, "aux": 0.5}
    )
    mask_prob: float = 0.15
    log_every: int = 25
    eval_every: int = 500
    eval_clips: int = 64
    save_every: int = 250
    time_limit_min: float | None = None
    seed: int = 0
    device: str | None = None
    train_clips: int | None = None  # use only the first N training clips
    resume_from: str | None = None  # set by train(resume=True)

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None, **overrides: Any) -> TrainConfig:
        """Defaults, then the TOML file, then the overrides that are not None."""
        values: dict[str, Any] = {}
        if path is not None:
            with open(path, "rb") as f:
                values.update(tomllib.load(f))
        values.update({k: v for k, v in overrides.items() if v is not None})
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown training settings: {sorted(unknown)}")
        config = cls(**values)
        bad = set(config.objectives) - set(OBJECTIVES)
        if bad or not config.objectives:
            raise ValueError(f"objectives must be some of {OBJECTIVES}, got {config.objectives}")
        return config


def model_config(preset: str, vocab_size: int, **overrides: Any) -> VideoCaptionerConfig:
    """The captioner's config for a size preset.

    ``world`` is the shipped default model: sized to learn the synthetic world on a CPU in
    about an hour and to stay far under 30 MB. ``default`` is :class:`VideoCaptionerConfig`'s
    own size. ``tiny`` is for tests.
    """
    if preset == "default":
        values: dict[str, Any] = {"decoder_config": small_bart_config(vocab_size)}
    elif preset in ("world", "tiny"):
        world_size = preset == "world"
        hidden, ffn = (192, 512) if world_size else (64, 128)
        channels = [16, 32, 64, 128] if world_size else [16, 32]
        values = {
            "frame_size": 64 if world_size else 32,
            "visual_channels": channels,
            "audio_channels": [16, 32, 64] if world_size else [16, 32],
            "n_mels": 64 if world_size else 32,
            "audio_window_s": 0.5,
            # The world's clips have at most 12 steps; questions start right after them.
            "max_frames": 12 if world_size else 32,
            "max_question_tokens": 24,
            "videobert_config": {
                "visual_feature_size": hidden,
                "audio_feature_size": hidden,
                "hidden_size": hidden,
                "num_hidden_layers": 2 if world_size else 1,
                "fusion_layer": 2 if world_size else 1,
                "num_attention_heads": 4 if world_size else 2,
                "intermediate_size": ffn,
                "max_position_embeddings": 32,
            },
            "decoder_config": small_bart_config(
                vocab_size,
                d_model=hidden,
                encoder_layers=2 if world_size else 1,
                decoder_layers=2 if world_size else 1,
                encoder_attention_heads=4 if world_size else 2,
                decoder_attention_heads=4 if world_size else 2,
                encoder_ffn_dim=ffn,
                decoder_ffn_dim=ffn,
                max_position_embeddings=96,
            ),
        }
    else:
        raise ValueError(f"unknown model preset {preset!r}: world, default or tiny")
    values.update(overrides)
    return VideoCaptionerConfig(**values)


# ---------------------------------------------------------------------- decoded clips


def cache_key(config: VideoCaptionerConfig) -> str:
    """What decoding depends on: a cache made with other settings is never reused."""
    settings = [
        config.image_size,
        config.frame_fit,
        config.frames_per_second,
        config.sample_rate,
        config.audio_window_s,
    ]
    return hashlib.sha256(json.dumps(settings).encode()).hexdigest()[:12]


@dataclass
class Clip:
    """One decoded training clip and its ground truth."""

    record: dict[str, Any]
    decoded: Decoded

    @property
    def steps(self) -> int:
        """Sampled frames."""
        return len(self.decoded.times)

    def segment_of_step(self) -> list[int]:
        """For each time step, the index of the segment it falls in (-1: none)."""
        out = []
        for t in self.decoded.times:
            hit = [k for k, s in enumerate(self.record["segments"]) if s["start"] <= t < s["end"]]
            out.append(hit[0] if hit else -1)
        return out


def load_clips(
    pipe: CaptionPipeline, records: list[dict[str, Any]], cache_dir: Path, desc: str
) -> list[Clip]:
    """Decode every clip once (cached as .npz), then load them all into memory."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    clips = []
    for record in tqdm(records, desc=f"decode {desc}", unit="clip"):
        file = cache_dir / f"{record['id']}.npz"
        if file.is_file():
            with np.load(file) as z:
                decoded = Decoded(
                    z["images"], z["times"], z["windows"].astype(np.float32), z["heard"],
                    float(z["duration_s"]),
                )  # fmt: skip
        else:
            decoded = pipe.decode(record["video"])
            partial = cache_dir / f"{record['id']}.partial-{os.getpid()}.npz"  # one per writer
            np.savez(
                partial,
                images=decoded.images,
                times=decoded.times,
                windows=decoded.windows.astype(np.float16),
                heard=decoded.heard,
                duration_s=decoded.duration_s,
            )
            os.replace(partial, file)
        clips.append(Clip(record, decoded))
    return clips


# ---------------------------------------------------------------------- text noise (BART)


def noise_text(ids: list[int], mask_id: int, rng: random.Random, specials: set[int]) -> list[int]:
    """BART's noise: span infilling (spans of Poisson(3) tokens -> one mask) and token masking."""
    body = [i for i in ids if i not in specials]
    out: list[int] = []
    i = 0
    while i < len(body):
        r = rng.random()
        if r < 0.1:  # a span, possibly empty, becomes a single mask token
            span = min(np.random.default_rng(rng.randrange(2**32)).poisson(3), len(body) - i)
            out.append(mask_id)
            i += int(span)
            if span == 0:
                out.append(body[i])
                i += 1
        elif r < 0.2:
            out.append(mask_id)
            i += 1
        else:
            out.append(body[i])
            i += 1
    return out


def permute_sentences(text: str, rng: random.Random) -> str:
    """BART's sentence permutation, for captions made of '..., then ...' parts."""
    for sep in (", then ", "; after that, "):
        if sep in text:
            parts = text.split(sep)
            rng.shuffle(parts)
            return sep.join(parts)
    return text


# ---------------------------------------------------------------------- heads used only here


class TrainingHeads(nn.Module):
    """What the pretraining and grounding objectives add; not part of the shipped model."""

    def __init__(self, hidden: int, visual_size: int, audio_size: int) -> None:
        super().__init__()
        self.visual_mask = nn.Parameter(torch.zeros(visual_size))
        self.audio_mask = nn.Parameter(torch.zeros(audio_size))
        self.visual_predict = nn.Linear(hidden, visual_size)
        self.audio_predict = nn.Linear(hidden, audio_size)
        self.visual_aux = nn.ModuleDict(
            {k: nn.Linear(hidden, len(v)) for k, v in VISUAL_LABELS.items()}
        )
        self.audio_aux = nn.ModuleDict(
            {k: nn.Linear(hidden, len(v)) for k, v in AUDIO_LABELS.items()}
        )


def info_nce(
    predicted: torch.Tensor, targets: torch.Tensor, positives: torch.Tensor
) -> torch.Tensor:
    """Cross-entropy of picking each prediction's own target among all targets."""
    p = F.normalize(predicted, dim=-1)
    t = F.normalize(targets.detach(), dim=-1)
    return F.cross_entropy(p @ t.T / 0.1, positives)


# ---------------------------------------------------------------------- the trainer


@dataclass
class Batch:
    pixels: torch.Tensor  # (B, T, 3, S, S) uint8
    windows: torch.Tensor  # (B, T, W)
    visual_mask: torch.Tensor  # (B, T) bool
    audio_mask: torch.Tensor  # (B, T) bool
    clips: list[Clip]


def collate_clips(clips: Sequence[Clip], device: torch.device) -> Batch:
    """Pad decoded clips to one batch."""
    t = max(c.steps for c in clips)
    first = clips[0].decoded
    b = len(clips)
    pixels = torch.zeros(b, t, 3, *first.images.shape[1:3], dtype=torch.uint8)
    windows = torch.zeros(b, t, first.windows.shape[1])
    visual_mask = torch.zeros(b, t, dtype=torch.bool)
    audio_mask = torch.zeros(b, t, dtype=torch.bool)
    for i, c in enumerate(clips):
        n = c.steps
        pixels[i, :n] = window_pixels(c.decoded.images)[0]
        windows[i, :n] = torch.from_numpy(c.decoded.windows)
        visual_mask[i, :n] = True
        audio_mask[i, :n] = torch.from_numpy(c.decoded.heard)
    return Batch(
        pixels.to(device), windows.to(device), visual_mask.to(device), audio_mask.to(device),
        list(clips),
    )  # fmt: skip


class Trainer:
    """Runs a :class:`TrainConfig`."""

    def __init__(self, config: TrainConfig, progress: bool = True) -> None:
        self.config = config
        self.progress = progress
        self.out = Path(config.out)
        self.device = torch.device(
            config.device or ("cuda" if torch.cuda.is_available() else "cpu")
        )
        random.seed(config.seed)
        np.random.seed(config.seed)
        torch.manual_seed(config.seed)
        self.rng = random.Random(config.seed)
        data = Path(config.data)
        self.train_records = dataset_from_args(data, "train")[: config.train_clips]
        try:
            self.val_records = dataset_from_args(data, "val")
        except (FileNotFoundError, ValueError):
            self.val_records = []  # no validation split: train without validation
        self.step = 0
        self.elapsed_before = 0.0  # training seconds of earlier sessions of a resumed run
        self._began = time.perf_counter()
        if config.resume_from is not None:
            self.pipe = CaptionPipeline.from_pretrained(
                config.resume_from, device=self.device, isolate=False, batch_size=64
            )
        else:
            texts = list(world.corpus(self.train_records))
            tokenizer = train_tokenizer(texts, vocab_size=config.vocab_size)
            model_cfg = model_config(config.preset, len(tokenizer), **config.model)
            model = VideoCaptionerModel(model_cfg)
            self.pipe = CaptionPipeline(
                model, tokenizer, device=self.device, isolate=False, batch_size=64
            )
        self.model = self.pipe.model
        self.tok = self.pipe.tokenizer
        cfg = self.model.config
        self.heads = TrainingHeads(
            cfg.videobert_config.hidden_size,
            cfg.videobert_config.visual_feature_size,
            cfg.videobert_config.audio_feature_size,
        ).to(self.device)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimiser = torch.optim.AdamW(
            [*params, *self.heads.parameters()], lr=config.lr, weight_decay=config.weight_decay
        )
        cache = (data if data.is_dir() else data.parent) / "cache" / cache_key(cfg)
        self.train_clips = load_clips(self.pipe, self.train_records, cache / "train", "train")
        self.val_clips = load_clips(
            self.pipe, self.val_records[: config.eval_clips], cache / "val", "val"
        )
        self.has_world_labels = all(
            s.get("shape") for r in self.train_records for s in r["segments"]
        ) and bool(self.train_records and self.train_records[0]["segments"])

    # ------------------------------------------------------------------ state

    def save(self, where: Path) -> None:
        """The model directory, plus trainer_state.pt for resuming."""
        partial = where.with_name(where.name + ".partial")
        self.pipe.save_pretrained(partial)
        state = {
            "step": self.step,
            "elapsed_s": self.elapsed_before + time.perf_counter() - self._began,
            "optimiser": self.optimiser.state_dict(),
            "heads": self.heads.state_dict(),
            "rng": {
                "python": self.rng.getstate(),
                "numpy": np.random.get_state(),
                "torch": torch.get_rng_state(),
            },
            "config": dataclasses.asdict(self.config),
        }
        torch.save(state, partial / "trainer_state.pt")
        if where.exists():
            old = where.with_name(where.name + ".old")
            os.replace(where, old)
            os.replace(partial, where)
            for f in old.iterdir():
                f.unlink()
            old.rmdir()
        else:
            os.replace(partial, where)

    def restore(self, where: Path) -> None:
        """Continue a run saved by :meth:`save` (the model was loaded from ``where``)."""
        state = torch.load(where / "trainer_state.pt", weights_only=False)
        self.step = int(state["step"])
        self.elapsed_before = float(state.get("elapsed_s", 0.0))
        self.optimiser.load_state_dict(state["optimiser"])
        self.heads.load_state_dict(state["heads"])
        self.rng.setstate(state["rng"]["python"])
        np.random.set_state(state["rng"]["numpy"])
        torch.set_rng_state(state["rng"]["torch"])

    def lr_at(self, step: int, elapsed_s: float = 0.0) -> float:
        """Linear warm-up, then cosine decay to a tenth.

        With a time limit, the decay ends at whichever comes first: the last step or the
        limit, so a run cut by the clock still ends on a low learning rate.
        """
        c = self.config
        if step < c.warmup_steps:
            return c.lr * (step + 1) / c.warmup_steps
        done = (step - c.warmup_steps) / max(1, c.steps - c.warmup_steps)
        if c.time_limit_min:
            done = max(done, elapsed_s / (60 * c.time_limit_min))
        return c.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, done))))

    # ------------------------------------------------------------------ one step

    def _labels(self, texts: list[str]) -> torch.Tensor:
        ids = self.tok(text_target=texts, padding=True, return_tensors="pt")["input_ids"]
        ids[ids == self.tok.pad_token_id] = -100
        return ids.to(self.device)

    def _text_loss(
        self, fused: Any, mask: torch.Tensor, texts: list[str], questions: list[str] | None = None
    ) -> torch.Tensor:
        q_ids = q_mask = None
        if questions is not None:
            q = self.tok(
                questions,
                padding=True,
                truncation=True,
                max_length=self.model.config.max_question_tokens,
                return_tensors="pt",
            )
            q_ids, q_mask = q["input_ids"].to(self.device), q["attention_mask"].to(self.device)
        encoded = self.model.encode_fused(fused, mask, q_ids, q_mask)
        out = self.model.bart(
            encoder_outputs=encoded.encoder_outputs,
            attention_mask=encoded.attention_mask,
            labels=self._labels(texts),
        )
        return out.loss

    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Every switched-on objective's loss for one batch."""
        on, rng, m = set(self.config.objectives), self.rng, self.model
        losses: dict[str, torch.Tensor] = {}
        visual, audio = m.extract_features(batch.pixels, batch.windows)  # (B, T, D)
        vmask, amask = batch.visual_mask, batch.audio_mask
        fused = m.fuse(
            visual_features=visual, audio_features=audio, visual_mask=vmask, audio_mask=amask
        )
        if "caption" in on:
            texts = [rng.choice(c.record["captions"]) for c in batch.clips]
            losses["caption"] = self._text_loss(fused, vmask, texts)
        if "qa" in on:
            rows, questions, answers = [], [], []
            for i, c in enumerate(batch.clips):
                qs = c.record["questions"]
                for q in rng.sample(qs, min(len(qs), self.config.questions_per_clip)):
                    rows.append(i)
                    questions.append(q["question"])
                    answers.append(q["answer"])
            if rows:
                index = torch.tensor(rows, device=self.device)
                picked = type(fused)(
                    last_hidden_state=fused.last_hidden_state[index],
                    fused_states=None,
                    gates=None,
                )
                losses["qa"] = self._text_loss(picked, vmask[index], answers, questions)
        if "segments" in on:
            losses["segments"] = self._segment_loss(batch, visual, audio)
        if "aux" in on and self.has_world_labels:
            losses["aux"] = self._aux_loss(batch, fused)
        if "masked" in on:
            losses["masked"] = self._masked_loss(visual, audio, vmask, amask)
        if "denoise" in on:
            losses["denoise"] = self._denoise_loss(batch)
        return losses

    def _segment_loss(
        self, batch: Batch, visual: torch.Tensor, audio: torch.Tensor
    ) -> torch.Tensor:
        picks, texts = [], []
        for i, c in enumerate(batch.clips):
            segs = c.record["segments"]
            if not segs:
                continue
            k = self.rng.randrange(len(segs))
            steps = [j for j, s in enumerate(c.segment_of_step()) if s == k]
            if steps:
                picks.append((i, steps))
                texts.append(segs[k]["caption"])
        if not picks:
            return visual.sum() * 0.0
        t = max(len(s) for _, s in picks)
        b = len(picks)
        v = visual.new_zeros(b, t, visual.shape[-1])
        a = audio.new_zeros(b, t, audio.shape[-1])
        vm = torch.zeros(b, t, dtype=torch.bool, device=self.device)
        am = torch.zeros(b, t, dtype=torch.bool, device=self.device)
        for r, (i, steps) in enumerate(picks):
            idx = torch.tensor(steps, device=self.device)
            v[r, : len(steps)], a[r, : len(steps)] = visual[i, idx], audio[i, idx]
            vm[r, : len(steps)] = True
            am[r, : len(steps)] = batch.audio_mask[i, idx]
        fused = self.model.fuse(visual_features=v, audio_features=a, visual_mask=vm, audio_mask=am)
        return self._text_loss(fused, vm, texts)

    def _aux_loss(self, batch: Batch, fused: Any) -> torch.Tensor:
        total = fused.visual_states.sum() * 0.0
        labels: dict[str, list[int]] = {k: [] for k in (*VISUAL_LABELS, *AUDIO_LABELS)}
        rows: list[tuple[int, int]] = []
        for i, c in enumerate(batch.clips):
            for j, k in enumerate(c.segment_of_step()):
                if k < 0:
                    continue
                seg = c.record["segments"][k]
                rows.append((i, j))
                for name, values in (*VISUAL_LABELS.items(), *AUDIO_LABELS.items()):
                    labels[name].append(values.index(seg[name]))
        if not rows:
            return total
        bi = torch.tensor([r[0] for r in rows], device=self.device)
        ti = torch.tensor([r[1] for r in rows], device=self.device)
        v, a = fused.visual_states[bi, ti], fused.audio_states[bi, ti]
        for name, head in self.heads.visual_aux.items():
            total = total + F.cross_entropy(head(v), torch.tensor(labels[name], device=self.device))
        heard = batch.audio_mask[bi, ti]
        for name, head in self.heads.audio_aux.items():
            target = torch.tensor(labels[name], device=self.device)
            if heard.any():
                total = total + F.cross_entropy(head(a[heard]), target[heard])
        return total

    def _masked_loss(
        self, visual: torch.Tensor, audio: torch.Tensor, vmask: torch.Tensor, amask: torch.Tensor
    ) -> torch.Tensor:
        p = self.config.mask_prob
        hide_v = (torch.rand(vmask.shape, device=self.device) < p) & vmask
        hide_a = (torch.rand(amask.shape, device=self.device) < p) & amask
        v_in = torch.where(hide_v.unsqueeze(-1), self.heads.visual_mask.to(visual.dtype), visual)
        a_in = torch.where(hide_a.unsqueeze(-1), self.heads.audio_mask.to(audio.dtype), audio)
        out = self.model.fuse(
            visual_features=v_in, audio_features=a_in, visual_mask=vmask, audio_mask=amask
        )
        total = visual.sum() * 0.0
        for hide, valid, states, feats, head in (
            (hide_v, vmask, out.visual_states, visual, self.heads.visual_predict),
            (hide_a, amask, out.audio_states, audio, self.heads.audio_predict),
        ):
            if hide.any():
                # Each hidden step's position among all valid steps of the batch.
                order = torch.cumsum(valid.flatten().long(), 0) - 1
                positives = order[hide.flatten()]
                total = total + info_nce(head(states[hide]), feats[valid], positives)
        return total

    def _denoise_loss(self, batch: Batch) -> torch.Tensor:
        texts = [
            permute_sentences(self.rng.choice(c.record["captions"]), self.rng) for c in batch.clips
        ]
        clean = [c.record["caption"] for c in batch.clips]
        tok = self.tok
        specials = {tok.bos_token_id, tok.eos_token_id, tok.pad_token_id}
        noised = [
            [
                tok.bos_token_id,
                *noise_text(ids, tok.mask_token_id, self.rng, specials),
                tok.eos_token_id,
            ]
            for ids in tok(texts)["input_ids"]
        ]
        width = max(len(n) for n in noised)
        input_ids = torch.full((len(noised), width), tok.pad_token_id)
        for i, n in enumerate(noised):
            input_ids[i, : len(n)] = torch.tensor(n)
        input_ids = input_ids.to(self.device)
        out = self.model.bart(
            input_ids=input_ids,
            attention_mask=input_ids.ne(tok.pad_token_id).long(),
            labels=self._labels(clean),
        )
        return out.loss

    # ------------------------------------------------------------------ validation

    def validate(self) -> dict[str, Any]:
        """Exact-match question accuracy by kind and caption accuracy on validation clips."""
        if not self.val_clips:
            return {}
        self.model.eval()
        # Features from the cached decode, through the pipeline's own backbone step.
        feats = [self.pipe.features_of(c.decoded) for c in self.val_clips]
        captions = self.pipe.caption(feats)
        exact = np.mean(
            [g in c.record["captions"] for g, c in zip(captions, self.val_clips, strict=True)]
        )
        pairs = [
            (f, q)
            for f, c in zip(feats, self.val_clips, strict=True)
            for q in c.record["questions"]
        ]
        answers = self.pipe.answer([f for f, _ in pairs], [q["question"] for _, q in pairs])
        by_kind: dict[str, list[bool]] = {}
        for (_, q), a in zip(pairs, answers, strict=True):
            by_kind.setdefault(q.get("kind", "qa"), []).append(a == q["answer"])
        self.model.train()
        return {
            "caption_exact": float(exact),
            "qa": {k: float(np.mean(v)) for k, v in by_kind.items()},
            "example": {"reference": self.val_clips[0].record["caption"], "generated": captions[0]},
        }

    # ------------------------------------------------------------------ the loop

    def log(self, entry: dict[str, Any]) -> None:
        """Append one line to metrics.jsonl."""
        with open(self.out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(entry) + "\n")

    def run(self) -> Path:
        """Train to ``steps`` (or the time limit); returns the final model directory."""
        c = self.config
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "train_config.json").write_text(json.dumps(dataclasses.asdict(c), indent=2))
        began = self._began = time.perf_counter()
        self.model.train()
        weights = {k: c.weights.get(k, 1.0) for k in OBJECTIVES}
        bar = tqdm(
            total=c.steps, initial=self.step, desc="train", unit="step", disable=not self.progress
        )
        seen = 0
        while self.step < c.steps:
            elapsed = self.elapsed_before + time.perf_counter() - began
            if c.time_limit_min is not None and elapsed > 60 * c.time_limit_min:
                break
            clips = self.rng.sample(self.train_clips, min(c.batch_size, len(self.train_clips)))
            batch = collate_clips(clips, self.device)
            lr = self.lr_at(self.step, self.elapsed_before + time.perf_counter() - began)
            for group in self.optimiser.param_groups:
                group["lr"] = lr
            autocast = (
                torch.autocast("cuda", dtype=torch.bfloat16)
                if self.device.type == "cuda"
                else torch.autocast("cpu", enabled=False)
            )
            with autocast:
                losses = self.losses(batch)
                loss = sum(weights[k] * v for k, v in losses.items())
            self.optimiser.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[union-attr]
            nn.utils.clip_grad_norm_(self.model.parameters(), c.grad_clip)
            self.optimiser.step()
            self.step += 1
            seen += len(clips)
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")  # type: ignore[union-attr]
            if self.step % c.log_every == 0 or self.step == c.steps:
                elapsed = self.elapsed_before + time.perf_counter() - began
                self.log(
                    {
                        "step": self.step,
                        "loss": loss.item(),  # type: ignore[union-attr]
                        **{k: v.item() for k, v in losses.items()},
                        "lr": lr,
                        "clips_per_s": seen / (time.perf_counter() - began),
                        "elapsed_s": elapsed,
                    }
                )
            if c.eval_every and self.step % c.eval_every == 0:
                self.log({"step": self.step, "val": self.validate()})
            if c.save_every and self.step % c.save_every == 0:
                self.save(self.out / "checkpoint")
        bar.close()
        self.save(self.out / "checkpoint")
        final = self.out / "final"
        self.save(final)
        (final / "trainer_state.pt").unlink()
        self.log({"step": self.step, "val": self.validate(), "final": True})
        return final


def train(config: TrainConfig, *, resume: bool = False, progress: bool = True) -> Path:
    """Run a training; with ``resume``, continue from ``OUT/checkpoint``."""
    checkpoint = Path(config.out) / "checkpoint"
    config.resume_from = str(checkpoint) if resume and checkpoint.is_dir() else None
    trainer = Trainer(config, progress=progress)
    if config.resume_from is not None:
        trainer.restore(checkpoint)
    return trainer.run()
