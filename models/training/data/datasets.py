"""Dataset readers: our JSONL manifests and MSR-VTT / MSRVTT-QA, all as one record schema.

Every reader returns a list of records (plain dicts) of the schema of our own manifests (see
:mod:`models.training.data.world`), normalised so that every key is present::

    {"id": str,
     "video": str,            # absolute path of the video file
     "video_rel": str,        # the path as the source wrote it (relative to the manifest's
                              # root, or to the videos folder for MSR-VTT)
     "split": str,            # "train", "val", "test", ... (our names: MSR-VTT's "validate"
                              # is "val")
     "duration_s": float | None,   # None where the source does not say
     "caption": str,          # == captions[0]; "" when the record has no caption
     "captions": [str, ...],  # every reference caption (may be [] for QA-only records)
     "segments": [...],       # [] for datasets without segment annotations
     "questions": [{"question": str, "answer": str, "kind": str, ...}, ...]}

Other keys of a source record are kept. ``video`` is absolute so that a record can be used
without knowing where it came from; ``video_rel`` keeps the portable form (write it back as
``video`` when making a manifest). The readers do not check that the video files exist.

Sources:

* Our manifests, ``ROOT/{split}.jsonl`` (:func:`load_split`).
* MSR-VTT annotations, ``train_val_videodatainfo.json`` / ``test_videodatainfo.json``
  (:func:`load_msrvtt`): ``{"videos": [{"video_id": "video0", "split": "train" | "validate" |
  "test", "start time", "end time", ...}], "sentences": [{"caption", "video_id", "sen_id"}]}``.
* MSRVTT-QA (Xu et al., 2017), ``{train,val,test}_qa.json`` (:func:`load_msrvtt_qa`): a list of
  ``{"id", "video_id": N, "question", "answer", "category_id"}``, where ``N`` names the MSR-VTT
  video ``video{N}``. Questions get kind ``"qa"``; ``category_id`` and the QA ``id`` are kept
  on each question as they are (no public description of what each ``category_id`` means was
  found to map them to question words).

:func:`dataset_from_args` picks the reader from a path, for the command line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

Record = dict[str, Any]

DEFAULT_QUESTION_KIND = "qa"

# Our split names -> MSR-VTT's, and back. "validate" is accepted as an input alias of "val".
MSRVTT_SPLITS = {"train": "train", "val": "validate", "validate": "validate", "test": "test"}
_OUR_SPLIT = {"train": "train", "validate": "val", "test": "test"}

# The MSR-VTT annotation files a folder may hold, by our split name.
MSRVTT_ANNOTATION_FILES = {
    "train": "train_val_videodatainfo.json",
    "val": "train_val_videodatainfo.json",
    "test": "test_videodatainfo.json",
}
# Where dataset_from_args looks for the videos of an annotation file, relative to its folder,
# in this order (TrainValVideo/ and TestVideo/ are the folders of the MSR-VTT download; video/
# is the MSRVTT-QA repository's layout).
_VIDEO_DIR_CANDIDATES = {
    "train": ("videos", "videos/all", "TrainValVideo", "video"),
    "val": ("videos", "videos/all", "TrainValVideo", "video"),
    "test": ("videos", "videos/all", "TestVideo", "video"),
}


# --- Our manifests ---------------------------------------------------------------------------


def _iter_manifest(path: Path) -> Iterator[tuple[int, Record]]:
    """(line number, record) for every non-blank line of a JSONL manifest."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"manifest not found: {path}") from None
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{lineno}: not valid JSON ({e.msg})") from e
        if not isinstance(record, dict):
            raise ValueError(
                f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}"
            )
        yield lineno, record


def read_manifest(path: str | os.PathLike[str]) -> list[Record]:
    """Read a JSONL manifest: one JSON object per line; blank lines are skipped.

    Records are returned as written (not normalised; see :func:`load_split`).

    Args:
        path: The ``.jsonl`` file.

    Returns:
        The records, in file order.

    Raises:
        FileNotFoundError: The file does not exist (the message names it).
        ValueError: A line is not valid JSON or not a JSON object (the message names the file
            and the line number).
    """
    return [record for _, record in _iter_manifest(Path(path))]


def normalise_record(record: Record, *, where: str = "record", split: str | None = None) -> Record:
    """A copy of ``record`` with every key of the schema present (see the module docstring).

    ``caption`` becomes ``captions[0]``: a ``caption`` that is missing from ``captions`` is put
    first, one that is in it is moved first; with only ``captions``, ``caption`` is its first.
    ``segments`` and ``questions`` default to ``[]``, each question's ``kind`` to ``"qa"``,
    ``duration_s`` to None, ``split`` to ``split``. ``video`` is not resolved here.

    Args:
        record: A source record; it is not modified.
        where: Where the record comes from, for error messages (e.g. ``"path:line"``).
        split: The split to set when the record has none.

    Returns:
        The normalised record (a new dict; its lists and question dicts are new too).

    Raises:
        ValueError: ``id`` or ``video`` is missing, or a field has the wrong type.
    """
    out = dict(record)
    for key in ("id", "video"):
        if key not in out or not isinstance(out[key], str | int) or out[key] == "":
            raise ValueError(f"{where}: missing or invalid {key!r}")
    out["id"] = str(out["id"])

    captions = out.get("captions") or []
    if not isinstance(captions, list) or not all(isinstance(c, str) for c in captions):
        raise ValueError(f"{where}: 'captions' must be a list of strings")
    caption = out.get("caption")
    if caption is not None and not isinstance(caption, str):
        raise ValueError(f"{where}: 'caption' must be a string")
    if caption:
        captions = [caption, *(c for c in captions if c != caption)]
    out["captions"] = list(captions)
    out["caption"] = captions[0] if captions else ""

    segments = out.get("segments") or []
    if not isinstance(segments, list):
        raise ValueError(f"{where}: 'segments' must be a list")
    out["segments"] = list(segments)

    questions = out.get("questions") or []
    if not isinstance(questions, list):
        raise ValueError(f"{where}: 'questions' must be a list")
    normalised_questions = []
    for k, q in enumerate(questions):
        if not isinstance(q, dict) or not isinstance(q.get("question"), str):
            raise ValueError(f"{where}: question {k} needs a 'question' string")
        if "answer" not in q:
            raise ValueError(f"{where}: question {k} has no 'answer'")
        nq = dict(q)
        nq["answer"] = str(nq["answer"])
        nq.setdefault("kind", DEFAULT_QUESTION_KIND)
        normalised_questions.append(nq)
    out["questions"] = normalised_questions

    out.setdefault("duration_s", None)
    if out.get("split") is None:
        out["split"] = split
    return out


def _absolute(root: Path, rel: str) -> str:
    """``root / rel`` as an absolute, normalised path string (symlinks are not resolved)."""
    return os.path.normpath(os.path.abspath(root / rel))


def load_split(root: str | os.PathLike[str], split: str) -> list[Record]:
    """Read ``ROOT/{split}.jsonl`` and normalise its records.

    Each record's ``video`` (relative to ROOT in the manifest) becomes an absolute path string;
    the manifest's value is kept as ``video_rel``. An absolute ``video`` stays as it is.

    Args:
        root: The dataset folder.
        split: The split name (``train``, ``val``, ``test``, ``compositional``, ...).

    Returns:
        The split's records in manifest order, normalised (see :func:`normalise_record`).

    Raises:
        FileNotFoundError: ``ROOT/{split}.jsonl`` does not exist.
        ValueError: A line is not a JSON object or misses ``id`` / ``video`` (the message
            names the file and line).
    """
    root = Path(root)
    path = root / f"{split}.jsonl"
    records = []
    for lineno, raw in _iter_manifest(path):
        record = normalise_record(raw, where=f"{path}:{lineno}", split=split)
        rel = str(record["video"])
        record["video_rel"] = rel
        record["video"] = _absolute(root, rel)
        records.append(record)
    return records


# --- MSR-VTT ---------------------------------------------------------------------------------


def _read_json(path: Path) -> Any:
    """A whole JSON file; errors name the file."""
    try:
        with path.open(encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"file not found: {path}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from e


def _msrvtt_split(split: str) -> str:
    """MSR-VTT's name of our split name (``val`` -> ``validate``)."""
    try:
        return MSRVTT_SPLITS[split]
    except KeyError:
        raise ValueError(
            f"unknown MSR-VTT split {split!r}; splits are 'train', 'val' (MSR-VTT's "
            "'validate') and 'test'"
        ) from None


def _is_msrvtt_annotation(data: Any) -> bool:
    return isinstance(data, dict) and "videos" in data and "sentences" in data


def _is_msrvtt_qa(data: Any) -> bool:
    return (
        isinstance(data, list)
        and bool(data)
        and all(isinstance(x, dict) and "question" in x and "video_id" in x for x in data[:100])
    )


def _msrvtt_records(data: Any, source: Path, videos_dir: Path, split: str) -> list[Record]:
    if not _is_msrvtt_annotation(data):
        raise ValueError(
            f"{source}: not an MSR-VTT annotation file (expected an object with 'videos' and "
            "'sentences')"
        )
    theirs = _msrvtt_split(split)
    ours = _OUR_SPLIT[theirs]
    captions: dict[str, list[tuple[int, str]]] = {}
    for k, sentence in enumerate(data["sentences"]):
        captions.setdefault(str(sentence["video_id"]), []).append(
            (int(sentence.get("sen_id", k)), str(sentence["caption"]).strip())
        )
    records = []
    for video in data["videos"]:
        if video.get("split") != theirs:
            continue
        video_id = str(video["video_id"])
        sentences = [c for _, c in sorted(captions.get(video_id, []), key=lambda s: s[0])]
        if not sentences:
            continue  # nothing to train or score on
        start, end = video.get("start time"), video.get("end time")
        duration = (
            round(float(end) - float(start), 3) if start is not None and end is not None else None
        )
        rel = f"{video_id}.mp4"
        extra = {k: v for k, v in video.items() if k not in ("video_id", "split", "id")}
        records.append(
            normalise_record(
                {
                    **extra,
                    "id": video_id,
                    "video": _absolute(videos_dir, rel),
                    "video_rel": rel,
                    "split": ours,
                    "duration_s": duration,
                    "captions": sentences,
                    "msrvtt_index": video.get("id"),
                },
                where=f"{source}: {video_id}",
            )
        )
    if not records:
        present = sorted({str(v.get("split")) for v in data["videos"]})
        hint = " (MSR-VTT's test videos are in test_videodatainfo.json)" if theirs == "test" else ""
        raise ValueError(
            f"{source}: no captioned videos of split {theirs!r}; the file has splits "
            f"{present}{hint}"
        )
    return records


def load_msrvtt(
    annotation_json: str | os.PathLike[str], videos_dir: str | os.PathLike[str], split: str
) -> list[Record]:
    """Read the videos of one split from an MSR-VTT annotation file.

    A record per video of the split that has at least one sentence: ``id`` is MSR-VTT's
    ``video_id`` (``"video0"``), ``video`` is ``videos_dir/{video_id}.mp4`` (absolute),
    ``captions`` are all its sentences in ``sen_id`` order, ``duration_s`` is
    ``end time - start time``; ``segments`` and ``questions`` are empty. MSR-VTT's own
    ``id`` is kept as ``msrvtt_index``, its ``category``, ``url``, ``start time`` and
    ``end time`` as they are.

    Args:
        annotation_json: ``train_val_videodatainfo.json``, ``test_videodatainfo.json`` or
            another file of that format.
        videos_dir: The folder of the ``video*.mp4`` files.
        split: ``train``, ``val`` (MSR-VTT's ``validate``; ``validate`` is accepted too) or
            ``test``. Records get our name (``val``).

    Returns:
        The split's records, in the file's order of videos.

    Raises:
        FileNotFoundError: The annotation file does not exist.
        ValueError: Unknown split, a file not of this format, or no video of the split in it.
    """
    source = Path(annotation_json)
    return _msrvtt_records(_read_json(source), source, Path(videos_dir), split)


def _msrvtt_video_id(value: Any, where: str) -> str:
    """``7`` / ``"7"`` / ``"video7"`` -> ``"video7"``."""
    if isinstance(value, int) and not isinstance(value, bool):
        return f"video{value}"
    if isinstance(value, str):
        if value.isdigit():
            return f"video{value}"
        if value.startswith("video") and value[5:].isdigit():
            return value
    raise ValueError(f"{where}: unexpected video_id {value!r}")


def _split_from_qa_name(path: Path) -> str | None:
    """``train_qa.json`` -> ``train``; None for other names."""
    stem = path.stem
    if stem.endswith("_qa"):
        name = stem[: -len("_qa")]
        if name in MSRVTT_SPLITS:
            return _OUR_SPLIT[MSRVTT_SPLITS[name]]
    return None


def _msrvtt_qa_records(
    data: Any, source: Path, videos_dir: Path, split: str | None
) -> list[Record]:
    if not _is_msrvtt_qa(data):
        raise ValueError(
            f"{source}: not an MSRVTT-QA file (expected a list of objects with 'video_id', "
            "'question' and 'answer')"
        )
    if split is None:
        split = _split_from_qa_name(source)
    by_video: dict[str, Record] = {}
    for k, entry in enumerate(data):
        where = f"{source}: entry {k}"
        video_id = _msrvtt_video_id(entry["video_id"], where)
        if "answer" not in entry:
            raise ValueError(f"{where}: no 'answer'")
        record = by_video.get(video_id)
        if record is None:
            rel = f"{video_id}.mp4"
            record = by_video[video_id] = {
                "id": video_id,
                "video": _absolute(videos_dir, rel),
                "video_rel": rel,
                "split": split,
                "questions": [],
            }
        question: Record = {
            "question": str(entry["question"]),
            "answer": str(entry["answer"]),
            "kind": DEFAULT_QUESTION_KIND,
        }
        for key in ("id", "category_id"):
            if key in entry:
                question[key] = entry[key]
        record["questions"].append(question)
    return [normalise_record(r, where=f"{source}: {r['id']}") for r in by_video.values()]


def load_msrvtt_qa(
    qa_json: str | os.PathLike[str],
    videos_dir: str | os.PathLike[str],
    split: str | None = None,
) -> list[Record]:
    """Read an MSRVTT-QA file, grouping its questions by video.

    A record per video, in order of first appearance: ``id`` ``"video{N}"``, ``video``
    ``videos_dir/video{N}.mp4`` (absolute), ``questions`` in file order, each
    ``{"question", "answer", "kind": "qa", "id", "category_id"}``; no captions
    (``caption`` ``""``, ``captions`` ``[]``), no segments, ``duration_s`` None. ``video_id``
    may be an int ``N`` (the released files), ``"N"`` or ``"videoN"``.

    Args:
        qa_json: ``train_qa.json``, ``val_qa.json``, ``test_qa.json`` or a file of that format.
            Each file holds one split; entries have no split field.
        videos_dir: The folder of the MSR-VTT ``video*.mp4`` files.
        split: The split to set on the records; None takes it from a file name
            ``{train,val,test}_qa.json`` (else None).

    Returns:
        One record per video.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: The file is not of this format.
    """
    source = Path(qa_json)
    return _msrvtt_qa_records(_read_json(source), source, Path(videos_dir), split)


def _merge_questions(records: list[Record], qa_records: Iterable[Record]) -> list[Record]:
    questions = {r["id"]: r["questions"] for r in qa_records}
    return [{**r, "questions": [*r["questions"], *questions.get(r["id"], [])]} for r in records]


def load_msrvtt_dataset(
    annotation_json: str | os.PathLike[str],
    qa_dir_or_json: str | os.PathLike[str],
    videos_dir: str | os.PathLike[str],
    split: str,
) -> list[Record]:
    """MSR-VTT captions and MSRVTT-QA questions of one split, merged per video.

    The records are those of :func:`load_msrvtt`, with the questions of
    :func:`load_msrvtt_qa` of the same video added. Questions about videos that are not
    in the annotation file's split are dropped (MSRVTT-QA uses MSR-VTT's splits, so there are
    none with the released files).

    Args:
        annotation_json: The MSR-VTT annotation file.
        qa_dir_or_json: An MSRVTT-QA file, or the folder holding ``{split}_qa.json``
            (``train_qa.json``, ``val_qa.json``, ``test_qa.json``).
        videos_dir: The folder of the ``video*.mp4`` files.
        split: ``train``, ``val`` or ``test``.

    Returns:
        The split's records with captions and questions.

    Raises:
        FileNotFoundError: A file does not exist.
        ValueError: As :func:`load_msrvtt` and :func:`load_msrvtt_qa`.
    """
    ours = _OUR_SPLIT[_msrvtt_split(split)]
    qa_path = Path(qa_dir_or_json)
    if qa_path.is_dir():
        qa_path = qa_path / f"{ours}_qa.json"
    records = load_msrvtt(annotation_json, videos_dir, ours)
    return _merge_questions(records, load_msrvtt_qa(qa_path, videos_dir, ours))


# --- One entry point for the command line ----------------------------------------------------


def find_videos_dir(base: str | os.PathLike[str], split: str, video_ids: Sequence[str]) -> Path:
    """The videos folder next to an MSR-VTT(-QA) file.

    Looks, in ``base``, at ``videos/``, ``videos/all/``, then ``TrainValVideo/`` (``train``
    and ``val``) or ``TestVideo/`` (``test``), then ``video/``; picks the first that holds
    ``{id}.mp4`` for at least one of ``video_ids``.

    Args:
        base: The folder of the annotation file.
        split: Our split name (``validate`` is accepted for ``val``).
        video_ids: The ids of the records (``"video0"``, ...).

    Returns:
        The folder.

    Raises:
        ValueError: No candidate folder holds any of the videos.
    """
    base = Path(base)
    ours = _OUR_SPLIT[_msrvtt_split(split)]
    candidates = [base / name for name in _VIDEO_DIR_CANDIDATES[ours]]
    for folder in candidates:
        if folder.is_dir() and any((folder / f"{v}.mp4").is_file() for v in video_ids):
            return folder
    tried = ", ".join(str(c) for c in candidates)
    raise ValueError(
        f"no folder of MSR-VTT videos found for split {ours!r}: looked for {{video_id}}.mp4 in "
        f"{tried}; pass the folder explicitly (videos_dir)"
    )


def _with_videos_dir(records: list[Record], videos_dir: Path) -> list[Record]:
    return [{**r, "video": _absolute(videos_dir, r["video_rel"])} for r in records]


def _from_json(path: Path, split: str, videos_dir: Path | None) -> list[Record]:
    data = _read_json(path)
    if _is_msrvtt_annotation(data):
        records = _msrvtt_records(data, path, videos_dir or path.parent, split)
    elif _is_msrvtt_qa(data):
        ours = _OUR_SPLIT[_msrvtt_split(split)]
        named = _split_from_qa_name(path)
        if named is not None and named != ours:
            raise ValueError(
                f"{path} holds the {named!r} questions of MSRVTT-QA, not {ours!r}; pass "
                f"{path.with_name(f'{ours}_qa.json')}"
            )
        records = _msrvtt_qa_records(data, path, videos_dir or path.parent, ours)
    else:
        raise ValueError(
            f"{path}: not a dataset file vidcap reads (an MSR-VTT annotation file with "
            "'videos' and 'sentences', or an MSRVTT-QA list of questions)"
        )
    if videos_dir is None:
        found = find_videos_dir(path.parent, split, [r["id"] for r in records])
        records = _with_videos_dir(records, found)
    return records


def dataset_from_args(
    root_or_spec: str | os.PathLike[str],
    split: str,
    *,
    videos_dir: str | os.PathLike[str] | None = None,
) -> list[Record]:
    """The records of ``split`` of the dataset a command-line path names.

    The path may be:

    * a folder with ``{split}.jsonl``: our manifest format (:func:`load_split`);
    * a folder without it but with MSR-VTT's annotation file of the split
      (``train_val_videodatainfo.json`` for ``train`` / ``val``, ``test_videodatainfo.json``
      for ``test``): read like that file;
    * a ``.json`` MSR-VTT annotation file (:func:`load_msrvtt`), recognised by its
      ``videos`` and ``sentences``;
    * a ``.json`` MSRVTT-QA file (:func:`load_msrvtt_qa`), recognised as a list of questions;
      a file named ``{train,val,test}_qa.json`` must be the requested split's.

    For the MSR-VTT files, ``videos_dir`` (if given) is the folder of the ``video*.mp4`` files;
    otherwise it is looked for next to the file (:func:`find_videos_dir`: ``videos/``,
    ``videos/all/``, ``TrainValVideo/`` or ``TestVideo/``, ``video/``). It is ignored for our
    manifests, whose video paths are relative to their folder.

    Args:
        root_or_spec: The path.
        split: ``train``, ``val``, ``test`` (or another split of one of our manifests).
        videos_dir: The MSR-VTT videos folder, if not next to the annotation file.

    Returns:
        The normalised records.

    Raises:
        FileNotFoundError: The path does not exist.
        ValueError: The path is none of the above (the message says what was expected), or
            the reader rejects it.
    """
    path = Path(root_or_spec)
    videos = Path(videos_dir) if videos_dir is not None else None
    if not path.exists():
        raise FileNotFoundError(f"dataset not found: {path}")
    if path.is_dir():
        if (path / f"{split}.jsonl").is_file():
            return load_split(path, split)
        ours = _OUR_SPLIT.get(MSRVTT_SPLITS.get(split, ""))
        annotation = path / MSRVTT_ANNOTATION_FILES[ours] if ours else None
        if annotation is not None and annotation.is_file():
            return _from_json(annotation, split, videos)
        manifests = sorted(p.name for p in path.glob("*.jsonl"))
        have = f"; it has {', '.join(manifests)}" if manifests else ""
        raise ValueError(
            f"{path} has no {split}.jsonl manifest{have} and no MSR-VTT annotation file for "
            f"split {split!r}. Pass a folder with {split}.jsonl (make one with "
            "models.training.data.world.generate), or an MSR-VTT / MSRVTT-QA .json file"
        )
    if path.suffix.lower() == ".json":
        return _from_json(path, split, videos)
    raise ValueError(
        f"{path}: expected a dataset folder with {split}.jsonl, or an MSR-VTT annotation / "
        "MSRVTT-QA .json file"
    )
