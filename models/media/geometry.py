"""Output geometry: how a stored picture becomes an ``size`` x ``size`` model input.

The decoder resizes (swscale, inside FFmpeg), so full-resolution RGB of a frame never exists
in Python. What is left for numpy is cheap: turning the small picture upright and cropping or
padding it to the exact output size.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np


class Fit(StrEnum):
    """How the picture's aspect ratio meets the output's.

    ``crop``: scale so the picture covers the output, then cut the centre (loses the edges).
    ``pad``: scale so the whole picture fits, then pad with black bars (keeps everything).
    """

    CROP = "crop"
    PAD = "pad"


@dataclass(frozen=True)
class ResizePlan:
    """The decoder's output size (stored orientation) and the steps after it.

    Attributes:
        decode_width: Width to ask swscale for, in the stored orientation.
        decode_height: Height to ask swscale for, in the stored orientation.
        rotation: Clockwise display rotation in degrees (0, 90, 180, 270).
        out_height: Final height.
        out_width: Final width.
        fit: Crop or pad.
    """

    decode_width: int
    decode_height: int
    rotation: int
    out_height: int
    out_width: int
    fit: Fit

    def finish(self, image: np.ndarray) -> np.ndarray:
        """Turn a decoder-resized RGB picture (H, W, 3) upright and to the exact output size."""
        upright = np.rot90(image, k=-(self.rotation // 90)) if self.rotation else image
        h, w = upright.shape[:2]
        oh, ow = self.out_height, self.out_width
        if self.fit is Fit.CROP:
            top, left = (h - oh) // 2, (w - ow) // 2
            out = upright[top : top + oh, left : left + ow]
        else:
            out = np.zeros((oh, ow, 3), dtype=np.uint8)
            top, left = (oh - h) // 2, (ow - w) // 2
            out[top : top + h, left : left + w] = upright
        if out.shape != (oh, ow, 3):
            raise ValueError(f"resize produced {out.shape}, expected {(oh, ow, 3)}")
        return np.ascontiguousarray(out)


def output_size(size: int | tuple[int, int]) -> tuple[int, int]:
    """Normalise ``size`` (an int for a square, or ``(height, width)``) to (height, width)."""
    if isinstance(size, int):
        h = w = size
    else:
        h, w = size
    if h < 8 or w < 8 or h > 4096 or w > 4096:
        raise ValueError(f"output size must be between 8 and 4096 pixels a side, got {(h, w)}")
    return h, w


def plan_resize(
    width: int,
    height: int,
    *,
    rotation: int,
    pixel_aspect: float,
    size: int | tuple[int, int],
    fit: Fit | str,
) -> ResizePlan:
    """Work out the decoder size for a stored ``width`` x ``height`` picture.

    Args:
        width: Stored picture width.
        height: Stored picture height.
        rotation: Clockwise display rotation (0, 90, 180, 270).
        pixel_aspect: Sample aspect ratio (1.0 for square pixels).
        size: Output size: an int for a square or ``(height, width)``.
        fit: ``crop`` or ``pad``.

    Returns:
        The plan; ``plan.finish(decoded)`` gives the final array.
    """
    fit = Fit(fit)
    out_h, out_w = output_size(size)
    # Display geometry: non-square pixels stretch the width, then the rotation may swap sides.
    disp_w, disp_h = width * pixel_aspect, float(height)
    if rotation in (90, 270):
        disp_w, disp_h = disp_h, disp_w
    scale_w, scale_h = out_w / disp_w, out_h / disp_h
    scale = max(scale_w, scale_h) if fit is Fit.CROP else min(scale_w, scale_h)
    new_w, new_h = round(disp_w * scale), round(disp_h * scale)
    # Rounding must never leave a crop short of the output or a pad larger than it.
    if fit is Fit.CROP:
        new_w, new_h = max(new_w, out_w), max(new_h, out_h)
    else:
        new_w, new_h = max(1, min(new_w, out_w)), max(1, min(new_h, out_h))
    if rotation in (90, 270):
        new_w, new_h = new_h, new_w  # back to the stored orientation for the decoder
    return ResizePlan(new_w, new_h, rotation, out_h, out_w, fit)
