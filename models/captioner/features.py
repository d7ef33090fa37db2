"""A video's features: what the backbones saw, on one time grid, in one safetensors file.

Questions about a video reuse its features instead of decoding it again. A feature file names
the backbones that produced it (kind + digest of their weights), so a model with other
backbones refuses it instead of reading nonsense.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

FORMAT = "vidcap.features/1"


class FeaturesMismatch(ValueError):
    """Features made by other backbones than the model's."""


@dataclass(frozen=True)
class VideoFeatures:
    """Per-time-step features of one video.

    Attributes:
        visual: float32 (T, Dv), one row per sampled frame.
        audio: float32 (T, Da), one row per audio window centred on that frame.
        visual_mask: bool (T,), True at real frames.
        audio_mask: bool (T,), True where the window holds audio (all False without a track).
        timestamps: float64 (T,), seconds: when each sampled frame is shown.
        duration_s: The video's duration.
        visual_backbone: Id of the visual backbone (see
            :func:`models.captioner.backbones.backbone_id`).
        audio_backbone: Id of the audio backbone.
    """

    visual: torch.Tensor
    audio: torch.Tensor
    visual_mask: torch.Tensor
    audio_mask: torch.Tensor
    timestamps: torch.Tensor
    duration_s: float
    visual_backbone: str
    audio_backbone: str

    def __post_init__(self) -> None:
        t = self.visual.shape[0]
        if t == 0:
            raise ValueError("features need at least one time step")
        shapes = {
            "audio": (self.audio.shape[0],),
            "visual_mask": tuple(self.visual_mask.shape),
            "audio_mask": tuple(self.audio_mask.shape),
            "timestamps": tuple(self.timestamps.shape),
        }
        for name, shape in shapes.items():
            if shape != (t,):
                raise ValueError(f"{name} must have {t} time steps, got shape {shape}")

    def __len__(self) -> int:
        return int(self.visual.shape[0])

    @property
    def has_audio(self) -> bool:
        """Whether any time step has audio."""
        return bool(self.audio_mask.any())

    def select(self, index: torch.Tensor | Sequence[int]) -> VideoFeatures:
        """The time steps at ``index`` (in order)."""
        idx = torch.as_tensor(index, dtype=torch.long)
        return VideoFeatures(
            visual=self.visual[idx],
            audio=self.audio[idx],
            visual_mask=self.visual_mask[idx],
            audio_mask=self.audio_mask[idx],
            timestamps=self.timestamps[idx],
            duration_s=self.duration_s,
            visual_backbone=self.visual_backbone,
            audio_backbone=self.audio_backbone,
        )

    def subsample(self, max_steps: int) -> VideoFeatures:
        """At most ``max_steps`` time steps, evenly spread over the video."""
        if len(self) <= max_steps:
            return self
        # The centre of each of max_steps equal runs of steps, like the frame sampler.
        picks = np.floor((np.arange(max_steps) + 0.5) * len(self) / max_steps).astype(np.int64)
        return self.select(picks.tolist())

    def window(self, start: float, end: float) -> VideoFeatures:
        """The time steps shown in ``[start, end)``; the nearest one if none is."""
        times = self.timestamps
        inside = torch.nonzero((times >= start) & (times < end)).flatten()
        if len(inside) == 0:
            middle = (start + end) / 2
            inside = torch.argmin((times - middle).abs()).view(1)
        return self.select(inside)

    def to_tensors(self) -> dict[str, torch.Tensor]:
        """The arrays, as stored in the safetensors file."""
        return {
            "visual": self.visual.float().contiguous(),
            "audio": self.audio.float().contiguous(),
            "visual_mask": self.visual_mask.bool().contiguous(),
            "audio_mask": self.audio_mask.bool().contiguous(),
            "timestamps": self.timestamps.double().contiguous(),
        }

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write one safetensors file (atomically: a reader never sees half a file)."""
        path = os.fspath(path)
        metadata = {
            "format": FORMAT,
            "duration_s": repr(float(self.duration_s)),
            "visual_backbone": self.visual_backbone,
            "audio_backbone": self.audio_backbone,
        }
        tmp = f"{path}.tmp-{os.getpid()}"
        try:
            save_file(self.to_tensors(), tmp, metadata=metadata)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> VideoFeatures:
        """Read a file written by :meth:`save`."""
        path = os.fspath(path)
        with safe_open(path, framework="pt") as f:
            metadata = f.metadata() or {}
        if metadata.get("format") != FORMAT:
            raise ValueError(f"{path} is not a vidcap features file ({FORMAT})")
        tensors = load_file(path)
        return cls(
            visual=tensors["visual"],
            audio=tensors["audio"],
            visual_mask=tensors["visual_mask"],
            audio_mask=tensors["audio_mask"],
            timestamps=tensors["timestamps"],
            duration_s=float(metadata["duration_s"]),
            visual_backbone=metadata["visual_backbone"],
            audio_backbone=metadata["audio_backbone"],
        )


def concat(parts: Sequence[VideoFeatures]) -> VideoFeatures:
    """Join the features of consecutive windows of one video."""
    if not parts:
        raise ValueError("nothing to join")
    first = parts[0]
    return VideoFeatures(
        visual=torch.cat([p.visual for p in parts]),
        audio=torch.cat([p.audio for p in parts]),
        visual_mask=torch.cat([p.visual_mask for p in parts]),
        audio_mask=torch.cat([p.audio_mask for p in parts]),
        timestamps=torch.cat([p.timestamps for p in parts]),
        duration_s=first.duration_s,
        visual_backbone=first.visual_backbone,
        audio_backbone=first.audio_backbone,
    )


def collate(
    items: Sequence[VideoFeatures], device: torch.device | str = "cpu"
) -> dict[str, torch.Tensor]:
    """Pad features of several videos to one batch (masks are False at padding).

    Returns:
        ``visual_features`` (B, T, Dv), ``audio_features`` (B, T, Da), ``visual_mask`` and
        ``audio_mask`` bool (B, T): the keyword arguments of the captioner's ``encode``.
    """
    if not items:
        raise ValueError("an empty batch")
    t = max(len(f) for f in items)
    b = len(items)
    dv, da = items[0].visual.shape[1], items[0].audio.shape[1]
    visual = torch.zeros(b, t, dv)
    audio = torch.zeros(b, t, da)
    visual_mask = torch.zeros(b, t, dtype=torch.bool)
    audio_mask = torch.zeros(b, t, dtype=torch.bool)
    for i, f in enumerate(items):
        n = len(f)
        visual[i, :n], audio[i, :n] = f.visual, f.audio
        visual_mask[i, :n], audio_mask[i, :n] = f.visual_mask, f.audio_mask
    return {
        "visual_features": visual.to(device),
        "audio_features": audio.to(device),
        "visual_mask": visual_mask.to(device),
        "audio_mask": audio_mask.to(device),
    }
