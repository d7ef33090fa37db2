"""What the grounded captioner reads about a video, and how its output becomes answers.

A :class:`VideoContext` holds, on one time line, what the experts found (transcript segments,
on-screen text, tags per frame and per stretch, "no audio track" / "no one speaks") as
:class:`Piece` s, and the two streams' inputs on the frame grid (the tagger's top-5 per
frame, the log-mel of the audio window at each frame). It is built from a
:class:`~models.perception.result.Perception` (a real video) or from an everyday-world record
(training), the same way, so the model sees the same thing in both.

:func:`pack` turns contexts and questions into a padded batch; the pieces a question is about
are retrieved first when they do not all fit (long videos). Each piece is an evidence unit;
so is each frame (kind ``audio``: the soundtrack at that moment).
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from models.captioner.answers import Evidence
from models.captioner.configuration_grounded import AUDIO_CLASSES, POSITION_KINDS
from models.captioner.modeling_grounded import KIND, TextEncoder

TOP_K = 5  # tags per frame
TAG_THRESHOLD = 0.15  # a tag's mean score over a stretch to be read as seen there
SPAN_SECONDS = 5.0  # tags are summarised per stretch of this length
DESCRIBE = "describe the video."
DESCRIBE_PART = "describe this part of the video."

LANGUAGE_NAMES = {
    "en": "english", "ru": "russian", "zh": "chinese", "de": "german", "fr": "french",
    "es": "spanish", "it": "italian", "pt": "portuguese", "ja": "japanese", "ko": "korean",
    "ar": "arabic", "hi": "hindi", "nl": "dutch", "pl": "polish", "tr": "turkish",
    "uk": "ukrainian", "sv": "swedish", "cs": "czech", "el": "greek", "he": "hebrew",
    "fi": "finnish", "da": "danish", "no": "norwegian", "hu": "hungarian", "ro": "romanian",
    "vi": "vietnamese", "th": "thai", "id": "indonesian", "fa": "persian", "ca": "catalan",
}  # fmt: skip


def language_name(code: str | None) -> str:
    """An ISO 639-1 code as an English word ("ru" -> "russian"); unknown codes as they are."""
    return LANGUAGE_NAMES.get(code or "", code or "unknown")


@dataclass(frozen=True)
class Piece:
    """One thing an expert found: an evidence unit the model reads as text.

    Attributes:
        kind: ``speech``, ``text``, ``visual`` or ``audio``.
        start, end: Seconds.
        text: What the text encoder reads (with a short prefix saying what it is).
        snippet: What evidence shows to a user.
    """

    kind: str
    start: float
    end: float
    text: str
    snippet: str


@dataclass
class VideoContext:
    """Everything the grounded captioner reads about one video (or one stretch of it)."""

    duration: float
    has_audio: bool
    frame_times: np.ndarray  # (T,) seconds
    frame_classes: np.ndarray  # (T, TOP_K) int64
    frame_scores: np.ndarray  # (T, TOP_K) float32
    audio_mels: np.ndarray  # (T, n_mels, frames) float16 (zeros without audio)
    audio_heard: np.ndarray  # (T,) bool
    pieces: list[Piece] = field(default_factory=list)

    def window(self, start: float, end: float) -> VideoContext:
        """The part of the video in ``[start, end)``: its frames (the nearest one when none
        falls inside) and the pieces that overlap it."""
        inside = np.nonzero((self.frame_times >= start) & (self.frame_times < end))[0]
        if len(inside) == 0:
            inside = np.array([int(np.argmin(np.abs(self.frame_times - (start + end) / 2)))])
        pieces = [
            p
            for p in self.pieces
            if (p.end > start and p.start < end)
            or (p.kind == "audio" and p.start == 0 and p.end >= self.duration)
        ]
        return VideoContext(
            duration=self.duration,
            has_audio=self.has_audio,
            frame_times=self.frame_times[inside],
            frame_classes=self.frame_classes[inside],
            frame_scores=self.frame_scores[inside],
            audio_mels=self.audio_mels[inside],
            audio_heard=self.audio_heard[inside],
            pieces=pieces,
        )

    def subsample(self, count: int) -> VideoContext:
        """At most ``count`` frames, spread evenly (pieces kept)."""
        t = len(self.frame_times)
        if t <= count:
            return self
        keep = np.unique(np.linspace(0, t - 1, count).round().astype(int))
        return VideoContext(
            self.duration, self.has_audio, self.frame_times[keep], self.frame_classes[keep],
            self.frame_scores[keep], self.audio_mels[keep], self.audio_heard[keep], self.pieces,
        )  # fmt: skip


# ---------------------------------------------------------------------- pieces


def tag_phrase(label: str, names: Sequence[str]) -> str:
    """How a tag reads: its label and its most specific common name ("malamute (dog)")."""
    from models.perception.tags import tag_phrase as phrase

    return phrase(label, names)


def stretch_tags(
    frame_times: np.ndarray,
    classes: np.ndarray,
    scores: np.ndarray,
    duration: float,
    table: Sequence[tuple[str, Sequence[str]]],
) -> list[Piece]:
    """One ``visual`` piece per :data:`SPAN_SECONDS` stretch: the classes whose mean score
    over the stretch's frames is at least :data:`TAG_THRESHOLD` (at most 3, strongest first)."""
    from models.media.sampling import segment_spans

    pieces = []
    for start, end in segment_spans(max(duration, 1e-3), SPAN_SECONDS):
        inside = (frame_times >= start) & (frame_times < end)
        if not inside.any():
            continue
        n = int(inside.sum())
        total: dict[int, float] = {}
        for row_c, row_s in zip(classes[inside], scores[inside], strict=True):
            for c, s in zip(row_c, row_s, strict=True):
                total[int(c)] = total.get(int(c), 0.0) + float(s)
        kept = sorted(
            ((s / n, c) for c, s in total.items() if s / n >= TAG_THRESHOLD), reverse=True
        )[:3]
        if not kept:
            continue
        phrases = [tag_phrase(*table[c]) for _, c in kept]
        pieces.append(
            Piece("visual", start, end, "seen: " + ", ".join(phrases), ", ".join(phrases))
        )
    return pieces


def meta_pieces(duration: float, has_audio: bool, speaks: bool) -> list[Piece]:
    """Facts about the soundtrack as a whole: no audio track, or nobody speaks."""
    if not has_audio:
        return [
            Piece("audio", 0.0, duration, "sound: the video has no audio track", "no audio track")
        ]
    if not speaks:
        return [Piece("audio", 0.0, duration, "sound: no one speaks", "no speech")]
    return []


def speech_piece(start: float, end: float, text: str, language: str | None) -> Piece:
    """A transcript segment as the model reads it."""
    return Piece(
        "speech", start, end, f"said in {language_name(language)}: {text.strip()}", text.strip()
    )


# A sentence ends at . ! ? followed by a space and a capital (or a non-Latin letter), except
# after a title or an initial ("Mr. John Dashwood", "J. R. R. Tolkien").
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[^\sa-z0-9])")
_NOT_AN_END = re.compile(r"(?:\b(?:mr|mrs|ms|dr|st|prof|sr|jr|vs|mt|no)|\b[a-z])\.$", re.I)


def sentences(
    start: float,
    end: float,
    text: str,
    language: str | None,
    words: Sequence[tuple[float, float, str]] = (),
) -> list[tuple[float, float, str, str | None]]:
    """A transcript segment cut into its sentences, each ``(start, end, text, language)``.

    Whisper often joins several sentences in one segment (a long talk gives segments of
    15 s); the model reads one sentence a piece, as in training, and a question's evidence
    then points at the sentence. Times come from the word timings ``(start, end, text)``
    where the words can be found in the text, else from the sentence's share of characters.
    """
    text = text.strip()
    cuts = [0]
    for found in _SENTENCE_END.finditer(text):
        if not _NOT_AN_END.search(text[: found.start()]):
            cuts.append(found.end())
    if len(cuts) == 1:
        return [(start, end, text, language)]
    cuts.append(len(text) + 1)
    at: list[tuple[int, float, float]] = []  # (character offset, start, end) of each word
    cursor = 0
    for w_start, w_end, word in words:
        found_at = text.find(word.strip(), cursor)
        if word.strip() and found_at >= 0:
            at.append((found_at, w_start, w_end))
            cursor = found_at + len(word.strip())
    out = []
    span = max(end - start, 0.0)
    for a, b in itertools.pairwise(cuts):
        part = text[a:b].strip()
        inside = [(s, e) for offset, s, e in at if a <= offset < b]
        if inside:
            s0, s1 = inside[0][0], inside[-1][1]
        else:
            s0 = start + span * a / len(text)
            s1 = start + span * min(b, len(text)) / len(text)
        out.append((round(s0, 3), round(max(s1, s0), 3), part, language))
    return out


def text_piece(start: float, end: float, text: str) -> Piece:
    """An on-screen text item as the model reads it."""
    return Piece("text", start, end, f"on screen: {text.strip()}", text.strip())


def context_pieces(
    duration: float,
    has_audio: bool,
    speech: Sequence[tuple[float, float, str, str | None]],
    texts: Sequence[tuple[float, float, str]],
    frames: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> list[Piece]:
    """Every piece the model reads about a video, in time order: the soundtrack facts, the
    transcript segments ``(start, end, text, language)``, the on-screen text items
    ``(start, end, text)`` and the tag stretches of ``frames`` (times, classes, scores)."""
    pieces = meta_pieces(duration, has_audio, bool(speech))
    pieces += [speech_piece(*s) for s in speech]
    pieces += [text_piece(*x) for x in texts]
    pieces += stretch_tags(*frames, duration, class_table())
    return sorted(pieces, key=lambda p: (p.start, p.kind))


def frame_arrays(
    frames: Sequence[tuple[float, Sequence[tuple[int, float]]]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(time, [(class index, score), ...]) per frame -> times, classes, scores (top-K padded
    with class 0 at score 0)."""
    t = len(frames)
    times = np.zeros(t, dtype=np.float64)
    classes = np.zeros((t, TOP_K), dtype=np.int64)
    scores = np.zeros((t, TOP_K), dtype=np.float32)
    for i, (time, tags) in enumerate(frames):
        times[i] = time
        for k, (c, s) in enumerate(sorted(tags, key=lambda x: -x[1])[:TOP_K]):
            classes[i, k], scores[i, k] = c, s
    return times, classes, scores


def class_table() -> list[tuple[str, tuple[str, ...]]]:
    """(label, names) of every tagger class, in index order."""
    from models.perception.tags import imagenet_classes

    return [(c.label, c.names) for c in imagenet_classes()]


def mels_at(
    audio: np.ndarray | None, sample_rate: int, times: np.ndarray, window_s: float, mel: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Log-mel (T, n_mels, frames) float16 of the audio window at each time, and where audio was."""
    from models.media import audio_windows

    windows, heard = audio_windows(audio, sample_rate, times, window_s=window_s)
    with torch.inference_mode():
        mels = mel(torch.from_numpy(windows)).numpy().astype(np.float16)
    return mels, heard


# ---------------------------------------------------------------------- batches


@dataclass
class Packed:
    """A padded batch for :meth:`GroundedCaptionerModel.encode`, and how to read its units."""

    inputs: dict[str, torch.Tensor]
    units: list[list[tuple[str, float, float, str]]]  # per example: (kind, start, end, snippet)
    frame_unit_offset: list[int]  # per example: index of its first frame unit


class PieceCache:
    """Text-encoder states of piece texts and questions, computed once each."""

    def __init__(self, encoder: TextEncoder, max_tokens: int = 64) -> None:
        self.encoder = encoder
        self.max_tokens = max_tokens
        self.states: dict[str, tuple[list[int], torch.Tensor]] = {}

    def get(self, texts: Sequence[str]) -> list[tuple[list[int], torch.Tensor]]:
        """(ids, states) per text."""
        missing = list(dict.fromkeys(t for t in texts if t not in self.states))
        if missing:
            for text, (ids, states) in zip(
                missing, self.encoder.encode(missing, self.max_tokens), strict=True
            ):
                self.states[text] = (ids, states.half())  # half the memory of a training set
        return [self.states[t] for t in texts]

    def vector(self, text: str) -> torch.Tensor:
        """The L2-normalised mean of a text's states (retrieval)."""
        _, states = self.get([text])[0]
        if not len(states):
            return torch.zeros(states.shape[-1])
        return F.normalize(states.float().mean(0), dim=-1)


# Words that tell nothing about which piece a question is about.
_QUESTION_WORDS = frozenset({
    "a", "an", "the", "of", "to", "in", "on", "at", "by", "for", "from", "with", "and", "or",
    "is", "are", "was", "were", "be", "been", "do", "does", "did", "what", "who", "whom",
    "whose", "which", "when", "where", "why", "how", "many", "much", "there", "this", "that",
    "these", "those", "it", "its", "he", "she", "they", "them", "his", "her", "their", "said",
    "says", "say", "speaker", "video", "shown", "seen",
})  # fmt: skip


def _words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower())) - _QUESTION_WORDS


def word_overlap(question: str, texts: Sequence[str]) -> list[float]:
    """How much of the question's rarer words each text holds, in [0, 1]: the IDF-weighted
    share of the question's words (IDF over ``texts``). Sentence embeddings rank "Who bought
    the soup?" close to every sentence where someone bought something; the one word "soup"
    is what singles out the sentence in an hour of them."""
    asked = _words(question)
    held = [_words(t) & asked for t in texts]
    if not asked or not texts:
        return [0.0] * len(texts)
    idf = {w: math.log(1 + len(texts) / (1 + sum(w in h for h in held))) for w in asked}
    total = sum(idf.values())
    return [sum(idf[w] for w in h) / total for h in held]


# A question about a video too long to read whole reads at most this many of the transcript
# sentences and screen texts most like it. Trained on short clips, the model picks the right
# one of a few but not of ten alike (measured on bench/long_lecture.py's 59 min lecture:
# 0 of 3 planted questions answered reading ten, 2 of 3 reading two).
READ_AT_MOST = 2


def select_pieces(
    pieces: Sequence[Piece], question: str, cache: PieceCache, budget: int
) -> list[Piece]:
    """The pieces to read for a question, in time order, within ``budget`` word pieces.

    When everything fits, everything is read. Otherwise the pieces most like the question
    are kept (text-encoder similarity plus :func:`word_overlap`), with whole-video facts
    always first, and for a question (not a description) at most :data:`READ_AT_MOST` of
    the transcript sentences and screen texts.
    """
    sizes = [len(ids) for ids, _ in cache.get([p.text for p in pieces])]
    if sum(sizes) <= budget:
        return list(pieces)
    query = cache.vector(question)
    overlap = word_overlap(question, [p.snippet for p in pieces])
    ranked = sorted(
        range(len(pieces)),
        key=lambda i: (
            pieces[i].kind != "audio",
            -(float(cache.vector(pieces[i].text) @ query) + overlap[i]),
        ),
    )
    # A question reads only the few sayings (transcript sentences, screen texts) most like it.
    capped = question not in (DESCRIBE, DESCRIBE_PART)
    chosen, used, said = [], 0, 0
    for i in ranked:
        saying = pieces[i].kind in ("speech", "text")
        if capped and saying and said >= READ_AT_MOST:
            continue
        if used + sizes[i] <= budget:
            chosen.append(i)
            used += sizes[i]
            said += saying
    return [pieces[i] for i in sorted(chosen, key=lambda i: (pieces[i].start, i))]


def pack(
    contexts: Sequence[VideoContext],
    questions: Sequence[str],
    cache: PieceCache,
    *,
    max_frames: int,
    max_question_tokens: int,
    max_context_tokens: int,
    device: torch.device | str = "cpu",
) -> Packed:
    """Pad contexts (one per question) into a batch for the model."""
    rows: list[dict[str, Any]] = []
    all_units: list[list[tuple[str, float, float, str]]] = []
    offsets: list[int] = []
    for ctx, question in zip(contexts, questions, strict=True):
        ctx = ctx.subsample(max_frames)
        pieces = select_pieces(ctx.pieces, question, cache, max_context_tokens)
        q_ids, q_states = cache.get([question])[0]
        q_ids, q_states = q_ids[:max_question_tokens], q_states[:max_question_tokens]
        ids, states, kinds, starts, ends, units = (
            list(q_ids),
            [q_states],
            [KIND["question"]] * len(q_ids),
            [0.0] * len(q_ids),
            [0.0] * len(q_ids),
            [-1] * len(q_ids),
        )
        used = 0
        unit_list: list[tuple[str, float, float, str]] = []
        for piece, (p_ids, p_states) in zip(
            pieces, cache.get([p.text for p in pieces]), strict=True
        ):
            take = min(len(p_ids), max_context_tokens - used)
            if take <= 0:
                break
            u = len(unit_list)
            unit_list.append((piece.kind, piece.start, piece.end, piece.snippet))
            ids += p_ids[:take]
            states.append(p_states[:take])
            kinds += [KIND[piece.kind]] * take
            starts += [piece.start] * take
            ends += [piece.end] * take
            units += [u] * take
            used += take
        offsets.append(len(unit_list))
        half = 0.5
        for t in ctx.frame_times:
            unit_list.append(
                ("audio", max(0.0, float(t) - half), min(ctx.duration, float(t) + half), "")
            )
        all_units.append(unit_list)
        rows.append({
            "ctx": ctx, "ids": ids, "states": torch.cat([s.float() for s in states]),
            "kinds": kinds, "starts": starts, "ends": ends, "units": units,
        })  # fmt: skip
    b = len(rows)
    t = max(len(r["ctx"].frame_times) for r in rows)
    n = max(max(len(r["ids"]) for r in rows), 1)
    d = rows[0]["states"].shape[-1]
    mel_shape = rows[0]["ctx"].audio_mels.shape[1:]
    x: dict[str, torch.Tensor] = {
        "frame_classes": torch.zeros(b, t, TOP_K, dtype=torch.long),
        "frame_scores": torch.zeros(b, t, TOP_K),
        "audio_mels": torch.zeros(b, t, *mel_shape),
        "frame_mask": torch.zeros(b, t, dtype=torch.bool),
        "audio_mask": torch.zeros(b, t, dtype=torch.bool),
        "frame_times": torch.zeros(b, t),
        "duration": torch.zeros(b),
        "text_states": torch.zeros(b, n, d),
        "text_ids": torch.zeros(b, n, dtype=torch.long),
        "text_mask": torch.zeros(b, n, dtype=torch.bool),
        "text_kinds": torch.zeros(b, n, dtype=torch.long),
        "text_start": torch.zeros(b, n),
        "text_end": torch.zeros(b, n),
        "text_units": torch.full((b, n), -1, dtype=torch.long),
        "frame_units": torch.full((b, t), -1, dtype=torch.long),
    }
    for i, r in enumerate(rows):
        ctx = r["ctx"]
        k = len(ctx.frame_times)
        x["frame_classes"][i, :k] = torch.from_numpy(ctx.frame_classes)
        x["frame_scores"][i, :k] = torch.from_numpy(ctx.frame_scores)
        x["audio_mels"][i, :k] = torch.from_numpy(ctx.audio_mels.astype(np.float32))
        x["frame_mask"][i, :k] = True
        x["audio_mask"][i, :k] = torch.from_numpy(ctx.audio_heard)
        x["frame_times"][i, :k] = torch.from_numpy(ctx.frame_times.astype(np.float32))
        x["duration"][i] = ctx.duration
        x["frame_units"][i, :k] = torch.arange(offsets[i], offsets[i] + k)
        m = len(r["ids"])
        if m:
            x["text_states"][i, :m] = r["states"]
            x["text_ids"][i, :m] = torch.tensor(r["ids"])
            x["text_mask"][i, :m] = True
            x["text_kinds"][i, :m] = torch.tensor(r["kinds"])
            x["text_start"][i, :m] = torch.tensor(r["starts"])
            x["text_end"][i, :m] = torch.tensor(r["ends"])
            x["text_units"][i, :m] = torch.tensor(r["units"])
    return Packed({k: v.to(device) for k, v in x.items()}, all_units, offsets)


def evidence_targets(
    packed: Packed, wanted: Sequence[Sequence[dict[str, Any]]], tolerance: float = 0.25
) -> torch.Tensor:
    """(B, U) 1 at the units that overlap an evidence span of the same kind (audio evidence:
    the frames inside its span)."""
    u = max(len(units) for units in packed.units)
    out = torch.zeros(len(packed.units), u)
    for i, (units, spans) in enumerate(zip(packed.units, wanted, strict=True)):
        for j, (kind, start, end, _) in enumerate(units):
            for e in spans:
                if (
                    e["kind"] == kind
                    and start < e["end"] + tolerance
                    and end > e["start"] - tolerance
                ):
                    out[i, j] = 1.0
    return out


def read_evidence(
    packed: Packed,
    scores: torch.Tensor,
    audio_logits: torch.Tensor,
    *,
    relative: float = 0.5,
    most: int = 3,
) -> list[list[Evidence]]:
    """The units an answer rests on: the best one, and others within ``relative`` of its
    probability (at most ``most``); adjacent frames merge into one audio moment whose snippet
    is the audio head's sound class there."""
    probs = scores.float().softmax(-1).nan_to_num(0.0)
    out: list[list[Evidence]] = []
    for i, units in enumerate(packed.units):
        p = probs[i, : len(units)]
        if len(p) == 0:
            out.append([])
            continue
        best = float(p.max())
        chosen = [
            j
            for j in torch.argsort(p, descending=True).tolist()[:most]
            if float(p[j]) >= relative * best
        ]
        items: list[Evidence] = []
        frames = sorted(j for j in chosen if j >= packed.frame_unit_offset[i])
        for j in chosen:
            if j >= packed.frame_unit_offset[i]:
                continue
            kind, start, end, snippet = units[j]
            items.append(Evidence(kind, start, end, snippet))
        if frames:
            first, last = units[frames[0]], units[frames[-1]]
            k = frames[0] - packed.frame_unit_offset[i]
            sound = AUDIO_CLASSES[int(audio_logits[i, k].argmax())]
            items.append(Evidence("audio", first[1], last[2], sound))
        out.append(items)
    return out


__all__ = [
    "DESCRIBE",
    "DESCRIBE_PART",
    "POSITION_KINDS",
    "Packed",
    "Piece",
    "PieceCache",
    "VideoContext",
    "class_table",
    "context_pieces",
    "evidence_targets",
    "frame_arrays",
    "language_name",
    "mels_at",
    "meta_pieces",
    "pack",
    "read_evidence",
    "select_pieces",
    "speech_piece",
    "stretch_tags",
    "text_piece",
]
