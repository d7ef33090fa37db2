"""Frame tags: EfficientNet-Lite0 (ImageNet-1k) on sampled frames, and their aggregation.

>>> tagger = Tagger()                                  # once per process
>>> frame_tags = tagger.tag_frames(images, times)      # one TimedTags per frame
>>> summary = summarize(frame_tags, spans=[(0.0, 4.0), (4.0, 8.0)])
>>> summary.tags, summary.segment_tags, summary.names  # video, per segment, ("dog", 0.7)

The classifier is Google's EfficientNet-Lite0 (Apache-2.0) converted to PyTorch, loaded from
the checked package file (:func:`models.perception.weights.verified`). Its preprocessing is
the one the Lite weights were trained with (tensorflow/tpu ``efficientnet/lite``): RGB scaled
as ``(x - 127) / 128`` (not torchvision's mean/std), the centre crop of 224/256 of the shorter
side resized to 224x224. Black bars added by the media layer are cut off first, so a padded
16:9 or 4:3 frame is classified on its picture.
"""

from __future__ import annotations

import functools
import json
import math
import threading
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from models.device import default_device
from models.perception.frames import center_crop_resize, check_frames, content_box
from models.perception.result import Tag, TimedTags
from models.perception.weights import verified

MODEL_NAME = "efficientnet-lite0"
IMAGE_SIZE = 224
CROP_FRACTION = 224 / 256  # the Lite eval crop (crop_padding = 32)
PIXEL_MEAN = 127.0  # efficientnet_lite_builder.py: MEAN_RGB = [127.0] * 3
PIXEL_STD = 128.0  # STD_RGB = [128.0] * 3
FEATURE_SIZE = 1280
TABLE_PATH = Path(__file__).resolve().parent / "data" / "imagenet.json"

# A class is a tag of a stretch of video when its probability, averaged over the stretch's
# frames, is at least 0.15. Why: the classifier's softmax is roughly a calibrated estimate of
# "this class is the main object of the frame" (chance is 1/1000), so the average over frames
# estimates the share of frames that show it. Requiring 0.15 keeps classes the network rates
# as a serious candidate (it then ranks in the top few on the frames that show it) and drops the
# long tail of 0.01-0.05 guesses a confused network spreads over look-alike classes.
TAG_THRESHOLD = 0.15
# A common name sums the mass of all its classes (120 dog breeds), so it is held to a higher
# bar: at 0.3 the network bets about one frame in three shows something of that kind.
NAME_THRESHOLD = 0.3
# Per-frame tags below this are not kept at all (noise, and they only bloat perception.json).
FRAME_FLOOR = 0.01


@dataclass(frozen=True)
class ImageNetClass:
    """One row of the ImageNet table."""

    index: int
    synset: str
    label: str
    names: tuple[str, ...]


@functools.cache
def imagenet_classes() -> tuple[ImageNetClass, ...]:
    """The 1000 ImageNet-1k classes in class-index order (from ``data/imagenet.json``)."""
    data = json.loads(TABLE_PATH.read_text())
    classes = tuple(
        ImageNetClass(c["index"], c["synset"], c["label"], tuple(c["names"]))
        for c in data["classes"]
    )
    if [c.index for c in classes] != list(range(1000)):
        raise ValueError(f"{TABLE_PATH} must list classes 0..999 in order")
    return classes


def tag_phrase(label: str, names: Sequence[str]) -> str:
    """How a tag reads to the captioner: its label and its most specific common name."""
    return f"{label} ({names[0]})" if names and names[0] != label.lower() else label


def class_phrases() -> list[str]:
    """:func:`tag_phrase` of every class, in class-index order."""
    return [tag_phrase(c.label, c.names) for c in imagenet_classes()]


def build_efficientnet_lite0(weights: bool = True) -> nn.Module:
    """EfficientNet-Lite0 in eval mode, with the checked ImageNet weights when ``weights``.

    Raises:
        WeightsError: The weight file is missing or is not the tested one.
    """
    from efficientnet_lite_pytorch import EfficientNet  # no torch work at import time

    model = EfficientNet.from_name(MODEL_NAME)
    if weights:
        (path,) = verified(MODEL_NAME)
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()


def lite0_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The 1280-d pooled features of normalised (N, 3, 224, 224) input: (N, 1280)."""
    return model.extract_features(x).mean(dim=(2, 3))  # type: ignore[operator]


def preprocess(images: np.ndarray) -> np.ndarray:
    """uint8 (T, H, W, 3) RGB frames -> uint8 (T, 224, 224, 3): bars cut, centre crop."""
    check_frames(images)
    out = np.empty((len(images), IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    for i, image in enumerate(images):
        top, bottom, left, right = content_box(image)
        out[i] = center_crop_resize(image[top:bottom, left:right], IMAGE_SIZE, CROP_FRACTION)
    return out


class Tagger:
    """EfficientNet-Lite0 over frames: features, ImageNet probabilities and tags.

    Build it once per worker process (loading and checking the weights takes a fraction of a
    second, but it should not happen per video).

    Args:
        device: Where to run (default: CUDA when available, else CPU).
        batch_size: Frames per forward pass.
    """

    def __init__(self, device: str | torch.device | None = None, batch_size: int = 32) -> None:
        self.device = torch.device(device) if device is not None else default_device()
        # float16 on a GPU halves memory and time; the CPU has no fast float16 convolutions.
        self.dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        self.batch_size = batch_size
        self.model = build_efficientnet_lite0().to(self.device, self.dtype)
        self.classes = imagenet_classes()
        self._lock = threading.Lock()

    @torch.inference_mode()
    def embed_and_classify(self, images: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Pooled features and class probabilities of frames, in batches.

        Args:
            images: uint8 (T, H, W, 3) RGB frames, any size.

        Returns:
            (features, probs): float32 CPU tensors (T, 1280) and (T, 1000).
        """
        crops = preprocess(images)  # (T, 224, 224, 3)
        features, probs = [], []
        with self._lock:  # one forward at a time: the model is shared by the process
            for start in range(0, len(crops), self.batch_size):
                batch = torch.from_numpy(crops[start : start + self.batch_size]).to(self.device)
                x = batch.permute(0, 3, 1, 2).to(self.dtype)  # (N, 3, 224, 224)
                x = (x - PIXEL_MEAN) / PIXEL_STD
                pooled = lite0_features(self.model, x)  # (N, 1280)
                logits = self.model._fc(pooled)  # type: ignore[operator]
                features.append(pooled.float().cpu())
                probs.append(logits.float().softmax(dim=-1).cpu())
        if not features:
            return torch.zeros(0, FEATURE_SIZE), torch.zeros(0, len(self.classes))
        return torch.cat(features), torch.cat(probs)

    def tags_of(self, probs: torch.Tensor, top_k: int = 5) -> list[tuple[Tag, ...]]:
        """The ``top_k`` classes of each row of (T, 1000) probabilities, above FRAME_FLOOR."""
        values, indices = probs.topk(min(top_k, probs.shape[-1]), dim=-1)
        out = []
        for vs, ix in zip(values.tolist(), indices.tolist(), strict=True):
            out.append(
                tuple(self._tag(i, v) for v, i in zip(vs, ix, strict=True) if v >= FRAME_FLOOR)
            )
        return out

    def tag_frames(self, images: np.ndarray, times: np.ndarray, top_k: int = 5) -> list[TimedTags]:
        """Top-``top_k`` ImageNet tags of each frame.

        Args:
            images: uint8 (T, H, W, 3) RGB frames.
            times: float (T,) seconds.
            top_k: Classes kept per frame (those under 0.01 are dropped).

        Returns:
            One ``TimedTags(t, t, tags)`` per frame, strongest tag first.
        """
        check_frames(images, times)
        _, probs = self.embed_and_classify(images)
        return [
            TimedTags(float(t), float(t), tags)
            for t, tags in zip(times, self.tags_of(probs, top_k), strict=True)
        ]

    def summarize(
        self, frame_tags: Sequence[TimedTags], spans: list[tuple[float, float]] | None = None
    ) -> tuple[tuple[Tag, ...], tuple[TimedTags, ...]]:
        """(video tags, segment tags) of :func:`summarize` with the default thresholds."""
        summary = summarize(frame_tags, spans)
        return summary.tags, summary.segment_tags

    def _tag(self, index: int, score: float) -> Tag:
        c = self.classes[index]
        return Tag(label=c.label, synset=c.synset, score=float(score), names=c.names)


@dataclass(frozen=True)
class TagSummary:
    """Tags aggregated over frames.

    Attributes:
        tags: Tags of the whole video, strongest first.
        segment_tags: Tags per span (in the order of the spans given).
        names: Common names of the whole video with their summed scores ("dog", 0.72),
            strongest first: what to say when breeds or models split the mass.
    """

    tags: tuple[Tag, ...]
    segment_tags: tuple[TimedTags, ...]
    names: tuple[tuple[str, float], ...]


def _mean_tags(frames: Sequence[TimedTags], threshold: float) -> tuple[Tag, ...]:
    # A class missing from a frame's top-k counts as 0 there: a slight underestimate.
    if not frames:
        return ()
    total: dict[str, float] = defaultdict(float)
    first: dict[str, Tag] = {}
    for frame in frames:
        for tag in frame.tags:
            total[tag.synset] += tag.score
            first.setdefault(tag.synset, tag)
    n = len(frames)
    tags = [
        Tag(first[s].label, s, round(v / n, 4), first[s].names)
        for s, v in total.items()
        if v / n >= threshold
    ]
    return tuple(sorted(tags, key=lambda t: (-t.score, t.label)))


def _in_span(frames: Iterable[TimedTags], start: float, end: float, last: bool) -> list[TimedTags]:
    # Half-open spans [start, end), except that the last one keeps a frame exactly at its end.
    return [f for f in frames if start <= f.start < end or (last and f.start == end)]


def names(
    frame_tags: Sequence[TimedTags], *, threshold: float = NAME_THRESHOLD
) -> list[tuple[str, float]]:
    """Common names over frames: per frame, the summed score of its tags with that name,
    averaged over all frames; those at ``threshold`` or more, strongest first.

    Each name is counted once per tag ("dog" and "animal" for a retriever). Only the tags kept
    per frame (top-k) contribute, so a score is a lower bound of the true mass.
    """
    if not frame_tags:
        return []
    total: dict[str, float] = defaultdict(float)
    for frame in frame_tags:
        for tag in frame.tags:
            for name in tag.names:
                total[name] += tag.score
    n = len(frame_tags)
    out = [(name, round(v / n, 4)) for name, v in total.items() if v / n >= threshold]
    return sorted(out, key=lambda x: (-x[1], x[0]))


def summarize(
    frame_tags: Sequence[TimedTags],
    spans: list[tuple[float, float]] | None = None,
    *,
    threshold: float = TAG_THRESHOLD,
    name_threshold: float = NAME_THRESHOLD,
) -> TagSummary:
    """Aggregate per-frame tags into per-segment and per-video tags.

    A segment's score for a class is its probability averaged over the segment's frames (a
    frame where it is not among the top-k counts 0); classes at ``threshold`` or more are its
    tags. A video's score for a class is its best segment score: an object filmed clearly in
    one segment belongs to the video even if it is gone in the others. Without spans the whole
    video is one segment (and ``segment_tags`` is empty). Names aggregate the same way, per
    segment, with ``name_threshold``.

    Args:
        frame_tags: Output of :meth:`Tagger.tag_frames` (any number of windows, joined).
        spans: (start, end) seconds of the caption's segments, or None.
        threshold: Least aggregated probability for a class tag.
        name_threshold: Least aggregated score for a common name.

    Returns:
        A :class:`TagSummary`.
    """
    frames = sorted(frame_tags, key=lambda f: f.start)
    if spans:
        groups = [_in_span(frames, s, e, i == len(spans) - 1) for i, (s, e) in enumerate(spans)]
    else:
        groups = [frames]
    segment_tags = tuple(
        TimedTags(float(s), float(e), _mean_tags(g, threshold))
        for (s, e), g in zip(spans or [], groups, strict=False)
    )
    best: dict[str, Tag] = {}
    best_name: dict[str, float] = {}
    for group in groups:
        for tag in _mean_tags(group, threshold):
            if tag.synset not in best or tag.score > best[tag.synset].score:
                best[tag.synset] = tag
        for name, score in names(group, threshold=name_threshold):
            best_name[name] = max(score, best_name.get(name, -math.inf))
    tags = tuple(sorted(best.values(), key=lambda t: (-t.score, t.label)))
    name_list = tuple(sorted(best_name.items(), key=lambda x: (-x[1], x[0])))
    return TagSummary(tags=tags, segment_tags=segment_tags, names=name_list)


def top_labels(tags: Iterable[Tag]) -> list[str]:
    """Labels and common names of tags, for matching against words ("eagle", "bird")."""
    words: list[str] = []
    for tag in tags:
        words.append(tag.label.lower())
        words.extend(tag.names)
    return words
