"""The media layer's public functions: probe a file, sample its frames, read its audio.

Every call parses the file in a child process (:mod:`models.media.sandbox`) and applies the
same limits (:class:`models.media.limits.MediaLimits`), whichever backend decodes the frames.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

import numpy as np

from models.media import _decord, _pyav
from models.media.geometry import Fit, output_size
from models.media.info import MediaInfo
from models.media.limits import MediaLimits
from models.media.sampling import SampleMode, check_request, segment_spans
from models.media.sandbox import ChildStats, run_isolated

DEFAULT_SAMPLE_RATE = 16_000


class Backend(StrEnum):
    """Which library decodes frames. PyAV always probes and always reads audio."""

    PYAV = "pyav"
    DECORD = "decord"


class Frames(NamedTuple):
    """Sampled frames; unpacks as ``images, timestamps = sample_frames(...)``.

    Attributes:
        images: uint8 array (T, H, W, 3), RGB, upright.
        timestamps: float64 array (T,): when each returned frame is shown, in seconds from
            the first frame (the frame's own time, not the sampling instant).
    """

    images: np.ndarray
    timestamps: np.ndarray


@dataclass(frozen=True)
class Clip:
    """Everything a worker needs from one file, read in one child process.

    Attributes:
        info: The probe result.
        frames: Sampled frames.
        audio: Mono float32 audio on the video's timeline, or None without an audio track.
        sample_rate: The audio's sample rate.
    """

    info: MediaInfo
    frames: Frames
    audio: np.ndarray | None
    sample_rate: int


def _request(
    *,
    num_frames: int | None,
    fps: float | None,
    size: int | tuple[int, int],
    fit: Fit | str,
    mode: SampleMode | str,
    start: float,
    end: float | None,
) -> _pyav.FrameRequest:
    # Checked here too, so a bad request fails before any child process starts.
    check_request(num_frames=num_frames, fps=fps, start=start, end=end)
    output_size(size)
    return _pyav.FrameRequest(num_frames, fps, size, Fit(fit), SampleMode(mode), start, end)


def _backend(backend: Backend | str) -> Backend:
    chosen = Backend(backend)
    if chosen is Backend.DECORD and not _decord.available():
        raise ValueError(
            "the decord backend needs the decord package: pip install 'vidcap[decord]'"
        )
    return chosen


# ------------------------------------------------------------------ work done in the child


def _probe_job(path: str, limits: MediaLimits) -> MediaInfo:
    return _pyav.probe(path, limits)


def _sample(
    path: str,
    request: _pyav.FrameRequest,
    limits: MediaLimits,
    backend: Backend,
    found: _pyav.Scan,
) -> Frames:
    if backend is Backend.DECORD:
        return Frames(*_decord.sample_scanned(path, request, limits, found))
    return Frames(*_pyav.sample_scanned(path, request, limits, found))


def _frames_job(
    path: str, request: _pyav.FrameRequest, limits: MediaLimits, backend: Backend
) -> Frames:
    found = _pyav.inspect(path, limits)
    return _sample(path, request, limits, backend, found)


def _audio_job(
    path: str, sample_rate: int, limits: MediaLimits, start: float, end: float | None
) -> np.ndarray | None:
    found = _pyav.inspect(path, limits)
    return _pyav.read_audio_scanned(path, sample_rate, limits, found, start, end)


def _clip_job(
    path: str, request: _pyav.FrameRequest, sample_rate: int, limits: MediaLimits, backend: Backend
) -> Clip:
    found = _pyav.inspect(path, limits)
    info = _pyav.probe(path, limits, found)
    frames = _sample(path, request, limits, backend, found)
    audio = _pyav.read_audio_scanned(path, sample_rate, limits, found)
    return Clip(info, frames, audio, sample_rate)


def run(
    job: Any, *args: Any, limits: MediaLimits, isolate: bool = True
) -> tuple[Any, ChildStats | None]:
    """Run one of this module's jobs in a child process (or here, when ``isolate`` is False)."""
    if not isolate:
        return job(*args), None
    return run_isolated(
        job, *args, timeout_s=limits.decode_timeout_s, memory_mb=limits.decode_memory_mb
    )


# ------------------------------------------------------------------ public API


def probe(
    path: str | os.PathLike[str], *, limits: MediaLimits | None = None, isolate: bool = True
) -> MediaInfo:
    """Read a video's facts and check them against the limits.

    Args:
        path: The file.
        limits: What is accepted (default: :class:`MediaLimits` defaults).
        isolate: Parse the file in a child process (keep True for untrusted files).

    Returns:
        The file's :class:`MediaInfo`.

    Raises:
        MediaError: With a stable code, for any file that is not an acceptable video.
    """
    limits = limits or MediaLimits()
    info, _ = run(_probe_job, os.fspath(path), limits, limits=limits, isolate=isolate)
    return info


def sample_frames(
    path: str | os.PathLike[str],
    *,
    num_frames: int | None = None,
    fps: float | None = None,
    size: int | tuple[int, int] = 224,
    fit: Fit | str = Fit.CROP,
    mode: SampleMode | str = SampleMode.EXACT,
    start: float = 0.0,
    end: float | None = None,
    backend: Backend | str = Backend.PYAV,
    limits: MediaLimits | None = None,
    isolate: bool = True,
) -> Frames:
    """Sample frames uniformly in time, resized in the decoder, upright.

    Args:
        path: The file.
        num_frames: How many frames (exclusive with ``fps``).
        fps: Frames per second of video (exclusive with ``num_frames``).
        size: Output size: an int for a square, or ``(height, width)``.
        fit: ``crop`` (fill, cut the centre) or ``pad`` (fit whole, black bars).
        mode: ``exact`` (the true frame at each instant) or ``fast`` (nearby keyframes where
            one lies within half a sampling interval, exact elsewhere).
        start: Start of the sampled span, seconds.
        end: End of the sampled span, seconds (default: the end of the video).
        backend: ``pyav`` (default) or ``decord``.
        limits: What is accepted.
        isolate: Decode in a child process (keep True for untrusted files).

    Returns:
        Exactly the frames asked for, as :class:`Frames`.

    Raises:
        MediaError: For unacceptable, damaged or truncated files, and decode failures.
        ValueError: For an invalid request.
    """
    limits = limits or MediaLimits()
    request = _request(
        num_frames=num_frames, fps=fps, size=size, fit=fit, mode=mode, start=start, end=end
    )
    frames, _ = run(
        _frames_job,
        os.fspath(path),
        request,
        limits,
        _backend(backend),
        limits=limits,
        isolate=isolate,
    )
    return frames


def read_audio(
    path: str | os.PathLike[str],
    *,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    start: float = 0.0,
    end: float | None = None,
    limits: MediaLimits | None = None,
    isolate: bool = True,
) -> np.ndarray | None:
    """The audio track as mono float32 in [-1, 1] at ``sample_rate``, or None without one.

    Sample 0 is at ``start`` on the video's timeline (time 0 is the video's first frame), so
    ``audio[int((t - start) * sample_rate)]`` is heard while the frame at time ``t`` is shown.
    Only ``[start, end)`` is decoded (seek, then stop), so a long file can be read a few
    minutes at a time. Any codec FFmpeg decodes; encoder priming samples (AAC, Opus) are
    dropped; audio that starts after ``start`` is padded with silence in front.

    Args:
        path: The file.
        sample_rate: Output rate, Hz.
        start: Start of the span, seconds.
        end: End of the span, seconds (default and at most: the end of the video).
        limits: What is accepted.
        isolate: Decode in a child process (keep True for untrusted files).

    Raises:
        MediaError: As :func:`probe`.
        ValueError: A sample rate out of range or an invalid span.
    """
    _check_audio_request(sample_rate, start, end)
    limits = limits or MediaLimits()
    audio, _ = run(
        _audio_job,
        os.fspath(path),
        sample_rate,
        limits,
        float(start),
        None if end is None else float(end),
        limits=limits,
        isolate=isolate,
    )
    return audio


def iter_audio(
    path: str | os.PathLike[str],
    chunk_s: float = 300.0,
    *,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    limits: MediaLimits | None = None,
    isolate: bool = True,
    info: MediaInfo | None = None,
) -> Iterator[tuple[float, np.ndarray]]:
    """The audio track in consecutive chunks of ``chunk_s`` seconds: ``(offset_s, audio)``.

    Each chunk is one :func:`read_audio` call, so only one chunk is in memory at a time;
    ``offset_s`` is where its sample 0 lies on the video's timeline. Yields nothing for a
    file without an audio track. ``info``: the file's probe, when the caller has it already.

    Raises:
        MediaError: As :func:`probe`.
        ValueError: ``chunk_s`` not positive, or a sample rate out of range.
    """
    if not chunk_s > 0 or not math.isfinite(chunk_s):
        raise ValueError(f"chunk_s must be a positive number of seconds, got {chunk_s}")
    _check_audio_request(sample_rate, 0.0, None)
    limits = limits or MediaLimits()
    info = info or probe(path, limits=limits, isolate=isolate)
    if not info.has_audio:
        return
    for start, end in segment_spans(info.duration_s, chunk_s):
        audio = read_audio(
            path, sample_rate=sample_rate, start=start, end=end, limits=limits, isolate=isolate
        )
        if audio is None:  # the track vanished between calls: nothing more to read
            return
        yield start, audio


def _check_audio_request(sample_rate: int, start: float, end: float | None) -> None:
    if sample_rate < 1000 or sample_rate > 192_000:
        raise ValueError(f"sample_rate must be between 1000 and 192000 Hz, got {sample_rate}")
    if not (math.isfinite(start) and start >= 0):
        raise ValueError(f"start must be a finite number of seconds >= 0, got {start}")
    if end is not None and not (math.isfinite(end) and end > start):
        raise ValueError(f"end must be a number of seconds after start ({start}), got {end}")


def load_clip(
    path: str | os.PathLike[str],
    *,
    num_frames: int | None = None,
    fps: float | None = None,
    size: int | tuple[int, int] = 224,
    fit: Fit | str = Fit.CROP,
    mode: SampleMode | str = SampleMode.EXACT,
    start: float = 0.0,
    end: float | None = None,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    backend: Backend | str = Backend.PYAV,
    limits: MediaLimits | None = None,
    isolate: bool = True,
) -> Clip:
    """Probe, sample frames and read audio in one child process (one pass over the header).

    Arguments are those of :func:`sample_frames` and :func:`read_audio`.
    """
    limits = limits or MediaLimits()
    request = _request(
        num_frames=num_frames, fps=fps, size=size, fit=fit, mode=mode, start=start, end=end
    )
    clip, _ = run(
        _clip_job,
        os.fspath(path),
        request,
        sample_rate,
        limits,
        _backend(backend),
        limits=limits,
        isolate=isolate,
    )
    return clip
