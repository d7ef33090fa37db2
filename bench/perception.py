"""Perception benchmark: our OCR session and Tagger against the raw models in the same run.

Run it from the repository root with ``python -m bench.perception`` (``--repeat N``: best of
N runs per measurement; ``--data DIR``: the real data folder).

- OCR, seconds per video minute, on a real text video (``derived/text_ranch_two_captions.mp4``)
  and on a 60 s video made by looping the five ``derived/text_*.mp4`` files' frames (sampled
  at 2 fps, as a worker would give them). Reference: RapidOCR called directly on every frame
  of the same 1 fps schedule (what reading "one frame a second" costs without our frame
  choice). Our session should cost at most that (it skips unchanged frames).
- Tags, seconds per frame at batch 16 and 32, on 540x960 frames. Reference: the raw
  EfficientNet-Lite0 forward on already-preprocessed 224x224 tensors; the ratio is what our
  preprocessing (bar trim, crop, resize) and bookkeeping add.

Results go to ``bench/out/perception.json``. Decoding is not timed (frames are decoded once,
before anything is measured).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

OUT_DIR = Path(__file__).resolve().parent / "out"
JSON_PATH = OUT_DIR / "perception.json"
DEFAULT_DATA = Path(
    os.environ.get("VIDCAP_REAL_DATA", Path(__file__).resolve().parents[2] / "shared/data/real")
)


def best_of(repeat: int, fn: Callable[[], Any]) -> float:
    """The shortest wall time of ``repeat`` calls."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def frames_of(path: Path, fps: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Frames as the worker gives them (540x960, padded)."""
    from models.media import sample_frames

    images, times = sample_frames(path, fps=fps, size=(540, 960), fit="pad")
    return images, times


def loop_to(images: np.ndarray, times: np.ndarray, seconds: float) -> tuple[np.ndarray, np.ndarray]:
    """Repeat frames until they cover ``seconds`` (times continue across repeats)."""
    step = float(np.median(np.diff(times))) if len(times) > 1 else 0.5
    n = int(seconds / step)
    index = np.arange(n) % len(images)
    return images[index], np.arange(n) * step + float(times[0])


def compare(
    what: str,
    ours: Callable[[], None],
    reference: Callable[[], None],
    repeat: int,
    per: float,
    unit: str,
) -> dict[str, Any]:
    """Best-of-``repeat`` seconds of ours and of the reference, each divided by ``per``."""
    t_ours, t_ref = best_of(repeat, ours), best_of(repeat, reference)
    return {
        "what": what,
        "ours": t_ours / per,
        "reference": t_ref / per,
        "unit": unit,
        "ratio": t_ours / t_ref,
    }


def bench_ocr(data: Path, repeat: int) -> list[dict[str, Any]]:
    """OCR seconds per video minute: our session vs RapidOCR on every 1 fps frame."""
    from models.perception.ocr import TextReader

    reader = TextReader()
    engine = reader.engine
    ranch = frames_of(data / "derived/text_ranch_two_captions.mp4")
    parts = [frames_of(p) for p in sorted((data / "derived").glob("text_*.mp4"))]
    looped = loop_to(
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] + 10 * i for i, p in enumerate(parts)]),
        60.0,
    )
    rows = []
    for name, (images, times) in (("text_ranch (8 s)", ranch), ("60 s text loop", looped)):
        minutes = (float(times[-1] - times[0]) + 0.5) / 60

        def ours(images: np.ndarray = images, times: np.ndarray = times) -> None:
            session = reader.session()
            for k in range(0, len(times), 16):
                session.feed(images[k : k + 16], times[k : k + 16])
            session.finish()

        every = images[:: max(1, round(1 / float(np.median(np.diff(times)))))]

        def reference(every: np.ndarray = every) -> None:
            for image in every:
                engine(np.ascontiguousarray(image[..., ::-1]))

        engine(np.ascontiguousarray(images[0][..., ::-1]))  # warm-up
        rows.append(compare(f"OCR {name}", ours, reference, repeat, minutes, "s/min"))
    return rows


def bench_tags(data: Path, repeat: int) -> list[dict[str, Any]]:
    """Tag seconds per frame at batch 16 and 32: Tagger vs the raw forward."""
    from models.perception.tags import PIXEL_MEAN, PIXEL_STD, Tagger, preprocess

    tagger = Tagger()
    images, _ = frames_of(data / "derived/long_ljspeech_printing_slideshow.mp4", fps=0.5)
    rows = []
    for batch in (16, 32):
        frames = np.concatenate([images] * (batch // len(images) + 1))[:batch]
        times = np.arange(batch, dtype=np.float64)
        tagger.batch_size = batch
        x = torch.from_numpy(preprocess(frames)).permute(0, 3, 1, 2).to(tagger.device, tagger.dtype)
        x = (x - PIXEL_MEAN) / PIXEL_STD

        def raw(x: torch.Tensor = x) -> None:
            with torch.inference_mode():
                tagger.model(x).softmax(-1).cpu()

        def ours(frames: np.ndarray = frames, times: np.ndarray = times) -> None:
            tagger.tag_frames(frames, times)

        raw()  # warm-up
        what = f"tags batch {batch} ({tagger.device.type})"
        rows.append(compare(what, ours, raw, repeat, batch, "s/frame"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    if not (args.data / "manifest.jsonl").is_file():
        raise SystemExit(f"real data not found at {args.data} (set VIDCAP_REAL_DATA or --data)")
    rows = bench_tags(args.data, args.repeat) + bench_ocr(args.data, args.repeat)
    print(f"{'measurement':34} {'ours':>10} {'reference':>10} {'ratio':>6}")
    for row in rows:
        print(
            f"{row['what']:34} {row['ours']:>10.4f} {row['reference']:>10.4f}"
            f" {row['ratio']:>6.2f}  ({row['unit']})"
        )
    OUT_DIR.mkdir(exist_ok=True)
    JSON_PATH.write_text(
        json.dumps({"torch_threads": torch.get_num_threads(), "rows": rows}, indent=2)
    )


if __name__ == "__main__":
    main()
