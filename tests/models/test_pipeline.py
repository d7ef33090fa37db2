"""CaptionPipeline on real encoded files: features, windows, batches, segments, answers."""

from pathlib import Path

import pytest
import torch
from conftest import decode_children

from models.captioner import pipeline as pipeline_module
from models.captioner.features import FeaturesMismatch, VideoFeatures
from models.captioner.pipeline import CaptionPipeline, Segment, StageTimer
from models.media import MediaError, MediaErrorCode


@pytest.fixture(scope="module")
def pipe(tiny_model_dir: Path) -> CaptionPipeline:
    return CaptionPipeline.from_pretrained(tiny_model_dir, device="cpu")


def test_extract_samples_the_configured_rate_on_one_time_grid(
    pipe: CaptionPipeline, make_video
) -> None:
    timer = StageTimer()
    f = pipe.extract(make_video("h264_aac_mp4", duration=3.0), timer=timer)
    assert len(f) == 6  # 3 s at 2 frames per second
    assert f.visual.shape == (6, 64) and f.audio.shape == (6, 64)
    torch.testing.assert_close(
        f.timestamps, torch.arange(6, dtype=torch.float64) * 0.5 + 0.25, atol=0.02, rtol=0
    )
    assert f.visual_mask.all() and f.audio_mask.all()
    assert f.duration_s == pytest.approx(3.0, abs=0.05)
    assert set(timer.seconds) == {"decode", "features"}
    assert decode_children() == []


def test_a_video_without_audio_gets_an_all_masked_audio_stream(
    pipe: CaptionPipeline, make_video
) -> None:
    f = pipe.extract(make_video("no_audio_mp4"))
    assert not f.has_audio and not f.audio_mask.any()
    assert isinstance(pipe.caption(f), str)
    assert isinstance(pipe.answer(f, "which sound plays?"), str)


def test_a_one_frame_video_gives_one_step_and_a_caption(pipe: CaptionPipeline, make_video) -> None:
    f = pipe.extract(make_video("h264_aac_mp4", duration=1 / 30))
    assert len(f) == 1
    assert isinstance(pipe.caption(f), str)
    [segment] = pipe.caption_segments(f, 5.0)
    assert segment.start == 0.0 and segment.end == pytest.approx(1 / 30, abs=0.01)


def test_long_video_is_processed_in_windows_with_the_same_features(
    tiny_model_dir: Path, make_video
) -> None:
    """Windows of 8 frames give exactly what one pass over all frames gives."""
    video = make_video("h264_aac_mp4", duration=10.0)
    windowed = CaptionPipeline.from_pretrained(tiny_model_dir, device="cpu")
    assert windowed.config.max_frames == 8
    whole = CaptionPipeline.from_pretrained(tiny_model_dir, device="cpu")
    whole.model.config.max_frames = 20
    a, b = windowed.extract(video), whole.extract(video)
    assert len(a) == len(b) == 20
    torch.testing.assert_close(a.timestamps, b.timestamps)
    torch.testing.assert_close(a.visual, b.visual, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(a.audio, b.audio, atol=1e-5, rtol=1e-4)
    # The whole-video caption reads max_frames steps spread over the video.
    assert len(a.subsample(8)) == 8 and isinstance(windowed.caption(a), str)


def test_long_video_audio_read_a_window_at_a_time_gives_the_same_features(
    pipe: CaptionPipeline, make_video, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past WHOLE_AUDIO_S the audio is read per window (bounded memory): same features."""
    video = make_video("h264_aac_mp4", duration=6.0)
    whole = pipe.extract(video)
    monkeypatch.setattr(pipeline_module, "WHOLE_AUDIO_S", 1.0)
    windowed = pipe.extract(video)
    torch.testing.assert_close(whole.audio_mask, windowed.audio_mask)
    # Decoding from a seek point primes the AAC decoder a little differently: close, not equal.
    torch.testing.assert_close(whole.audio, windowed.audio, atol=1e-3, rtol=1e-2)


def test_segments_cover_the_video_in_order(pipe: CaptionPipeline, make_video) -> None:
    f = pipe.extract(make_video("h264_aac_mp4", duration=5.0))
    segments = pipe.caption_segments(f, 2.0)
    assert [(s.start, s.end) for s in segments] == [
        (0.0, 2.0),
        (2.0, 4.0),
        (4.0, pytest.approx(5.0, abs=0.05)),
    ]
    assert all(isinstance(s, Segment) and isinstance(s.text, str) for s in segments)
    with pytest.raises(ValueError, match="positive"):
        pipe.caption_segments(f, 0)


def test_batched_calls_equal_one_at_a_time(pipe: CaptionPipeline, make_video) -> None:
    short = pipe.extract(make_video("h264_aac_mp4", duration=1.0))
    long = pipe.extract(make_video("vp9_opus_webm", duration=3.0))
    silent = pipe.extract(make_video("no_audio_mp4"))
    videos = [short, long, silent]
    assert pipe.caption(videos) == [pipe.caption(v) for v in videos]
    questions = ["what colour is the picture?", "which sound plays?", "what colour?"]
    assert pipe.answer(videos, questions) == [
        pipe.answer(v, q) for v, q in zip(videos, questions, strict=True)
    ]
    assert pipe.answer(long, questions) == [pipe.answer(long, q) for q in questions]
    segments = pipe.caption_segments(videos, 1.0)
    assert segments == [pipe.caption_segments(v, 1.0) for v in videos]
    with pytest.raises(ValueError, match="3 videos but 2 questions"):
        pipe.answer(videos, questions[:2])
    with pytest.raises(ValueError, match="empty"):
        pipe.answer(long, "  ")


def test_saved_features_answer_without_decoding_again(
    pipe: CaptionPipeline, make_video, tmp_path: Path
) -> None:
    f = pipe.extract(make_video("h264_aac_mp4"))
    f.save(tmp_path / "f.safetensors")
    loaded = VideoFeatures.load(tmp_path / "f.safetensors")
    assert torch.equal(loaded.visual, f.visual) and torch.equal(loaded.timestamps, f.timestamps)
    assert (loaded.visual_backbone, loaded.audio_backbone) == (f.visual_backbone, f.audio_backbone)
    timer = StageTimer()
    assert pipe.answer(loaded, "which sound plays?", timer=timer) == pipe.answer(
        f, "which sound plays?"
    )
    assert "decode" not in timer.seconds and "features" not in timer.seconds
    assert list(tmp_path.iterdir()) == [tmp_path / "f.safetensors"]  # no temporary file left


def test_features_of_other_backbones_are_refused(pipe: CaptionPipeline, make_video) -> None:
    f = pipe.extract(make_video("h264_aac_mp4"))
    other = VideoFeatures(**{**f.__dict__, "visual_backbone": "builtin-FrameCNN-0000"})
    with pytest.raises(FeaturesMismatch, match="other backbones"):
        pipe.caption(other)


def test_a_file_that_is_not_video_features_is_refused(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match="not a vidcap features file"):
        VideoFeatures.load(tmp_path / "other.safetensors")


def test_bad_media_raises_the_media_layers_error(pipe: CaptionPipeline, make_video) -> None:
    with pytest.raises(MediaError) as caught:
        pipe.extract(make_video("text"))
    assert caught.value.code is MediaErrorCode.NOT_A_VIDEO
    assert decode_children() == []


def test_window_and_subsample_pick_the_right_steps(pipe: CaptionPipeline, make_video) -> None:
    f = pipe.extract(make_video("h264_aac_mp4", duration=3.0))  # steps at 0.25, 0.75, ... 2.75
    assert f.window(1.0, 2.0).timestamps.tolist() == pytest.approx([1.25, 1.75], abs=0.02)
    assert f.window(10.0, 11.0).timestamps.tolist() == pytest.approx([2.75], abs=0.02)
    # One step from each third of the video.
    assert f.subsample(3).timestamps.tolist() == pytest.approx([0.75, 1.75, 2.75], abs=0.02)


def test_pipeline_refuses_a_tokenizer_that_does_not_fit(tiny_model_dir: Path) -> None:
    from models.captioner.modeling_captioner import VideoCaptionerModel
    from models.captioner.tokenization import train_tokenizer

    model = VideoCaptionerModel.from_pretrained(tiny_model_dir, dtype=torch.float32)
    big = train_tokenizer(["x" * 5000, " ".join(str(i) for i in range(3000))], vocab_size=400)
    with pytest.raises(ValueError, match="tokens but the model's vocabulary"):
        CaptionPipeline(model, big, device="cpu")


def test_missing_model_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no vidcap model"):
        CaptionPipeline.from_pretrained(tmp_path)
