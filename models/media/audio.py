"""Audio windows on the frames' time grid, so the two streams of the model line up."""

from __future__ import annotations

import numpy as np


def audio_windows(
    audio: np.ndarray | None,
    sample_rate: int,
    timestamps: np.ndarray,
    *,
    window_s: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Cut one audio window centred on each frame time.

    Args:
        audio: Mono audio on the video's timeline (sample 0 at time 0), or None.
        sample_rate: Its sample rate.
        timestamps: Frame times in seconds, shape (T,).
        window_s: Window length; default the median spacing of the frame times (the whole
            video for a single frame is not known here, so one frame gets 1 s).

    Returns:
        ``windows`` float32 (T, W) zero-padded where the audio does not reach, and ``mask``
        bool (T,), True where a window holds any real audio. No audio gives all False.
    """
    times = np.asarray(timestamps, dtype=np.float64)
    if times.ndim != 1 or len(times) == 0:
        raise ValueError(f"timestamps must be a non-empty 1-D array, got shape {times.shape}")
    if window_s is None:
        window_s = float(np.median(np.diff(times))) if len(times) > 1 else 1.0
    if not window_s > 0:
        raise ValueError(f"window_s must be positive, got {window_s}")
    width = max(1, round(window_s * sample_rate))
    windows = np.zeros((len(times), width), dtype=np.float32)  # (T, W)
    mask = np.zeros(len(times), dtype=bool)
    if audio is None or len(audio) == 0:
        return windows, mask
    starts = np.round(times * sample_rate).astype(np.int64) - width // 2
    for i, s in enumerate(starts):
        lo, hi = max(s, 0), min(s + width, len(audio))
        if hi > lo:
            windows[i, lo - s : hi - s] = audio[lo:hi]
            mask[i] = True
    return windows, mask
