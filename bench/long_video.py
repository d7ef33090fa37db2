"""Memory on long videos: the caption job's work on 5 min and on 59 min of video.

Run it from the repository root with ``python -m bench.long_video`` (``--minutes 5 59``).

Inputs, made once by Debian's ffmpeg into bench/out: a 320x180 H.264 still colour field (so
OCR reads one frame) with an AAC soundtrack of a tone, at each duration (59 min: the default
media limit is one hour). Each duration runs in a fresh process doing what a worker does for a
caption job (the experts with Whisper tiny.en, and the captioner's features, caption and
segments), and reports that process's peak RSS. Bounded memory means the 59 min figure stays
close to the 5 min one, the reference measured in the same run: audio is read a few minutes at
a time and frames a window at a time. (The decoding itself runs in the media sandbox's child
processes, each capped by VIDCAP_MEDIA_DECODE_MEMORY_MB and holding one window.)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import time
from pathlib import Path

from bench import measure_in_fresh_process
from bench.decode import OUT_DIR, find_ffmpeg

JSON_PATH = OUT_DIR / "long_video.json"


def make_input(ffmpeg: str, minutes: int) -> Path:
    path = OUT_DIR / f"long_{minutes}min_180p.mp4"
    if not path.is_file():
        seconds = str(minutes * 60)
        command = [ffmpeg, "-v", "error", "-y", "-f", "lavfi"]
        command += ["-i", f"color=c=0x406080:s=320x180:r=10:d={seconds}"]
        command += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=16000:d={seconds}"]
        command += ["-c:v", "libx264", "-preset", "ultrafast", "-g", "100"]
        command += ["-c:a", "aac", "-b:a", "32k", "-shortest", str(path)]
        subprocess.run(command, check=True)
    return path


def measure(path: Path) -> dict[str, float]:
    """The caption job's work on ``path`` in this process; seconds and peak RSS."""
    from transformers.utils import logging as hf_logging

    from models import WORLD_MODEL_DIR
    from models.captioner.pipeline import CaptionPipeline
    from models.perception.runner import Perceiver

    hf_logging.disable_progress_bar()
    pipe = CaptionPipeline.from_pretrained(WORLD_MODEL_DIR, device="cpu")
    experts = Perceiver(whisper_model="tiny.en", device="cpu")
    loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    began = time.perf_counter()
    found, features = experts.run(path, segment_seconds=5.0, during=lambda: pipe.extract(path))
    pipe.caption(features)
    pipe.caption_segments(features, 5.0)
    return {
        "seconds": time.perf_counter() - began,
        "rss_after_loading_mb": loaded,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "frames_tagged": len(found.frame_tags),
        "feature_steps": len(features),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # 59: the default media limit refuses videos over 3600 s, and encoders pad a little
    parser.add_argument("--minutes", type=int, nargs="+", default=[5, 59])
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:  # one measurement, in a fresh process
        print(json.dumps(measure(args.child)))
        return
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    ffmpeg = find_ffmpeg()
    rows = {}
    for minutes in args.minutes:
        path = make_input(ffmpeg, minutes)
        rows[minutes] = measure_in_fresh_process("bench.long_video", path)
        r = rows[minutes]
        print(
            f"{minutes:3d} min: {r['seconds']:7.1f} s, peak RSS {r['peak_rss_mb']:6.0f} MB"
            f" (after loading {r['rss_after_loading_mb']:.0f} MB),"
            f" {r['frames_tagged']} frames tagged, {r['feature_steps']} feature steps",
            flush=True,
        )
    first, last = rows[args.minutes[0]], rows[args.minutes[-1]]
    ratio = last["peak_rss_mb"] / first["peak_rss_mb"]
    print(
        f"peak RSS {args.minutes[-1]} min / {args.minutes[0]} min: {ratio:.2f}x"
        f" for {args.minutes[-1] / args.minutes[0]:.0f}x the duration"
    )
    JSON_PATH.write_text(json.dumps({"runs": rows, "rss_ratio": ratio}, indent=2) + "\n")
    print(f"written to {os.path.relpath(JSON_PATH)}")


if __name__ == "__main__":
    main()
