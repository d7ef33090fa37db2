"""Which instants to sample, and which stored frame shows at each instant.

Sampling is by time, not by frame index: on a variable-frame-rate file, index ``i * n / N``
is not at time ``i * d / N``. The frame shown at time ``t`` is the last frame whose
presentation time is at or before ``t``.
"""

from __future__ import annotations

import math
from enum import StrEnum

import numpy as np


class SampleMode(StrEnum):
    """How frames are decoded.

    ``exact``: the true frame at every instant. Keyframe-aware: seek only when the next instant
    lies past the next keyframe, otherwise decode forward.
    ``fast``: where a keyframe lies within half a sampling interval of the instant, decode only
    that keyframe (cheap: no decoding of the frames in between); elsewhere, exact.
    """

    EXACT = "exact"
    FAST = "fast"


def check_request(
    *, num_frames: int | None, fps: float | None, start: float, end: float | None
) -> None:
    """Reject a sampling request that no video could satisfy (ValueError)."""
    if (num_frames is None) == (fps is None):
        raise ValueError("give exactly one of num_frames or fps")
    if num_frames is not None and num_frames < 1:
        raise ValueError(f"num_frames must be at least 1, got {num_frames}")
    if fps is not None and not (fps > 0 and math.isfinite(fps)):
        raise ValueError(f"fps must be a positive number, got {fps}")
    if start < 0 or (end is not None and end <= start):
        raise ValueError(f"invalid span: start={start}, end={end}")


def sample_times(
    duration: float,
    *,
    num_frames: int | None = None,
    fps: float | None = None,
    start: float = 0.0,
    end: float | None = None,
) -> np.ndarray:
    """Uniform sampling instants over ``[start, end)``, in seconds.

    The span is cut into equal windows, one per frame, and each frame is sampled at its
    window's centre, so no instant sits on the very first or last edge of the span.

    Args:
        duration: Length of the video in seconds.
        num_frames: How many frames (exclusive with ``fps``).
        fps: Frames per second of video (exclusive with ``num_frames``); at least one frame.
        start: Start of the span in seconds.
        end: End of the span in seconds (default and cap: the end of the video).

    Returns:
        float64 array of shape (N,), increasing.
    """
    check_request(num_frames=num_frames, fps=fps, start=start, end=end)
    stop = duration if end is None else min(end, duration)
    if not (0.0 <= start < stop):
        raise ValueError(
            f"the span [{start}, {end}) holds no video: the video lasts {duration:.3f} s"
        )
    span = stop - start
    n = num_frames if num_frames is not None else max(1, round(span * (fps or 0.0)))
    return start + (np.arange(n, dtype=np.float64) + 0.5) * (span / n)


def frame_at(frame_times: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Index of the frame shown at each time: the last with ``frame_times <= t``.

    Args:
        frame_times: Sorted presentation times of all frames, shape (F,).
        t: Query times, shape (N,).

    Returns:
        int64 array (N,); an instant before the first frame maps to frame 0.
    """
    idx = np.searchsorted(frame_times, t, side="right") - 1
    return np.clip(idx, 0, len(frame_times) - 1)


def nearest_keyframe(key_times: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Index into ``key_times`` of the keyframe nearest each time (ties go earlier)."""
    right = np.clip(np.searchsorted(key_times, t, side="left"), 0, len(key_times) - 1)
    left = np.clip(right - 1, 0, len(key_times) - 1)
    take_left = np.abs(t - key_times[left]) <= np.abs(key_times[right] - t)
    return np.where(take_left, left, right)


def keyframes_in_reach(
    key_times: np.ndarray, times: np.ndarray, start: float
) -> tuple[np.ndarray, np.ndarray]:
    """Fast mode's rule: which instants a keyframe may stand in for.

    Args:
        key_times: Sorted keyframe times, seconds.
        times: Instants from :func:`sample_times`, seconds.
        start: The ``start`` they were sampled from.

    Returns:
        ``nearest`` (index into ``key_times`` for each instant) and ``close`` (bool: that
        keyframe lies within half a sampling interval of the instant).
    """
    half_interval = float(times[0]) - start  # instants sit at the centres of their windows
    nearest = nearest_keyframe(key_times, times)
    return nearest, np.abs(key_times[nearest] - times) <= half_interval + 1e-9


def segment_spans(end_s: float, segment_seconds: float) -> list[tuple[float, float]]:
    """A video cut into stretches of ``segment_seconds`` (the caption's segments, which the
    tags are also summarised over): ``[(start, end), ...]``, the last one ending at ``end_s``.
    """
    if not segment_seconds > 0:
        raise ValueError(f"segment_seconds must be positive, got {segment_seconds}")
    count = max(1, math.ceil(end_s / segment_seconds - 1e-9))
    return [(k * segment_seconds, min((k + 1) * segment_seconds, end_s)) for k in range(count)]
