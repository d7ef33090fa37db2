"""A synthetic audio-visual world: real clips with exact ground truth, made from a seed.

A clip is a timeline of 2 or 3 segments of ``SEGMENT_S`` seconds. In each segment one object
(a shape with a colour) moves one way, and one sound plays in a pattern; every clip shows
distinct shapes, colours and sounds, so every question about it has one answer. Clips are
written as H.264 + AAC mp4 files with PyAV; their ground truth goes into a JSONL manifest.

Manifest: ``ROOT/{split}.jsonl``, one clip per line::

    {"id": "test-000007", "video": "videos/test/test-000007.mp4", "split": "test",
     "duration_s": 4.0,
     "caption": "a red circle moves left while a low tone sounds twice, then ...",
     "captions": ["<the caption in every paraphrase template>", ...],
     "segments": [{"start": 0.0, "end": 2.0, "caption": "a red circle moves left while ...",
                   "shape": "circle", "colour": "red", "motion": "left",
                   "sound": "low tone", "pattern": "twice"}, ...],
     "questions": [{"question": "what colour is the circle?", "answer": "red",
                    "kind": "visual"}, ...]}

Question kinds: ``visual``, ``audio``, ``cross_modal``, ``temporal``. Splits ``train``,
``val`` and ``test`` never show a held-out combination (``HELD_OUT_LOOKS``: colour x shape;
``HELD_OUT_EVENTS``: motion x sound); every clip of ``compositional`` shows at least one.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, cast

import av
import numpy as np

SHAPES = ("circle", "square", "triangle", "star", "cross")
COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 190, 60),
    "blue": (50, 90, 235),
    "yellow": (235, 215, 40),
    "purple": (150, 60, 200),
    "orange": (245, 140, 30),
}
MOTIONS = ("left", "right", "up", "down", "still")
SOUNDS = ("low tone", "high tone", "rising chirp", "falling chirp", "drum", "silence")
PATTERNS = ("once", "twice", "three times", "continuously")
KINDS = ("visual", "audio", "cross_modal", "temporal")
SPLITS = ("train", "val", "test", "compositional")

HELD_OUT_LOOKS = frozenset(
    {("red", "star"), ("green", "circle"), ("blue", "triangle"), ("yellow", "square"),
     ("purple", "cross"), ("orange", "circle")}
)  # fmt: skip
HELD_OUT_EVENTS = frozenset(
    {("left", "drum"), ("up", "rising chirp"), ("still", "high tone"), ("down", "falling chirp")}
)

SEGMENT_S = 2.0
FPS = 10
WIDTH, HEIGHT = 128, 96
SAMPLE_RATE = 16_000
BACKGROUND = (24, 24, 24)
RADIUS = 14  # pixels
BURST_S = 0.3
# Where the bursts of each pattern start within a segment: one per quarter of the segment at
# most, so a model that samples 2 frames per second hears each burst in its own window.
BURST_STARTS = {"once": (0.6,), "twice": (0.1, 1.1), "three times": (0.1, 0.6, 1.6)}


@dataclass(frozen=True)
class Segment:
    """One stretch of a clip: what is seen and what is heard."""

    shape: str
    colour: str
    motion: str
    sound: str
    pattern: str  # "" for silence

    @property
    def look(self) -> tuple[str, str]:
        """(colour, shape)."""
        return (self.colour, self.shape)

    @property
    def event(self) -> tuple[str, str]:
        """(motion, sound)."""
        return (self.motion, self.sound)

    def visual_phrase(self) -> str:
        """'a red circle moves left' or 'a red circle stays still'."""
        move = "stays still" if self.motion == "still" else f"moves {self.motion}"
        return f"a {self.colour} {self.shape} {move}"

    def audio_phrase(self) -> str:
        """'while a low tone sounds twice', 'while a drum plays', or 'in silence'."""
        if self.sound == "silence":
            return "in silence"
        if self.pattern == "continuously":
            return f"while a {self.sound} plays"
        return f"while a {self.sound} sounds {self.pattern}"

    def caption(self) -> str:
        """The segment's caption."""
        return f"{self.visual_phrase()} {self.audio_phrase()}"


# Paraphrase templates for the whole clip, joining the segment captions.
def _templates(parts: list[str]) -> list[str]:
    return [
        ", then ".join(parts),
        "first " + ", then ".join(parts),
        "; after that, ".join(parts),
    ]


def clip_captions(segments: list[Segment]) -> list[str]:
    """The whole clip's caption in every template (the first is the canonical one)."""
    return _templates([s.caption() for s in segments])


def questions(segments: list[Segment], rng: random.Random) -> list[dict[str, str]]:
    """Every question the clip answers, with its answer and kind."""
    qs: list[dict[str, str]] = []

    def ask(kind: str, question: str, answer: str) -> None:
        qs.append({"question": question, "answer": answer, "kind": kind})

    heard = [s for s in segments if s.sound != "silence"]
    for s in segments:
        ask("visual", f"what colour is the {s.shape}?", s.colour)
        ask("visual", f"what shape is the {s.colour} object?", s.shape)
        ask("visual", f"which way does the {s.colour} {s.shape} move?", s.motion)
        ask("cross_modal", f"what sound plays while the {s.colour} {s.shape} is shown?", s.sound)
    for s in heard:
        ask("audio", f"how many times does the {s.sound} sound?", s.pattern)
        ask("cross_modal", f"what shape is shown while the {s.sound} plays?", s.shape)
        ask("cross_modal", f"what colour is the shape during the {s.sound}?", s.colour)
    present = {s.sound for s in heard}
    absent = [x for x in SOUNDS if x != "silence" and x not in present]
    for sound in [*sorted(present), rng.choice(absent)]:
        ask("audio", f"is there a {sound}?", "yes" if sound in present else "no")
    for before, after in itertools.pairwise(segments):
        ask("temporal", f"what shape comes after the {before.colour} {before.shape}?", after.shape)
        if before.sound != "silence":
            ask("temporal", f"what sound comes after the {before.sound}?", after.sound)
            ask("temporal", f"what happens after the {before.sound}?", after.visual_phrase())
    ask("temporal", "what shape comes first?", segments[0].shape)
    ask("temporal", "what is the last sound?", segments[-1].sound)
    return qs


# ---------------------------------------------------------------------- sampling clips


def _segment(rng: random.Random, used: dict[str, set[str]], held_out: bool) -> Segment | None:
    shape = rng.choice([s for s in SHAPES if s not in used["shape"]])
    colour = rng.choice([c for c in COLOURS if c not in used["colour"]])
    motion = rng.choice(MOTIONS)
    sounds = [s for s in SOUNDS if s not in used["sound"] or s == "silence"]
    sound = rng.choice(sounds)
    pattern = "" if sound == "silence" else rng.choice(PATTERNS)
    seg = Segment(shape, colour, motion, sound, pattern)
    is_held = seg.look in HELD_OUT_LOOKS or seg.event in HELD_OUT_EVENTS
    return seg if is_held == held_out else None


def sample_segments(rng: random.Random, compositional: bool) -> list[Segment]:
    """2 or 3 segments with distinct shapes, colours and sounds.

    Without ``compositional`` no segment shows a held-out combination; with it, at least one
    does (and the others may too).
    """
    count = rng.choice((2, 3))
    while True:
        used: dict[str, set[str]] = {"shape": set(), "colour": set(), "sound": set()}
        segments: list[Segment] = []
        held_at = rng.randrange(count) if compositional else -1
        while len(segments) < count:
            i = len(segments)
            held = i == held_at or (compositional and rng.random() < 0.3)
            seg = _segment(rng, used, held_out=held)
            if seg is None:
                continue
            segments.append(seg)
            used["shape"].add(seg.shape)
            used["colour"].add(seg.colour)
            used["sound"].add(seg.sound)
        if sum(s.sound == "silence" for s in segments) <= 1:
            return segments


# ---------------------------------------------------------------------- rendering


def _mask(shape: str, xs: np.ndarray, ys: np.ndarray, r: float) -> np.ndarray:
    ax, ay = np.abs(xs), np.abs(ys)
    if shape == "circle":
        return xs**2 + ys**2 <= r**2
    if shape == "square":
        return (ax <= 0.85 * r) & (ay <= 0.85 * r)
    if shape == "triangle":  # pointing up
        return (ys <= 0.8 * r) & (ys >= -r + 1.8 * ax)
    if shape == "cross":
        return ((ax <= r / 3) & (ay <= r)) | ((ay <= r / 3) & (ax <= r))
    # star: radius swings between inner and outer with five points
    angle = np.arctan2(ys, xs) + np.pi / 2
    edge = r * (0.45 + 0.55 * np.abs(np.cos(2.5 * angle)) ** 3)
    return np.hypot(xs, ys) <= edge


def _path(motion: str, rng: random.Random) -> tuple[np.ndarray, np.ndarray]:
    """Start and end centre (x, y) in pixels for one segment."""
    margin = RADIUS + 4
    jitter = lambda span: rng.uniform(-span, span)  # noqa: E731
    cx, cy = WIDTH / 2 + jitter(10), HEIGHT / 2 + jitter(8)
    lo_x, hi_x = margin + jitter(4) + 4, WIDTH - margin + jitter(4) - 4
    lo_y, hi_y = margin + jitter(3) + 2, HEIGHT - margin + jitter(3) - 2
    start, end = {
        "left": ((hi_x, cy), (lo_x, cy)),
        "right": ((lo_x, cy), (hi_x, cy)),
        "up": ((cx, hi_y), (cx, lo_y)),
        "down": ((cx, lo_y), (cx, hi_y)),
        "still": ((cx, cy), (cx, cy)),
    }[motion]
    return np.array(start), np.array(end)


def render_frames(segments: list[Segment], rng: random.Random) -> np.ndarray:
    """uint8 (frames, HEIGHT, WIDTH, 3) pictures of the clip."""
    per_segment = round(SEGMENT_S * FPS)
    frames = np.empty((per_segment * len(segments), HEIGHT, WIDTH, 3), dtype=np.uint8)
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    for k, seg in enumerate(segments):
        start, end = _path(seg.motion, rng)
        for i in range(per_segment):
            cx, cy = start + (end - start) * (i + 0.5) / per_segment
            picture = np.empty((HEIGHT, WIDTH, 3), dtype=np.uint8)
            picture[:] = BACKGROUND
            picture[_mask(seg.shape, xs - cx, ys - cy, RADIUS)] = COLOURS[seg.colour]
            frames[k * per_segment + i] = picture
    return frames


def _sound(kind: str, seconds: float, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    if kind == "drum":
        return rng.standard_normal(len(t)) * np.exp(-t / 0.05) * 0.8
    lo, hi = {
        "low tone": (300.0, 300.0),
        "high tone": (1500.0, 1500.0),
        "rising chirp": (400.0, 1800.0),
        "falling chirp": (1800.0, 400.0),
    }[kind]
    freq = lo + (hi - lo) * t / max(seconds, 1e-9)
    phase = 2 * np.pi * np.cumsum(freq) / SAMPLE_RATE
    fade = np.minimum(1.0, np.minimum(t, seconds - t) / 0.01)
    return 0.4 * np.sin(phase) * fade


def render_audio(segments: list[Segment], seed: int) -> np.ndarray:
    """float32 mono audio of the clip at SAMPLE_RATE."""
    rng = np.random.default_rng(seed)
    per_segment = round(SEGMENT_S * SAMPLE_RATE)
    audio = np.zeros(per_segment * len(segments), dtype=np.float32)
    for k, seg in enumerate(segments):
        base = k * per_segment
        if seg.sound == "silence":
            continue
        if seg.pattern == "continuously":
            if seg.sound == "drum":  # a drum roll: a hit every 0.25 s
                for j in range(8):
                    hit = _sound("drum", 0.25, rng)
                    at = base + round(j * 0.25 * SAMPLE_RATE)
                    audio[at : at + len(hit)] += hit
            else:
                audio[base : base + per_segment] += _sound(seg.sound, SEGMENT_S, rng)
            continue
        for start in BURST_STARTS[seg.pattern]:
            burst = _sound(seg.sound, BURST_S, rng)
            at = base + round(start * SAMPLE_RATE)
            audio[at : at + len(burst)] += burst
    return np.clip(audio, -1.0, 1.0)


def write_clip(path: Path, frames: np.ndarray, audio: np.ndarray) -> None:
    """Encode frames and audio as an H.264 + AAC mp4 (written atomically)."""
    partial = path.with_name(path.name + ".partial")
    with av.open(str(partial), "w", format="mp4") as container:
        video = cast(av.video.stream.VideoStream, container.add_stream("libx264", rate=FPS))
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        video.options = {"preset": "veryfast", "crf": "18", "g": str(FPS)}
        sound = cast(av.audio.stream.AudioStream, container.add_stream("aac", rate=SAMPLE_RATE))
        sound.layout = "mono"
        for i, picture in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, FPS)
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        block = av.AudioFrame.from_ndarray(audio[None, :], format="flt", layout="mono")
        block.sample_rate, block.pts, block.time_base = SAMPLE_RATE, 0, Fraction(1, SAMPLE_RATE)
        container.mux(sound.encode(block))
        container.mux(sound.encode(None))
    os.replace(partial, path)


# ---------------------------------------------------------------------- clips and splits


def _seed(*parts: object) -> int:
    text = "/".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "big")


def make_clip(split: str, index: int, seed: int) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """Ground truth, frames and audio of clip ``index`` of ``split`` (same seed, same clip)."""
    rng = random.Random(_seed(seed, split, index))
    segments = sample_segments(rng, compositional=split == "compositional")
    frames = render_frames(segments, rng)
    audio = render_audio(segments, _seed(seed, split, index, "audio"))
    clip_id = f"{split}-{index:06d}"
    record = {
        "id": clip_id,
        "video": f"videos/{split}/{clip_id}.mp4",
        "split": split,
        "duration_s": SEGMENT_S * len(segments),
        "caption": clip_captions(segments)[0],
        "captions": clip_captions(segments),
        "segments": [
            {
                "start": k * SEGMENT_S,
                "end": (k + 1) * SEGMENT_S,
                "caption": seg.caption(),
                **asdict(seg),
            }
            for k, seg in enumerate(segments)
        ],
        "questions": questions(segments, rng),
    }
    return record, frames, audio


def generate(
    root: str | os.PathLike[str], counts: dict[str, int], seed: int, *, progress: bool = True
) -> dict[str, Path]:
    """Write the clips and a manifest per split; returns the manifest paths.

    Deterministic: the same counts and seed give the same manifests and pictures. Clips that
    already exist are kept (an interrupted run continues where it stopped).
    """
    from tqdm import tqdm

    root = Path(root)
    written: dict[str, Path] = {}
    for split, count in counts.items():
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; splits are {SPLITS}")
        (root / "videos" / split).mkdir(parents=True, exist_ok=True)
        records = []
        for index in tqdm(range(count), desc=f"{split:>13}", unit="clip", disable=not progress):
            record, frames, audio = make_clip(split, index, seed)
            path = root / record["video"]
            if not path.is_file():
                write_clip(path, frames, audio)
            records.append(record)
        manifest = root / f"{split}.jsonl"
        partial = manifest.with_name(manifest.name + ".partial")
        partial.write_text("".join(json.dumps(r) + "\n" for r in records))
        os.replace(partial, manifest)
        written[split] = manifest
    return written


def corpus(records: list[dict[str, Any]]) -> Iterator[str]:
    """Every text of a manifest: captions, segment captions, questions and answers."""
    for r in records:
        yield from r["captions"]
        for s in r["segments"]:
            yield s["caption"]
        for q in r["questions"]:
            yield q["question"]
            yield q["answer"]


def vocabulary_words() -> list[str]:
    """The world's words: the names of every shape, colour, motion, sound and pattern."""
    names = [*SHAPES, *COLOURS, *MOTIONS, *SOUNDS, *PATTERNS]
    return sorted({w for name in names for w in name.split()})
