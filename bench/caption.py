"""Caption benchmark: ``vidcap caption`` stage by stage, against ffmpeg decoding the same file.

Run it from the repository root with ``python -m bench.caption`` (``--model DIR``: a trained
model, default the shipped one or, until one ships, the default-size config with random weights;
``--device cuda``; ``--batch N``: also the throughput of N videos captioned as one batch;
``--repeat N``: best of N runs).

Input: the decode benchmark's 720p, 60 s H.264 + AAC file (``testsrc2`` picture, 1 s GOP).
Stages, as the CLI reports them: ``decode`` (probe, sample frames at the model's rate, read the
audio), ``features`` (visual and audio backbones), ``fusion`` (VideoBERT + BART encoder) and
``generate`` (BART decoding). The reference, measured in the same run, is a full decode of the
video track by the ffmpeg command line: the ratio says what captioning costs in units of "play
the whole file once". A randomly initialised model's captions have no natural length, so it is
made to write exactly ``RANDOM_TOKENS`` tokens per caption (about a caption of the synthetic
world: "a red circle moves left while a low tone sounds twice").
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import torch

from bench.decode import (
    OUT_DIR,
    ensure_input,
    find_ffmpeg,
    input_specs,
    reference_commands,
    run_ffmpeg,
)
from models import WORLD_MODEL_DIR
from models.captioner.configuration_videobert import VideoCaptionerConfig
from models.captioner.modeling_captioner import VideoCaptionerModel
from models.captioner.pipeline import CaptionPipeline, StageTimer
from models.captioner.tokenization import train_tokenizer

JSON_PATH = OUT_DIR / "caption.json"
SEGMENT_S = 10.0
RANDOM_TOKENS = 16


def parameter_counts(model: VideoCaptionerModel) -> dict[str, int]:
    """Parameters per part of the captioner, and in all."""
    parts = ("visual_backbone", "audio_backbone", "videobert", "video_proj", "bart")
    counts = {p: sum(x.numel() for x in getattr(model, p).parameters()) for p in parts}
    counts["total"] = sum(x.numel() for x in model.parameters())
    return counts


def load_pipeline(
    model_dir: Path | None, device: str | None
) -> tuple[CaptionPipeline, str, dict[str, int]]:
    """The model to measure, a label saying which one it is, and its decoding settings."""
    path = model_dir or WORLD_MODEL_DIR
    if (path / "config.json").is_file():
        return CaptionPipeline.from_pretrained(path, device=device), str(path), {}
    torch.manual_seed(0)
    config = VideoCaptionerConfig()
    words = [f"word{i}" for i in range(2000)]  # any corpus: only the vocabulary size matters
    tokenizer = train_tokenizer(words, vocab_size=config.decoder_config.vocab_size)
    model = VideoCaptionerModel(config)
    fixed = {"min_new_tokens": RANDOM_TOKENS, "max_new_tokens": RANDOM_TOKENS}
    label = f"default-size config, random weights, {RANDOM_TOKENS} tokens per caption"
    return CaptionPipeline(model, tokenizer, device=device), label, fixed


def caption_once(pipe: CaptionPipeline, path: Path, decoding: dict[str, int]) -> dict[str, float]:
    """One ``vidcap caption --segments`` worth of work; seconds per stage."""
    timer = StageTimer()
    features = pipe.extract(path, timer=timer)
    pipe.caption(features, timer=timer, **decoding)
    pipe.caption_segments(features, SEGMENT_S, timer=timer, **decoding)
    if pipe.device.type == "cuda":
        torch.cuda.synchronize()
    return dict(timer.seconds)


def batch_throughput(
    pipe: CaptionPipeline, path: Path, batch: int, decoding: dict[str, int]
) -> dict[str, float]:
    """Videos per second when ``batch`` videos are captioned together (features extracted first)."""
    started = time.perf_counter()
    features = pipe.extract([path] * batch)
    extracted = time.perf_counter()
    pipe.caption(features, **decoding)
    if pipe.device.type == "cuda":
        torch.cuda.synchronize()
    done = time.perf_counter()
    return {
        "batch": batch,
        "extract_s": extracted - started,
        "caption_s": done - extracted,
        "videos_per_s": batch / (done - started),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--device", default=None)
    parser.add_argument("--batch", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    ffmpeg = find_ffmpeg()
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    spec = next(s for s in input_specs(quick=False) if s.gop == s.fps and s.height == 720)
    path = ensure_input(ffmpeg, spec)
    pipe, label, decoding = load_pipeline(args.model, args.device)
    counts = parameter_counts(pipe.model)

    caption_once(pipe, path, decoding)  # warm-up: forkserver, allocator, kernels
    runs = [caption_once(pipe, path, decoding) for _ in range(args.repeat)]
    best = min(runs, key=lambda r: sum(r.values()))
    total = sum(best.values())
    reference = min(
        run_ffmpeg(reference_commands(ffmpeg, path)["full"]) for _ in range(args.repeat)
    )

    report: dict[str, Any] = {
        "input": spec.name,
        "model": label,
        "device": str(pipe.device),
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "parameters": counts,
        "weights_mb_fp32": round(counts["total"] * 4 / 2**20, 1),
        "stages_s": {k: round(v, 3) for k, v in best.items()},
        "total_s": round(total, 3),
        "ffmpeg_full_decode_s": round(reference, 3),
        "ratio_vs_ffmpeg": round(total / reference, 2),
    }
    if args.batch:
        report["batch"] = {
            k: round(v, 3) for k, v in batch_throughput(pipe, path, args.batch, decoding).items()
        }

    print(f"\nvidcap caption --segments {SEGMENT_S:g} on {spec.name} ({label}, {pipe.device})")
    print(f"  parameters: {counts['total'] / 1e6:.2f} M  ({report['weights_mb_fp32']} MB fp32)")
    for part, n in counts.items():
        if part != "total":
            print(f"    {part:16s} {n / 1e6:6.2f} M")
    for stage, seconds in best.items():
        print(f"  {stage:10s} {seconds:7.3f} s")
    print(f"  {'total':10s} {total:7.3f} s")
    print(f"  ffmpeg full decode (reference): {reference:.3f} s -> ratio {total / reference:.2f}x")
    if args.batch:
        b = report["batch"]
        print(f"  batch of {args.batch}: {b['videos_per_s']:.2f} videos/s")
    JSON_PATH.write_text(json.dumps(report, indent=2) + "\n")
    print(f"  written to {os.path.relpath(JSON_PATH)}")


if __name__ == "__main__":
    main()
