"""Batching across jobs: one worker with one job loop against one with N loops and the batcher.

Run it from the repository root with ``python -m bench.batching`` (``--threads N``, default 4;
``--questions Q``, default 48; ``--device cuda`` where there is a GPU).

It starts the service as deployed (:class:`bench.service.Stack`: a private redis-server,
``vidcap serve`` and one ``vidcap worker`` with the shipped model), twice: first with
``VIDCAP_WORKER_THREADS=1``, then with ``N``; everything else the same, in the same run.
For each:

1. **Caption jobs per second**: the real videos of ../shared/data/real/derived with speech
   (each is transcribed, read, tagged and described), all uploaded at once; from the first
   upload to the last job seen succeeded.
2. **Questions per second**: ``Q`` questions about one captioned real video (the 63 s
   slideshow with speech), all sent at once; from the first POST to the last answer seen.

The worker logs how many model calls its batcher ran in how many batches; the mean batch is
printed beside the throughputs. Results go to ``bench/out/batching.json``. The figures are
ratios of N loops against one: what batching and the overlap of jobs buy on this machine.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.decode import OUT_DIR
from bench.service import Stack, api_client, follow
from tests.conftest import REAL_DATA

JSON_PATH = OUT_DIR / "batching.json"
QUESTION_VIDEO = "derived/long_ljspeech_printing_slideshow.mp4"
QUESTIONS = (
    "What is the narrator reading about?",
    "What language is spoken?",
    "Is anyone talking?",
    "What is shown on screen?",
    "Is there music?",
    "Which country's people took impressions from wood blocks?",
    "What does printing differ from?",
    "What is written on the screen?",
)
BATCH_LINE = re.compile(r"generate: (\d+) calls in (\d+) batches")


def caption_videos() -> list[Path]:
    """The real test set's derived videos with speech (short ones: the long are for questions)."""
    found = sorted(
        p for p in (REAL_DATA / "derived").glob("*speech*.mp4") if not p.name.startswith("long_")
    )
    if not found:
        raise SystemExit(f"real test data not found at {REAL_DATA} (set VIDCAP_REAL_DATA)")
    return found


def upload(client: Any, path: Path, **fields: Any) -> dict[str, Any]:
    with path.open("rb") as f:
        response = client.post(
            "/v1/videos", files={"file": (path.name, f, "video/mp4")}, data=fields
        )
    response.raise_for_status()
    return dict(response.json())


def run(threads: int, questions: int, device: str) -> dict[str, Any]:
    """Caption jobs and questions per second for one worker with ``threads`` job loops."""
    with tempfile.TemporaryDirectory(prefix="vidcap-batching-") as tmp:
        stack = Stack(Path(tmp), max_upload_mb=2048)
        stack.env.update(
            VIDCAP_WORKER_THREADS=str(threads),
            VIDCAP_DEVICE=device,
            # Everything is sent at once, by one tenant: no per-tenant limits in the way.
            VIDCAP_MAX_UPLOADS_PER_TENANT="64",
            VIDCAP_RATE_LIMIT_PER_MINUTE="0",
        )
        with stack, api_client(stack) as client, ThreadPoolExecutor(32) as pool:
            # Caption jobs, all at once.
            videos = caption_videos()
            began = time.perf_counter()
            created = list(pool.map(lambda p: upload(client, p, segment_seconds=5), videos))
            jobs = list(pool.map(lambda c: follow(client, c["job"]["id"])[0], created))
            caption_s = time.perf_counter() - began
            assert all(j["state"] == "succeeded" for j in jobs), [j["error"] for j in jobs]

            # Questions about one captioned video, all at once.
            video = upload(client, REAL_DATA / QUESTION_VIDEO, segment_seconds=5)
            assert follow(client, video["job"]["id"])[0]["state"] == "succeeded"
            path = f"/v1/videos/{video['video']['id']}/questions"
            asked = [QUESTIONS[i % len(QUESTIONS)] + f" ({i})" for i in range(questions)]
            began = time.perf_counter()
            posted = list(pool.map(lambda q: client.post(path, json={"question": q}), asked))
            answers = list(pool.map(lambda r: follow(client, r.json()["id"])[0], posted))
            question_s = time.perf_counter() - began
            assert all(a["state"] == "succeeded" for a in answers), [a["error"] for a in answers]
        calls, batches = 0, 0
        for line in (Path(tmp) / "worker.log").read_text(errors="replace").splitlines():
            if m := BATCH_LINE.search(line):
                calls, batches = int(m[1]), int(m[2])
    return {
        "threads": threads,
        "caption_jobs": len(videos),
        "caption_s": round(caption_s, 2),
        "caption_jobs_per_s": round(len(videos) / caption_s, 4),
        "questions": questions,
        "questions_s": round(question_s, 2),
        "questions_per_s": round(questions / question_s, 3),
        "model_calls": calls,
        "batches": batches,
        "mean_batch": round(calls / batches, 2) if batches else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--questions", type=int, default=48)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    one = run(1, args.questions, args.device)
    many = run(args.threads, args.questions, args.device)
    result = {
        "device": args.device,
        "one_loop": one,
        "loops": many,
        "caption_ratio": round(many["caption_jobs_per_s"] / one["caption_jobs_per_s"], 3),
        "question_ratio": round(many["questions_per_s"] / one["questions_per_s"], 3),
    }
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    JSON_PATH.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'job loops':>10} {'caption jobs/s':>15} {'questions/s':>12} {'mean batch':>11}")
    for row in (one, many):
        mean = "-" if row["mean_batch"] is None else f"{row['mean_batch']:.2f}"
        print(
            f"{row['threads']:>10} {row['caption_jobs_per_s']:>15.4f}"
            f" {row['questions_per_s']:>12.3f} {mean:>11}"
        )
    print(
        f"{args.threads} loops against 1: caption jobs x{result['caption_ratio']:.2f},"
        f" questions x{result['question_ratio']:.2f}  ({JSON_PATH})"
    )


if __name__ == "__main__":
    main()
