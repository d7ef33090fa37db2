"""The captioner as a Hugging Face model: shapes, masks, gates, fusions, save/load, generate."""

from pathlib import Path

import pytest
import torch
from conftest import tiny_config
from transformers import AutoConfig, AutoModel

from models.captioner.configuration_videobert import VideoBertConfig, VideoCaptionerConfig
from models.captioner.modeling_captioner import VideoCaptionerModel
from models.captioner.modeling_videobert import VideoBertModel

VOCAB = 300


def _model(**changes: object) -> VideoCaptionerModel:
    torch.manual_seed(0)
    return VideoCaptionerModel(tiny_config(VOCAB, **changes)).eval()


def _inputs(b: int = 2, t: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "pixel_values": torch.randint(0, 256, (b, t, 3, 32, 32), generator=g, dtype=torch.uint8),
        "audio_values": torch.randn(b, t, 16_000, generator=g) * 0.1,
    }


def _labels(b: int = 2, length: int = 6) -> torch.Tensor:
    return torch.randint(5, VOCAB, (b, length), generator=torch.Generator().manual_seed(1))


def test_forward_gives_loss_logits_fused_states_and_gates_in_unit_range() -> None:
    model = _model()
    out = model(**_inputs(), labels=_labels())
    assert out.loss is not None and torch.isfinite(out.loss)
    assert out.logits.shape == (2, 6, VOCAB)
    assert out.fused_states.shape == (2, 4, 64)
    assert out.gates.shape == (2, 4, 2, 64)
    gates = out.gates.detach()
    assert float(gates.min()) >= 0.0 and float(gates.max()) <= 1.0


def test_loss_trains_every_part_end_to_end() -> None:
    model = _model().train()
    model(**_inputs(), labels=_labels()).loss.backward()
    for part in ("visual_backbone", "audio_backbone", "videobert", "video_proj", "bart"):
        grads = [p.grad for p in getattr(model, part).parameters() if p.requires_grad]
        assert grads and any(g is not None and g.abs().sum() > 0 for g in grads), part


def test_audio_gate_is_zero_and_audio_ignored_where_there_is_no_audio() -> None:
    model = _model()
    inputs = _inputs()
    silent = torch.tensor([[True, True, False, False], [False, False, False, False]])
    out = model(**inputs, audio_mask=silent, labels=_labels())
    assert torch.all(out.gates[0, 2:, 1] == 0) and torch.all(out.gates[1, :, 1] == 0)
    assert torch.all(out.gates[0, :2, 1] > 0)
    # What the windows hold where there is no audio cannot change anything.
    noisy = dict(inputs, audio_values=inputs["audio_values"].clone())
    noisy["audio_values"][0, 2:] = torch.randn(2, 16_000)
    noisy["audio_values"][1] = torch.randn(4, 16_000)
    again = model(**noisy, audio_mask=silent, labels=_labels())
    torch.testing.assert_close(again.logits, out.logits)


def test_padding_a_shorter_video_does_not_change_its_output() -> None:
    model = _model()
    long, short = _inputs(b=1, t=4, seed=1), _inputs(b=1, t=2, seed=2)
    labels = _labels(b=1)
    alone = model(**short, labels=labels).logits
    padded = {
        k: torch.cat([long[k], torch.cat([short[k], torch.zeros_like(short[k])], 1)]) for k in long
    }
    mask = torch.tensor([[True] * 4, [True, True, False, False]])
    batched = model(**padded, visual_mask=mask, audio_mask=mask, labels=labels.repeat(2, 1))
    torch.testing.assert_close(batched.logits[1:], alone, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("fusion", ["gated", "sum", "concat", "cross_attention"])
def test_every_fusion_runs_handles_silence_and_round_trips(fusion: str, tmp_path: Path) -> None:
    changes = {
        "videobert_config": dict(tiny_config(VOCAB).videobert_config.to_dict(), fusion=fusion)
    }
    model = _model(**changes)
    no_audio = torch.zeros(2, 4, dtype=torch.bool)
    out = model(**_inputs(), audio_mask=no_audio, labels=_labels())
    assert torch.isfinite(out.logits).all()
    assert (out.gates is not None) == (fusion == "gated")
    model.save_pretrained(tmp_path)
    loaded = VideoCaptionerModel.from_pretrained(tmp_path, dtype=torch.float32).eval()
    assert loaded.config.videobert_config.fusion == fusion
    assert torch.equal(
        loaded(**_inputs(), audio_mask=no_audio, labels=_labels()).logits, out.logits
    )


def test_fusion_layer_splits_depth_between_streams_and_fused_layers() -> None:
    config = VideoBertConfig(
        hidden_size=32, num_attention_heads=2, num_hidden_layers=3, fusion_layer=1
    )
    model = VideoBertModel(config)
    assert len(model.visual_stream.encoder.layer) == 1
    assert len(model.audio_stream.encoder.layer) == 1
    assert model.fused_encoder is not None and len(model.fused_encoder.encoder.layer) == 2
    late = VideoBertModel(VideoBertConfig(hidden_size=32, num_attention_heads=2, fusion_layer=2))
    assert late.fused_encoder is None


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"fusion": "average"}, "fusion must be one of"),
        ({"num_hidden_layers": 2, "fusion_layer": 3}, "fusion_layer must be between"),
        ({"hidden_size": 30, "num_attention_heads": 4}, "multiple of num_attention_heads"),
    ],
)
def test_videobert_config_rejects_bad_values(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        VideoBertConfig(**changes)


def test_captioner_config_rejects_more_frames_than_positions() -> None:
    with pytest.raises(ValueError, match="max_frames"):
        VideoCaptionerConfig(max_frames=128)
    with pytest.raises(ValueError, match="frame_fit"):
        VideoCaptionerConfig(frame_fit="stretch")


def test_save_and_load_through_auto_classes_is_bit_exact(tmp_path: Path) -> None:
    model = _model()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    assert AutoConfig.from_pretrained(tmp_path).model_type == "videocaptioner"
    loaded = AutoModel.from_pretrained(tmp_path, dtype=torch.float32).eval()
    assert type(loaded) is VideoCaptionerModel
    before, after = model.state_dict(), loaded.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    inputs, labels = _inputs(), _labels()
    assert torch.equal(
        model(**inputs, labels=labels).logits, loaded(**inputs, labels=labels).logits
    )


def test_load_with_an_explicit_dtype_gives_that_dtype(tmp_path: Path) -> None:
    _model().save_pretrained(tmp_path)
    half = VideoCaptionerModel.from_pretrained(tmp_path, dtype=torch.bfloat16)
    assert {p.dtype for p in half.parameters()} == {torch.bfloat16}


def test_generate_greedy_and_beam_search_respect_max_length() -> None:
    model = _model()
    inputs = _inputs()
    greedy = model.generate(**inputs, max_new_tokens=5)
    beam = model.generate(**inputs, max_new_tokens=5, num_beams=3, no_repeat_ngram_size=2)
    for ids in (greedy, beam):
        assert ids.shape[0] == 2 and ids.shape[1] <= 6  # decoder start + 5 new tokens
    question = torch.tensor([[0, 20, 21, 2], [0, 22, 2, 1]])
    answers = model.generate(**inputs, question_ids=question, max_new_tokens=4)
    assert answers.shape[0] == 2


def test_question_tokens_change_what_the_decoder_sees() -> None:
    model = _model()
    inputs, labels = _inputs(), _labels()
    a = model(**inputs, question_ids=torch.tensor([[0, 20, 2]] * 2), labels=labels).logits
    b = model(**inputs, question_ids=torch.tensor([[0, 30, 2]] * 2), labels=labels).logits
    assert not torch.allclose(a, b)


def test_an_answer_does_not_depend_on_what_it_is_batched_with() -> None:
    """Question tokens start at max_frames, so a longer clip in the batch cannot move them."""
    model = _model()
    long, short = _inputs(b=1, t=4, seed=1), _inputs(b=1, t=2, seed=2)
    question, labels = torch.tensor([[0, 20, 21, 2]]), _labels(b=1)
    alone = model(**short, question_ids=question, labels=labels).logits
    padded = {
        k: torch.cat([long[k], torch.cat([short[k], torch.zeros_like(short[k])], 1)]) for k in long
    }
    mask = torch.tensor([[True] * 4, [True, True, False, False]])
    batched = model(
        **padded,
        visual_mask=mask,
        audio_mask=mask,
        question_ids=question.repeat(2, 1),
        labels=labels.repeat(2, 1),
    ).logits
    torch.testing.assert_close(batched[1:], alone, atol=1e-5, rtol=1e-4)
