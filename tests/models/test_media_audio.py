"""read_audio() and audio_windows(): the sound on the video's clock, one window per frame."""

import numpy as np
import pytest

from models.media import audio_windows, load_clip, read_audio
from models.media.reader import iter_audio


def onset(audio: np.ndarray, sample_rate: int = 16000) -> float:
    """Seconds until the audio first gets loud."""
    loud = np.flatnonzero(np.abs(audio) > 0.2)
    return float(loud[0]) / sample_rate


@pytest.mark.parametrize(
    "kind", ["h264_aac_mp4", "vp9_opus_webm", "h264_mp3_mkv", "hevc_flac_mkv", "h264_pcm_mov"]
)
def test_audio_is_mono_16k_and_starts_where_the_tone_starts(make_video, kind):
    path = make_video(kind, tone_start=0.5)
    audio = read_audio(path)
    assert audio is not None and audio.dtype == np.float32 and audio.ndim == 1
    assert len(audio) == pytest.approx(32000, abs=400)  # 2 s at 16 kHz, on the video's clock
    # Encoder priming (AAC 1024+, Opus 312 samples, MP3 ~1100) is dropped: the onset is on time.
    assert onset(audio) == pytest.approx(0.5, abs=0.01)
    assert np.abs(audio[: int(0.45 * 16000)]).max() < 0.05
    assert 0.4 < np.abs(audio[16000:]).max() <= 1.0


def test_tone_pitch_survives_resampling(make_video):
    audio = read_audio(make_video("h264_aac_mp4"))
    spectrum = np.abs(np.fft.rfft(audio[:16000]))
    assert np.argmax(spectrum) == pytest.approx(440, abs=2)  # 1 Hz bins over 1 s


def test_other_sample_rates(make_video):
    audio = read_audio(make_video("h264_aac_mp4"), sample_rate=8000)
    assert len(audio) == pytest.approx(16000, abs=200)


def test_no_audio_track_gives_none(make_video):
    assert read_audio(make_video("no_audio_mp4")) is None


def test_windows_line_up_with_frames(make_video):
    clip = load_clip(make_video("h264_aac_mp4", tone_start=1.0), num_frames=4, size=64)
    windows, mask = audio_windows(clip.audio, clip.sample_rate, clip.frames.timestamps)
    assert windows.shape == (4, 8000) and mask.all()  # 0.5 s apart -> 0.5 s windows
    loudness = np.abs(windows).max(axis=1)
    assert loudness[:2].max() < 0.05 and loudness[2:].min() > 0.4  # tone from 1.0 s on


def test_windows_without_audio_are_masked():
    windows, mask = audio_windows(None, 16000, np.array([0.25, 0.75]))
    assert windows.shape == (2, 8000) and not mask.any() and not windows.any()


def test_windows_past_the_end_of_the_audio_are_masked_and_padded():
    audio = np.ones(16000, dtype=np.float32)  # 1 s
    windows, mask = audio_windows(audio, 16000, np.array([0.5, 1.0, 2.0]), window_s=0.5)
    assert mask.tolist() == [True, True, False]
    assert windows[1, :4000].min() == 1.0 and windows[1, 4000:].max() == 0.0


def test_load_clip_reads_everything_in_one_child(make_video):
    clip = load_clip(make_video("vp9_opus_webm"), num_frames=5, size=32)
    assert clip.info.video_codec == "vp9"
    assert clip.frames.images.shape == (5, 32, 32, 3)
    assert clip.audio is not None and clip.sample_rate == 16000


# --- a span of the audio: read_audio(start=, end=) and iter_audio() ----------------------------


@pytest.mark.parametrize("kind", ["h264_aac_mp4", "vp9_opus_webm", "h264_pcm_mov"])
def test_span_starts_at_start_on_the_video_timeline(make_video, kind):
    path = make_video(kind, duration=4, tone_start=2.5)
    span = read_audio(path, start=1.5, end=3.5)
    assert span is not None and len(span) == pytest.approx(32000, abs=2)
    assert onset(span) == pytest.approx(1.0, abs=0.01)  # 2.5 s on the timeline, 1.5 s in


def test_span_equals_the_same_samples_of_the_whole_track(make_video):
    path = make_video("h264_aac_mp4", duration=4)
    whole = read_audio(path)
    span = read_audio(path, start=1.0, end=2.0)
    assert len(span) == 16000
    # The same 440 Hz tone, aligned to well under a sample (a phase of the resampler).
    assert np.abs(span[1000:-1000] - whole[17000:31000]).max() < 0.1


def test_span_end_is_clipped_to_the_video(make_video):
    path = make_video("h264_aac_mp4")  # 2 s
    assert len(read_audio(path, start=1.5, end=10.0)) == pytest.approx(8000, abs=2)


def test_invalid_spans_are_refused(make_video):
    path = make_video("h264_aac_mp4")
    for start, end in ((-1.0, None), (1.0, 1.0), (float("nan"), None)):
        with pytest.raises(ValueError):
            read_audio(path, start=start, end=end)


def test_iter_audio_chunks_join_into_the_whole_track(make_video):
    path = make_video("h264_aac_mp4", duration=5, tone_start=1.0)
    chunks = list(iter_audio(path, chunk_s=2.0))
    assert [offset for offset, _ in chunks] == [0.0, 2.0, 4.0]
    assert [len(a) for _, a in chunks] == [32000, 32000, pytest.approx(16000, abs=2)]
    joined = np.concatenate([a for _, a in chunks])
    assert onset(joined) == pytest.approx(1.0, abs=0.01)
    assert len(joined) == pytest.approx(len(read_audio(path)), abs=2)


def test_iter_audio_of_a_file_without_audio_yields_nothing(make_video):
    assert list(iter_audio(make_video("no_audio_mp4"))) == []
