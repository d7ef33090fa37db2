"""Pure functions of the media layer: sampling instants, frame choice, resize plans."""

import numpy as np
import pytest

from models.media.geometry import Fit, plan_resize
from models.media.sampling import frame_at, keyframes_in_reach, nearest_keyframe, sample_times


def test_instants_are_window_centres():
    assert sample_times(2.0, num_frames=4).tolist() == [0.25, 0.75, 1.25, 1.75]
    assert sample_times(10.0, fps=1, start=2.0, end=4.0).tolist() == [2.5, 3.5]
    assert sample_times(0.2, fps=1).tolist() == [0.1]  # at least one frame


def test_end_is_capped_at_the_video_end():
    assert sample_times(1.0, num_frames=2, end=99).tolist() == [0.25, 0.75]


def test_frame_shown_is_the_last_started():
    times = np.array([0.0, 0.1, 0.4, 0.5])
    assert frame_at(times, np.array([0.0, 0.09, 0.1, 0.39, 0.45, 9.0])).tolist() == [
        0,
        0,
        1,
        1,
        2,
        3,
    ]


def test_nearest_keyframe_prefers_earlier_on_ties():
    keys = np.array([0.0, 1.0, 2.0])
    assert nearest_keyframe(keys, np.array([0.4, 0.5, 0.6, 5.0])).tolist() == [0, 0, 1, 2]


def test_a_keyframe_stands_in_only_within_half_an_interval():
    keys = np.array([0.0, 4.0])
    _, close = keyframes_in_reach(keys, sample_times(8.0, num_frames=4), 0.0)  # 1, 3, 5, 7
    assert close.tolist() == [True, True, True, False]
    # one frame of a long video: its window is the whole video, not "anything goes"
    _, close = keyframes_in_reach(np.array([0.0]), sample_times(60.0, num_frames=1), 0.0)
    assert close.tolist() == [True]
    _, close = keyframes_in_reach(np.array([0.0]), sample_times(60.0, num_frames=1, start=20), 20)
    assert close.tolist() == [False]  # the instant is at 40 s, the window is [20, 60)


@pytest.mark.parametrize(
    ("w", "h", "rotation", "fit", "decode"),
    [
        (1920, 1080, 0, Fit.CROP, (398, 224)),  # short side to 224, crop the sides
        (1920, 1080, 0, Fit.PAD, (224, 126)),  # long side to 224, pad top and bottom
        (1920, 1080, 90, Fit.CROP, (398, 224)),  # decoded in stored orientation, turned after
        (720, 576, 0, Fit.CROP, (280, 224)),
    ],
)
def test_resize_plan(w, h, rotation, fit, decode):
    plan = plan_resize(w, h, rotation=rotation, pixel_aspect=1.0, size=224, fit=fit)
    assert (plan.decode_width, plan.decode_height) == decode
    stored = np.zeros((decode[1], decode[0], 3), dtype=np.uint8)
    assert plan.finish(stored).shape == (224, 224, 3)


def test_non_square_pixels_widen_the_picture():
    # DVD PAL 16:9: 720x576 stored, pixels 64:45 wide -> shown as 1024x576
    plan = plan_resize(720, 576, rotation=0, pixel_aspect=64 / 45, size=(90, 160), fit=Fit.PAD)
    assert (plan.decode_width, plan.decode_height) == (160, 90)
