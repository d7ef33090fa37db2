"""sample_frames(): the true frame at each instant, upright, at the size asked for."""

import av
import numpy as np
import pytest
from conftest import decode_children

from models.media import MediaError, MediaErrorCode, MediaLimits, sample_frames, synth
from models.media._decord import available as decord_available

EXACT_KINDS = [
    "h264_aac_mp4",
    "vp9_opus_webm",
    "mpeg4_mp2_avi",
    "hevc_flac_mkv",
    "h264_pcm_mov",
    "no_audio_mp4",
    # AVI as cameras, screen recorders and UCF101/HMDB51 write it: stamps in decode order
    "h264_bframes_avi",
    "mpeg4_bframes_avi",
    "mjpeg_avi",
    "xvid_packed_avi",
]


def indices(images: np.ndarray) -> list[int]:
    return [synth.frame_index(image) for image in images]


def shown_at(times: np.ndarray, instants: np.ndarray) -> np.ndarray:
    """Index of the frame on screen at each instant (the last one that started)."""
    return np.searchsorted(times, instants + 1e-9, side="right") - 1


@pytest.mark.parametrize("kind", EXACT_KINDS)
def test_exact_mode_returns_the_frame_on_screen_at_each_instant(make_video, kind):
    images, stamps = sample_frames(make_video(kind), num_frames=8, size=(240, 320))
    instants = (np.arange(8) + 0.5) * 2.0 / 8
    expected = shown_at(synth.frame_times(synth.PRESETS[kind][1]), instants)
    assert images.shape == (8, 240, 320, 3) and images.dtype == np.uint8
    assert indices(images) == expected.tolist()
    assert np.allclose(stamps, expected / 30.0, atol=1e-3)


def test_exact_mode_on_b_frames_and_many_keyframes(make_video):
    path = make_video("h264_aac_mp4", gop=7, duration=4.0)
    images, _ = sample_frames(path, num_frames=25, size=(120, 160))
    expected = shown_at(np.arange(120) / 30.0, (np.arange(25) + 0.5) * 4.0 / 25)
    assert indices(images) == expected.tolist()


def test_variable_frame_rate_samples_true_times_not_indices(make_video):
    path = make_video("vfr_mp4")
    times = synth.frame_times(synth.PRESETS["vfr_mp4"][1])
    images, stamps = sample_frames(path, num_frames=12, size=(240, 320))
    expected = shown_at(times, (np.arange(12) + 0.5) * 3.0 / 12)
    assert indices(images) == expected.tolist()
    assert np.allclose(stamps, times[expected], atol=2e-3)
    # sampling by index would have returned frame round(i * 45 / 12), which is not this
    assert expected.tolist() != np.round((np.arange(12) + 0.5) * 45 / 12).astype(int).tolist()


def test_rotated_video_comes_out_upright(make_video):
    images, _ = sample_frames(make_video("rotated_mp4"), num_frames=4, size=(320, 240))
    assert images.shape == (4, 320, 240, 3)
    top, bottom = images[:, :20].mean(axis=(0, 1, 2)), images[:, -20:].mean(axis=(0, 1, 2))
    red_on_top = images[:, :20, :, 0].mean() > 200 and images[:, :20, :, 1].mean() < 60
    assert red_on_top, (top, bottom)
    assert indices(images) == [7, 22, 37, 52]


@pytest.mark.parametrize("rotation", [180, 270])
def test_every_rotation_comes_out_upright(make_video, rotation):
    size = (240, 320) if rotation == 180 else (320, 240)
    images, _ = sample_frames(make_video("rotated_mp4", rotation=rotation), num_frames=2, size=size)
    assert images[:, :20, :, 0].mean() > 200 and images[:, :20, :, 1].mean() < 60
    assert indices(images) == [15, 45]


def test_crop_fills_the_square_and_pad_keeps_the_whole_picture(make_video):
    path = make_video("h264_aac_mp4")
    crop, _ = sample_frames(path, num_frames=1, size=224, fit="crop")
    pad, _ = sample_frames(path, num_frames=1, size=224, fit="pad")
    assert crop.shape == pad.shape == (1, 224, 224, 3)
    # 4:3 in a square: pad leaves black bars above and below (224 * 3/4 = 168 rows of picture)
    assert pad[0, :20].max() == 0 and pad[0, -20:].max() == 0
    assert pad[0, 28:40, :, 0].mean() > 200  # the red band starts right under the bar
    # crop has no bars: the red band is the top row, and the sides of the picture are cut
    assert crop[0, :10, :, 0].mean() > 200
    assert crop[0, 100:140].min() > 0


def test_fast_mode_uses_nearby_keyframes_and_exact_frames_elsewhere(make_video):
    path = make_video("h264_aac_mp4", gop=15, bframes=False, duration=4.0)
    # 4 instants, 1 s apart; keyframes every 0.5 s: each instant is 0 or 0.25 s off one
    images, stamps = sample_frames(path, num_frames=4, size=(120, 160), mode="fast")
    got = indices(images)
    assert all(i % 15 == 0 for i in got)
    assert np.all(np.abs(stamps - (np.arange(4) + 0.5)) <= 0.5)
    # with keyframes far apart, fast mode falls back to the true frames
    sparse = make_video("h264_aac_mp4", gop=300, duration=4.0)
    images, _ = sample_frames(sparse, num_frames=4, size=(120, 160), mode="fast")
    assert indices(images) == [0, 45, 75, 105]


def test_fps_sampling_and_a_span(make_video):
    path = make_video("h264_aac_mp4", duration=4.0)
    images, stamps = sample_frames(path, fps=2, start=1.0, end=3.0, size=(120, 160))
    assert len(images) == 4
    assert indices(images) == [37, 52, 67, 82]
    assert np.all((stamps >= 1.0) & (stamps < 3.0))


def test_one_frame_from_a_one_frame_video(make_video):
    path = make_video("h264_aac_mp4", duration=1 / 30)
    images, stamps = sample_frames(path, num_frames=3, size=64)
    assert images.shape == (3, 64, 64, 3)
    assert stamps.tolist() == [0.0, 0.0, 0.0]


def test_truncated_file_whose_header_promises_more_frames_raises(make_video):
    with pytest.raises(MediaError) as caught:
        sample_frames(make_video("truncated_index_intact"), num_frames=8)
    assert caught.value.code == MediaErrorCode.CORRUPT_MEDIA
    assert decode_children() == []


@pytest.mark.parametrize("kind", ["empty", "random_bytes", "text", "audio_only", "truncated"])
def test_bad_files_raise_media_errors(make_video, kind):
    with pytest.raises(MediaError):
        sample_frames(make_video(kind), num_frames=4)
    assert decode_children() == []


def test_av1_is_decoded(make_video):
    images, stamps = sample_frames(make_video("av1_opus_webm"), num_frames=6, size=96)
    assert images.shape == (6, 96, 96, 3)
    assert np.all(np.diff(stamps) > 0)


def test_too_many_frames_for_one_call(make_video):
    with pytest.raises(MediaError) as caught:
        sample_frames(
            make_video("h264_aac_mp4"), num_frames=50, limits=MediaLimits(max_sample_frames=16)
        )
    assert caught.value.code == MediaErrorCode.TOO_MANY_FRAMES


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"num_frames": 4, "fps": 2}, {"num_frames": 0}, {"fps": -1}, {"num_frames": 2, "size": 4}],
)
def test_invalid_requests_are_value_errors(make_video, kwargs):
    with pytest.raises(ValueError):
        sample_frames(make_video("h264_aac_mp4"), **kwargs)


def test_span_past_the_end_is_a_value_error(make_video):
    with pytest.raises(ValueError, match="holds no video"):
        sample_frames(make_video("h264_aac_mp4"), num_frames=2, start=5.0)


@pytest.mark.skipif(not decord_available(), reason="decord not installed")
@pytest.mark.parametrize("kind", ["h264_aac_mp4", "vp9_opus_webm", "hevc_flac_mkv", "vfr_mp4"])
def test_decord_backend_returns_the_same_frames(make_video, kind):
    path = make_video(kind)
    size = (120, 160)
    ours = sample_frames(path, num_frames=6, size=size)
    theirs = sample_frames(path, num_frames=6, size=size, backend="decord")
    assert indices(theirs.images) == indices(ours.images)
    assert np.allclose(theirs.timestamps, ours.timestamps, atol=2e-3)
    assert theirs.images.shape == ours.images.shape


@pytest.mark.skipif(not decord_available(), reason="decord not installed")
def test_decord_backend_rotated_and_av1(make_video):
    rotated = sample_frames(
        make_video("rotated_mp4"), num_frames=4, size=(320, 240), backend="decord"
    )
    assert rotated.images[:, :20, :, 0].mean() > 200
    assert indices(rotated.images) == [7, 22, 37, 52]
    av1 = sample_frames(make_video("av1_opus_webm"), num_frames=3, size=64, backend="decord")
    assert av1.images.shape == (3, 64, 64, 3)


@pytest.mark.skipif(not decord_available(), reason="decord not installed")
def test_decord_backend_refuses_truncated_files_like_pyav(make_video):
    with pytest.raises(MediaError) as caught:
        sample_frames(make_video("truncated_index_intact"), num_frames=4, backend="decord")
    assert caught.value.code == MediaErrorCode.CORRUPT_MEDIA


def test_avi_with_b_frames_is_sampled_in_presentation_order(make_video):
    # The decoder puts these frames out with shuffled stamps (1, 3, 2, 4, 6, 7, 5, ...): the
    # sampler must follow its output order, not trust the stamps (it refused such files).
    path = make_video("h264_bframes_avi", duration=4.0, gop=12)
    with av.open(str(path)) as container:
        stamps = [f.pts for f in container.decode(video=0)]
    assert stamps != sorted(stamps), "the file does not have the shuffled stamps it must test"
    images, times = sample_frames(path, num_frames=30, size=(120, 160))
    expected = shown_at(np.arange(120) / 30.0, (np.arange(30) + 0.5) * 4.0 / 30)
    assert indices(images) == expected.tolist()
    assert np.allclose(times, expected / 30.0, atol=1e-3)


@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_xvid_packed_b_frames_are_sampled_where_they_are_shown(make_video, mode):
    # DivX/XviD AVIs (UCF101, HMDB51) store a reference frame and the B-frame shown before
    # it in one chunk, then a not-coded placeholder. Sampling a late span only: the decoder
    # starts at a later keyframe, never having read the first chunk that says "packed".
    path = make_video("xvid_packed_avi", duration=4.0, gop=9)
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.codec_tag == "XVID"
        chunks = [bytes(p) for p in container.demux(video=0) if p.size]
    assert b"DivX503b1393p" in chunks[0]
    assert any(c.count(b"\x00\x00\x01\xb6") == 2 for c in chunks), "no packed chunk"
    assert len(chunks) == 120  # one chunk per frame slot
    images, times = sample_frames(
        path, num_frames=10, size=(120, 160), start=2.0, end=4.0, mode=mode
    )
    assert indices(images) == np.round(times * 30).astype(int).tolist()
    if mode == "exact":
        expected = shown_at(np.arange(120) / 30.0, 2.0 + (np.arange(10) + 0.5) * 0.2)
        assert indices(images) == expected.tolist()


def test_a_truncated_avi_still_fails(make_video, tmp_path):
    whole = make_video("h264_bframes_avi", duration=3.0)
    cut = synth.truncate(whole, tmp_path / "cut.avi")
    with pytest.raises(MediaError) as err:
        sample_frames(cut, num_frames=8)
    assert err.value.code is MediaErrorCode.CORRUPT_MEDIA


def test_real_h264_avi_footage_gives_the_frames_a_plain_decode_gives(real_data):
    # ../shared/data/real/clips/street_hug.avi: real footage, H.264 with B-frames in AVI.
    real_avi = real_data / "clips" / "street_hug.avi"
    with av.open(str(real_avi)) as container:
        stream = container.streams.video[0]
        rate, size = float(stream.average_rate), (stream.height // 4, stream.width // 4)
        plain = [
            f.to_ndarray(format="rgb24", width=size[1], height=size[0])
            for f in container.decode(video=0)
        ]
    images, times = sample_frames(real_avi, num_frames=10, size=size, fit="pad")
    assert len(images) == 10
    for image, t in zip(images, times, strict=True):
        k = round(t * rate)  # times count from the first frame
        nearest = min(range(len(plain)), key=lambda i: np.abs(plain[i].astype(int) - image).mean())
        assert nearest == k, (t, nearest, k)
