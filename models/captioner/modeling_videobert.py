"""VideoBERT: two BERT streams (visual, audio) on one time grid, fused at layer l.

    visual (B, T, Dv) -> proj -> + modality -> BERT x l --\
                                                          fusion -> F (B, T, H) -> BERT x (N - l)
    audio  (B, T, Da) -> proj -> + modality -> BERT x l --/

BERT adds the temporal position embeddings (one per time step of the window). Fusion is the
seed's gated fusion ``F = g_v * V + g_a * A`` with ``g = sigmoid(W [V; A] + b)``, or element-wise
sum, concatenation + linear, or cross-attention between the streams. A time step without audio
(no track, or past its end) contributes nothing from the audio stream.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import BertModel, PreTrainedModel
from transformers.utils import ModelOutput

from models.captioner.configuration_videobert import VideoBertConfig

VISUAL, AUDIO = 0, 1


@dataclass
class VideoBertOutput(ModelOutput):
    """What :class:`VideoBertModel` returns.

    Attributes:
        last_hidden_state: (B, T, H) the fused states after the post-fusion layers.
        fused_states: (B, T, H) the states right after fusion at layer l.
        gates: (B, T, 2, H) for gated fusion: ``[..., 0, :]`` the visual gate, ``[..., 1, :]``
            the audio gate (zero where there is no audio); None for the other fusions.
        visual_states: (B, T, H) the visual stream at layer l.
        audio_states: (B, T, H) the audio stream at layer l.
    """

    last_hidden_state: torch.Tensor | None = None
    fused_states: torch.Tensor | None = None
    gates: torch.Tensor | None = None
    visual_states: torch.Tensor | None = None
    audio_states: torch.Tensor | None = None


class GatedFusion(nn.Module):
    """The seed's gated fusion.

    ``g_v = sigmoid(W_v [V; A] + b_v)``, ``g_a = sigmoid(W_a [V; A] + b_a)``,
    ``F = g_v * V + g_a * A``.
    """

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.visual_gate = nn.Linear(2 * hidden, hidden)
        self.audio_gate = nn.Linear(2 * hidden, hidden)

    def forward(
        self, v: torch.Tensor, a: torch.Tensor, audio_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        both = torch.cat([v, a], dim=-1)  # (B, T, 2H)
        g_v = torch.sigmoid(self.visual_gate(both))  # (B, T, H)
        g_a = torch.sigmoid(self.audio_gate(both)) * audio_mask.unsqueeze(-1)  # silent -> 0
        return g_v * v + g_a * a, torch.stack([g_v, g_a], dim=2)  # (B, T, H), (B, T, 2, H)


class SumFusion(nn.Module):
    """``F = V + A``."""

    def forward(self, v: torch.Tensor, a: torch.Tensor, audio_mask: torch.Tensor) -> torch.Tensor:
        return v + a


class ConcatFusion(nn.Module):
    """``F = W [V; A] + b``."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.linear = nn.Linear(2 * hidden, hidden)

    def forward(self, v: torch.Tensor, a: torch.Tensor, audio_mask: torch.Tensor) -> torch.Tensor:
        return self.linear(torch.cat([v, a], dim=-1))


class CrossAttentionFusion(nn.Module):
    """Each stream attends to the other; ``F`` is the mean of the two updated streams."""

    def __init__(self, hidden: int, heads: int, dropout: float, eps: float) -> None:
        super().__init__()
        self.v_from_a = nn.MultiheadAttention(hidden, heads, dropout=dropout, batch_first=True)
        self.a_from_v = nn.MultiheadAttention(hidden, heads, dropout=dropout, batch_first=True)
        self.v_norm = nn.LayerNorm(hidden, eps=eps)
        self.a_norm = nn.LayerNorm(hidden, eps=eps)

    def forward(
        self,
        v: torch.Tensor,
        a: torch.Tensor,
        audio_mask: torch.Tensor,
        visual_mask: torch.Tensor,
    ) -> torch.Tensor:
        # A query row whose keys are all padding would give NaN: let it see everything and
        # drop the result (a clip without audio keeps its visual stream as it is).
        no_audio = ~audio_mask.any(dim=1, keepdim=True)  # (B, 1)
        audio_pad = ~audio_mask & ~no_audio
        heard, _ = self.v_from_a(v, a, a, key_padding_mask=audio_pad, need_weights=False)
        heard = heard * audio_mask.any(dim=1).view(-1, 1, 1)
        seen, _ = self.a_from_v(a, v, v, key_padding_mask=~visual_mask, need_weights=False)
        v2 = self.v_norm(v + heard)
        a2 = self.a_norm(a + seen) * audio_mask.unsqueeze(-1)
        present = 1.0 + audio_mask.unsqueeze(-1)  # average over the streams that are there
        return (v2 + a2) / present


class VideoBertPreTrainedModel(PreTrainedModel):
    """Weight init and loading conventions shared by the VideoBERT models."""

    config_class = VideoBertConfig
    base_model_prefix = "videobert"
    main_input_name = "visual_features"
    supports_gradient_checkpointing = False


class VideoBertModel(VideoBertPreTrainedModel):
    """The two-stream encoder with fusion at layer ``config.fusion_layer``."""

    def __init__(self, config: VideoBertConfig) -> None:
        super().__init__(config)
        h = config.hidden_size
        self.visual_proj = nn.Linear(config.visual_feature_size, h)
        self.audio_proj = nn.Linear(config.audio_feature_size, h)
        self.modality_embeddings = nn.Embedding(2, h)
        self.visual_stream = BertModel(config.bert_config(config.fusion_layer), False)
        self.audio_stream = BertModel(config.bert_config(config.fusion_layer), False)
        self.fusion: nn.Module
        if config.fusion == "gated":
            self.fusion = GatedFusion(h)
        elif config.fusion == "sum":
            self.fusion = SumFusion()
        elif config.fusion == "concat":
            self.fusion = ConcatFusion(h)
        else:
            self.fusion = CrossAttentionFusion(
                h, config.num_attention_heads, config.attention_probs_dropout_prob,
                config.layer_norm_eps,
            )  # fmt: skip
        self.fused_encoder = (
            BertModel(config.bert_config(config.num_fused_layers), False)
            if config.num_fused_layers
            else None
        )
        self.post_init()

    def _stream(
        self, encoder: BertModel, x: torch.Tensor, mask: torch.Tensor, modality: int
    ) -> torch.Tensor:
        x = x + self.modality_embeddings.weight[modality]  # (B, T, H)
        # A clip without audio has no valid step; attending over padding there is harmless
        # because fusion drops those states, and it keeps the softmax finite.
        attend = mask | ~mask.any(dim=1, keepdim=True)
        return encoder(inputs_embeds=x, attention_mask=attend.long()).last_hidden_state

    def forward(
        self,
        visual_features: torch.Tensor,
        audio_features: torch.Tensor,
        visual_mask: torch.Tensor | None = None,
        audio_mask: torch.Tensor | None = None,
    ) -> VideoBertOutput:
        """Fuse one window of visual and audio features.

        Args:
            visual_features: (B, T, visual_feature_size).
            audio_features: (B, T, audio_feature_size), on the same time grid.
            visual_mask: bool (B, T), True at real frames (default: all).
            audio_mask: bool (B, T), True where there is audio (default: all).

        Returns:
            :class:`VideoBertOutput`.
        """
        cfg = self.config
        b, t = visual_features.shape[:2]
        if audio_features.shape[:2] != (b, t):
            raise ValueError(
                f"visual and audio features must share (B, T): {tuple(visual_features.shape)}"
                f" vs {tuple(audio_features.shape)}"
            )
        if t > cfg.max_position_embeddings:
            raise ValueError(
                f"{t} time steps exceed max_position_embeddings={cfg.max_position_embeddings};"
                " split the video into windows"
            )
        device = visual_features.device
        if visual_mask is None:
            visual_mask = torch.ones(b, t, dtype=torch.bool, device=device)
        if audio_mask is None:
            audio_mask = torch.ones(b, t, dtype=torch.bool, device=device)
        visual_mask, audio_mask = visual_mask.bool(), audio_mask.bool() & visual_mask.bool()

        v = self._stream(self.visual_stream, self.visual_proj(visual_features), visual_mask, VISUAL)
        a = self._stream(self.audio_stream, self.audio_proj(audio_features), audio_mask, AUDIO)
        a = a * audio_mask.unsqueeze(-1)  # (B, T, H): silent steps carry nothing
        gates = None
        if isinstance(self.fusion, GatedFusion):
            fused, gates = self.fusion(v, a, audio_mask)
        elif isinstance(self.fusion, CrossAttentionFusion):
            fused = self.fusion(v, a, audio_mask, visual_mask)
        else:
            fused = self.fusion(v, a, audio_mask)
        last = fused
        if self.fused_encoder is not None:
            last = self.fused_encoder(
                inputs_embeds=fused, attention_mask=visual_mask.long()
            ).last_hidden_state
        return VideoBertOutput(
            last_hidden_state=last,
            fused_states=fused,
            gates=gates,
            visual_states=v,
            audio_states=a,
        )
