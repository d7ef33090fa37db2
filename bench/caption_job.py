"""A whole caption job on a real 60 s 720p video with speech, stage by stage.

Run it from the repository root with ``python -m bench.caption_job`` (``--whisper tiny.en``
or ``base``, default both; ``--device cuda``).

Input: ../shared/data/real/derived/long_ljspeech_printing_slideshow.mp4 (63 s of real speech
over real photos) scaled to 1280x720 H.264 + AAC by Debian's ffmpeg, once, into bench/out.
The work is what a worker does for a caption job (workers/tasks.caption_video): the perception
experts (speech, on-screen text, tags), the captioner's features, the whole-video caption and
its 5 s segments. Figures: wall seconds per stage, the whole job divided by the video's
duration (target on a 2-core CPU with Whisper base: <= 0.5), the worker's peak RSS (target
< 2 GB; decoding runs in the media sandbox's children, capped apart), and speech run beside the
frame experts against the same work done one stage after the other, in the same run.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.decode import OUT_DIR, find_ffmpeg
from models import WORLD_MODEL_DIR
from tests.conftest import REAL_DATA

JSON_PATH = OUT_DIR / "caption_job.json"
SOURCE = "derived/long_ljspeech_printing_slideshow.mp4"
SEGMENT_S = 5.0


def make_input(ffmpeg: str) -> Path:
    """The real slideshow as a 720p H.264/AAC mp4 (made once)."""
    source = REAL_DATA / SOURCE
    if not source.is_file():
        raise SystemExit(f"real test data not found at {REAL_DATA} (set VIDCAP_REAL_DATA)")
    path = OUT_DIR / "real_speech_720p_60s.mp4"
    if not path.is_file():
        command = [ffmpeg, "-v", "error", "-y", "-i", str(source), "-t", "60"]
        command += ["-vf", "scale=1280:720,setsar=1", "-c:v", "libx264", "-preset", "fast"]
        command += ["-g", "50", "-c:a", "aac", "-b:a", "96k", str(path)]
        subprocess.run(command, check=True)
    return path


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def job(experts: Any, pipe: Any, path: Path, overlap: bool) -> dict[str, float]:
    """One caption job's work; wall seconds per stage."""
    from models.captioner.pipeline import StageTimer

    timer = StageTimer()
    began = time.perf_counter()
    found, features = experts.run(
        path,
        segment_seconds=SEGMENT_S,
        during=lambda: pipe.extract(path, timer=timer),
        overlap=overlap,
    )
    perceived = time.perf_counter()
    pipe.caption(features, timer=timer)
    pipe.caption_segments(features, SEGMENT_S, timer=timer)
    done = time.perf_counter()
    stages = {**found.timings, **{f"captioner_{k}": v for k, v in timer.seconds.items()}}
    stages["perception_and_features_wall"] = perceived - began
    stages["total"] = done - began
    stages["words"] = len(found.transcript.text.split())
    return stages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--whisper", action="append", default=None)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    from transformers.utils import logging as hf_logging

    from models.captioner.pipeline import CaptionPipeline
    from models.media import probe
    from models.perception.runner import Perceiver

    hf_logging.disable_progress_bar()
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = make_input(find_ffmpeg())
    duration = probe(path).duration_s
    pipe = CaptionPipeline.from_pretrained(WORLD_MODEL_DIR, device=args.device)
    report: dict[str, Any] = {"input": str(path.name), "duration_s": duration, "runs": {}}
    for whisper in args.whisper or ["base", "tiny.en"]:
        experts = Perceiver(whisper_model=whisper, device=args.device)
        job(experts, pipe, path, overlap=True)  # warm-up: sandbox, allocators, kernels
        overlapped = job(experts, pipe, path, overlap=True)
        sequential = job(experts, pipe, path, overlap=False)
        report["runs"][whisper] = {
            "overlapped": {k: round(v, 3) for k, v in overlapped.items()},
            "sequential": {k: round(v, 3) for k, v in sequential.items()},
            "job_over_duration": round(overlapped["total"] / duration, 3),
            "overlap_speedup": round(sequential["total"] / overlapped["total"], 2),
            # ru_maxrss only grows: the first model's figure is its own, later ones include it
            "worker_peak_rss_mb_so_far": round(peak_rss_mb(), 1),
        }
        del experts
        gc.collect()
    report["worker_peak_rss_mb"] = round(peak_rss_mb(), 1)
    report["cpus"] = os.cpu_count()

    print(f"\na caption job on {path.name} ({duration:.1f} s, 1280x720), {args.device}")
    for whisper, run in report["runs"].items():
        o, s = run["overlapped"], run["sequential"]
        print(f"\n  whisper {whisper}: {o['words']} words")
        print(f"  {'stage':34s} {'overlapped':>10s} {'sequential':>10s}")
        for stage in o:
            if stage != "words":
                print(f"  {stage:34s} {o[stage]:9.2f}s {s.get(stage, 0):9.2f}s")
        print(
            f"  job / duration: {run['job_over_duration']:.3f}  (target <= 0.5);"
            f" overlap: {run['overlap_speedup']:.2f}x faster than one stage after the other;"
            f" worker peak RSS so far {run['worker_peak_rss_mb_so_far']:.0f} MB"
        )
    print(f"\n  worker peak RSS {report['worker_peak_rss_mb']:.0f} MB (target < 2048);")
    JSON_PATH.write_text(json.dumps(report, indent=2) + "\n")
    print(f"  written to {os.path.relpath(JSON_PATH)}")


if __name__ == "__main__":
    main()
