"""Small frame helpers shared by the perception experts (numpy + OpenCV, no torch).

Frames arrive as the media layer decodes them: uint8 RGB ``(T, H, W, 3)`` arrays, usually
fitted into 540x960 with black bars (``Fit.PAD``), with float64 times ``(T,)`` in seconds.
"""

from __future__ import annotations

import cv2
import numpy as np

# A padded bar is exactly black when the media layer pads; bars burnt into the video are
# "video black" (RGB 16 in limited range, 0 after conversion) plus a few levels of compression
# noise. 24 of 255 sits above both and below any lit picture content.
BAR_LEVEL = 24


def check_frames(images: np.ndarray, times: np.ndarray | None = None) -> None:
    """Raise ``ValueError`` unless ``images`` is uint8 (T, H, W, 3) and ``times`` is (T,)."""
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(
            f"images must be uint8 (T, H, W, 3), got {images.dtype} {tuple(images.shape)}"
        )
    if times is not None and np.shape(times) != (images.shape[0],):
        raise ValueError(f"times must be ({images.shape[0]},), got {tuple(np.shape(times))}")


def content_box(image: np.ndarray, level: int = BAR_LEVEL) -> tuple[int, int, int, int]:
    """The picture inside black bars: ``(top, bottom, left, right)``, bottom/right exclusive.

    Only whole rows and columns at the edges whose brightest pixel is at most ``level`` count
    as bars. When that would leave less than half of either side (a dark scene, not bars), the
    whole frame is returned.
    """
    h, w = image.shape[:2]
    rows = np.flatnonzero(image.max(axis=(1, 2)) > level)
    cols = np.flatnonzero(image.max(axis=(0, 2)) > level)
    if rows.size == 0 or cols.size == 0:
        return 0, h, 0, w
    top, bottom, left, right = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    if bottom - top < h / 2 or right - left < w / 2:
        return 0, h, 0, w
    return top, bottom, left, right


def center_crop_resize(image: np.ndarray, size: int, fraction: float) -> np.ndarray:
    """The centred square of side ``fraction`` x the shorter side, resized to ``size``."""
    h, w = image.shape[:2]
    side = max(1, round(min(h, w) * fraction))
    y, x = (h - side) // 2, (w - side) // 2
    square = image[y : y + side, x : x + side]
    # INTER_AREA averages the pixels a target pixel covers: no aliasing when shrinking.
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
    return cv2.resize(square, (size, size), interpolation=interpolation)


def gray_thumbnail(image: np.ndarray, width: int = 64) -> np.ndarray:
    """A small grayscale copy (float32 in [0, 1]) for cheap frame differences."""
    h, w = image.shape[:2]
    height = max(1, round(h * width / w))
    small = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
