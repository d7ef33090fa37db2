"""Dataset readers: our manifests, MSR-VTT, MSRVTT-QA and the command-line dispatch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from models.training.data import world
from models.training.data.datasets import (
    dataset_from_args,
    find_videos_dir,
    load_msrvtt,
    load_msrvtt_dataset,
    load_msrvtt_qa,
    load_split,
    normalise_record,
    read_manifest,
)

SCHEMA_KEYS = {
    "id",
    "video",
    "video_rel",
    "split",
    "duration_s",
    "caption",
    "captions",
    "segments",
    "questions",
}


def _msrvtt_annotation() -> dict[str, Any]:
    """A tiny file of MSR-VTT's format: 2 train videos, 1 validate, 1 without sentences."""

    def video(n: int, split: str) -> dict[str, Any]:
        return {
            "category": 9,
            "url": f"https://www.youtube.com/watch?v=x{n}",
            "video_id": f"video{n}",
            "start time": 10.0,
            "end time": 22.5,
            "split": split,
            "id": n,
        }

    return {
        "info": {"year": "2016", "version": "1.0"},
        "videos": [video(0, "train"), video(1, "validate"), video(2, "train"), video(3, "train")],
        "sentences": [
            {"caption": "a man sings", "video_id": "video0", "sen_id": 1},
            {"caption": "a cat jumps", "video_id": "video1", "sen_id": 2},
            {"caption": "someone is singing", "video_id": "video0", "sen_id": 0},
            {"caption": "a person cooks", "video_id": "video2", "sen_id": 3},
            {"caption": "a cat leaps onto a table", "video_id": "video1", "sen_id": 4},
        ],
    }


def _msrvtt_qa() -> list[dict[str, Any]]:
    """A tiny MSRVTT-QA file (video_id an int N meaning video N)."""
    return [
        {"answer": "man", "category_id": 1, "question": "who sings?", "video_id": 0, "id": 0},
        {"answer": "cat", "category_id": 0, "question": "what jumps?", "video_id": 1, "id": 1},
        {"answer": "sing", "category_id": 0, "question": "what does the man do?", "video_id": 0,
         "id": 2},
    ]  # fmt: skip


def _write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def _touch_videos(folder: Path, *ids: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for video_id in ids:
        (folder / f"{video_id}.mp4").write_bytes(b"")
    return folder


# --- Our manifests -----------------------------------------------------------------------------


def test_generated_split_loads_with_absolute_videos_and_the_manifest_fields(tmp_path):
    world.generate(tmp_path, {"val": 2}, seed=3, progress=False)
    written = read_manifest(tmp_path / "val.jsonl")

    records = load_split(tmp_path, "val")

    assert len(records) == 2
    for raw, record in zip(written, records, strict=True):
        assert record.keys() >= SCHEMA_KEYS
        assert record["video_rel"] == raw["video"]
        assert Path(record["video"]).is_absolute()
        assert Path(record["video"]).is_file()
        assert Path(record["video"]) == (tmp_path / raw["video"]).absolute()
        for key in ("id", "split", "duration_s", "caption", "captions", "segments", "questions"):
            assert record[key] == raw[key]
        assert record["caption"] == record["captions"][0]


def test_dataset_from_args_on_a_manifest_folder_is_load_split(tmp_path):
    world.generate(tmp_path, {"val": 2}, seed=3, progress=False)
    assert dataset_from_args(tmp_path, "val") == load_split(tmp_path, "val")


def test_manifest_with_only_a_caption_is_normalised_to_the_full_schema(tmp_path):
    lines = [
        {"id": "a", "video": "clips/a.mp4", "caption": "a dog runs"},
        {"id": "b", "video": "clips/b.mp4", "captions": ["x", "y"],
         "questions": [{"question": "what runs?", "answer": "dog"}]},
    ]  # fmt: skip
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n\n")

    a, b = load_split(tmp_path, "train")

    assert a["captions"] == ["a dog runs"]
    assert a["caption"] == "a dog runs"
    assert a["segments"] == [] and a["questions"] == []
    assert a["split"] == "train" and a["duration_s"] is None
    assert a["video"] == str((tmp_path / "clips" / "a.mp4").absolute())
    assert b["caption"] == "x"
    assert b["questions"] == [{"question": "what runs?", "answer": "dog", "kind": "qa"}]


def test_caption_missing_from_captions_is_put_first():
    record = normalise_record({"id": 1, "video": "v.mp4", "caption": "c", "captions": ["a", "c"]})
    assert record["id"] == "1"
    assert record["captions"] == ["c", "a"]
    assert record["caption"] == "c"


def test_bad_json_line_error_names_the_file_and_line(tmp_path):
    path = tmp_path / "val.jsonl"
    path.write_text('{"id": "a", "video": "a.mp4"}\n\n{"id": "b", "video": \n')

    with pytest.raises(ValueError, match=r"val\.jsonl:3: not valid JSON"):
        read_manifest(path)
    with pytest.raises(ValueError, match=r"val\.jsonl:3"):
        load_split(tmp_path, "val")


def test_manifest_line_that_is_not_an_object_or_lacks_video_is_an_error(tmp_path):
    path = tmp_path / "val.jsonl"
    path.write_text("[1, 2]\n")
    with pytest.raises(ValueError, match=r"val\.jsonl:1: expected a JSON object"):
        read_manifest(path)
    path.write_text('{"id": "a"}\n')
    with pytest.raises(ValueError, match=r"val\.jsonl:1: missing or invalid 'video'"):
        load_split(tmp_path, "val")


def test_missing_manifest_error_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"test\.jsonl"):
        load_split(tmp_path, "test")


# --- MSR-VTT -----------------------------------------------------------------------------------


def test_msrvtt_train_split_has_every_sentence_of_each_video_in_sen_id_order(tmp_path):
    annotation = _write_json(tmp_path / "train_val_videodatainfo.json", _msrvtt_annotation())

    records = load_msrvtt(annotation, tmp_path / "TrainValVideo", "train")

    # video3 is a train video without sentences: left out.
    assert [r["id"] for r in records] == ["video0", "video2"]
    video0 = records[0]
    assert video0.keys() >= SCHEMA_KEYS
    assert video0["captions"] == ["someone is singing", "a man sings"]
    assert video0["caption"] == "someone is singing"
    assert video0["split"] == "train"
    assert video0["video"] == str((tmp_path / "TrainValVideo" / "video0.mp4").absolute())
    assert video0["video_rel"] == "video0.mp4"
    assert video0["duration_s"] == pytest.approx(12.5)
    assert video0["segments"] == [] and video0["questions"] == []
    assert video0["msrvtt_index"] == 0 and video0["category"] == 9


@pytest.mark.parametrize("split", ["val", "validate"])
def test_msrvtt_val_is_their_validate_split(tmp_path, split):
    annotation = _write_json(tmp_path / "a.json", _msrvtt_annotation())

    records = load_msrvtt(annotation, tmp_path, split)

    assert [r["id"] for r in records] == ["video1"]
    assert records[0]["split"] == "val"
    assert records[0]["captions"] == ["a cat jumps", "a cat leaps onto a table"]


def test_msrvtt_split_absent_from_the_file_or_unknown_is_an_error(tmp_path):
    annotation = _write_json(tmp_path / "train_val_videodatainfo.json", _msrvtt_annotation())
    with pytest.raises(ValueError, match=r"test_videodatainfo\.json"):
        load_msrvtt(annotation, tmp_path, "test")
    with pytest.raises(ValueError, match="unknown MSR-VTT split"):
        load_msrvtt(annotation, tmp_path, "dev")


def test_msrvtt_qa_groups_questions_by_video(tmp_path):
    qa = _write_json(tmp_path / "train_qa.json", _msrvtt_qa())

    records = load_msrvtt_qa(qa, tmp_path / "video")

    assert [r["id"] for r in records] == ["video0", "video1"]
    video0 = records[0]
    assert video0.keys() >= SCHEMA_KEYS
    assert video0["split"] == "train"  # from the file name
    assert video0["video"] == str((tmp_path / "video" / "video0.mp4").absolute())
    assert video0["captions"] == [] and video0["caption"] == ""
    assert [(q["question"], q["answer"], q["kind"]) for q in video0["questions"]] == [
        ("who sings?", "man", "qa"),
        ("what does the man do?", "sing", "qa"),
    ]
    assert video0["questions"][0]["category_id"] == 1
    assert load_msrvtt_qa(qa, tmp_path, split="val")[0]["split"] == "val"


def test_msrvtt_captions_and_questions_merge_per_video(tmp_path):
    annotation = _write_json(tmp_path / "train_val_videodatainfo.json", _msrvtt_annotation())
    _write_json(tmp_path / "qa" / "train_qa.json", _msrvtt_qa())

    records = load_msrvtt_dataset(annotation, tmp_path / "qa", tmp_path / "videos", "train")

    assert [r["id"] for r in records] == ["video0", "video2"]
    assert records[0]["captions"] == ["someone is singing", "a man sings"]
    assert [q["answer"] for q in records[0]["questions"]] == ["man", "sing"]
    assert records[1]["questions"] == []  # the QA file has nothing on video2


# --- dataset_from_args -------------------------------------------------------------------------


def test_dataset_from_args_reads_an_msrvtt_file_with_videos_in_a_sibling_folder(tmp_path):
    annotation = _write_json(tmp_path / "train_val_videodatainfo.json", _msrvtt_annotation())
    videos = _touch_videos(tmp_path / "TrainValVideo", "video0", "video1", "video2")

    records = dataset_from_args(annotation, "val")

    assert [r["id"] for r in records] == ["video1"]
    assert records[0]["video"] == str((videos / "video1.mp4").absolute())


def test_dataset_from_args_prefers_a_videos_folder_and_takes_an_explicit_one(tmp_path):
    annotation = _write_json(tmp_path / "train_val_videodatainfo.json", _msrvtt_annotation())
    _touch_videos(tmp_path / "TrainValVideo", "video0")
    videos = _touch_videos(tmp_path / "videos", "video0")

    assert Path(dataset_from_args(annotation, "train")[0]["video"]).parent == videos
    elsewhere = tmp_path / "elsewhere"
    records = dataset_from_args(annotation, "train", videos_dir=elsewhere)
    assert records[0]["video"] == str((elsewhere / "video0.mp4").absolute())


def test_dataset_from_args_on_an_msrvtt_folder_uses_the_split_annotation_file(tmp_path):
    _write_json(tmp_path / "train_val_videodatainfo.json", _msrvtt_annotation())
    test = _msrvtt_annotation()
    test["videos"] = [{**test["videos"][0], "video_id": "video7010", "split": "test"}]
    test["sentences"] = [{"caption": "a test clip", "video_id": "video7010", "sen_id": 0}]
    _write_json(tmp_path / "test_videodatainfo.json", test)
    _touch_videos(tmp_path / "TrainValVideo", "video0")
    _touch_videos(tmp_path / "TestVideo", "video7010")

    assert [r["id"] for r in dataset_from_args(tmp_path, "train")] == ["video0", "video2"]
    (record,) = dataset_from_args(tmp_path, "test")
    assert record["id"] == "video7010"
    assert Path(record["video"]).parent == tmp_path / "TestVideo"


def test_dataset_from_args_reads_an_msrvtt_qa_file_of_the_requested_split(tmp_path):
    qa = _write_json(tmp_path / "train_qa.json", _msrvtt_qa())
    _touch_videos(tmp_path / "video", "video0", "video1")

    records = dataset_from_args(qa, "train")
    assert [len(r["questions"]) for r in records] == [2, 1]
    with pytest.raises(ValueError, match=r"val_qa\.json"):
        dataset_from_args(qa, "val")


def test_dataset_from_args_without_the_videos_says_where_it_looked(tmp_path):
    annotation = _write_json(tmp_path / "train_val_videodatainfo.json", _msrvtt_annotation())
    with pytest.raises(ValueError, match=r"TrainValVideo.*videos_dir"):
        dataset_from_args(annotation, "train")
    with pytest.raises(ValueError, match="TestVideo"):
        find_videos_dir(tmp_path, "test", ["video7010"])


def test_dataset_from_args_rejects_unknown_paths_with_a_helpful_message(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        dataset_from_args(tmp_path / "nowhere", "val")

    (tmp_path / "train.jsonl").write_text("")
    with pytest.raises(ValueError, match=r"no val\.jsonl manifest; it has train\.jsonl"):
        dataset_from_args(tmp_path, "val")

    other = _write_json(tmp_path / "other.json", {"images": []})
    with pytest.raises(ValueError, match="not a dataset file"):
        dataset_from_args(other, "val")

    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ValueError, match=r"expected a dataset folder with val\.jsonl"):
        dataset_from_args(text, "val")
