"""build_captioner(): parts of the captioner start from pretrained checkpoints on disk.

Every checkpoint here is a tiny model with random weights that the test saves itself with
``save_pretrained``; nothing is downloaded.
"""

from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import (
    ASTConfig,
    ASTModel,
    BartConfig,
    BartForConditionalGeneration,
    BertConfig,
    BertModel,
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
    CLIPProcessor,
    CLIPTokenizer,
    CLIPVisionConfig,
    CLIPVisionModel,
    PreTrainedConfig,
    WhisperConfig,
    WhisperModel,
)

from models.captioner.configuration_videobert import (
    VideoBertConfig,
    VideoCaptionerConfig,
    small_bart_config,
)
from models.captioner.modeling_captioner import VideoCaptionerModel, build_captioner

MEAN, STD = [0.1, 0.2, 0.3], [0.4, 0.5, 0.6]  # not CLIP's and not the config's (0.5, 0.5, 0.5)
WIDTH = 32  # of every tiny tower


def tiny_config(**videobert: object) -> VideoCaptionerConfig:
    values: dict = {
        "visual_feature_size": 16,
        "audio_feature_size": 16,
        "hidden_size": 32,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "fusion_layer": 1,
        "max_position_embeddings": 8,
    }
    values.update(videobert)
    return VideoCaptionerConfig(
        frame_size=32,
        visual_channels=[8],
        audio_channels=[8],
        n_mels=16,
        max_frames=4,
        max_question_tokens=4,
        videobert_config=VideoBertConfig(**values),
        decoder_config=small_bart_config(
            vocab_size=300,
            d_model=32,
            encoder_layers=1,
            decoder_layers=1,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=64,
            decoder_ffn_dim=64,
            max_position_embeddings=16,
        ),
    )


def clip_vision_config() -> CLIPVisionConfig:
    return CLIPVisionConfig(
        hidden_size=WIDTH,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
    )


def save_clip_vision(path: Path) -> CLIPVisionModel:
    torch.manual_seed(1)
    tower = CLIPVisionModel(clip_vision_config()).eval()
    tower.save_pretrained(path)
    CLIPImageProcessor(
        image_mean=MEAN, image_std=STD, size={"shortest_edge": 32}, crop_size=32
    ).save_pretrained(path)
    return tower


def save_full_clip(path: Path) -> CLIPModel:
    """A CLIP checkpoint with both towers, and its whole processor (image processor + tokenizer)."""
    torch.manual_seed(2)
    text = {
        "vocab_size": 8,
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "max_position_embeddings": 8,
        "pad_token_id": 1,
        "bos_token_id": 0,
        "eos_token_id": 1,
    }
    config = CLIPConfig(
        text_config=text, vision_config=clip_vision_config().to_dict(), projection_dim=16
    )
    model = CLIPModel(config).eval()
    model.save_pretrained(path)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "a</w>": 2, "b</w>": 3, "a": 4, "b": 5}
    CLIPProcessor(
        image_processor=CLIPImageProcessor(image_mean=MEAN, image_std=STD),
        tokenizer=CLIPTokenizer(vocab=vocab, merges=[]),
    ).save_pretrained(path)
    return model


def save_whisper(path: Path) -> WhisperModel:
    torch.manual_seed(3)
    config = WhisperConfig(
        vocab_size=64,
        d_model=WIDTH,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        num_mel_bins=16,
        max_source_positions=50,  # the encoder wants 2 * 50 = 100 mel frames
        max_target_positions=8,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        decoder_start_token_id=2,
    )
    model = WhisperModel(config).eval()
    model.save_pretrained(path)
    return model


def save_ast(path: Path) -> ASTModel:
    torch.manual_seed(4)
    config = ASTConfig(
        hidden_size=WIDTH,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_length=32,
        num_mel_bins=16,
        patch_size=16,
        frequency_stride=10,
        time_stride=10,
    )
    model = ASTModel(config).eval()
    model.save_pretrained(path)
    return model


def save_bart(path: Path) -> BartForConditionalGeneration:
    torch.manual_seed(5)
    config = BartConfig(
        vocab_size=300,
        d_model=16,  # not the captioner config's 32: the checkpoint's sizes must win
        encoder_layers=1,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=24,
        decoder_ffn_dim=24,
        max_position_embeddings=24,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        decoder_start_token_id=2,
        forced_eos_token_id=2,
    )
    model = BartForConditionalGeneration(config).eval()
    model.save_pretrained(path)
    return model


def save_bert(path: Path, layers: int = 3) -> BertModel:
    torch.manual_seed(6)
    config = BertConfig(
        vocab_size=50,
        hidden_size=WIDTH,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=16,
    )
    model = BertModel(config).eval()
    model.save_pretrained(path)
    return model


def batch(config: Any, b: int = 2, t: int = 3) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    size = config.image_size
    return {
        "pixel_values": torch.randint(
            0, 256, (b, t, 3, size, size), dtype=torch.uint8, generator=g
        ),
        "audio_values": 0.1 * torch.randn(b, t, config.audio_window_samples, generator=g),
        "labels": torch.randint(3, config.decoder_config.vocab_size, (b, 5), generator=g),
    }


def assert_same_state(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert sorted(got) == sorted(want)
    for key, value in want.items():
        assert got[key].dtype == value.dtype, key
        assert torch.equal(got[key], value), key


def settings(config: PreTrainedConfig) -> dict:
    """What a config says, less ``dtype`` (from_pretrained(dtype=...) records it everywhere)."""
    values = config.to_dict()
    values.pop("dtype", None)
    return values


def assert_frozen(tower: torch.nn.Module) -> None:
    assert not any(p.requires_grad for p in tower.parameters())
    assert not any(m.training for m in tower.modules())


# ---------------------------------------------------------------------- visual towers


def test_clip_vision_tower_loads_its_weights_and_stays_frozen(tmp_path):
    source = save_clip_vision(tmp_path / "clip")
    model = build_captioner(tiny_config(), visual_backbone=tmp_path / "clip")

    assert_same_state(
        model.visual_backbone.get_submodule("tower").state_dict(), source.state_dict()
    )
    assert model.config.visual_backbone_config.model_type == "clip_vision_model"
    assert (model.config.image_mean, model.config.image_std) == (MEAN, STD)
    assert model.config.image_size == 32
    assert model.config.videobert_config.visual_feature_size == WIDTH
    assert model.visual_backbone.feature_size == WIDTH
    model.train()
    assert model.training and model.videobert.training
    assert_frozen(model.visual_backbone)


def test_clip_vision_features_are_the_towers_output_on_frames_normalised_with_its_stats(tmp_path):
    source = save_clip_vision(tmp_path / "clip")
    model = build_captioner(tiny_config(), visual_backbone=tmp_path / "clip").eval()
    frames = batch(model.config)["pixel_values"]  # (2, 3, 3, 32, 32) uint8

    x = frames.flatten(0, 1).float() / 255.0
    x = (x - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)
    with torch.no_grad():
        want = source(pixel_values=x).pooler_output.view(2, 3, WIDTH)
        got = model.visual_backbone(frames)
    torch.testing.assert_close(got, want)


def test_training_step_with_clip_tower_reaches_everything_but_the_tower(tmp_path):
    save_clip_vision(tmp_path / "clip")
    model = build_captioner(tiny_config(), visual_backbone=tmp_path / "clip")
    model.train()

    out = model(**batch(model.config))
    assert out.logits.shape == (2, 5, 300)
    out.loss.backward()

    for name, p in model.named_parameters():
        if name.startswith("visual_backbone.tower."):
            assert p.grad is None, name
        elif "word_embeddings" not in name:  # the streams take inputs_embeds: never used
            assert p.grad is not None, name
    grads = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    assert grads["videobert.visual_proj.weight"].abs().sum() > 0  # right after the tower
    assert grads["audio_backbone.cnn.0.0.weight"].abs().sum() > 0  # the built-in audio CNN


def test_full_clip_checkpoint_gives_its_vision_tower_and_processor_stats(tmp_path):
    source = save_full_clip(tmp_path / "clip")
    assert not (tmp_path / "clip" / "preprocessor_config.json").exists()  # processor_config.json
    model = build_captioner(tiny_config(), visual_backbone=tmp_path / "clip")

    assert model.config.visual_backbone_config.model_type == "clip_vision_model"
    assert_same_state(
        model.visual_backbone.get_submodule("tower").state_dict(), source.vision_model.state_dict()
    )
    assert (model.config.image_mean, model.config.image_std) == (MEAN, STD)
    assert model.config.videobert_config.visual_feature_size == WIDTH
    assert_frozen(model.visual_backbone)
    with torch.no_grad():
        out = model.eval()(**batch(model.config))
    assert torch.isfinite(out.logits).all()


# ---------------------------------------------------------------------- audio towers


def test_whisper_encoder_loads_its_weights_and_hears_audio_windows(tmp_path):
    source = save_whisper(tmp_path / "whisper")
    model = build_captioner(tiny_config(), audio_backbone=tmp_path / "whisper").eval()
    backbone = model.audio_backbone

    assert_same_state(
        backbone.get_submodule("tower").state_dict(), source.get_encoder().state_dict()
    )
    assert model.config.audio_backbone_config.model_type == "whisper"
    assert model.config.videobert_config.audio_feature_size == WIDTH
    assert backbone.frames == 100
    model.train()
    assert_frozen(backbone)

    audio = batch(model.config)["audio_values"]  # (2, 3, 16000): 101 mel frames, cut to 100
    with torch.no_grad():
        mel = backbone.mel(audio.flatten(0, 1))
        assert mel.shape == (6, 16, 101)
        want = source.get_encoder()(input_features=mel[..., :100]).last_hidden_state.mean(1)
        torch.testing.assert_close(backbone(audio), want.view(2, 3, WIDTH))
        out = model.eval()(**batch(model.config))
    assert torch.isfinite(out.loss)


def test_ast_loads_its_weights_and_hears_audio_windows(tmp_path):
    source = save_ast(tmp_path / "ast")
    model = build_captioner(tiny_config(), audio_backbone=tmp_path / "ast").eval()
    backbone = model.audio_backbone

    assert_same_state(backbone.get_submodule("tower").state_dict(), source.state_dict())
    assert model.config.audio_backbone_config.model_type == "audio-spectrogram-transformer"
    assert model.config.videobert_config.audio_feature_size == WIDTH
    assert backbone.frames == 32
    model.train()
    assert_frozen(backbone)

    audio = batch(model.config)["audio_values"]
    with torch.no_grad():
        mel = backbone.mel(audio.flatten(0, 1))[..., :32]  # (6, 16, 32)
        want = source(input_values=mel.transpose(1, 2)).last_hidden_state.mean(1)
        torch.testing.assert_close(backbone(audio), want.view(2, 3, WIDTH))
        out = model.eval()(**batch(model.config))
    assert torch.isfinite(out.loss)


# ---------------------------------------------------------------------- BART and BERT


def test_bart_checkpoint_becomes_the_captioners_encoder_decoder(tmp_path):
    source = save_bart(tmp_path / "bart")
    model = build_captioner(tiny_config(), bart=tmp_path / "bart")

    assert_same_state(model.bart.state_dict(), source.state_dict())
    decoder = model.config.decoder_config
    assert (decoder.d_model, decoder.encoder_layers, decoder.decoder_layers) == (16, 1, 2)
    assert (decoder.vocab_size, decoder.max_position_embeddings) == (300, 24)
    ids = (decoder.pad_token_id, decoder.bos_token_id, decoder.eos_token_id)
    assert ids == (1, 0, 2) and decoder.decoder_start_token_id == 2
    assert model.video_proj.out_features == 16
    out = model(**batch(model.config))
    assert out.logits.shape == (2, 5, 300) and torch.isfinite(out.loss)


def test_bert_layers_start_both_streams_and_the_fused_encoder(tmp_path):
    source = save_bert(tmp_path / "bert", layers=3).state_dict()
    config = tiny_config(num_hidden_layers=3, fusion_layer=2, max_position_embeddings=8)
    model = build_captioner(config, bert=tmp_path / "bert")
    vb = model.videobert

    def layer(state: dict[str, torch.Tensor], i: int) -> dict[str, torch.Tensor]:
        prefix = f"encoder.layer.{i}."
        return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}

    assert vb.config.num_fused_layers == 1
    for stream in (vb.visual_stream, vb.audio_stream):
        state = stream.state_dict()
        for i in (0, 1):
            assert layer(state, i), i
            assert_same_state(layer(state, i), layer(source, i))
        positions = state["embeddings.position_embeddings.weight"]
        assert torch.equal(positions, source["embeddings.position_embeddings.weight"][:8])
        for key in ("embeddings.LayerNorm.weight", "embeddings.LayerNorm.bias"):
            assert torch.equal(state[key], source[key])
    assert vb.fused_encoder is not None
    fused = vb.fused_encoder.state_dict()
    assert_same_state(layer(fused, 0), layer(source, 2))
    assert torch.equal(
        fused["embeddings.position_embeddings.weight"],
        source["embeddings.position_embeddings.weight"][:8],
    )
    out = model(**batch(model.config))
    assert torch.isfinite(out.loss)


def test_bert_with_fewer_layers_than_asked_is_refused(tmp_path):
    save_bert(tmp_path / "bert", layers=3)
    config = tiny_config(num_hidden_layers=4, fusion_layer=2)
    with pytest.raises(ValueError, match=r"num_hidden_layers \(4\).*3 layers"):
        build_captioner(config, bert=tmp_path / "bert")


# ---------------------------------------------------------------------- no downloads


@pytest.mark.parametrize(
    ("part", "name"),
    [
        ("visual_backbone", "openai/clip-vit-base-patch32"),
        ("audio_backbone", "openai/whisper-tiny"),
        ("bart", "facebook/bart-base"),
        ("bert", "bert-base-uncased"),
    ],
)
def test_hub_name_instead_of_local_directory_is_refused(part, name):
    with pytest.raises(FileNotFoundError) as caught:
        build_captioner(tiny_config(), **{part: name})
    message = str(caught.value)
    assert name in message and "never downloads" in message and "pass its path" in message


def test_file_instead_of_directory_is_refused(tmp_path):
    save_bart(tmp_path / "bart")
    with pytest.raises(FileNotFoundError, match="not a local directory"):
        build_captioner(tiny_config(), bart=tmp_path / "bart" / "config.json")


# ---------------------------------------------------------------------- save and reload


@pytest.mark.parametrize("audio", ["whisper", "ast"])
def test_captioner_with_pretrained_parts_round_trips_through_save_pretrained(tmp_path, audio):
    save_clip_vision(tmp_path / "clip")
    (save_whisper if audio == "whisper" else save_ast)(tmp_path / audio)
    save_bart(tmp_path / "bart")
    save_bert(tmp_path / "bert", layers=3)
    config = tiny_config(num_hidden_layers=3, fusion_layer=2)
    model = build_captioner(
        config,
        visual_backbone=tmp_path / "clip",
        audio_backbone=tmp_path / audio,
        bart=tmp_path / "bart",
        bert=tmp_path / "bert",
    )
    model.save_pretrained(tmp_path / "captioner")
    loaded = VideoCaptionerModel.from_pretrained(tmp_path / "captioner", dtype=torch.float32)

    assert_same_state(loaded.state_dict(), model.state_dict())
    for name in ("visual_backbone_config", "audio_backbone_config", "decoder_config"):
        got, want = getattr(loaded.config, name), getattr(model.config, name)
        assert type(got) is type(want), name
        assert settings(got) == settings(want), name
    assert settings(loaded.config.videobert_config) == settings(model.config.videobert_config)
    assert (loaded.config.image_mean, loaded.config.image_std) == (MEAN, STD)
    assert_frozen(loaded.visual_backbone)
    assert_frozen(loaded.audio_backbone)

    inputs = batch(model.config)
    with torch.no_grad():
        want = model.eval()(**inputs).logits
        got = loaded.eval()(**inputs).logits
    assert torch.equal(got, want)
