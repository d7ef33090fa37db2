"""Feature backbones: sampled frames -> visual features, audio windows -> audio features.

Built in (trainable end to end, fast on CPU):

- :class:`FrameCNN`: a small CNN over each sampled frame. With ``visual_motion`` it also sees
  the difference to the previous sampled frame, and x/y coordinate planes, so where an object
  is and where it is going survive the global pooling.
- :class:`LogMel` + :class:`AudioCNN`: a log-mel spectrogram computed with ``torch.stft`` and
  transformers' mel filter bank (no torchaudio), then a small 2-D CNN.

Pretrained (frozen by default): any vision tower in
:data:`models.captioner.configuration_videobert.VISUAL_TOWERS` and a Whisper or AST audio encoder,
built from their config and loaded by :func:`models.captioner.modeling_captioner.build_captioner`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from transformers import AutoModel
from transformers.audio_utils import mel_filter_bank

from models.captioner.configuration_videobert import VideoCaptionerConfig

BUILTIN = "builtin"


def _conv_block(cin: int, cout: int) -> nn.Sequential:
    # One strided conv per block keeps a frame cheap on a CPU (the backbones dominate a
    # training step). GroupNorm, not BatchNorm: features must not depend on the batch.
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel_size=3, stride=2, padding=1),
        nn.GroupNorm(min(8, cout), cout),
        nn.GELU(),
    )


def _cnn(cin: int, channels: Sequence[int], out_features: int) -> nn.Sequential:
    blocks: list[nn.Module] = []
    for cout in channels:
        blocks.append(_conv_block(cin, cout))
        cin = cout
    blocks += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, out_features)]
    return nn.Sequential(*blocks)


class DerivedBuffers:
    """Modules whose non-persistent buffers are computed from the config, not saved.

    ``from_pretrained`` builds models on the meta device and only fills what the checkpoint
    holds, so the captioner's ``_init_weights`` refills these from :meth:`buffer_values`.
    """

    def buffer_values(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def register_derived_buffers(self) -> None:
        for name, value in self.buffer_values().items():
            self.register_buffer(name, value, persistent=False)  # type: ignore[attr-defined]


def normalise_frames(frames: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 (..., 3, H, W) frames -> float, scaled to [0, 1] then standardised per channel."""
    x = frames.float() / 255.0 if frames.dtype == torch.uint8 else frames.float()
    return (x - mean.view(3, 1, 1)) / std.view(3, 1, 1)


class _PixelStats(DerivedBuffers):
    image_mean: list[float]
    image_std: list[float]
    mean: torch.Tensor
    std: torch.Tensor

    def buffer_values(self) -> dict[str, torch.Tensor]:
        return {"mean": torch.tensor(self.image_mean), "std": torch.tensor(self.image_std)}


class FrameCNN(_PixelStats, nn.Module):
    """The built-in visual backbone: one feature vector per sampled frame."""

    def __init__(self, config: VideoCaptionerConfig) -> None:
        super().__init__()
        self.motion = config.visual_motion
        self.feature_size = config.videobert_config.visual_feature_size
        cin = 3 + (3 + 2 if self.motion else 0)  # RGB [+ difference + x/y planes]
        self.cnn = _cnn(cin, config.visual_channels, self.feature_size)
        self.image_mean, self.image_std = list(config.image_mean), list(config.image_std)
        self.register_derived_buffers()

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """Features of a batch of clips.

        Args:
            frames: uint8 (B, T, 3, H, W), RGB, in time order.

        Returns:
            float (B, T, visual_feature_size).
        """
        if frames.ndim != 5 or frames.shape[2] != 3:
            raise ValueError(f"frames must be (B, T, 3, H, W), got {tuple(frames.shape)}")
        b, t, _, h, w = frames.shape
        x = normalise_frames(frames, self.mean, self.std)  # (B, T, 3, H, W)
        if self.motion:
            previous = torch.cat([x[:, :1], x[:, :-1]], dim=1)  # the first frame has no motion
            ys = torch.linspace(-1, 1, h, device=x.device, dtype=x.dtype)
            xs = torch.linspace(-1, 1, w, device=x.device, dtype=x.dtype)
            grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij"))  # (2, H, W)
            x = torch.cat([x, x - previous, grid.expand(b, t, 2, h, w)], dim=2)
        out = self.cnn(x.flatten(0, 1))  # (B*T, D)
        return out.view(b, t, -1)


class LogMel(DerivedBuffers, nn.Module):
    """Log-mel spectrogram of audio windows, in torch (differentiable, GPU-friendly).

    The scaling follows Whisper's front end (log10, then ``(x + 4) / 4``), so the default
    settings (400-point FFT, 160-sample hop at 16 kHz) also feed a Whisper encoder.
    """

    bank: torch.Tensor
    window: torch.Tensor

    def __init__(self, sample_rate: int, n_fft: int, hop_length: int, n_mels: int) -> None:
        super().__init__()
        self.sample_rate, self.n_fft, self.hop_length, self.n_mels = (
            sample_rate, n_fft, hop_length, n_mels,
        )  # fmt: skip
        self.register_derived_buffers()

    def buffer_values(self) -> dict[str, torch.Tensor]:
        bank = mel_filter_bank(
            num_frequency_bins=self.n_fft // 2 + 1,
            num_mel_filters=self.n_mels,
            min_frequency=0.0,
            max_frequency=self.sample_rate / 2,
            sampling_rate=self.sample_rate,
            norm="slaney",
            mel_scale="slaney",
        )  # (F, M)
        return {
            "bank": torch.tensor(bank, dtype=torch.float32),
            "window": torch.hann_window(self.n_fft),
        }

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """(N, S) float audio -> (N, n_mels, frames) log-mel."""
        spec = torch.stft(
            audio.float(),
            self.n_fft,
            hop_length=self.hop_length,
            window=self.window.float(),
            center=True,
            return_complex=True,
        )  # (N, F, frames)
        power = spec.abs() ** 2
        mel = torch.einsum("nft,fm->nmt", power, self.bank.float())  # (N, M, frames)
        return (torch.log10(mel.clamp(min=1e-10)) + 4.0) / 4.0


class AudioCNN(nn.Module):
    """The built-in audio backbone: log-mel of each window, then a small CNN."""

    def __init__(self, config: VideoCaptionerConfig) -> None:
        super().__init__()
        self.feature_size = config.videobert_config.audio_feature_size
        self.mel = LogMel(config.sample_rate, config.n_fft, config.hop_length, config.n_mels)
        self.cnn = _cnn(1, config.audio_channels, self.feature_size)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """Features of the audio windows of a batch of clips.

        Args:
            audio: float (B, T, S): one window of S samples per time step.

        Returns:
            float (B, T, audio_feature_size).
        """
        if audio.ndim != 3:
            raise ValueError(f"audio must be (B, T, samples), got {tuple(audio.shape)}")
        b, t, _ = audio.shape
        mel = self.mel(audio.flatten(0, 1))  # (B*T, M, frames)
        return self.cnn(mel.unsqueeze(1)).view(b, t, -1)


def _output_size(tower: nn.Module) -> int:
    cfg: Any = tower.config
    return int(getattr(cfg, "hidden_size", None) or cfg.d_model)


class PretrainedVisualBackbone(_PixelStats, nn.Module):
    """A pretrained vision tower (CLIP, SigLIP, ViT, DINOv2) as the visual backbone.

    Frames are normalised in torch with the config's ``image_mean`` / ``image_std`` (set them
    from the checkpoint's image processor), at the tower's own ``image_size``. The feature of
    a frame is the tower's pooled output, or the mean of its last hidden states.
    """

    def __init__(self, config: VideoCaptionerConfig) -> None:
        super().__init__()
        tower_config = config.visual_backbone_config
        self.tower = AutoModel.from_config(tower_config)
        self.feature_size = _output_size(self.tower)
        self.image_mean, self.image_std = list(config.image_mean), list(config.image_std)
        self.register_derived_buffers()

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 (B, T, 3, H, W) -> float (B, T, hidden size of the tower)."""
        if frames.ndim != 5 or frames.shape[2] != 3:
            raise ValueError(f"frames must be (B, T, 3, H, W), got {tuple(frames.shape)}")
        b, t = frames.shape[:2]
        x = normalise_frames(frames.flatten(0, 1), self.mean, self.std)  # (B*T, 3, H, W)
        out = self.tower(pixel_values=x.to(self.tower.dtype))
        pooled = getattr(out, "pooler_output", None)
        if pooled is None or pooled.ndim != 2:
            pooled = out.last_hidden_state.mean(dim=1)
        return pooled.float().view(b, t, -1)


class PretrainedAudioBackbone(nn.Module):
    """A pretrained Whisper encoder or AST as the audio backbone.

    Each window's log-mel (:class:`LogMel` with the tower's number of mel bins) is padded or
    cut to the length the tower expects; the feature is the mean of its last hidden states.
    """

    def __init__(self, config: VideoCaptionerConfig) -> None:
        super().__init__()
        tower_config = config.audio_backbone_config
        self.kind = tower_config.model_type
        model = AutoModel.from_config(tower_config)
        # A Whisper config builds the whole seq2seq model; only its encoder listens.
        self.tower = model.get_encoder() if self.kind == "whisper" else model
        if self.kind == "whisper":
            n_mels = tower_config.num_mel_bins
            self.frames = 2 * tower_config.max_source_positions
        else:
            n_mels = tower_config.num_mel_bins
            self.frames = tower_config.max_length
        self.mel = LogMel(config.sample_rate, config.n_fft, config.hop_length, n_mels)
        self.feature_size = _output_size(self.tower)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """float (B, T, S) -> float (B, T, hidden size of the tower)."""
        if audio.ndim != 3:
            raise ValueError(f"audio must be (B, T, samples), got {tuple(audio.shape)}")
        b, t, _ = audio.shape
        mel = self.mel(audio.flatten(0, 1))  # (N, M, frames)
        silence = (torch.log10(torch.tensor(1e-10)) + 4.0) / 4.0
        if mel.shape[-1] < self.frames:
            pad = self.frames - mel.shape[-1]
            mel = nn.functional.pad(mel, (0, pad), value=float(silence))
        mel = mel[..., : self.frames].to(self.tower.dtype)
        if self.kind == "whisper":
            out = self.tower(input_features=mel)
        else:
            out = self.tower(input_values=mel.transpose(1, 2))  # AST wants (N, frames, M)
        return out.last_hidden_state.float().mean(dim=1).view(b, t, -1)


class EfficientNetLiteBackbone(DerivedBuffers, nn.Module):
    """EfficientNet-Lite0 (ImageNet-1k) as a frozen visual backbone: 1280-d pooled features.

    Its weights are not part of the captioner's state dict: they are read from the checked
    package file (:func:`models.perception.weights.verified`) the first time they are needed,
    never at import time, so a saved captioner does not store them a second time and a model
    always runs the exact file vidcap was tested with. The network is held outside the module
    tree (no parameters, nothing for ``post_init`` to re-initialise, nothing to train), follows
    the backbone's device and dtype through ``.to()``, and always runs in eval mode. Frames are
    normalised as the Lite weights were trained: ``(x - 127) / 128`` on 0..255 RGB.
    """

    kind = "efficientnet-lite0"
    feature_size = 1280
    probe: torch.Tensor
    _net: nn.Module | None

    def __init__(self, config: VideoCaptionerConfig) -> None:
        super().__init__()
        self.image_size = config.image_size
        # Tracks the device/dtype the captioner is moved to (the network follows it on load).
        self.register_derived_buffers()
        object.__setattr__(self, "_net", None)  # not a submodule: see the class docstring

    def buffer_values(self) -> dict[str, torch.Tensor]:
        return {"probe": torch.zeros(0)}

    @property
    def identity(self) -> str:
        """What the features depend on: the weight file's sha256 (for :func:`backbone_id`)."""
        from models.perception.weights import WEIGHTS

        return WEIGHTS[self.kind][0].sha256

    @property
    def tower(self) -> nn.Module:
        """The frozen network, loaded from the checked weight file on first use."""
        if self._net is None:
            from models.perception.tags import build_efficientnet_lite0

            with torch.device("cpu"):  # real tensors, even while a checkpoint loads on "meta"
                net = build_efficientnet_lite0().requires_grad_(False)
            if self.probe.device.type != "meta":
                net = net.to(self.probe.device, self.probe.dtype)
            object.__setattr__(self, "_net", net)
        assert self._net is not None
        return self._net

    def _apply(self, fn: Any, recurse: bool = True) -> EfficientNetLiteBackbone:
        super()._apply(fn, recurse)
        if self._net is not None:
            self._net._apply(fn)
        return self

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 (B, T, 3, H, W) RGB at ``image_size`` -> float (B, T, 1280)."""
        from models.perception.tags import PIXEL_MEAN, PIXEL_STD, lite0_features

        if frames.ndim != 5 or frames.shape[2] != 3:
            raise ValueError(f"frames must be (B, T, 3, H, W), got {tuple(frames.shape)}")
        b, t = frames.shape[:2]
        tower = self.tower.eval()
        dtype = next(tower.parameters()).dtype
        x = (frames.flatten(0, 1).to(dtype) - PIXEL_MEAN) / PIXEL_STD  # (B*T, 3, H, W)
        with torch.no_grad():
            pooled = lite0_features(tower, x)  # (B*T, 1280)
        return pooled.float().view(b, t, -1)


def build_visual_backbone(config: VideoCaptionerConfig) -> nn.Module:
    """The visual backbone the config asks for (weights random until loaded)."""
    if config.visual_backbone == EfficientNetLiteBackbone.kind:
        return EfficientNetLiteBackbone(config)
    if config.visual_backbone_config is None:
        return FrameCNN(config)
    return PretrainedVisualBackbone(config)


def build_audio_backbone(config: VideoCaptionerConfig) -> nn.Module:
    """The audio backbone the config asks for (weights random until loaded)."""
    if config.audio_backbone_config is None:
        return AudioCNN(config)
    return PretrainedAudioBackbone(config)


def backbone_id(backbone: nn.Module) -> str:
    """A name for what a backbone computes: its kind and a digest of its weights.

    Cached features carry it, so features from other weights are never mixed in.
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(backbone.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    identity = getattr(backbone, "identity", None)
    if identity is not None:  # weights outside the state dict, pinned by their sha256
        digest.update(identity.encode())
        return f"{backbone.kind}-{type(backbone).__name__}-{digest.hexdigest()[:16]}"
    tower = getattr(backbone, "tower", None)
    kind = tower.config.model_type if tower is not None else BUILTIN
    return f"{kind}-{type(backbone).__name__}-{digest.hexdigest()[:16]}"
