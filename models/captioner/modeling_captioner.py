"""The captioner: backbones -> VideoBERT fusion -> BART, as one Hugging Face model.

    frames (B, T, 3, S, S) -> visual backbone -> (B, T, Dv) --\
                                                               VideoBERT -> F (B, T, H)
    audio  (B, T, W)       -> audio backbone  -> (B, T, Da) --/
    F -> proj -> (B, T, d) [; question embeddings (B, Q, d)] -> BART encoder -> BART decoder -> text

BART's encoder runs over the fused states (followed by the question's tokens for a question, so
the question attends to the video and the video to the question); its decoder writes the
caption or the answer. :meth:`VideoCaptionerModel.forward` accepts frames and audio (end-to-end
training) or cached features (questions about a video already seen).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    BartForConditionalGeneration,
    BertModel,
    PreTrainedModel,
)
from transformers import initialization as init
from transformers.modeling_outputs import BaseModelOutput
from transformers.utils import ModelOutput

from models.captioner.backbones import DerivedBuffers, build_audio_backbone, build_visual_backbone
from models.captioner.configuration_videobert import VideoBertConfig, VideoCaptionerConfig
from models.captioner.modeling_videobert import VideoBertModel, VideoBertOutput


@dataclass
class VideoCaptionerOutput(ModelOutput):
    """What :class:`VideoCaptionerModel` returns.

    Attributes:
        loss: Mean token cross-entropy, when ``labels`` were given.
        logits: (B, L, vocab) next-token scores.
        fused_states: (B, T, H) VideoBERT's states right after fusion.
        gates: (B, T, 2, H) gated fusion's visual / audio gates (None for other fusions).
        encoder_last_hidden_state: (B, T + Q, d) BART encoder states the decoder attends to.
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    fused_states: torch.Tensor | None = None
    gates: torch.Tensor | None = None
    encoder_last_hidden_state: torch.Tensor | None = None


@dataclass
class Encoded:
    """The encoder side of one batch, ready for BART's decoder (or ``generate``)."""

    encoder_outputs: BaseModelOutput
    attention_mask: torch.Tensor  # (B, T + Q) long
    fused_states: torch.Tensor | None  # (B, T, H)
    gates: torch.Tensor | None  # (B, T, 2, H)


class VideoCaptionerPreTrainedModel(PreTrainedModel):
    """Weight init and loading conventions of the captioner."""

    config_class = VideoCaptionerConfig
    base_model_prefix = "captioner"
    main_input_name = "pixel_values"
    supports_gradient_checkpointing = False

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Conv2d):
            # The backbone CNNs train from scratch with GELU: He init, not normal(0.02).
            init.kaiming_normal_(module.weight, nonlinearity="relu")
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, DerivedBuffers):
            for name, value in module.buffer_values().items():
                init.copy_(getattr(module, name), value)
        else:
            super()._init_weights(module)


class VideoCaptionerModel(VideoCaptionerPreTrainedModel):
    """Captions videos and answers questions about them."""

    def __init__(self, config: VideoCaptionerConfig) -> None:
        super().__init__(config)
        self.visual_backbone = build_visual_backbone(config)
        self.audio_backbone = build_audio_backbone(config)
        vb = config.videobert_config
        for name, backbone in (("visual", self.visual_backbone), ("audio", self.audio_backbone)):
            wanted = getattr(vb, f"{name}_feature_size")
            if backbone.feature_size != wanted:
                raise ValueError(
                    f"the {name} backbone gives {backbone.feature_size}-d features but"
                    f" videobert_config.{name}_feature_size is {wanted}"
                )
        self.videobert = VideoBertModel(vb)
        self.video_proj = nn.Linear(vb.hidden_size, config.decoder_config.d_model)
        self.bart = BartForConditionalGeneration(config.decoder_config)
        self.post_init()
        self._freeze_pretrained_backbones()

    # ------------------------------------------------------------------ backbones

    def _pretrained_backbones(self) -> list[nn.Module]:
        return [b for b in (self.visual_backbone, self.audio_backbone) if getattr(b, "tower", None)]

    def _freeze_pretrained_backbones(self) -> None:
        if self.config.freeze_backbones:
            for backbone in self._pretrained_backbones():
                backbone.requires_grad_(False)
                backbone.eval()

    def train(self, mode: bool = True) -> VideoCaptionerModel:
        """Like ``nn.Module.train``, but frozen pretrained towers stay in eval mode."""
        super().train(mode)
        self._freeze_pretrained_backbones()
        return self

    def extract_features(
        self, pixel_values: torch.Tensor, audio_values: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the backbones.

        Args:
            pixel_values: uint8 (B, T, 3, S, S) frames, S = ``config.image_size``.
            audio_values: float (B, T, W) audio windows, W = ``config.audio_window_samples``.

        Returns:
            ``(visual_features (B, T, Dv), audio_features (B, T, Da))``.
        """
        return self.visual_backbone(pixel_values), self.audio_backbone(audio_values)

    # ------------------------------------------------------------------ encoder side

    def fuse(
        self,
        *,
        pixel_values: torch.Tensor | None = None,
        audio_values: torch.Tensor | None = None,
        visual_features: torch.Tensor | None = None,
        audio_features: torch.Tensor | None = None,
        visual_mask: torch.Tensor | None = None,
        audio_mask: torch.Tensor | None = None,
    ) -> VideoBertOutput:
        """Backbones (unless features are given) and VideoBERT: the video side only.

        Args:
            pixel_values: uint8 (B, T, 3, S, S), or give ``visual_features``.
            audio_values: float (B, T, W), or give ``audio_features``.
            visual_features: (B, T, Dv) precomputed visual features.
            audio_features: (B, T, Da) precomputed audio features.
            visual_mask: bool (B, T), True at real frames (padding is False).
            audio_mask: bool (B, T), True where the window holds audio.
        """
        if visual_features is None:
            if pixel_values is None:
                raise ValueError("give pixel_values or visual_features")
            visual_features = self.visual_backbone(pixel_values)
        if audio_features is None:
            if audio_values is None:
                raise ValueError("give audio_values or audio_features")
            audio_features = self.audio_backbone(audio_values)
        return self.videobert(
            visual_features=visual_features,
            audio_features=audio_features,
            visual_mask=visual_mask,
            audio_mask=audio_mask,
        )

    def encode_fused(
        self,
        fused: VideoBertOutput,
        visual_mask: torch.Tensor,
        question_ids: torch.Tensor | None = None,
        question_mask: torch.Tensor | None = None,
    ) -> Encoded:
        """BART's encoder over the fused states, followed by the question's tokens if any.

        Args:
            fused: VideoBERT's output for the batch.
            visual_mask: bool (B, T), True at real frames.
            question_ids: (B, Q) question token ids, for answering.
            question_mask: (B, Q) 1 at real question tokens.
        """
        embeds = self.video_proj(fused.last_hidden_state)  # (B, T, d)
        mask = visual_mask.long()  # (B, T)
        short = self.config.max_frames - embeds.shape[1]
        if self.config.fixed_video_length and short > 0:
            embeds = nn.functional.pad(embeds, (0, 0, 0, short))  # (B, max_frames, d)
            mask = nn.functional.pad(mask, (0, short))
        if question_ids is not None:
            if question_mask is None:
                question_mask = question_ids.ne(self.config.decoder_config.pad_token_id)
            question = self.bart.get_input_embeddings()(question_ids)  # (B, Q, d)
            embeds = torch.cat([embeds, question.to(embeds.dtype)], dim=1)  # (B, T + Q, d)
            mask = torch.cat([mask, question_mask.long()], dim=1)
        states = self.bart.get_encoder()(inputs_embeds=embeds, attention_mask=mask)
        return Encoded(
            encoder_outputs=BaseModelOutput(last_hidden_state=states.last_hidden_state),
            attention_mask=mask,
            fused_states=fused.fused_states,
            gates=fused.gates,
        )

    def encode(
        self,
        *,
        pixel_values: torch.Tensor | None = None,
        audio_values: torch.Tensor | None = None,
        visual_features: torch.Tensor | None = None,
        audio_features: torch.Tensor | None = None,
        visual_mask: torch.Tensor | None = None,
        audio_mask: torch.Tensor | None = None,
        question_ids: torch.Tensor | None = None,
        question_mask: torch.Tensor | None = None,
    ) -> Encoded:
        """:meth:`fuse`, then :meth:`encode_fused`: everything before BART's decoder."""
        fused = self.fuse(
            pixel_values=pixel_values,
            audio_values=audio_values,
            visual_features=visual_features,
            audio_features=audio_features,
            visual_mask=visual_mask,
            audio_mask=audio_mask,
        )
        assert fused.last_hidden_state is not None
        if visual_mask is None:
            b, t = fused.last_hidden_state.shape[:2]
            visual_mask = torch.ones(b, t, dtype=torch.bool, device=fused.last_hidden_state.device)
        return self.encode_fused(fused, visual_mask, question_ids, question_mask)

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        audio_values: torch.Tensor | None = None,
        visual_features: torch.Tensor | None = None,
        audio_features: torch.Tensor | None = None,
        visual_mask: torch.Tensor | None = None,
        audio_mask: torch.Tensor | None = None,
        question_ids: torch.Tensor | None = None,
        question_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> VideoCaptionerOutput:
        """Encode the video (and question), then decode; the loss when ``labels`` are given.

        ``labels`` are target token ids (B, L) with -100 at padding; the decoder input is
        ``labels`` shifted right, as in BART. Other arguments: see :meth:`encode`.
        """
        enc = self.encode(
            pixel_values=pixel_values,
            audio_values=audio_values,
            visual_features=visual_features,
            audio_features=audio_features,
            visual_mask=visual_mask,
            audio_mask=audio_mask,
            question_ids=question_ids,
            question_mask=question_mask,
        )
        out = self.bart(
            encoder_outputs=enc.encoder_outputs,
            attention_mask=enc.attention_mask,
            labels=labels,
            decoder_input_ids=decoder_input_ids,
            decoder_attention_mask=decoder_attention_mask,
            **kwargs,
        )
        return VideoCaptionerOutput(
            loss=out.loss,
            logits=out.logits,
            fused_states=enc.fused_states,
            gates=enc.gates,
            encoder_last_hidden_state=enc.encoder_outputs.last_hidden_state,
        )

    def generation_kwargs(self, **overrides: Any) -> dict[str, Any]:
        """The config's decoding settings, with overrides."""
        cfg = self.config
        kwargs: dict[str, Any] = {
            "max_new_tokens": cfg.max_new_tokens,
            "num_beams": cfg.num_beams,
            "no_repeat_ngram_size": cfg.no_repeat_ngram_size,
            "do_sample": False,
        }
        kwargs.update(overrides)
        return kwargs

    @torch.no_grad()
    def generate_from(self, encoded: Encoded, **generate_kwargs: Any) -> torch.Tensor:
        """Decode token ids from an encoded batch (see :meth:`encode`)."""
        return self.bart.generate(
            encoder_outputs=encoded.encoder_outputs,
            attention_mask=encoded.attention_mask,
            **self.generation_kwargs(**generate_kwargs),
        )

    @torch.no_grad()
    def generate(
        self,
        pixel_values: torch.Tensor | None = None,
        audio_values: torch.Tensor | None = None,
        visual_features: torch.Tensor | None = None,
        audio_features: torch.Tensor | None = None,
        visual_mask: torch.Tensor | None = None,
        audio_mask: torch.Tensor | None = None,
        question_ids: torch.Tensor | None = None,
        question_mask: torch.Tensor | None = None,
        **generate_kwargs: Any,
    ) -> torch.Tensor:
        """Token ids of a caption (or of an answer, given ``question_ids``) for each video.

        Decoding settings default to the config's (``max_new_tokens``, ``num_beams``,
        ``no_repeat_ngram_size``); any ``generate`` keyword overrides them.
        """
        encoded = self.encode(
            pixel_values=pixel_values,
            audio_values=audio_values,
            visual_features=visual_features,
            audio_features=audio_features,
            visual_mask=visual_mask,
            audio_mask=audio_mask,
            question_ids=question_ids,
            question_mask=question_mask,
        )
        return self.generate_from(encoded, **generate_kwargs)


def register_auto_classes() -> None:
    """Make ``AutoConfig`` / ``AutoModel`` know vidcap's model types (idempotent)."""
    for config_class, model_class in (
        (VideoBertConfig, VideoBertModel),
        (VideoCaptionerConfig, VideoCaptionerModel),
    ):
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
        AutoModel.register(config_class, model_class, exist_ok=True)


register_auto_classes()


# ---------------------------------------------------------------------- pretrained parts


def _local_dir(path: str | os.PathLike[str], what: str) -> str:
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise FileNotFoundError(
            f"{what}: {path!r} is not a local directory. vidcap never downloads weights: save"
            " the checkpoint to disk (for example with save_pretrained) and pass its path."
        )
    return path


def _tower_config(path: str, sub: str) -> Any:
    config = AutoConfig.from_pretrained(path)
    # A full CLIP / SigLIP / Whisper checkpoint holds the tower we want inside it.
    return getattr(config, sub, None) or config


def _image_stats(path: str) -> tuple[list[float], list[float]] | None:
    # An image processor saved alone writes preprocessor_config.json; a whole processor (CLIP,
    # SigLIP: image processor + tokenizer) nests its values under "image_processor" in
    # processor_config.json.
    sources = (("preprocessor_config.json", None), ("processor_config.json", "image_processor"))
    for name, nested in sources:
        file = os.path.join(path, name)
        if not os.path.isfile(file):
            continue
        with open(file) as f:
            values = json.load(f)
        if nested is not None:
            values = values.get(nested) or {}
        if "image_mean" in values and "image_std" in values:
            return list(values["image_mean"]), list(values["image_std"])
    return None


def build_captioner(
    config: VideoCaptionerConfig | None = None,
    *,
    visual_backbone: str | os.PathLike[str] | None = None,
    audio_backbone: str | os.PathLike[str] | None = None,
    bart: str | os.PathLike[str] | None = None,
    bert: str | os.PathLike[str] | None = None,
    dtype: torch.dtype = torch.float32,
) -> VideoCaptionerModel:
    """A new captioner, with parts initialised from pretrained checkpoints on disk.

    Each checkpoint's own config overrides the matching part of ``config`` (widths, depths,
    vocabulary), so the weights fit.

    Args:
        config: Everything else (default: :class:`VideoCaptionerConfig` defaults).
        visual_backbone: Directory of a vision tower (a CLIP, SigLIP, ViT or DINOv2
            checkpoint); its ``preprocessor_config.json`` gives the pixel mean and std.
        audio_backbone: Directory of a Whisper or AST checkpoint.
        bart: Directory of a BART checkpoint (``facebook/bart-base`` saved locally, say):
            the encoder over the fused states and the decoder start from it. Use that
            checkpoint's tokenizer.
        bert: Directory of a BERT checkpoint: both streams start from its first
            ``fusion_layer`` layers, the post-fusion layers from the ones after.
        dtype: dtype of the loaded weights.
    """
    config = config or VideoCaptionerConfig()
    values = config.to_dict()
    for key in ("videobert_config", "decoder_config", "visual_backbone_config"):
        values.pop(key, None)
    values.pop("audio_backbone_config", None)
    videobert = config.videobert_config.to_dict()
    decoder = config.decoder_config
    visual_tower = config.visual_backbone_config
    audio_tower = config.audio_backbone_config

    if visual_backbone is not None:
        path = _local_dir(visual_backbone, "visual backbone")
        visual_tower = _tower_config(path, "vision_config")
        videobert["visual_feature_size"] = visual_tower.hidden_size
        stats = _image_stats(path)
        if stats:
            values["image_mean"], values["image_std"] = stats
    if audio_backbone is not None:
        path = _local_dir(audio_backbone, "audio backbone")
        audio_tower = _tower_config(path, "audio_config")
        size = getattr(audio_tower, "hidden_size", None) or audio_tower.d_model
        videobert["audio_feature_size"] = size
    bart_model = None
    if bart is not None:
        bart_model = BartForConditionalGeneration.from_pretrained(
            _local_dir(bart, "BART"), dtype=dtype
        )
        decoder = bart_model.config
    bert_model = None
    if bert is not None:
        bert_model = BertModel.from_pretrained(
            _local_dir(bert, "BERT"), dtype=dtype, add_pooling_layer=False
        )
        bc = bert_model.config
        if videobert["num_hidden_layers"] > bc.num_hidden_layers:
            raise ValueError(
                f"videobert_config.num_hidden_layers ({videobert['num_hidden_layers']}) exceeds"
                f" the BERT checkpoint's {bc.num_hidden_layers} layers"
            )
        for key in ("hidden_size", "num_attention_heads", "intermediate_size", "hidden_act"):
            videobert[key] = getattr(bc, key)
        videobert["max_position_embeddings"] = min(
            videobert["max_position_embeddings"], bc.max_position_embeddings
        )

    config = VideoCaptionerConfig(
        **values,
        videobert_config=VideoBertConfig(**videobert),
        decoder_config=decoder,
        visual_backbone_config=visual_tower,
        audio_backbone_config=audio_tower,
    )
    model = VideoCaptionerModel(config)
    model.to(dtype)  # type: ignore[arg-type]  # transformers' wrapper hides nn.Module.to's type
    if visual_backbone is not None:
        tower = AutoModel.from_pretrained(os.fspath(visual_backbone), dtype=dtype)
        _load_tower(model.visual_backbone.get_submodule("tower"), tower, "visual backbone")
    if audio_backbone is not None:
        tower = AutoModel.from_pretrained(os.fspath(audio_backbone), dtype=dtype)
        if hasattr(tower, "get_encoder"):
            tower = tower.get_encoder()
        _load_tower(model.audio_backbone.get_submodule("tower"), tower, "audio backbone")
    if bart_model is not None:
        model.bart.load_state_dict(bart_model.state_dict())
    if bert_model is not None:
        _load_bert(model.videobert, bert_model)
    model._freeze_pretrained_backbones()
    return model


def _load_tower(target: nn.Module, source: nn.Module, what: str) -> None:
    # A full CLIP checkpoint holds "vision_model.*" beside the text tower: take our keys.
    state = source.state_dict()
    wanted = target.state_dict()
    key = next(iter(wanted))
    prefixes = sorted(
        {k[: -len(key)] for k in state if k == key or k.endswith("." + key)}, key=len
    ) or [""]
    prefix = next((p for p in prefixes if all(p + k in state for k in wanted)), prefixes[0])
    missing = [k for k in wanted if prefix + k not in state]
    if missing:
        raise ValueError(f"{what}: checkpoint lacks {sorted(missing)[:5]}")
    target.load_state_dict({k: state[prefix + k] for k in wanted})


def _load_bert(videobert: VideoBertModel, bert: BertModel) -> None:
    """Streams get BERT's first l layers; post-fusion layers get the next ones."""
    state = bert.state_dict()
    layers = videobert.config.fusion_layer
    embeddings = {
        k: v for k, v in state.items() if k.startswith("embeddings.") and "word_embeddings" not in k
    }
    positions = videobert.config.max_position_embeddings

    def part(first: int, count: int) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for k, v in embeddings.items():
            if "position_embeddings" in k:
                v = v[:positions]
            elif "token_type_embeddings" in k:
                v = v[:1]
            out[k] = v
        for i in range(count):
            src = f"encoder.layer.{first + i}."
            for k, v in state.items():
                if k.startswith(src):
                    out[f"encoder.layer.{i}." + k[len(src) :]] = v
        return out

    for stream in (videobert.visual_stream, videobert.audio_stream):
        missing, _ = stream.load_state_dict(part(0, layers), strict=False)
        _check_only_words(missing)
    if videobert.fused_encoder is not None:
        missing, _ = videobert.fused_encoder.load_state_dict(
            part(layers, videobert.config.num_fused_layers), strict=False
        )
        _check_only_words(missing)


def _check_only_words(missing: list[str]) -> None:
    # Streams take inputs_embeds: their (1-row) word embedding is the only thing not copied.
    left = [k for k in missing if "word_embeddings" not in k and "position_ids" not in k]
    if left:
        raise ValueError(f"BERT checkpoint lacks {left[:5]}")
