"""The decord backend for frames: the design card's choice, optional, behind the same interface.

decord is used only where it works. Measured defects (shared/notes/decoding.md) and how they
are handled here:

- it cannot open AV1: AV1 files are decoded by PyAV instead;
- it breaks on VP9 with its default thread count: it always runs with 2 threads;
- its AudioReader leaks the decoded buffer on every call and keeps Opus priming samples:
  audio always comes from PyAV.

Probing, limits and truncation checks always come from PyAV first, so both backends accept
and refuse exactly the same files.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from models.media import _pyav
from models.media.errors import MediaError, MediaErrorCode
from models.media.limits import MediaLimits
from models.media.sampling import frame_at

_PYAV_ONLY_CODECS = ("av1",)


def available() -> bool:
    """Whether decord can be imported here."""
    try:
        import decord  # noqa: F401
    except ImportError:
        return False
    return True


def sample_scanned(
    path: str, request: _pyav.FrameRequest, limits: MediaLimits, found: _pyav.Scan
) -> tuple[np.ndarray, np.ndarray]:
    """Sample frames with decord from a file PyAV already inspected (same result contract)."""
    if found.codec in _PYAV_ONLY_CODECS:
        return _pyav.sample_scanned(path, request, limits, found)
    import decord

    times = _pyav.check_count(request, found.duration_s, limits)
    try:
        # The resize plan needs the rotation; decord applies rotation itself, so decode at
        # the display orientation and let the plan skip its own turn.
        with _pyav.open_input(path, limits) as container:
            stream = _pyav.video_stream(container)
            plan = _pyav.resize_plan_for(_pyav.first_frame(container, stream), stream, request)
        # decord turns rotated pictures upright itself: ask it for the display orientation.
        turned = plan.rotation in (90, 270)
        width, height = (
            (plan.decode_height, plan.decode_width)
            if turned
            else (plan.decode_width, plan.decode_height)
        )
        reader = decord.VideoReader(
            path, ctx=decord.cpu(0), width=width, height=height, num_threads=2
        )
        if len(reader) != len(found.pts):
            # decord counts frames its own way on some files; PyAV's count is the truth.
            return _pyav.sample_scanned(path, request, limits, found)
        # Frames are chosen from PyAV's packet scan, so both backends pick the same ones.
        frame_times = found.seconds(found.pts)
        index = frame_at(frame_times, times)
        images = reader.get_batch(list(index)).asnumpy()  # (T, H, W, 3)
        shown = frame_times[index]
        del reader
    except MediaError:
        raise
    except Exception as e:  # decord raises bare RuntimeErrors (DECORDError) for bad data
        raise MediaError(MediaErrorCode.CORRUPT_MEDIA, f"decord could not decode: {e}") from None
    upright = replace(plan, rotation=0)  # decord already turned the pictures
    frames = np.stack([upright.finish(image) for image in images])
    if frames.shape[0] != len(times):
        raise MediaError(MediaErrorCode.CORRUPT_MEDIA, "decord returned fewer frames than asked")
    return frames, shown.astype(np.float64)
