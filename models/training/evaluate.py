"""Score a captioner on a manifest split: caption metrics, question accuracy, stream ablations.

>>> report = run_eval("models/checkpoints/default", "data/world", "test", "var/eval")
>>> print(markdown_report(report))

A split is a JSONL manifest (``ROOT/{split}.jsonl``, the format of
:mod:`models.training.data.world`): each record names a video (relative to ROOT), its reference
captions, optionally the segments' ground-truth attributes and questions with answers. Every
video is decoded and run through the backbones once; captions, answers and both ablations
(audio masked, visual masked) reuse those features.

Caption metrics are the captioning literature's BLEU-4, ROUGE-L and CIDEr-D (pycocoevalcap),
on text lowercased and stripped of punctuation here (pycocoevalcap's PTB tokenizer needs
Java). CIDEr-D's IDF comes from the references of the whole evaluated set, as it must: over
one sample alone every n-gram would have IDF 0.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch
from tqdm import tqdm

from models.captioner.features import VideoFeatures
from models.captioner.pipeline import CaptionPipeline
from models.training.data.datasets import dataset_from_args

ATTRIBUTES = ("shape", "colour", "motion", "sound")
KIND_ORDER = ("visual", "audio", "cross_modal", "temporal")
DEFAULT_KIND = "qa"
ABLATIONS = ("audio_masked", "visual_masked")
EXAMPLES = 3  # clips shown in the report's examples
EXAMPLE_QUESTIONS = 3  # questions shown per example clip

T = TypeVar("T")

# ---------------------------------------------------------------------- text


def normalise_answer(text: str) -> str:
    """An answer as exact match compares it.

    Lowercased, stripped, runs of whitespace collapsed to one space, trailing punctuation
    removed: ``"  Red Circle. "`` -> ``"red circle"``.
    """
    text = " ".join(text.lower().split())
    return re.sub(r"[\s.,;:!?]+$", "", text)


def normalise_caption(text: str) -> str:
    """A caption as the metrics read it: lowercase words split by single spaces.

    Apostrophes are dropped (``"don't"`` -> ``"dont"``); every other punctuation mark separates
    words.
    """
    text = text.lower().replace("'", "").replace("\u2019", "")
    return " ".join(re.sub(r"[^\w\s]|_", " ", text).split())


def mentions(caption: str, phrase: str) -> bool:
    """Whether ``caption`` names ``phrase`` as whole words (``"red"`` is not in ``"reddish"``).

    Both are normalised with :func:`normalise_caption`; a phrase of several words must appear
    with its words in order, next to each other.
    """
    words = normalise_caption(phrase)
    if not words:
        return False
    pattern = r"\b" + r"\s+".join(re.escape(w) for w in words.split()) + r"\b"
    return re.search(pattern, normalise_caption(caption)) is not None


# ---------------------------------------------------------------------- metrics


def caption_metrics(
    generated: Sequence[str], references: Sequence[Sequence[str]]
) -> dict[str, float | None]:
    """Corpus BLEU-4, ROUGE-L, CIDEr-D and exact-match rate of captions against references.

    Every metric is computed over the whole set at once (CIDEr-D's IDF in particular comes
    from all the references given), so score a split in one call, never sample by sample.

    Args:
        generated: One caption per sample.
        references: Each sample's reference captions (at least one each).

    Returns:
        ``bleu4``, ``rouge_l``, ``cider_d`` (0 to 10) and ``exact`` (the fraction of samples
        whose caption equals one of its references, after normalisation); all None for an
        empty set.

    Raises:
        ValueError: The lengths differ, or a sample has no reference.
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    if len(generated) != len(references):
        raise ValueError(f"{len(generated)} captions but {len(references)} reference lists")
    if not generated:
        return {"bleu4": None, "rouge_l": None, "cider_d": None, "exact": None}
    res = {i: [normalise_caption(c)] for i, c in enumerate(generated)}
    gts: dict[int, list[str]] = {}
    for i, refs in enumerate(references):
        if not refs:
            raise ValueError(f"sample {i} has no reference caption")
        gts[i] = [normalise_caption(r) for r in refs]
    with contextlib.redirect_stdout(io.StringIO()):  # Bleu prints its internals
        bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    rouge, _ = Rouge().compute_score(gts, res)
    cider, _ = Cider().compute_score(gts, res)
    exact = sum(res[i][0] in gts[i] for i in res) / len(res)
    return {
        "bleu4": float(bleu[3]),
        "rouge_l": float(rouge),
        "cider_d": float(cider),
        "exact": exact,
    }


def _record_attributes(record: dict[str, Any]) -> dict[str, list[str]]:
    """Ground-truth attribute values of a record's segments, per attribute type."""
    found: dict[str, list[str]] = {a: [] for a in ATTRIBUTES}
    for segment in record.get("segments") or []:
        for attribute in ATTRIBUTES:
            value = segment.get(attribute)
            if isinstance(value, str) and value:
                found[attribute].append(value)
    return found


def attribute_accuracy(
    generated: Sequence[str], records: Sequence[dict[str, Any]]
) -> dict[str, float | int | None]:
    """How many of the ground-truth attributes each caption names, per attribute type.

    For every record whose segments carry ``shape``/``colour``/``motion``/``sound``, each
    segment's value of each attribute is one mention to find in the clip's caption, as whole
    words (:func:`mentions`): ``"still"`` for a still object, ``"silence"`` for a silent
    segment, ``"low tone"`` as two adjacent words.

    Args:
        generated: One caption per record.
        records: Manifest records (records without attributes are left out).

    Returns:
        Per attribute type, the fraction of its mentions named; ``all``, the fraction of
        clips whose caption names every one of their attributes; ``clips``, how many clips
        were scored. Fractions are None when nothing was scored.
    """
    if len(generated) != len(records):
        raise ValueError(f"{len(generated)} captions but {len(records)} records")
    hits = dict.fromkeys(ATTRIBUTES, 0)
    totals = dict.fromkeys(ATTRIBUTES, 0)
    clips = complete = 0
    for caption, record in zip(generated, records, strict=True):
        truth = _record_attributes(record)
        if not any(truth.values()):
            continue
        clips += 1
        every = True
        for attribute, values in truth.items():
            for value in values:
                named = mentions(caption, value)
                hits[attribute] += named
                totals[attribute] += 1
                every = every and named
        complete += every
    result: dict[str, float | int | None] = {
        a: (hits[a] / totals[a] if totals[a] else None) for a in ATTRIBUTES
    }
    result["all"] = complete / clips if clips else None
    result["clips"] = clips
    return result


def _kind_key(kind: str) -> tuple[int, str]:
    return (KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER), kind)


def qa_accuracy(
    predictions: Sequence[str], answers: Sequence[str], kinds: Sequence[str]
) -> dict[str, Any]:
    """Exact-match accuracy of answers (after :func:`normalise_answer`), overall and per kind.

    Returns:
        ``overall`` (None with no questions), ``by_kind`` {kind: accuracy} and ``counts``
        {kind: questions}, kinds in the order visual, audio, cross_modal, temporal, then
        any others alphabetically.
    """
    if not len(predictions) == len(answers) == len(kinds):
        raise ValueError(
            f"{len(predictions)} predictions, {len(answers)} answers, {len(kinds)} kinds"
        )
    right: dict[str, int] = {}
    counts: dict[str, int] = {}
    for predicted, answer, kind in zip(predictions, answers, kinds, strict=True):
        counts[kind] = counts.get(kind, 0) + 1
        right[kind] = right.get(kind, 0) + (normalise_answer(predicted) == normalise_answer(answer))
    order = sorted(counts, key=_kind_key)
    total = sum(counts.values())
    return {
        "overall": sum(right.values()) / total if total else None,
        "by_kind": {k: right[k] / counts[k] for k in order},
        "counts": {k: counts[k] for k in order},
    }


# ---------------------------------------------------------------------- ablations


def mask_audio(features: VideoFeatures) -> VideoFeatures:
    """The features with the audio stream removed: ``audio_mask`` all False, audio zeroed.

    The model ignores steps whose audio mask is False; zeroing the tensor as well keeps the
    ablation exact whatever the fusion does with masked steps.
    """
    return VideoFeatures(
        **{
            **features.__dict__,
            "audio": torch.zeros_like(features.audio),
            "audio_mask": torch.zeros_like(features.audio_mask, dtype=torch.bool),
        }
    )


def mask_visual(features: VideoFeatures) -> VideoFeatures:
    """The features with the visual stream removed: the ``visual`` tensor zeroed.

    ``visual_mask`` stays True: it also marks which time steps exist (the encoder attends
    only to steps where it is True), so masking it would leave the model no valid step.
    Zeroed features carry no information about the picture while keeping every step, its
    timestamp and its audio.
    """
    return VideoFeatures(**{**features.__dict__, "visual": torch.zeros_like(features.visual)})


ABLATE: dict[str, Callable[[VideoFeatures], VideoFeatures]] = {
    "audio_masked": mask_audio,
    "visual_masked": mask_visual,
}

# ---------------------------------------------------------------------- evaluation


def _references(record: dict[str, Any]) -> list[str]:
    refs = [c for c in record.get("captions") or [] if isinstance(c, str) and c.strip()]
    if not refs and isinstance(record.get("caption"), str) and record["caption"].strip():
        refs = [record["caption"]]
    return refs


def _chunks(items: Sequence[T], size: int, desc: str, progress: bool) -> Iterator[Sequence[T]]:
    """``items`` in chunks of ``size``, with a progress bar over items."""
    with tqdm(total=len(items), desc=desc, unit="item", disable=not progress) as bar:
        for i in range(0, len(items), size):
            chunk = items[i : i + size]
            yield chunk
            bar.update(len(chunk))


class _Run:
    """Captions and answers for one set of features, batched."""

    def __init__(
        self,
        pipe: CaptionPipeline,
        records: Sequence[dict[str, Any]],
        pairs: Sequence[tuple[int, dict[str, Any]]],
        batch_size: int,
        progress: bool,
    ) -> None:
        self.pipe, self.records, self.pairs = pipe, records, pairs
        self.batch_size, self.progress = batch_size, progress

    def captions(self, features: Sequence[VideoFeatures], desc: str) -> list[str]:
        texts: list[str] = []
        for chunk in _chunks(features, self.batch_size, desc, self.progress):
            texts += self.pipe.caption(chunk)
        return texts

    def answers(self, features: Sequence[VideoFeatures], desc: str) -> list[str]:
        texts: list[str] = []
        for chunk in _chunks(self.pairs, self.batch_size, desc, self.progress):
            texts += self.pipe.answer(
                [features[i] for i, _ in chunk], [str(q["question"]) for _, q in chunk]
            )
        return texts

    def caption_report(self, generated: Sequence[str]) -> dict[str, Any]:
        scored = [i for i, r in enumerate(self.records) if _references(r)]
        metrics: dict[str, Any] = caption_metrics(
            [generated[i] for i in scored], [_references(self.records[i]) for i in scored]
        )
        metrics["attributes"] = attribute_accuracy(generated, self.records)
        return metrics

    def qa_report(self, predictions: Sequence[str]) -> dict[str, Any]:
        return qa_accuracy(
            predictions,
            [str(q["answer"]) for _, q in self.pairs],
            [str(q.get("kind") or DEFAULT_KIND) for _, q in self.pairs],
        )


def _split_name(records: Sequence[dict[str, Any]]) -> str | None:
    splits = sorted({str(r["split"]) for r in records if r.get("split") is not None})
    return "+".join(splits) if splits else None


def evaluate(
    pipe: CaptionPipeline,
    records: list[dict[str, Any]],
    root: Path,
    *,
    ablations: bool = True,
    batch_size: int = 32,
    progress: bool = True,
) -> dict[str, Any]:
    """Score a captioner on manifest records.

    Each record's video (``root / record["video"]``) is decoded and run through the
    backbones once; the captions, the answers to every question of every record, and both
    ablations reuse those features (an ablation masks a stream in the features, it never
    decodes again).

    Args:
        pipe: The pipeline to score.
        records: Manifest records (see :mod:`models.training.data.world`). Records without questions
            contribute none; a question without ``kind`` counts as kind ``"qa"``. Records
            without reference captions are left out of the caption metrics.
        root: The directory the records' ``video`` paths are relative to.
        ablations: Also score captions and answers with the audio stream masked
            (``audio_mask`` all False) and with the visual stream masked (``visual`` zeroed;
            see :func:`mask_visual` for why its mask stays True).
        batch_size: Clips or questions per forward pass (the pipeline's own ``batch_size``
            is set to it for the call, then restored).
        progress: Show progress bars (on stderr).

    Returns:
        A JSON-able report: ``split``, ``clips``, ``questions``, ``captions`` (``bleu4``,
        ``rouge_l``, ``cider_d``, ``exact``, ``attributes``), ``qa`` (``overall``,
        ``by_kind``, ``counts``), ``ablations`` (``audio_masked`` and ``visual_masked``,
        each with ``captions`` and ``qa`` as above; empty without ``ablations``),
        ``examples`` and ``seconds`` (``extract``, ``captions``, ``questions``,
        ``ablations``, ``total``).

    Raises:
        MediaError: The media layer's, for a video that is not acceptable.
        ValueError: ``batch_size`` is below 1.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    began = time.perf_counter()
    root = Path(root)
    seconds: dict[str, float] = {}

    tick = time.perf_counter()
    features: list[VideoFeatures] = [
        pipe.extract(root / str(r["video"]))
        for r in tqdm(records, desc="extract", unit="clip", disable=not progress)
    ]
    seconds["extract"] = time.perf_counter() - tick

    pairs = [(i, q) for i, r in enumerate(records) for q in r.get("questions") or []]
    run = _Run(pipe, records, pairs, batch_size, progress)
    saved_batch_size = pipe.batch_size
    pipe.batch_size = batch_size
    try:
        tick = time.perf_counter()
        generated = run.captions(features, "captions")
        seconds["captions"] = time.perf_counter() - tick

        tick = time.perf_counter()
        predicted = run.answers(features, "questions")
        seconds["questions"] = time.perf_counter() - tick

        ablated: dict[str, Any] = {}
        tick = time.perf_counter()
        if ablations:
            for name in ABLATIONS:
                masked = [ABLATE[name](f) for f in features]
                ablated[name] = {
                    "captions": run.caption_report(run.captions(masked, f"captions, {name}")),
                    "qa": run.qa_report(run.answers(masked, f"questions, {name}")),
                }
        seconds["ablations"] = time.perf_counter() - tick
    finally:
        pipe.batch_size = saved_batch_size

    by_record: dict[int, list[dict[str, str]]] = {}
    for (i, q), p in zip(pairs, predicted, strict=True):
        by_record.setdefault(i, []).append(
            {
                "question": str(q["question"]),
                "answer": str(q["answer"]),
                "predicted": p,
                "kind": str(q.get("kind") or DEFAULT_KIND),
            }
        )
    examples = [
        {
            "id": r.get("id", str(i)),
            "reference": (_references(r) or [""])[0],
            "generated": generated[i],
            "qa": by_record.get(i, [])[:EXAMPLE_QUESTIONS],
        }
        for i, r in enumerate(records[:EXAMPLES])
    ]
    seconds["total"] = time.perf_counter() - began
    return {
        "split": _split_name(records),
        "clips": len(records),
        "questions": len(pairs),
        "captions": run.caption_report(generated),
        "qa": run.qa_report(predicted),
        "ablations": ablated,
        "examples": examples,
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
    }


# ---------------------------------------------------------------------- report


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return lines


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_report(report: dict[str, Any]) -> str:
    """The report of :func:`evaluate` as markdown tables.

    Caption metrics, attribute accuracy and question accuracy by kind, each with the full
    model and (when the report has them) the audio-masked and visual-masked ablations side
    by side; then timings and the examples.
    """
    ablated = report.get("ablations") or {}
    columns = [("full", report)] + [
        (name.replace("_", " "), ablated[name]) for name in ABLATIONS if name in ablated
    ]
    names = [name for name, _ in columns]
    lines = [
        f"# Evaluation: {report.get('split') or 'records'}",
        "",
        f"{report['clips']} clips, {report['questions']} questions.",
        "",
        "## Captions",
        "",
    ]
    metrics = [("BLEU-4", "bleu4"), ("ROUGE-L", "rouge_l"), ("CIDEr-D", "cider_d")]
    metrics.append(("exact match", "exact"))
    lines += _table(
        ["metric", *names],
        [[label] + [c["captions"].get(key) for _, c in columns] for label, key in metrics],
    )
    lines += ["", "## Attributes named in the caption", ""]
    attrs = [*ATTRIBUTES, "all"]
    lines += _table(
        ["attribute", *names],
        [[a] + [c["captions"]["attributes"].get(a) for _, c in columns] for a in attrs],
    )
    lines += ["", "## Question accuracy", ""]
    counts: dict[str, int] = report["qa"]["counts"]
    lines += _table(
        ["kind", "questions", *names],
        [[k, n] + [c["qa"]["by_kind"].get(k) for _, c in columns] for k, n in counts.items()]
        + [["overall", report["questions"]] + [c["qa"]["overall"] for _, c in columns]],
    )
    lines += ["", "## Seconds", ""]
    lines += _table(["stage", "seconds"], [[k, v] for k, v in report["seconds"].items()])
    if report.get("examples"):
        lines += ["", "## Examples", ""]
        for ex in report["examples"]:
            lines += [
                f"### {ex['id']}",
                "",
                f"- reference: {ex['reference']}",
                f"- generated: {ex['generated']}",
            ]
            if ex["qa"]:
                lines += [""]
                lines += _table(
                    ["question", "answer", "predicted"],
                    [
                        [_cell(q["question"]), _cell(q["answer"]), _cell(q["predicted"])]
                        for q in ex["qa"]
                    ],
                )
            lines += [""]
    return "\n".join(lines).rstrip() + "\n"


def run_eval(
    model_dir: str | os.PathLike[str],
    data_root: str | os.PathLike[str],
    split: str,
    out_dir: str | os.PathLike[str],
    *,
    limit: int | None = None,
    device: str | torch.device | None = None,
    ablations: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate a saved model on a split of a dataset; write the JSON and markdown.

    Args:
        model_dir: A directory written by ``CaptionPipeline.save_pretrained``.
        data_root: A dataset folder (``{split}.jsonl`` manifests) or an MSR-VTT annotation
            file or folder (see :func:`models.training.data.datasets.dataset_from_args`).
        split: The split.
        out_dir: Where ``eval-{split}.json`` and ``eval-{split}.md`` go (made if missing).
        limit: Evaluate only the first ``limit`` records.
        device: Where to run (default: CUDA when present).
        ablations: Also score the audio-masked and visual-masked ablations.
        progress: Show progress bars.

    Returns:
        The report of :func:`evaluate`, its ``split`` set to ``split``.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must not be negative, got {limit}")
    data_root = Path(data_root)
    # Our manifests or MSR-VTT annotations; each record's video is then an absolute path.
    records = dataset_from_args(data_root, split)
    if limit is not None:
        records = records[:limit]
    pipe = CaptionPipeline.from_pretrained(model_dir, device=device)
    report = evaluate(pipe, records, data_root, ablations=ablations, progress=progress)
    report["split"] = split
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"eval-{split}.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / f"eval-{split}.md").write_text(markdown_report(report))
    return report
