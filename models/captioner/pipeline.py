"""What the rest of vidcap calls: a file in, features out; features in, text out.

>>> pipe = CaptionPipeline.from_pretrained("models/checkpoints/default")
>>> features = pipe.extract("clip.mp4")        # decode + backbones, once per video
>>> pipe.caption(features)                     # the whole video
>>> pipe.caption_segments(features, 5.0)       # [Segment(start, end, text), ...]
>>> pipe.answer(features, "what colour is the square?")

Every method also takes lists (several videos, several questions) and runs them in batches.
Memory stays bounded whatever the duration: frames are decoded and run through the backbones
``max_frames`` at a time, and the fusion encoder never sees more than ``max_frames`` steps
(a long video's whole-video caption reads ``max_frames`` steps spread evenly over it).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from models.captioner.backbones import backbone_id
from models.captioner.configuration_videobert import VideoCaptionerConfig
from models.captioner.features import FeaturesMismatch, VideoFeatures, collate, concat
from models.captioner.modeling_captioner import VideoCaptionerModel
from models.captioner.tokenization import check_tokenizer, load_tokenizer
from models.device import default_device
from models.media import (
    Backend,
    MediaLimits,
    audio_windows,
    load_clip,
    probe,
    read_audio,
    sample_frames,
)
from models.media.sampling import segment_spans

STAGES = ("decode", "features", "fusion", "generate")
WHOLE_AUDIO_S = 300.0  # longer videos have their audio read a window at a time


@dataclass(frozen=True)
class Segment:
    """A caption of one stretch of a video, ``[start, end)`` seconds."""

    start: float
    end: float
    text: str


@dataclass
class StageTimer:
    """Adds up seconds per stage; calls ``on_stage(name)`` when a stage starts (progress)."""

    on_stage: Callable[[str], None] | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the enclosed block as ``name``."""
        if self.on_stage is not None:
            self.on_stage(name)
        began = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - began


@dataclass(frozen=True)
class Decoded:
    """Sampled frames and their audio windows, as the backbones take them.

    Attributes:
        images: uint8 (T, S, S, 3) frames at the backbone's size.
        times: float64 (T,) seconds.
        windows: float32 (T, W) audio windows centred on the frames.
        heard: bool (T,) True where a window holds audio.
        duration_s: The video's duration.
    """

    images: np.ndarray
    times: np.ndarray
    windows: np.ndarray
    heard: np.ndarray
    duration_s: float


def window_pixels(images: np.ndarray) -> torch.Tensor:
    """uint8 (T, H, W, 3) frames -> (1, T, 3, H, W), the visual backbone's layout."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).unsqueeze(0)


def _listed(
    features: VideoFeatures | Sequence[VideoFeatures],
) -> tuple[list[VideoFeatures], bool]:
    """``(items, single)``: a list of features, and whether one was given alone."""
    if isinstance(features, VideoFeatures):
        return [features], True
    return list(features), False


class CaptionPipeline:
    """A captioner, its tokenizer, and how to feed them a video file.

    Args:
        model: The captioner (moved to ``device``, put in eval mode).
        tokenizer: Its tokenizer (BART's special ids).
        device: Where to run (default: CUDA when present). On CUDA the model runs under
            bf16 autocast; on the CPU in the model's dtype (float32 by default).
        limits: Media limits for decoding (default: the media layer's).
        backend: Which library decodes frames (PyAV by default; audio is always PyAV).
        isolate: Decode in a sandboxed child process (keep True for untrusted files; a
            training run over its own generated clips may turn it off).
        batch_size: Videos, windows or questions per forward pass.
    """

    def __init__(
        self,
        model: VideoCaptionerModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        device: torch.device | str | None = None,
        limits: MediaLimits | None = None,
        backend: Backend | str = Backend.PYAV,
        isolate: bool = True,
        batch_size: int = 16,
    ) -> None:
        check_tokenizer(tokenizer, model.config.decoder_config.vocab_size)
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.device = torch.device(device) if device is not None else default_device()
        model.to(self.device)  # type: ignore[arg-type]  # transformers' wrapper hides the type
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.limits = limits or MediaLimits()
        self.backend = Backend(backend)
        self.isolate = isolate
        self.batch_size = batch_size
        self.visual_backbone = backbone_id(model.visual_backbone)
        self.audio_backbone = backbone_id(model.audio_backbone)

    @property
    def config(self) -> VideoCaptionerConfig:
        """The model's config (sampling settings included)."""
        return self.model.config

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike[str],
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
        **kwargs: Any,
    ) -> CaptionPipeline:
        """Load a model directory written by :meth:`save_pretrained` (model + tokenizer).

        Args:
            path: The directory.
            device: Where to run (default: CUDA when present).
            dtype: dtype of the weights (float32 unless asked otherwise; a checkpoint's own
                dtype is never assumed).
            kwargs: Other arguments of the constructor.
        """
        path = os.fspath(path)
        if not os.path.isfile(os.path.join(path, "config.json")):
            raise FileNotFoundError(f"no vidcap model at {path!r} (config.json missing)")
        model = VideoCaptionerModel.from_pretrained(path, dtype=dtype)
        return cls(model, load_tokenizer(path), device=device, **kwargs)

    def save_pretrained(self, path: str | os.PathLike[str]) -> None:
        """Write the model (config + safetensors) and its tokenizer into one directory."""
        self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # ------------------------------------------------------------------ features

    @overload
    def extract(  # type: ignore[overload-overlap]  # a str is also a Sequence
        self,
        source: str | os.PathLike[str],
        *,
        timer: StageTimer | None = None,
        frames_per_second: float | None = None,
        max_total_frames: int | None = None,
    ) -> VideoFeatures: ...

    @overload
    def extract(
        self,
        source: Sequence[str | os.PathLike[str]],
        *,
        timer: StageTimer | None = None,
        frames_per_second: float | None = None,
        max_total_frames: int | None = None,
    ) -> list[VideoFeatures]: ...

    def extract(
        self,
        source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        *,
        timer: StageTimer | None = None,
        frames_per_second: float | None = None,
        max_total_frames: int | None = None,
    ) -> VideoFeatures | list[VideoFeatures]:
        """Decode a video (or several) and run the backbones.

        Frames are sampled at ``frames_per_second`` (default: the config's; at least one
        frame, at most ``max_total_frames`` and the media limit's ``max_sample_frames``) and
        processed ``config.max_frames`` at a time.

        Raises:
            MediaError: The media layer's, for files that are not acceptable videos.
        """
        sampling = {"frames_per_second": frames_per_second, "max_total_frames": max_total_frames}
        if isinstance(source, (str, os.PathLike)):
            return self._extract_one(source, timer or StageTimer(), **sampling)
        return [self._extract_one(p, timer or StageTimer(), **sampling) for p in source]

    def sample_count(
        self,
        duration_s: float,
        frame_count: int,
        frames_per_second: float | None = None,
        max_total_frames: int | None = None,
    ) -> int:
        """How many frames :meth:`extract` samples from a video of this duration."""
        rate = frames_per_second or self.config.frames_per_second
        total = min(math.ceil(duration_s * rate), frame_count, self.limits.max_sample_frames)
        if max_total_frames is not None:
            total = min(total, max_total_frames)
        return max(1, total)

    def decode_windows(
        self,
        path: str | os.PathLike[str],
        *,
        timer: StageTimer | None = None,
        frames_per_second: float | None = None,
        max_total_frames: int | None = None,
    ) -> Iterator[Decoded]:
        """Decode a video ``config.max_frames`` frames at a time, with their audio windows.

        Frames are sampled at ``frames_per_second`` (default: the config's; see
        :meth:`sample_count`) on one grid over the whole video: frame i at
        ``(i + 0.5) * duration / count``. The audio track is read once, with the first window
        (a video longer than ``WHOLE_AUDIO_S``: a window's span at a time).

        Raises:
            MediaError: The media layer's, for files that are not acceptable videos.
        """
        cfg, timer = self.config, timer or StageTimer()
        with timer.stage("decode"):
            info = probe(path, limits=self.limits, isolate=self.isolate)
        total = self.sample_count(
            info.duration_s, info.frame_count, frames_per_second, max_total_frames
        )
        step = info.duration_s / total
        # A short video's audio is read once, with the first window; a long one's a window at
        # a time, so memory stays bounded (an hour at 16 kHz would be 230 MB of float32).
        whole_audio = info.duration_s <= WHOLE_AUDIO_S
        audio: np.ndarray | None = None
        for first in range(0, total, cfg.max_frames):
            count = min(cfg.max_frames, total - first)
            span = {"num_frames": count, "start": first * step, "end": (first + count) * step}
            frames = {
                "size": cfg.image_size,
                "fit": cfg.frame_fit,
                "backend": self.backend,
                "limits": self.limits,
                "isolate": self.isolate,
            }
            offset = 0.0
            with timer.stage("decode"):
                if first == 0 and whole_audio:
                    clip = load_clip(path, **span, **frames, sample_rate=cfg.sample_rate)  # type: ignore[arg-type]
                    images, times = clip.frames
                    audio = clip.audio
                else:
                    images, times = sample_frames(path, **span, **frames)  # type: ignore[arg-type]
                if not whole_audio and info.has_audio:
                    half = cfg.audio_window_s / 2
                    offset = max(0.0, float(times[0]) - half)
                    audio = read_audio(
                        path,
                        sample_rate=cfg.sample_rate,
                        start=offset,
                        end=min(info.duration_s, float(times[-1]) + half),
                        limits=self.limits,
                        isolate=self.isolate,
                    )
                windows, heard = audio_windows(
                    audio, cfg.sample_rate, times - offset, window_s=cfg.audio_window_s
                )
            yield Decoded(images, times, windows, heard, info.duration_s)

    def decode(self, path: str | os.PathLike[str]) -> Decoded:
        """All the sampled frames and audio windows of a (short) video, as the model sees them.

        For training on clips; long videos go through :meth:`extract`, window by window.
        """
        parts = list(self.decode_windows(path))
        return Decoded(
            images=np.concatenate([p.images for p in parts]),
            times=np.concatenate([p.times for p in parts]),
            windows=np.concatenate([p.windows for p in parts]),
            heard=np.concatenate([p.heard for p in parts]),
            duration_s=parts[0].duration_s,
        )

    def _extract_one(
        self, path: str | os.PathLike[str], timer: StageTimer, **sampling: Any
    ) -> VideoFeatures:
        parts: list[VideoFeatures] = []
        previous: np.ndarray | None = None  # the frame before this window (motion context)
        for window in self.decode_windows(path, timer=timer, **sampling):
            with timer.stage("features"):
                parts.append(self.features_of(window, previous))
            previous = window.images[-1:]
        return concat(parts)

    @torch.inference_mode()
    def features_of(self, window: Decoded, previous: np.ndarray | None = None) -> VideoFeatures:
        """The backbones' features of decoded frames and audio (one window, or a whole clip).

        ``previous`` is the frame before the window, so motion at its first frame is seen.
        """
        # With the previous window's last frame in front, the first frame's motion is the same
        # as in one pass over the whole video; its row is dropped afterwards.
        context = 0 if previous is None else 1
        images = window.images if previous is None else np.concatenate([previous, window.images])
        times, heard = window.times, window.heard
        with self._autocast():
            visual = self.model.visual_backbone(window_pixels(images).to(self.device))
            audio = self.model.audio_backbone(
                torch.from_numpy(window.windows).unsqueeze(0).to(self.device)
            )
        return VideoFeatures(
            visual=visual[0, context:].float().cpu(),  # (T, Dv)
            audio=audio[0].float().cpu(),  # (T, Da)
            visual_mask=torch.ones(len(times), dtype=torch.bool),
            audio_mask=torch.from_numpy(heard),
            timestamps=torch.from_numpy(np.asarray(times, dtype=np.float64)),
            duration_s=float(window.duration_s),
            visual_backbone=self.visual_backbone,
            audio_backbone=self.audio_backbone,
        )

    def check_features(self, features: VideoFeatures) -> None:
        """Raise :class:`FeaturesMismatch` for features other backbones made."""
        if (features.visual_backbone, features.audio_backbone) != (
            self.visual_backbone,
            self.audio_backbone,
        ):
            raise FeaturesMismatch(
                "these features were made by other backbones"
                f" ({features.visual_backbone}, {features.audio_backbone}) than this model's"
                f" ({self.visual_backbone}, {self.audio_backbone}); extract them again"
            )

    # ------------------------------------------------------------------ text

    @torch.inference_mode()
    def _generate(
        self,
        items: Sequence[VideoFeatures],
        questions: Sequence[str] | None,
        timer: StageTimer,
        generate_kwargs: dict[str, Any],
    ) -> list[str]:
        cfg = self.config
        texts: list[str] = []
        for i in range(0, len(items), self.batch_size):
            chunk = items[i : i + self.batch_size]
            with timer.stage("fusion"), self._autocast():
                for f in chunk:
                    self.check_features(f)
                batch = collate([f.subsample(cfg.max_frames) for f in chunk], self.device)
                if questions is not None:
                    q = self.tokenizer(
                        list(questions[i : i + self.batch_size]),
                        padding=True,
                        truncation=True,
                        max_length=cfg.max_question_tokens,
                        return_tensors="pt",
                    )
                    batch["question_ids"] = q["input_ids"].to(self.device)
                    batch["question_mask"] = q["attention_mask"].to(self.device)
                encoded = self.model.encode(**batch)
            with timer.stage("generate"), self._autocast():
                ids = self.model.generate_from(encoded, **generate_kwargs)
            texts += [t.strip() for t in self.tokenizer.batch_decode(ids, skip_special_tokens=True)]
        return texts

    @overload
    def caption(
        self, features: VideoFeatures, *, timer: StageTimer | None = None, **generate_kwargs: Any
    ) -> str: ...

    @overload
    def caption(
        self,
        features: Sequence[VideoFeatures],
        *,
        timer: StageTimer | None = None,
        **generate_kwargs: Any,
    ) -> list[str]: ...

    def caption(
        self,
        features: VideoFeatures | Sequence[VideoFeatures],
        *,
        timer: StageTimer | None = None,
        **generate_kwargs: Any,
    ) -> str | list[str]:
        """A caption of the whole video (or one per video, for a list).

        ``generate_kwargs`` override the config's decoding settings (``num_beams``,
        ``max_new_tokens``, ``no_repeat_ngram_size``, ...).
        """
        items, single = _listed(features)
        texts = self._generate(items, None, timer or StageTimer(), generate_kwargs)
        return texts[0] if single else texts

    @overload
    def caption_segments(
        self,
        features: VideoFeatures,
        segment_seconds: float,
        *,
        timer: StageTimer | None = None,
        **generate_kwargs: Any,
    ) -> list[Segment]: ...

    @overload
    def caption_segments(
        self,
        features: Sequence[VideoFeatures],
        segment_seconds: float,
        *,
        timer: StageTimer | None = None,
        **generate_kwargs: Any,
    ) -> list[list[Segment]]: ...

    def caption_segments(
        self,
        features: VideoFeatures | Sequence[VideoFeatures],
        segment_seconds: float,
        *,
        timer: StageTimer | None = None,
        **generate_kwargs: Any,
    ) -> list[Segment] | list[list[Segment]]:
        """Dense captions: one per ``segment_seconds`` stretch of the video, in order.

        The last segment ends at the video's end. A stretch without a sampled frame is
        captioned from the nearest frame.
        """
        videos, single = _listed(features)
        spans: list[list[tuple[float, float]]] = []
        windows: list[VideoFeatures] = []
        for f in videos:
            cuts = segment_spans(max(f.duration_s, float(f.timestamps[-1])), segment_seconds)
            spans.append(cuts)
            windows += [f.window(s, e) for s, e in cuts]
        texts = iter(self._generate(windows, None, timer or StageTimer(), generate_kwargs))
        result = [[Segment(s, e, next(texts)) for s, e in cuts] for cuts in spans]
        return result[0] if single else result

    @overload
    def answer(
        self,
        features: VideoFeatures | Sequence[VideoFeatures],
        question: str,
        *,
        timer: StageTimer | None = None,
        **generate_kwargs: Any,
    ) -> str: ...

    @overload
    def answer(
        self,
        features: VideoFeatures | Sequence[VideoFeatures],
        question: Sequence[str],
        *,
        timer: StageTimer | None = None,
        **generate_kwargs: Any,
    ) -> list[str]: ...

    def answer(
        self,
        features: VideoFeatures | Sequence[VideoFeatures],
        question: str | Sequence[str],
        *,
        timer: StageTimer | None = None,
        **generate_kwargs: Any,
    ) -> str | list[str]:
        """Answer a question about a video.

        Several questions about one video: pass one ``VideoFeatures`` and a list. Questions
        about several videos: pass two lists of the same length (pairs).
        """
        single = isinstance(question, str)
        questions = [question] if isinstance(question, str) else list(question)
        if any(not q.strip() for q in questions):
            raise ValueError("a question must not be empty")
        if isinstance(features, VideoFeatures):
            items = [features] * len(questions)
        else:
            items = list(features)
            if len(items) != len(questions):
                raise ValueError(
                    f"{len(items)} videos but {len(questions)} questions: pass one video, or"
                    " one question per video"
                )
        texts = self._generate(items, questions, timer or StageTimer(), generate_kwargs)
        return texts[0] if single else texts
