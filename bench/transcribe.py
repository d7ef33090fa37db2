"""Speech benchmark: SpeechRecognizer against faster-whisper called directly on the same audio.

Run it from the repository root with ``python -m bench.transcribe`` (``--repeat N``: best of
N runs per measurement; ``--models``: which Whisper models).

The input is about 60 s of real English speech: the single-speaker English utterances of the
real data's ``audio/`` folder, one after another with 1 s of silence between them. For each
model (``tiny.en`` and ``base`` by default) it times, with the model already loaded:

- ours: ``SpeechRecognizer.transcribe(audio)`` (VAD, language detected per 30 s window,
  beam 5, word timestamps, the hallucination guards);
- direct: ``WhisperModel.transcribe(audio, beam_size=5, vad_filter=True,
  word_timestamps=True)`` on the same loaded model, its segments consumed.

It prints wall seconds, the ratio ours/direct (target: at most 1.05x) and speed as a multiple
of real time, and both with the language given (``language="en"``) and detected. Without the
real data it says so and exits 0.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

TARGET = 1.05
SR = 16_000
REAL_DATA = Path(
    os.environ.get("VIDCAP_REAL_DATA", Path(__file__).resolve().parents[2] / "shared/data/real")
)


def english_audio(root: Path) -> np.ndarray:
    """The single-speaker English utterances, 1 s of silence between them."""
    from faster_whisper.audio import decode_audio

    parts: list[np.ndarray] = []
    for path in sorted((root / "audio").glob("en_*.wav")):
        if "stereo" in path.name:
            continue
        parts += [decode_audio(str(path), sampling_rate=SR), np.zeros(SR, dtype=np.float32)]
    return np.concatenate(parts)


def best(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    """Fastest of ``repeat`` runs (seconds) and the last result."""
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), result


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; 0 even when the target is missed."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.transcribe", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--repeat", type=int, default=2, help="runs per measurement (best kept)")
    parser.add_argument("--models", nargs="+", default=["tiny.en", "base"])
    args = parser.parse_args(argv)
    if not (REAL_DATA / "manifest.jsonl").is_file():
        print(f"real data not found at {REAL_DATA} (set VIDCAP_REAL_DATA): nothing to measure")
        return 0
    from models.perception.speech import BEAM_SIZE, SpeechRecognizer

    audio = english_audio(REAL_DATA)
    seconds = len(audio) / SR
    print(f"input: {seconds:.1f} s of real English speech; best of {args.repeat} runs")
    rows = []
    for name in args.models:
        recognizer = SpeechRecognizer(name)
        model = recognizer.model
        print(
            f"{name}: {recognizer.device}/{recognizer.compute_type},"
            f" {recognizer.cpu_threads} CPU threads"
        )
        languages: tuple[str | None, ...] = (None, "en") if recognizer.multilingual else ("en",)
        for language in languages:

            def ours(language: str | None = language, recognizer: Any = recognizer) -> object:
                return recognizer.transcribe(audio, language=language).text

            def direct(language: str | None = language, model: Any = model) -> object:
                segments, _ = model.transcribe(
                    audio,
                    language=language,
                    beam_size=BEAM_SIZE,
                    vad_filter=True,
                    word_timestamps=True,
                )
                return " ".join(s.text.strip() for s in segments)

            ours()  # warm-up (first-call allocations, the VAD session)
            t_direct, _ = best(direct, args.repeat)
            t_ours, _ = best(ours, args.repeat)
            what = "detected" if language is None else "given"
            rows.append((name, what, t_ours, t_direct))
    print(
        f"\n{'model':8} {'language':9} {'ours s':>7} {'direct s':>8} {'ratio':>6} "
        f"{'ours xRT':>8} {'direct xRT':>10}  target <= {TARGET}x"
    )
    for name, what, t_ours, t_direct in rows:
        ratio = t_ours / t_direct
        flag = "ok" if ratio <= TARGET else "MISSED"
        print(
            f"{name:8} {what:9} {t_ours:7.2f} {t_direct:8.2f} {ratio:5.2f}x "
            f"{seconds / t_ours:7.1f}x {seconds / t_direct:9.1f}x  {flag}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
