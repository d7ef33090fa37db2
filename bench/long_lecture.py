"""A long lecture, answered: time and memory of a question job on 5 min and on 59 min of speech.

Run it from the repository root with ``python -m bench.long_lecture`` (``--minutes 5 59``;
needs espeak-ng, the Debian package the everyday world uses).

Input, made once into bench/out: a "lecture" of sentences from the everyday world's English
grammar spoken by espeak-ng back to back (0.4 s apart), over a still picture at 2 fps
(320x180 H.264 + AAC, written with PyAV). Three planted sentences (a fifth, half and
four fifths of the way in) each come with one of the grammar's own questions and answers; no
other sentence holds all of a planted question's content words, so each has one answer.

Each duration runs in a fresh process doing what a worker does: the perception experts
(Whisper base, as the service runs it), the grounded captioner's context, the description,
its segments (60 s each) and the three questions. It reports seconds per stage, the peak RSS,
and whether each answer names the planted answer and cites the planted sentence's moment. The
5 min run is the reference measured in the same run: a question on 59 min should cost about
what it costs on 5 min (the model reads only the retrieved moments), and memory should stay
flat (audio is read a few minutes at a time, frames a window at a time).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from bench import measure_in_fresh_process

OUT_DIR = Path(__file__).resolve().parent / "out"
JSON_PATH = OUT_DIR / "long_lecture.json"
GAP_S = 0.4
PLANTED_AT = (0.2, 0.5, 0.8)


# Words a question shares with many sentences of the grammar.
FUNCTION_WORDS = frozenset(
    {"who", "what", "when", "where", "which", "how", "many", "much", "did", "does", "do", "is"}
    | {"are", "was", "were", "the", "a", "an", "to", "of", "in", "on", "at", "should", "be"}
    | {"listener", "speaker", "mentioned", "kind"}
)


def _planted(rng: random.Random) -> Any:
    """An English sentence of the everyday grammar with a question whose answer is a span."""
    from models.training.data.everyday import english_sentence, render

    while True:
        sentence = english_sentence(rng)
        spans = render(sentence.tokens)[1]
        text = sentence.text
        for question, roles, named in sentence.qa:
            # A question that names something of its sentence ("Who lost the candle?"), not
            # one that any sentence of its kind answers ("Which city is mentioned?").
            if named and roles != ("*",) and all(r in spans for r in roles):
                start = min(spans[r][0] for r in roles)
                end = max(spans[r][1] for r in roles)
                return text, question, text[start:end]


def make_input(minutes: int, seed: int = 0) -> tuple[Path, list[dict[str, Any]]]:
    """The lecture video and its planted questions (made once, kept in bench/out)."""
    import av

    from models.training.data.everyday import SAMPLE_RATE, english_sentence, espeak

    path = OUT_DIR / f"lecture_{minutes}min.mp4"
    meta_path = path.with_suffix(".json")
    if path.is_file() and meta_path.is_file():
        return path, json.loads(meta_path.read_text())["planted"]
    from tqdm import tqdm

    rng = random.Random(seed)
    total = minutes * 60 * SAMPLE_RATE
    gap = np.zeros(int(GAP_S * SAMPLE_RATE), np.float32)
    pieces: list[np.ndarray] = []
    planted: list[dict[str, Any]] = []
    length = 0
    targets = [int(f * total) for f in PLANTED_AT]
    plants = [_planted(rng) for _ in PLANTED_AT]
    # Each planted question has one answer in the lecture: no other sentence has all of its
    # content words.
    asked = [set(_words(q).split()) - FUNCTION_WORDS for _, q, _ in plants]
    with tqdm(total=minutes * 60, unit="s", desc=f"speaking {minutes} min") as bar:
        while length < total:
            plant = bool(targets) and length >= targets[0]
            if plant:
                targets.pop(0)
                text, question, answer = plants[len(planted)]
            else:
                text = english_sentence(rng).text
                if any(words <= set(_words(text).split()) for words in asked):
                    continue
            voice = espeak(text, "en-us", 160, 50)
            if plant:
                planted.append({
                    "question": question, "answer": answer, "sentence": text,
                    "start": length / SAMPLE_RATE,
                    "end": (length + len(voice)) / SAMPLE_RATE,
                })  # fmt: skip
            pieces += [voice * 0.5, gap]
            length += len(voice) + len(gap)
            bar.update(round((len(voice) + len(gap)) / SAMPLE_RATE))
    audio = np.concatenate(pieces)[:total]
    picture = np.zeros((180, 320, 3), np.uint8)
    picture[:] = (64, 96, 128)
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=2, options={"preset": "ultrafast", "g": "120"})
        video.width, video.height, video.pix_fmt = 320, 180, "yuv420p"
        sound = out.add_stream("aac", rate=SAMPLE_RATE)
        sound.layout = "mono"
        for i in range(minutes * 60 * 2):
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 2)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        step = SAMPLE_RATE * 10
        for at in range(0, len(audio), step):
            chunk = audio[at : at + step].reshape(1, -1)
            samples = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
            samples.sample_rate, samples.pts = SAMPLE_RATE, at
            samples.time_base = Fraction(1, SAMPLE_RATE)
            out.mux(sound.encode(samples))
        out.mux(sound.encode(None))
    meta_path.write_text(json.dumps({"planted": planted}, indent=2) + "\n")
    return path, planted


def _words(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def measure(path: Path, planted: list[dict[str, Any]]) -> dict[str, Any]:
    """A worker's caption job and three questions on ``path``, in this process."""
    from transformers.utils import logging as hf_logging

    from models.captioner.grounded_pipeline import GroundedPipeline
    from models.perception.runner import Perceiver

    hf_logging.disable_progress_bar()
    pipe = GroundedPipeline.from_pretrained(
        Path(__file__).resolve().parents[1] / "models/checkpoints/default", device="cpu"
    )
    experts = Perceiver(whisper_model="base", device="cpu")
    loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    seconds: dict[str, float] = {}
    began = time.perf_counter()
    found, _ = experts.run(path, segment_seconds=60.0)
    seconds["perception"] = time.perf_counter() - began
    began = time.perf_counter()
    ctx = pipe.context(found, path)
    seconds["context"] = time.perf_counter() - began
    began = time.perf_counter()
    description = pipe.describe(ctx)
    segments = pipe.describe_segments(ctx, 60.0)
    seconds["description_and_segments"] = time.perf_counter() - began
    began = time.perf_counter()
    answers = pipe.answer(ctx, [p["question"] for p in planted])
    seconds["three_questions"] = time.perf_counter() - began
    rows = []
    for plant, got in zip(planted, answers, strict=True):
        cited = [
            e for e in got.evidence
            if e.kind == "speech" and e.start < plant["end"] and e.end > plant["start"]
        ]  # fmt: skip
        rows.append({
            "question": plant["question"], "want": plant["answer"], "got": got.text,
            "right": _words(plant["answer"]) in _words(got.text), "cites_moment": bool(cited),
        })  # fmt: skip
    return {
        "seconds": seconds,
        "rss_after_loading_mb": loaded,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "transcript_segments": len(found.transcript.segments),
        "context_pieces": len(ctx.pieces),
        "description": description,
        "segments": len(segments),
        "answers": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, nargs="+", default=[5, 59])
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:  # one measurement, in a fresh process
        planted = json.loads(args.child.with_suffix(".json").read_text())["planted"]
        print(json.dumps(measure(args.child, planted)))
        return
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    rows = {}
    for minutes in args.minutes:
        path, _ = make_input(minutes)
        rows[minutes] = r = measure_in_fresh_process("bench.long_lecture", path)
        s = r["seconds"]
        print(
            f"{minutes:3d} min: perception {s['perception']:.0f} s, context {s['context']:.1f} s,"
            f" description + {r['segments']} segments {s['description_and_segments']:.1f} s,"
            f" 3 questions {s['three_questions']:.2f} s; peak RSS {r['peak_rss_mb']:.0f} MB"
            f" (after loading {r['rss_after_loading_mb']:.0f} MB);"
            f" {r['transcript_segments']} transcript segments",
            flush=True,
        )
        for a in r["answers"]:
            print(f"      {a['question']} -> {a['got']!r} (want {a['want']!r}):"
                  f" {'right' if a['right'] else 'wrong'},"
                  f" {'cites' if a['cites_moment'] else 'does not cite'} the moment")  # fmt: skip
    first, last = rows[args.minutes[0]], rows[args.minutes[-1]]
    q_ratio = last["seconds"]["three_questions"] / first["seconds"]["three_questions"]
    rss_ratio = last["peak_rss_mb"] / first["peak_rss_mb"]
    print(
        f"{args.minutes[-1]} min / {args.minutes[0]} min ({args.minutes[-1] / args.minutes[0]:.0f}x"
        f" the duration): questions {q_ratio:.2f}x the time, peak RSS {rss_ratio:.2f}x"
    )
    JSON_PATH.write_text(
        json.dumps({"runs": rows, "question_ratio": q_ratio, "rss_ratio": rss_ratio}, indent=2)
        + "\n"
    )
    print(f"written to {os.path.relpath(JSON_PATH)}")


if __name__ == "__main__":
    main()
