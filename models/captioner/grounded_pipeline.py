"""The grounded captioner on real files: experts' findings in, descriptions and answers out.

>>> pipe = GroundedPipeline.from_pretrained("models/checkpoints/grounded")
>>> found, _ = Perceiver().run("clip.mp4", segment_seconds=5.0)
>>> ctx = pipe.context(found, "clip.mp4")            # once per video; save with save_context
>>> pipe.describe(ctx)                                # the whole video
>>> pipe.describe_segments(ctx, 5.0)                  # [Segment(start, end, text), ...]
>>> pipe.answer(ctx, ["what animal is shown?"])       # [Answer(text, evidence), ...]

Memory stays bounded for long videos: audio is read a chunk at a time (only the log-mel of
one 1 s window per sampled frame is kept), the fusion encoder sees at most ``max_frames``
frames, and a question reads only the pieces it is about (retrieved with the text encoder)
when they do not all fit.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from models.captioner.answers import NO_ANSWER, Answer, Evidence
from models.captioner.claims import ClaimCheck
from models.captioner.grounding import (
    DESCRIBE,
    DESCRIBE_PART,
    LANGUAGE_NAMES,
    Packed,
    Piece,
    PieceCache,
    VideoContext,
    context_pieces,
    frame_arrays,
    pack,
    read_evidence,
    sentences,
)
from models.captioner.modeling_grounded import GroundedCaptionerModel
from models.captioner.pipeline import Segment, StageTimer
from models.device import default_device
from models.media import MediaInfo, MediaLimits, audio_windows, probe
from models.media.reader import iter_audio
from models.media.sampling import segment_spans
from models.perception.languages import spaceless_class
from models.perception.result import Perception

CONTEXT_VERSION = 1
CONTEXT_NAME = "context.npz"  # what the model reads about a video, cached beside it


# Language names as the uncased vocabulary writes them, to be capitalised outside quotes.
_LANGUAGE = re.compile(r"\b(" + "|".join(sorted(set(LANGUAGE_NAMES.values()))) + r")\b")


# The vocabulary splits Chinese and Japanese into characters: joined again after decoding.
_SPACELESS = re.compile(f"(?<=[{spaceless_class()}]) (?=[{spaceless_class()}])")


def tidy(text: str) -> str:
    """Word pieces decoded back to prose: no space before punctuation, inside quotes, in
    hyphenated words or between Chinese or Japanese characters; a name the decoder wrote twice
    in one list ("a dog and a dog") once; language names capitalised (the vocabulary is
    uncased; quotes stay as they were)."""
    text = re.sub(r"\s+([;,.:?!])", r"\1", text)
    text = re.sub(r'"\s*([^"]*?)\s*"', r'"\1"', text)
    text = re.sub(r"(\w) - (\w)", r"\1-\2", text)
    text = _SPACELESS.sub("", text)
    text = re.sub(r"\b((?:a|an) [\w ]+?) and \1\b", r"\1", text)
    parts = text.split('"')
    parts[::2] = [_LANGUAGE.sub(lambda m: m.group(1).capitalize(), part) for part in parts[::2]]
    return re.sub(r"\s+", " ", '"'.join(parts)).strip()


def is_grounded(model_dir: str | os.PathLike[str]) -> bool:
    """Whether a model directory holds a grounded captioner (by its config's model type)."""
    from models.captioner.configuration_grounded import GroundedCaptionerConfig

    config = Path(model_dir) / "config.json"
    if not config.is_file():
        return False
    return bool(
        json.loads(config.read_text()).get("model_type") == GroundedCaptionerConfig.model_type
    )


def _synset_index() -> dict[str, int]:
    from models.perception.tags import imagenet_classes

    return {c.synset: c.index for c in imagenet_classes()}


class GroundedPipeline:
    """A grounded captioner, ready to read videos.

    Args:
        model: The model (moved to ``device``, eval mode).
        device: Where to run (default: CUDA when present).
        batch_size: Questions or segments per forward pass.
    """

    def __init__(
        self,
        model: GroundedCaptionerModel,
        *,
        device: torch.device | str | None = None,
        batch_size: int = 16,
    ) -> None:
        self.device = torch.device(device) if device is not None else default_device()
        self.model = model.to(self.device).eval()  # type: ignore[arg-type]
        self.batch_size = batch_size
        self.cache = PieceCache(model.text_encoder)
        self.tokenizer = model.text_encoder.tokenizer
        phrasing = model.config.phrasing_words
        self.claims = ClaimCheck(phrasing) if phrasing is not None else None

    @classmethod
    def from_pretrained(
        cls, path: str | os.PathLike[str], *, device: torch.device | str | None = None, **kw: int
    ) -> GroundedPipeline:
        """Load a model directory (config.json + model.safetensors)."""
        if not os.path.isfile(os.path.join(path, "config.json")):
            raise FileNotFoundError(f"no grounded captioner at {os.fspath(path)!r}")
        model = GroundedCaptionerModel.from_pretrained(path, dtype=torch.float32)
        return cls(model, device=device, **kw)

    # ------------------------------------------------------------------ contexts

    def context(
        self,
        found: Perception,
        path: str | os.PathLike[str],
        *,
        info: MediaInfo | None = None,
        limits: MediaLimits | None = None,
        isolate: bool = True,
    ) -> VideoContext:
        """What the model reads about a video: the experts' findings and its soundtrack."""
        limits = limits or MediaLimits()
        info = info or probe(path, limits=limits, isolate=isolate)
        index = _synset_index()
        frames = [
            (
                0.5 * (f.start + f.end),
                [(index[t.synset], t.score) for t in f.tags if t.synset in index],
            )
            for f in found.frame_tags
        ] or [(min(0.5, found.duration_s / 2), [])]
        times, classes, scores = frame_arrays(frames)
        cfg = self.model.config
        mel = self.model.audio_backbone.mel
        mels = np.zeros(
            (len(times), cfg.n_mels, cfg.audio_window_samples // cfg.hop_length + 1), np.float16
        )
        heard = np.zeros(len(times), dtype=bool)
        if info.has_audio:
            for offset, audio in iter_audio(
                path, 300.0, sample_rate=cfg.sample_rate, limits=limits, isolate=isolate, info=info
            ):
                end = offset + len(audio) / cfg.sample_rate
                inside = np.nonzero((times >= offset) & (times < end))[0]
                if len(inside) == 0:
                    continue
                windows, got = audio_windows(
                    audio, cfg.sample_rate, times[inside] - offset, window_s=cfg.audio_window_s
                )
                with torch.inference_mode():
                    mels[inside] = mel(torch.from_numpy(windows)).numpy().astype(np.float16)
                heard[inside] = got
        pieces = context_pieces(
            found.duration_s,
            info.has_audio,
            [
                sentence
                for s in found.transcript.segments
                for sentence in sentences(
                    s.start, s.end, s.text, s.language, [(w.start, w.end, w.text) for w in s.words]
                )
            ],
            [(x.start, x.end, x.text) for x in found.text],
            (times, classes, scores),
        )
        return VideoContext(
            found.duration_s, info.has_audio, times, classes, scores, mels, heard, pieces
        )

    @staticmethod
    def save_context(ctx: VideoContext, path: str | os.PathLike[str]) -> None:
        """Write a context (npz), atomically."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(
            tmp,
            version=CONTEXT_VERSION,
            duration=ctx.duration,
            has_audio=ctx.has_audio,
            frame_times=ctx.frame_times,
            frame_classes=ctx.frame_classes,
            frame_scores=ctx.frame_scores,
            audio_mels=ctx.audio_mels,
            audio_heard=ctx.audio_heard,
            pieces=json.dumps([asdict(p) for p in ctx.pieces]),
        )
        os.replace(tmp, path)

    @staticmethod
    def load_context(path: str | os.PathLike[str]) -> VideoContext:
        """Read a context written by :meth:`save_context`."""
        with np.load(path) as z:
            if int(z["version"]) != CONTEXT_VERSION:
                raise ValueError(f"context version {int(z['version'])}, expected {CONTEXT_VERSION}")
            return VideoContext(
                duration=float(z["duration"]),
                has_audio=bool(z["has_audio"]),
                frame_times=z["frame_times"],
                frame_classes=z["frame_classes"],
                frame_scores=z["frame_scores"],
                audio_mels=z["audio_mels"],
                audio_heard=z["audio_heard"],
                pieces=[Piece(**p) for p in json.loads(str(z["pieces"]))],
            )

    # ------------------------------------------------------------------ text

    @torch.inference_mode()
    def _run(
        self,
        contexts: Sequence[VideoContext],
        prompts: Sequence[str],
        timer: StageTimer | None = None,
    ) -> list[tuple[str, Packed, int, torch.Tensor, torch.Tensor]]:
        cfg = self.model.config
        timer = timer or StageTimer()
        out = []
        for i in range(0, len(prompts), self.batch_size):
            with timer.stage("fusion"):
                packed = pack(
                    contexts[i : i + self.batch_size],
                    prompts[i : i + self.batch_size],
                    self.cache,
                    max_frames=cfg.max_frames,
                    max_question_tokens=cfg.max_question_tokens,
                    max_context_tokens=cfg.max_context_tokens,
                    device=self.device,
                )
                encoded = self.model.encode(**packed.inputs)
            with timer.stage("generate"):
                ids, states = self.model.greedy(encoded)
            texts = self.tokenizer.batch_decode(ids, skip_special_tokens=True)
            answer = ids.ne(cfg.decoder_config.pad_token_id) & ids.ne(
                cfg.decoder_config.eos_token_id
            )
            units = max(len(u) for u in packed.units)
            scores = self.model.evidence_scores(encoded, states, answer, units)
            for row, text in enumerate(texts):
                out.append((tidy(text), packed, row, scores, encoded.audio_logits))
        return out

    def generate(
        self,
        items: Sequence[tuple[VideoContext, str]],
        *,
        timer: StageTimer | None = None,
    ) -> list[Answer]:
        """What the model writes for each (context, prompt), in one batched pass per
        ``batch_size``: the contexts may be of different videos (a worker batches the calls
        of several jobs into one; :mod:`workers.batcher`). A prompt is a question (its answer
        comes with the moments it rests on, or is "the video does not say") or one of the
        description prompts (``DESCRIBE``, ``DESCRIBE_PART``: text only).
        """
        if any(not prompt.strip() for _, prompt in items):
            raise ValueError("a question must not be empty")
        results = []
        read: dict[int, list[list[Evidence]]] = {}  # per batch: evidence is read once
        done = self._run([c for c, _ in items], [p for _, p in items], timer)
        for (ctx, prompt), (text, packed, row, scores, audio_logits) in zip(
            items, done, strict=True
        ):
            if prompt in (DESCRIBE, DESCRIBE_PART):
                results.append(Answer(self.claims.description(text, ctx.pieces)
                                      if self.claims else text))  # fmt: skip
                continue
            if self.claims:
                text = self.claims.answer(text, ctx.pieces)
            if text.lower().rstrip(".") == NO_ANSWER:
                results.append(Answer(NO_ANSWER))
                continue
            if id(packed) not in read:
                read[id(packed)] = read_evidence(packed, scores, audio_logits)
            results.append(Answer(text, tuple(read[id(packed)][row])))
        return results

    def describe(self, ctx: VideoContext, *, timer: StageTimer | None = None) -> str:
        """A description of the whole video."""
        return self.generate([(ctx, DESCRIBE)], timer=timer)[0].text

    def segment_items(
        self, ctx: VideoContext, segment_seconds: float
    ) -> tuple[list[tuple[float, float]], list[tuple[VideoContext, str]]]:
        """The spans of ``segment_seconds`` and the (window, prompt) items describing them."""
        spans = segment_spans(max(ctx.duration, 1e-3), segment_seconds)
        return spans, [(ctx.window(s, e), DESCRIBE_PART) for s, e in spans]

    def describe_segments(
        self, ctx: VideoContext, segment_seconds: float, *, timer: StageTimer | None = None
    ) -> list[Segment]:
        """One description per ``segment_seconds`` stretch, in order."""
        spans, items = self.segment_items(ctx, segment_seconds)
        done = self.generate(items, timer=timer)
        return [Segment(s, e, a.text) for (s, e), a in zip(spans, done, strict=True)]

    def answer(
        self, ctx: VideoContext, questions: Sequence[str], *, timer: StageTimer | None = None
    ) -> list[Answer]:
        """Answers with the moments they rest on; "the video does not say" when it does not."""
        return self.generate([(ctx, q) for q in questions], timer=timer)
