"""Configurations of the VideoBERT fusion encoder and of the whole captioner.

``VideoBertConfig`` describes the two-stream encoder (visual + audio BERT streams, fused at
layer ``fusion_layer``). ``VideoCaptionerConfig`` nests it with the feature backbones, the BART
decoder and the sampling settings the model was trained with, so one ``config.json`` says
everything needed to caption a file.
"""

from __future__ import annotations

from typing import Any, ClassVar

from transformers import AutoConfig, BartConfig, BertConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

FUSION_KINDS = ("gated", "sum", "concat", "cross_attention")
FRAME_FITS = ("crop", "pad")
# Pretrained towers we know how to feed (model_type of their config).
VISUAL_TOWERS = ("clip_vision_model", "siglip_vision_model", "vit", "dinov2")
AUDIO_TOWERS = ("whisper", "audio-spectrogram-transformer")
# Packaged frozen visual backbones, selected by name (weights from a checked package file).
VISUAL_BACKBONES = ("efficientnet-lite0",)
PACKAGED_IMAGE_SIZE = {"efficientnet-lite0": 224}


def _positive(name: str, value: Any) -> None:
    if not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")


class VideoBertConfig(PreTrainedConfig):
    """The two-stream VideoBERT encoder.

    Each stream (visual, audio) projects its per-step features to ``hidden_size``, adds a
    temporal position embedding and a modality embedding, and runs ``fusion_layer`` BERT
    layers. The two streams are then fused (``fusion``) into one sequence, which runs the
    remaining ``num_hidden_layers - fusion_layer`` BERT layers.

    Args:
        visual_feature_size: Width of the visual backbone's per-frame features.
        audio_feature_size: Width of the audio backbone's per-window features.
        hidden_size: Width of both streams and of the fused states.
        num_hidden_layers: Total depth: stream layers plus fused layers.
        fusion_layer: The layer l after which the streams are fused (1..num_hidden_layers).
        fusion: ``gated`` (the seed's ``F = g_v * V + g_a * A``), ``sum``, ``concat``
            (concatenation + linear) or ``cross_attention`` (each stream attends to the other).
        num_attention_heads: Attention heads per layer.
        intermediate_size: Width of the feed-forward layers.
        hidden_act: Activation of the feed-forward layers.
        hidden_dropout_prob: Dropout on hidden states.
        attention_probs_dropout_prob: Dropout on attention weights.
        max_position_embeddings: Most time steps one window may hold.
        layer_norm_eps: LayerNorm epsilon.
        initializer_range: Std of the normal initialiser.
    """

    model_type = "videobert"

    visual_feature_size: int = 256
    audio_feature_size: int = 256
    hidden_size: int = 256
    num_hidden_layers: int = 2
    fusion_layer: int = 2
    fusion: str = "gated"
    num_attention_heads: int = 4
    intermediate_size: int = 768
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 64
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs: Any) -> None:
        super().__post_init__(**kwargs)
        if self.fusion not in FUSION_KINDS:
            raise ValueError(f"fusion must be one of {FUSION_KINDS}, got {self.fusion!r}")
        if not 1 <= self.fusion_layer <= self.num_hidden_layers:
            raise ValueError(
                f"fusion_layer must be between 1 and num_hidden_layers={self.num_hidden_layers},"
                f" got {self.fusion_layer}"
            )
        for name in ("visual_feature_size", "audio_feature_size", "hidden_size"):
            _positive(name, getattr(self, name))
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be a multiple of num_attention_heads"
                f" ({self.num_attention_heads})"
            )

    @property
    def num_fused_layers(self) -> int:
        """Layers that run on the fused states."""
        return self.num_hidden_layers - self.fusion_layer

    def bert_config(self, num_layers: int) -> BertConfig:
        """A BERT config for one stack of this encoder (a stream or the fused layers)."""
        return BertConfig(
            vocab_size=1,  # streams take inputs_embeds; the word embedding is never used
            hidden_size=self.hidden_size,
            num_hidden_layers=num_layers,
            num_attention_heads=self.num_attention_heads,
            intermediate_size=self.intermediate_size,
            hidden_act=self.hidden_act,
            hidden_dropout_prob=self.hidden_dropout_prob,
            attention_probs_dropout_prob=self.attention_probs_dropout_prob,
            max_position_embeddings=self.max_position_embeddings,
            type_vocab_size=1,
            layer_norm_eps=self.layer_norm_eps,
            initializer_range=self.initializer_range,
            pad_token_id=0,
        )


class VideoCaptionerConfig(PreTrainedConfig):
    """The whole captioner: backbones, VideoBERT fusion, BART decoder and sampling settings.

    Args:
        videobert_config: The fusion encoder (:class:`VideoBertConfig`).
        decoder_config: The BART model (``BartConfig``); its encoder runs over the fused
            states (followed by the question tokens for questions), its decoder writes text.
        visual_backbone_config: A pretrained vision tower's config (for example
            ``clip_vision_model``), or None for the built-in frame CNN.
        visual_backbone: A packaged frozen visual backbone by name (``efficientnet-lite0``:
            1280-d features, set ``videobert_config.visual_feature_size`` to 1280), or None.
            Exclusive with ``visual_backbone_config``; its weights are never saved with the
            model (they come from their checked package file).
        audio_backbone_config: A pretrained audio encoder's config (``whisper`` or
            ``audio-spectrogram-transformer``), or None for the built-in log-mel CNN.
        freeze_backbones: Keep pretrained towers frozen (and in eval mode) while training.
        frame_size: Side of the square frames the built-in CNN sees.
        frame_fit: ``pad`` (whole frame, letterboxed) or ``crop`` (centre crop).
        visual_channels: Channels of the built-in CNN's stride-2 blocks.
        visual_motion: Feed the built-in CNN the difference to the previous sampled frame
            too, so motion is visible within one frame's features.
        image_mean: Per-channel mean for normalising frames in [0, 1].
        image_std: Per-channel std for normalising frames.
        sample_rate: Audio sample rate the audio backbone expects.
        audio_window_s: Length of the audio window centred on each sampled frame.
        n_fft: STFT size of the log-mel front end.
        hop_length: STFT hop of the log-mel front end.
        n_mels: Mel bands of the log-mel front end.
        audio_channels: Channels of the built-in audio CNN's stride-2 blocks.
        frames_per_second: Frames sampled per second of video.
        max_frames: Most time steps in one window the model sees at once (longer videos are
            subsampled for the whole-video caption and processed in windows elsewhere).
        fixed_video_length: Pad the video side of BART's encoder input to ``max_frames`` steps,
            so a question's tokens always start at the same position, whatever else is in the
            batch (BART's positions are learnt: a question must not move with the padding,
            or answers would change with what they are batched with).
        max_question_tokens: Longest question, in tokens.
        max_new_tokens: Longest generated text, in tokens.
        num_beams: Beam size of ``generate`` (1 = greedy).
        no_repeat_ngram_size: Forbid repeating n-grams of this size while generating (0 = off).
    """

    model_type = "videocaptioner"
    sub_configs_defaults: ClassVar[dict[str, Any]] = {
        "videobert_config": VideoBertConfig,
        "decoder_config": BartConfig,
        "visual_backbone_config": SubConfigSpec(
            AutoConfig, model_type="clip_vision_model", optional=True
        ),
        "audio_backbone_config": SubConfigSpec(AutoConfig, model_type="whisper", optional=True),
    }

    # Given as dicts or configs, always configs once built (Any keeps attribute access typed
    # as the reader expects).
    videobert_config: Any = None
    decoder_config: Any = None
    visual_backbone_config: Any = None
    audio_backbone_config: Any = None
    visual_backbone: str | None = None
    freeze_backbones: bool = True
    frame_size: int = 64
    frame_fit: str = "pad"
    visual_channels: list[int] | tuple[int, ...] = (32, 64, 128, 128)
    visual_motion: bool = True
    image_mean: list[float] | tuple[float, ...] = (0.5, 0.5, 0.5)
    image_std: list[float] | tuple[float, ...] = (0.5, 0.5, 0.5)
    sample_rate: int = 16_000
    audio_window_s: float = 1.0
    n_fft: int = 400
    hop_length: int = 160
    n_mels: int = 64
    audio_channels: list[int] | tuple[int, ...] = (32, 64, 128)
    frames_per_second: float = 2.0
    max_frames: int = 32
    fixed_video_length: bool = True
    max_question_tokens: int = 32
    max_new_tokens: int = 64
    num_beams: int = 1
    no_repeat_ngram_size: int = 0
    is_encoder_decoder: bool = True

    def __post_init__(self, **kwargs: Any) -> None:
        if self.decoder_config is None:
            self.decoder_config = small_bart_config()
        super().__post_init__(**kwargs)
        # JSON has no tuples: keep lists so a saved and reloaded config compares equal.
        for name in ("visual_channels", "image_mean", "image_std", "audio_channels"):
            setattr(self, name, list(getattr(self, name)))
        self.validate_settings()

    def validate_settings(self) -> None:
        """Check the settings that the sub-configs do not check themselves."""
        if self.frame_fit not in FRAME_FITS:
            raise ValueError(f"frame_fit must be one of {FRAME_FITS}, got {self.frame_fit!r}")
        for name in ("frame_size", "sample_rate", "audio_window_s", "frames_per_second"):
            _positive(name, getattr(self, name))
        for name in ("max_frames", "max_question_tokens", "max_new_tokens", "num_beams"):
            _positive(name, getattr(self, name))
        if len(self.image_mean) != 3 or len(self.image_std) != 3:
            raise ValueError("image_mean and image_std must have 3 values (R, G, B)")
        if not self.visual_channels or not self.audio_channels:
            raise ValueError("visual_channels and audio_channels must not be empty")
        vb = self.videobert_config
        if self.max_frames > vb.max_position_embeddings:
            raise ValueError(
                f"max_frames ({self.max_frames}) exceeds videobert_config.max_position_embeddings"
                f" ({vb.max_position_embeddings})"
            )
        needed = self.max_frames + self.max_question_tokens
        if needed > self.decoder_config.max_position_embeddings:
            raise ValueError(
                f"max_frames + max_question_tokens ({needed}) exceeds"
                f" decoder_config.max_position_embeddings"
                f" ({self.decoder_config.max_position_embeddings})"
            )
        if self.visual_backbone is not None:
            if self.visual_backbone not in VISUAL_BACKBONES:
                raise ValueError(
                    f"unknown visual_backbone {self.visual_backbone!r}; known: {VISUAL_BACKBONES}"
                )
            if self.visual_backbone_config is not None:
                raise ValueError("give visual_backbone or visual_backbone_config, not both")
        tower = self.visual_backbone_config
        if tower is not None and tower.model_type not in VISUAL_TOWERS:
            raise ValueError(
                f"unsupported visual backbone {tower.model_type!r}; supported: {VISUAL_TOWERS}"
            )
        tower = self.audio_backbone_config
        if tower is not None and tower.model_type not in AUDIO_TOWERS:
            raise ValueError(
                f"unsupported audio backbone {tower.model_type!r}; supported: {AUDIO_TOWERS}"
            )

    @property
    def image_size(self) -> int:
        """Side of the square frames the visual backbone sees."""
        if self.visual_backbone is not None:
            return PACKAGED_IMAGE_SIZE[self.visual_backbone]
        tower = self.visual_backbone_config
        return int(tower.image_size) if tower is not None else self.frame_size

    @property
    def audio_window_samples(self) -> int:
        """Samples in one audio window."""
        return max(1, round(self.audio_window_s * self.sample_rate))


def small_bart_config(vocab_size: int = 1024, **changes: Any) -> BartConfig:
    """The default (small) BART for the captioner, with BART's special token ids."""
    values: dict[str, Any] = {
        "vocab_size": vocab_size,
        "d_model": 256,
        "encoder_layers": 2,
        "decoder_layers": 2,
        "encoder_attention_heads": 4,
        "decoder_attention_heads": 4,
        "encoder_ffn_dim": 768,
        "decoder_ffn_dim": 768,
        "max_position_embeddings": 128,
        "dropout": 0.1,
        "pad_token_id": 1,
        "bos_token_id": 0,
        "eos_token_id": 2,
        "decoder_start_token_id": 2,
        "forced_eos_token_id": 2,
    }
    values.update(changes)
    return BartConfig(**values)
