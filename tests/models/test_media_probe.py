"""probe(): metadata of every kind of file users upload, and a stable code for every bad one."""

import pytest
from conftest import decode_children

from models.media import MediaError, MediaErrorCode, MediaLimits, probe, synth

GOOD = {
    # kind: (container, video codec, audio codec)
    "h264_aac_mp4": ("mp4", "h264", "aac"),
    "vp9_opus_webm": ("webm", "vp9", "opus"),
    "mpeg4_mp2_avi": ("avi", "mpeg4", "mp2"),
    "hevc_flac_mkv": ("mkv", "hevc", "flac"),
    "h264_mp3_mkv": ("mkv", "h264", "mp3"),
    "av1_opus_webm": ("webm", "av1", "opus"),
    "h264_pcm_mov": ("mov", "h264", "pcm_s16le"),
}


@pytest.mark.parametrize("kind", sorted(GOOD))
def test_probe_reports_container_codecs_size_and_timing(make_video, kind):
    container, vcodec, acodec = GOOD[kind]
    info = probe(make_video(kind))
    assert (info.container, info.video_codec, info.audio_codec) == (container, vcodec, acodec)
    assert (info.width, info.height) == (320, 240)
    assert (info.display_width, info.display_height) == (320, 240)
    assert info.rotation == 0
    assert info.frame_count == 60 and info.frame_count_exact
    assert info.duration_s == pytest.approx(2.0, abs=0.05)
    assert info.fps == pytest.approx(30.0, rel=0.03)
    assert not info.fps_variable
    assert info.has_audio and info.sample_rate == 48000 and info.channels == 1
    assert info.keyframe_count >= 1


def test_probe_video_without_audio_says_so(make_video):
    info = probe(make_video("no_audio_mp4"))
    assert not info.has_audio
    assert info.audio_codec is None and info.sample_rate is None


def test_probe_rotated_video_reports_rotation_and_display_size(make_video):
    info = probe(make_video("rotated_mp4"))
    assert info.rotation == 90
    assert (info.width, info.height) == (320, 240)
    assert (info.display_width, info.display_height) == (240, 320)


@pytest.mark.parametrize("rotation", [180, 270])
def test_probe_other_rotations(make_video, rotation):
    assert probe(make_video("rotated_mp4", rotation=rotation)).rotation == rotation


def test_probe_variable_frame_rate_is_detected_with_true_count(make_video):
    info = probe(make_video("vfr_mp4"))
    assert info.fps_variable
    # durations alternate 1/30 s and 3/30 s over 3 s
    assert info.frame_count == len(synth.frame_times(synth.PRESETS["vfr_mp4"][1]))
    assert info.duration_s == pytest.approx(3.0, abs=0.05)


BAD = {
    "empty": MediaErrorCode.NOT_A_VIDEO,
    "random_bytes": MediaErrorCode.NOT_A_VIDEO,
    "text": MediaErrorCode.NOT_A_VIDEO,
    "audio_only": MediaErrorCode.NO_VIDEO_STREAM,
    "truncated": MediaErrorCode.CORRUPT_MEDIA,
    "truncated_index_intact": MediaErrorCode.CORRUPT_MEDIA,
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_probe_bad_file_gives_stable_code_and_leaves_no_process(make_video, kind):
    with pytest.raises(MediaError) as caught:
        probe(make_video(kind))
    assert caught.value.code == BAD[kind]
    assert caught.value.message  # a sentence for a person
    assert decode_children() == []


def test_truncated_file_message_says_what_is_missing(make_video):
    with pytest.raises(MediaError, match="truncated"):
        probe(make_video("truncated_index_intact"))


def test_text_that_starts_like_a_transport_stream_byte_is_still_not_a_video(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("Good morning. " * 40)  # 'G' is 0x47, the MPEG-TS sync byte
    with pytest.raises(MediaError) as caught:
        probe(path)
    assert caught.value.code == MediaErrorCode.NOT_A_VIDEO


def test_missing_file(tmp_path):
    with pytest.raises(MediaError) as caught:
        probe(tmp_path / "nope.mp4")
    assert caught.value.code == MediaErrorCode.FILE_NOT_FOUND


def test_playlist_formats_are_never_opened(tmp_path):
    # HLS makes FFmpeg open the files a playlist names; it is not on the allow-list.
    secret = tmp_path / "secret.ts"
    secret.write_bytes(b"\x47" * 188 * 4)
    playlist = tmp_path / "list.m3u8"
    playlist.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\n{secret}\n#EXT-X-ENDLIST\n")
    with pytest.raises(MediaError) as caught:
        probe(playlist)
    assert caught.value.code in (MediaErrorCode.UNSUPPORTED_CONTAINER, MediaErrorCode.NOT_A_VIDEO)


def test_container_not_on_allow_list(make_video):
    limits = MediaLimits(containers=("matroska",))
    with pytest.raises(MediaError) as caught:
        probe(make_video("h264_aac_mp4"), limits=limits)
    assert caught.value.code == MediaErrorCode.UNSUPPORTED_CONTAINER
    assert "mkv/webm" in caught.value.message


@pytest.mark.parametrize(
    ("limits", "code"),
    [
        (MediaLimits(max_duration_s=1.5), MediaErrorCode.VIDEO_TOO_LONG),
        (MediaLimits(max_pixels=320 * 200), MediaErrorCode.RESOLUTION_TOO_LARGE),
        (MediaLimits(max_fps=24), MediaErrorCode.FRAME_RATE_TOO_HIGH),
        (MediaLimits(video_codecs=("vp9",)), MediaErrorCode.UNSUPPORTED_CODEC),
        (MediaLimits(audio_codecs=("opus",)), MediaErrorCode.UNSUPPORTED_CODEC),
    ],
)
def test_limits_from_settings_are_enforced(make_video, limits, code):
    with pytest.raises(MediaError) as caught:
        probe(make_video("h264_aac_mp4"), limits=limits)
    assert caught.value.code == code


def test_in_process_probe_gives_the_same_answer(make_video):
    path = make_video("vp9_opus_webm")
    assert probe(path, isolate=False) == probe(path)
