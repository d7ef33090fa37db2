"""Decoding runs in a child process: hangs, crashes and memory blow-ups do not reach us."""

import os
import time

import numpy as np
import pytest
from conftest import decode_children

from models.media import MediaError, MediaErrorCode, MediaLimits, sample_frames
from models.media.sandbox import run_isolated


def test_a_hanging_decoder_is_stopped_with_decode_timeout():
    started = time.monotonic()
    with pytest.raises(MediaError) as caught:
        run_isolated(time.sleep, 30, timeout_s=1.0)
    assert caught.value.code == MediaErrorCode.DECODE_TIMEOUT
    assert time.monotonic() - started < 10
    assert decode_children() == []


def test_a_crashing_decoder_gives_decoder_crashed():
    with pytest.raises(MediaError) as caught:
        run_isolated(os.abort, timeout_s=30)
    assert caught.value.code == MediaErrorCode.DECODER_CRASHED
    assert "SIGABRT" in caught.value.message
    assert decode_children() == []


def test_memory_limit_turns_a_blow_up_into_decoder_crashed():
    with pytest.raises(MediaError) as caught:
        run_isolated(np.ones, 4 * 1024**3, timeout_s=30, memory_mb=512)  # wants 32 GB
    assert caught.value.code == MediaErrorCode.DECODER_CRASHED
    assert "memory" in caught.value.message


def test_a_real_decode_that_runs_too_long(make_video):
    limits = MediaLimits(decode_timeout_s=0.001)  # no real open + scan + decode fits in 1 ms
    with pytest.raises(MediaError) as caught:
        sample_frames(make_video("h264_aac_mp4"), num_frames=8, limits=limits)
    assert caught.value.code == MediaErrorCode.DECODE_TIMEOUT
    assert decode_children() == []


def test_bugs_are_not_disguised_as_media_errors():
    with pytest.raises(RuntimeError, match="ZeroDivisionError"):
        run_isolated(divmod, 1, 0, timeout_s=30)


def test_results_and_stats_come_back():
    value, stats = run_isolated(sum, [1, 2, 3], timeout_s=30)
    assert value == 6
    assert stats.peak_rss_mb > 1 and stats.wall_s > 0
