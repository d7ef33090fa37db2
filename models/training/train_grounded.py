"""Training the grounded captioner on the everyday world.

    python -m models.training.train_grounded --data data/everyday --out runs/grounded \
        --time-limit-min 60 [--scratch] [--resume]

What trains and what is frozen (measured on the 2-core CPU; see the model card):

- frozen: the text encoder (all-MiniLM-L6-v2) and its word embeddings, which the decoder
  reads and writes with; its states of every transcript segment, text item, tag stretch and
  question are computed once per run and kept (half precision) in memory;
- trained: the audio CNN, the two VideoBERT streams and gated fusion, BART's joint encoder
  layers and decoder (warm-started from the text encoder's layers unless ``--scratch``),
  cross-attention, the copy pointer, the evidence scorer and the audio stream's sound head.

Objectives: the answer or description tokens (with copying), the evidence units each answer
rests on, the sound class of each frame (the world's ground truth, an auxiliary head) and, for
a model with a span head, the first and last piece of each target quote in the inputs.
A run directory holds ``metrics.jsonl``, ``checkpoint/`` (model + ``trainer_state.pt``) and,
at the end, ``final/``; ``--resume`` continues from ``checkpoint/``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from models.captioner.claims import phrasing_words
from models.captioner.configuration_grounded import AUDIO_CLASSES, GroundedCaptionerConfig
from models.captioner.grounding import (
    DESCRIBE,
    DESCRIBE_PART,
    PieceCache,
    VideoContext,
    context_pieces,
    evidence_targets,
    frame_arrays,
    mels_at,
    pack,
)
from models.captioner.modeling_grounded import GroundedCaptionerModel, build_grounded

SAMPLE_RATE = 16_000


@dataclass
class Example:
    """One training target: a question (or a description prompt) about a clip."""

    clip: int
    question: str
    answer: str
    kind: str
    evidence: list[dict[str, Any]]
    span: tuple[float, float] | None = None  # a segment description reads only this stretch


def record_context(record: dict[str, Any], audio: np.ndarray | None, mel: Any) -> VideoContext:
    """An everyday-world record as the model would see a real video with the same findings."""
    duration = float(record["duration_s"])
    frames = [
        (f["time"], [(t["index"], t["score"]) for t in f["tags"]]) for f in record["frame_tags"]
    ]
    times, classes, scores = frame_arrays(frames)
    mels, heard = mels_at(audio if record["has_audio"] else None, SAMPLE_RATE, times, 1.0, mel)
    pieces = context_pieces(
        duration,
        bool(record["has_audio"]),
        [
            (s["start"], s["end"], s["text"], s["language"])
            for s in record["transcript"]["segments"]
        ],
        [(x["start"], x["end"], x["text"]) for x in record["text"]],
        (times, classes, scores),
    )
    return VideoContext(
        duration, bool(record["has_audio"]), times, classes, scores, mels, heard, pieces
    )


def audio_targets(record: dict[str, Any], times: np.ndarray) -> np.ndarray:
    """The sound class at each frame time, from the world's ground truth."""
    out = np.zeros(len(times), dtype=np.int64)
    if not record["has_audio"]:
        return out  # "none"
    for i, t in enumerate(times):
        kind = "silence"
        for s in record.get("sounds", []):
            if s["start"] <= t < s["end"]:
                kind = s["kind"]
        if any(s["start"] <= t < s["end"] for s in record["speech"]):
            kind = "speech"
        out[i] = (
            AUDIO_CLASSES.index(kind) if kind in AUDIO_CLASSES else AUDIO_CLASSES.index("noise")
        )
    return out


def examples_of(index: int, record: dict[str, Any]) -> list[Example]:
    """The description, the segment descriptions and the questions of one clip."""
    out = [Example(index, DESCRIBE, record["caption"], "describe", [])]
    for seg in record["segments"]:
        out.append(
            Example(index, DESCRIBE_PART, seg["caption"], "segment", [], (seg["start"], seg["end"]))
        )
    for q in record["questions"]:
        out.append(Example(index, q["question"], q["answer"], q["kind"], q.get("evidence", [])))
    return out


def read_split(data: Path, split: str, limit: int | None = None) -> list[dict[str, Any]]:
    """The records of one split (``DATA/{split}.jsonl``)."""
    path = data / f"{split}.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return records[:limit] if limit else records


def load_audio(data: Path, record: dict[str, Any]) -> np.ndarray | None:
    """A clip's audio (None without a track)."""
    if not record["has_audio"]:
        return None
    return np.load(data / record["split"] / f"{record['id']}.npy").astype(np.float32)


def writable_ids(data: Path, config: GroundedCaptionerConfig) -> list[int]:
    """The word pieces of every training target (answers and descriptions) and the special
    ones: what the decoder writes itself. Names, numbers and quotes beyond these it can only
    copy from its inputs."""
    from transformers import AutoTokenizer

    from models.captioner.modeling_grounded import text_encoder_dir

    tokenizer = AutoTokenizer.from_pretrained(text_encoder_dir(config.text_encoder))
    ids = set(tokenizer.all_special_ids)
    for row in tokenizer(target_texts(data), add_special_tokens=False)["input_ids"]:
        ids.update(row)
    return sorted(ids)


def target_texts(data: Path, split: str = "train") -> list[str]:
    """What the model is taught to write: every description, segment description and answer."""
    texts: list[str] = []
    for record in read_split(data, split):
        texts += [record["caption"], *(s["caption"] for s in record["segments"])]
        texts += [q["answer"] for q in record["questions"]]
    return texts


def target_phrasing(data: Path, split: str = "train") -> set[str]:
    """The words the training targets use outside quotes (``models/captioner/claims.py``)."""
    return phrasing_words(target_texts(data, split))


def normalise(text: str) -> str:
    """Lower case, no punctuation or articles: for the validation accuracy."""
    text = re.sub(r"[^\w\s]", " ", text.lower())
    return " ".join(w for w in text.split() if w not in {"a", "an", "the"})


class GroundedTrainer:
    """One training run (resumable)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(args.seed)
        random.seed(args.seed)
        self.rng = random.Random(args.seed)
        config = GroundedCaptionerConfig(**json.loads(args.model_config or "{}"))
        resume = self.out / "checkpoint"
        data = Path(args.data)
        if args.resume and (resume / "config.json").is_file():
            self.model = GroundedCaptionerModel.from_pretrained(resume, dtype=torch.float32)
        elif args.init:  # go on from a finished model (its vocabulary too), new optimizer
            overrides = json.loads(args.model_config or "{}")  # e.g. {"quote_spans": true}
            found: Any = GroundedCaptionerModel.from_pretrained(
                args.init, dtype=torch.float32, output_loading_info=True, **overrides
            )  # the model, and what loading found missing
            self.model = found[0]
            if any(k.startswith("span_") for k in found[1]["missing_keys"]):  # a new span head
                self.model.start_spans_from_pointer()
            config = self.model.config  # type: ignore[assignment]  # a GroundedCaptionerConfig
        else:
            self.model = build_grounded(
                config, warm=not args.scratch, output_ids=writable_ids(data, config)
            )
        if not (args.resume and (resume / "config.json").is_file()):
            # what it may write outside quotes: its earlier phrasing and this data's
            known = set(self.model.config.phrasing_words or ())
            self.model.config.phrasing_words = sorted(known | target_phrasing(data))
        self.model.train()
        self.encoder = self.model.text_encoder
        self.cache = PieceCache(self.encoder)
        mel = self.model.audio_backbone.mel
        self.contexts: dict[str, list[VideoContext]] = {}
        self.records: dict[str, list[dict[str, Any]]] = {}
        self.examples: dict[str, list[Example]] = {}
        self.sound: dict[str, list[np.ndarray]] = {}
        for split, limit in (("train", args.train_clips), ("val", args.val_clips)):
            records = read_split(data, split, limit)
            ctxs, sounds, examples = [], [], []
            for i, r in enumerate(tqdm(records, desc=f"read {split}", unit="clip")):
                ctx = record_context(r, load_audio(data, r), mel)
                ctxs.append(ctx)
                sounds.append(audio_targets(r, ctx.frame_times))
                examples += examples_of(i, r)
            self.records[split], self.contexts[split] = records, ctxs
            self.examples[split], self.sound[split] = examples, sounds
        texts = {p.text for ctxs in self.contexts.values() for c in ctxs for p in c.pieces}
        texts |= {e.question for exs in self.examples.values() for e in exs}
        # The frozen encoder's states are the same for every run on this data: kept on disk.
        stored = data / "text_states.pt"
        if stored.is_file():
            saved_states = torch.load(stored, weights_only=True)
            if saved_states.get("encoder") == config.text_encoder:
                self.cache.states.update(
                    {k: (ids.tolist(), v) for k, (ids, v) in saved_states["states"].items()}
                )
        todo = sorted(texts - self.cache.states.keys())
        for chunk in tqdm(range(0, len(todo), 512), desc="encode text", unit="batch"):
            self.cache.get(todo[chunk : chunk + 512])
        if todo:
            torch.save(
                {
                    "encoder": config.text_encoder,
                    "states": {k: (torch.tensor(i), v) for k, (i, v) in self.cache.states.items()},
                },
                stored,
            )
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(trainable, lr=args.lr, weight_decay=0.01)
        self.step = 0
        self.elapsed = 0.0
        state = resume / "trainer_state.pt"
        if args.resume and state.is_file():
            saved = torch.load(state, weights_only=False)
            self.optimizer.load_state_dict(saved["optimizer"])
            self.step, self.elapsed = saved["step"], saved["elapsed"]
            self.rng.setstate(saved["rng"])

    def batch(self, split: str, examples: list[Example]) -> tuple[dict[str, Any], list[Example]]:
        """Pack examples with their targets."""
        cfg = self.model.config
        contexts = []
        for e in examples:
            ctx = self.contexts[split][e.clip]
            contexts.append(ctx.window(*e.span) if e.span else ctx)
        packed = pack(
            contexts,
            [e.question for e in examples],
            self.cache,
            max_frames=cfg.max_frames,
            max_question_tokens=cfg.max_question_tokens,
            max_context_tokens=cfg.max_context_tokens,
        )
        tok = self.encoder.tokenizer
        labels = tok(
            [e.answer for e in examples], truncation=True, max_length=cfg.max_new_tokens,
            padding=True, return_tensors="pt",
        )["input_ids"][:, 1:]  # fmt: skip  # drop [CLS] (the decoder's start); keep [SEP]
        labels = labels.masked_fill(labels.eq(tok.pad_token_id), -100)
        t = packed.inputs["frame_times"].shape[1]
        sound = torch.full((len(examples), t), -100, dtype=torch.long)
        for i, (e, ctx) in enumerate(zip(examples, contexts, strict=True)):
            full = self.contexts[split][e.clip]
            idx = np.searchsorted(full.frame_times, ctx.subsample(cfg.max_frames).frame_times)
            k = len(idx)
            sound[i, :k] = torch.from_numpy(
                self.sound[split][e.clip][np.minimum(idx, len(full.frame_times) - 1)]
            )
        inputs: dict[str, Any] = dict(packed.inputs)
        inputs["labels"] = labels
        inputs["evidence"] = evidence_targets(packed, [e.evidence for e in examples])
        inputs["audio_classes"] = sound
        inputs["_packed"] = packed
        return inputs, examples

    def lr_at(self) -> float:
        """Linear warm-up, then cosine decay over the time budget."""
        a = self.args
        if self.step < a.warmup_steps:
            return a.lr * (self.step + 1) / a.warmup_steps
        done = min(1.0, self.elapsed / (a.time_limit_min * 60))
        return a.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * done)))

    def save(self, where: Path) -> None:
        """Model + trainer state, atomically enough for a resume."""
        tmp = where.with_name(where.name + ".tmp")
        self.model.save_pretrained(tmp)
        self.encoder.tokenizer.save_pretrained(tmp)
        torch.save(
            {"optimizer": self.optimizer.state_dict(), "step": self.step, "elapsed": self.elapsed,
             "rng": self.rng.getstate(), "args": vars(self.args)},
            tmp / "trainer_state.pt",
        )  # fmt: skip
        if where.exists():
            for f in where.iterdir():
                f.unlink()
            where.rmdir()
        os.replace(tmp, where)

    def log(self, entry: dict[str, Any]) -> None:
        with open(self.out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(entry) + "\n")

    @torch.no_grad()
    def validate(self, count: int = 200) -> dict[str, Any]:
        """Greedy answers on validation questions: normalised accuracy per kind."""
        self.model.eval()
        examples = self.examples["val"][:]
        random.Random(0).shuffle(examples)
        examples = examples[:count]
        right: dict[str, list[int]] = defaultdict(list)
        samples: list[dict[str, str]] = []
        for i in range(0, len(examples), 32):
            inputs, chunk = self.batch("val", examples[i : i + 32])
            packed = inputs.pop("_packed")
            encoded = self.model.encode(**packed.inputs)
            ids, _ = self.model.greedy(encoded)
            texts = self.encoder.tokenizer.batch_decode(ids, skip_special_tokens=True)
            for e, text in zip(chunk, texts, strict=True):
                ok = normalise(text) == normalise(e.answer)
                if e.kind in ("describe", "segment"):
                    ok = len(
                        set(normalise(text).split()) & set(normalise(e.answer).split())
                    ) >= 0.6 * len(set(normalise(e.answer).split()))
                right[e.kind].append(int(ok))
                if len(samples) < 12:
                    samples.append({"q": e.question, "want": e.answer, "got": text})
        self.model.train()
        report = {k: round(sum(v) / len(v), 3) for k, v in sorted(right.items())}
        report["all"] = round(sum(sum(v) for v in right.values()) / max(1, len(examples)), 3)
        return {"accuracy": report, "samples": samples}

    def run(self) -> Path:
        a = self.args
        train = self.examples["train"]
        limit_s = a.time_limit_min * 60
        bar = tqdm(total=a.steps, initial=self.step, desc="train", unit="step")
        began = time.perf_counter() - self.elapsed
        running: dict[str, float] = defaultdict(float)
        while self.step < a.steps and self.elapsed < limit_s:
            chunk = [train[self.rng.randrange(len(train))] for _ in range(a.batch_size)]
            inputs, _ = self.batch("train", chunk)
            inputs.pop("_packed")
            for group in self.optimizer.param_groups:
                group["lr"] = self.lr_at()
            out = self.model(**inputs)
            assert out.loss is not None and out.losses is not None
            self.optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            self.optimizer.step()
            self.step += 1
            self.elapsed = time.perf_counter() - began
            for k, v in out.losses.items():
                running[k] += float(v.detach())
            bar.update(1)
            bar.set_postfix(loss=f"{float(out.loss):.3f}")
            if self.step % a.log_every == 0:
                entry = {"step": self.step, "elapsed_s": round(self.elapsed, 1), "lr": self.lr_at()}
                entry.update({k: round(v / a.log_every, 4) for k, v in running.items()})
                running.clear()
                self.log(entry)
            if self.step % a.eval_every == 0:
                self.log({"step": self.step, "val": self.validate()})
            if self.step % a.save_every == 0:
                self.save(self.out / "checkpoint")
        bar.close()
        self.save(self.out / "checkpoint")
        self.log(
            {
                "step": self.step,
                "elapsed_s": round(self.elapsed, 1),
                "final_val": self.validate(400),
            }
        )
        final = self.out / "final"
        self.model.save_pretrained(final)
        self.encoder.tokenizer.save_pretrained(final)
        return final


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="data/everyday")
    p.add_argument("--out", default="runs/grounded")
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--time-limit-min", type=float, default=60.0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--warmup-steps", type=int, default=100)
    p.add_argument("--log-every", type=int, default=25)
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--save-every", type=int, default=200)
    p.add_argument("--train-clips", type=int, default=None)
    p.add_argument("--val-clips", type=int, default=None)
    p.add_argument("--model-config", default=None, help="JSON overrides of GroundedCaptionerConfig")
    p.add_argument("--scratch", action="store_true", help="no warm start of the BART layers")
    p.add_argument("--resume", action="store_true")
    p.add_argument(
        "--init", default=None, help="start from this saved model's weights (e.g. to go on training"
        " the shipped one on regenerated data); --resume still wins when a checkpoint exists",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    final = GroundedTrainer(args).run()
    print(f"final model: {final}")


if __name__ == "__main__":
    main()
