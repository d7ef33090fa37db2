"""models.training.evaluate: caption metrics, attribute matching, answer normalisation, run_eval."""

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from models.captioner.features import VideoFeatures
from models.captioner.pipeline import CaptionPipeline
from models.training.data.datasets import read_manifest
from models.training.data.world import generate
from models.training.evaluate import (
    ABLATIONS,
    ATTRIBUTES,
    attribute_accuracy,
    caption_metrics,
    evaluate,
    markdown_report,
    mask_audio,
    mask_visual,
    mentions,
    normalise_answer,
    normalise_caption,
    qa_accuracy,
    run_eval,
)

CAPTIONS = [
    "a red circle moves left while a low tone sounds twice",
    "a blue square stays still in silence",
    "a green star moves up while a drum plays",
    "first a yellow cross moves down, then an orange triangle moves right",
]

# ---------------------------------------------------------------------- caption metrics


def test_a_perfect_set_of_captions_scores_bleu4_and_rouge_l_of_one() -> None:
    scores = caption_metrics(CAPTIONS, [[c] for c in CAPTIONS])
    assert scores["bleu4"] == pytest.approx(1.0, abs=1e-6)
    assert scores["rouge_l"] == pytest.approx(1.0)
    assert scores["exact"] == 1.0


def test_cider_d_of_a_perfect_set_is_ten_because_idf_comes_from_the_whole_set() -> None:
    whole = caption_metrics(CAPTIONS, [[c] for c in CAPTIONS])
    assert whole["cider_d"] == pytest.approx(10.0)
    # Over one sample alone every n-gram has IDF 0, so a per-sample CIDEr would be 0.
    alone = caption_metrics(CAPTIONS[:1], [CAPTIONS[:1]])
    assert alone["cider_d"] == pytest.approx(0.0)


def test_caption_metrics_ignore_case_and_punctuation() -> None:
    shouted = [c.upper().replace(" while", ", while") + "." for c in CAPTIONS]
    scores = caption_metrics(shouted, [[c] for c in CAPTIONS])
    assert scores["bleu4"] == pytest.approx(1.0, abs=1e-6)
    assert scores["cider_d"] == pytest.approx(10.0)
    assert scores["exact"] == 1.0


def test_wrong_captions_score_below_perfect_and_exact_matches_any_reference() -> None:
    generated = [CAPTIONS[0], "a purple blob", CAPTIONS[2], CAPTIONS[3]]
    references = [[c, "another paraphrase of it"] for c in CAPTIONS]
    references[1] = ["something else", "a purple blob"]  # matches the second reference
    scores = caption_metrics(generated, references)
    assert scores["exact"] == 1.0
    worse = caption_metrics(["a purple blob"] * 4, [[c] for c in CAPTIONS])
    assert worse["exact"] == 0.0
    assert worse["bleu4"] is not None and worse["bleu4"] < 0.5
    assert worse["cider_d"] is not None and worse["cider_d"] < 1.0


def test_caption_metrics_of_an_empty_set_are_none_and_lengths_must_match() -> None:
    assert caption_metrics([], []) == {
        "bleu4": None,
        "rouge_l": None,
        "cider_d": None,
        "exact": None,
    }
    with pytest.raises(ValueError):
        caption_metrics(["a"], [])
    with pytest.raises(ValueError):
        caption_metrics(["a"], [[]])


def test_normalise_caption_lowercases_and_splits_punctuation() -> None:
    assert normalise_caption("  A Red-Circle,  moves LEFT. ") == "a red circle moves left"
    assert normalise_caption("don't") == "dont"


# ---------------------------------------------------------------------- attributes


def test_attribute_mentions_are_whole_words() -> None:
    assert mentions("a red circle moves left", "red")
    assert not mentions("a reddish circle", "red")
    assert not mentions("a bored circle", "red")
    assert mentions("a circle stays still", "still")
    assert mentions("a circle in silence.", "silence")
    assert mentions("while a LOW  tone sounds", "low tone")
    assert not mentions("a low, then a high tone", "low tone")


def _record(*segments: dict[str, str]) -> dict[str, Any]:
    return {"id": "x", "segments": list(segments)}


def test_attribute_accuracy_counts_each_mention_per_type_and_whole_clips() -> None:
    red = {"shape": "circle", "colour": "red", "motion": "still", "sound": "low tone"}
    blue = {"shape": "square", "colour": "blue", "motion": "left", "sound": "silence"}
    records = [_record(red, blue), _record(red), {"id": "no-attributes"}]
    generated = [
        "a red circle stays still while a low tone sounds, then a blue square moves up in silence",
        "a red circle stays still while a low tone sounds",
        "anything",
    ]
    acc = attribute_accuracy(generated, records)
    assert acc["clips"] == 2  # the record without segments is left out
    assert acc["shape"] == 1.0 and acc["colour"] == 1.0 and acc["sound"] == 1.0
    assert acc["motion"] == pytest.approx(2 / 3)  # "left" of the blue square is missing
    assert acc["all"] == 0.5


def test_attribute_accuracy_without_attributes_is_none() -> None:
    acc = attribute_accuracy(["a caption"], [{"id": "x", "captions": ["a caption"]}])
    assert acc["clips"] == 0
    assert all(acc[a] is None for a in (*ATTRIBUTES, "all"))


# ---------------------------------------------------------------------- questions


def test_normalise_answer_lowercases_collapses_spaces_and_drops_trailing_punctuation() -> None:
    assert normalise_answer("  Red   Circle. ") == "red circle"
    assert normalise_answer("Yes!?") == "yes"
    assert normalise_answer("three times") == "three times"
    assert normalise_answer("a.b") == "a.b"  # only trailing punctuation goes


def test_qa_accuracy_by_kind_in_a_fixed_order_with_counts() -> None:
    result = qa_accuracy(
        ["Red.", "circle", "no", "yes", "x"],
        ["red", "square", "no", "yes", "y"],
        ["visual", "visual", "audio", "zeta", "qa"],
    )
    assert result["overall"] == pytest.approx(3 / 5)
    assert list(result["by_kind"]) == ["visual", "audio", "qa", "zeta"]
    assert result["by_kind"] == {"visual": 0.5, "audio": 1.0, "qa": 0.0, "zeta": 1.0}
    assert result["counts"] == {"visual": 2, "audio": 1, "qa": 1, "zeta": 1}
    assert qa_accuracy([], [], []) == {"overall": None, "by_kind": {}, "counts": {}}


# ---------------------------------------------------------------------- ablations


def _features() -> VideoFeatures:
    return VideoFeatures(
        visual=torch.ones(4, 8),
        audio=torch.ones(4, 8),
        visual_mask=torch.ones(4, dtype=torch.bool),
        audio_mask=torch.ones(4, dtype=torch.bool),
        timestamps=torch.arange(4, dtype=torch.float64),
        duration_s=2.0,
        visual_backbone="v",
        audio_backbone="a",
    )


def test_masking_audio_clears_its_mask_and_keeps_the_picture() -> None:
    f = _features()
    m = mask_audio(f)
    assert not m.audio_mask.any() and not m.audio.any()
    assert torch.equal(m.visual, f.visual) and m.visual_mask.all()
    assert f.audio_mask.all()  # the original is untouched


def test_masking_visual_zeroes_the_features_but_keeps_every_step_valid() -> None:
    f = _features()
    m = mask_visual(f)
    assert not m.visual.any() and m.visual_mask.all()
    assert torch.equal(m.audio, f.audio) and m.audio_mask.all()
    assert f.visual.all()


# ---------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("world")
    generate(root, {"test": 3}, seed=5, progress=False)
    return root


def _fraction(x: object) -> bool:
    return isinstance(x, float) and 0.0 <= x <= 1.0


@pytest.fixture(scope="module")
def evaluated(
    world: Path, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("eval-out")
    report = run_eval(tiny_model_dir, world, "test", out, device="cpu", progress=False)
    return report, out


def test_run_eval_on_a_generated_split_reports_every_field_for_every_clip(
    world: Path, evaluated: tuple[dict[str, Any], Path]
) -> None:
    report, _ = evaluated
    records = read_manifest(world / "test.jsonl")
    assert set(report) == {
        "split", "clips", "questions", "captions", "qa", "ablations", "examples", "seconds"
    }  # fmt: skip
    assert report["split"] == "test" and report["clips"] == 3
    assert len(report["examples"]) == 3
    first = report["examples"][0]
    assert first["id"] == records[0]["id"] and first["reference"] == records[0]["caption"]
    assert isinstance(first["generated"], str)
    assert first["qa"] and {"question", "answer", "predicted", "kind"} <= set(first["qa"][0])
    assert set(report["seconds"]) >= {"extract", "captions", "questions", "ablations"}
    assert all(v >= 0 for v in report["seconds"].values())


def test_run_eval_counts_every_question_of_the_manifest_in_full_and_ablated_runs(
    world: Path, evaluated: tuple[dict[str, Any], Path]
) -> None:
    report, _ = evaluated
    kinds: dict[str, int] = {}
    for r in read_manifest(world / "test.jsonl"):
        for q in r["questions"]:
            kinds[q["kind"]] = kinds.get(q["kind"], 0) + 1
    assert report["questions"] == sum(kinds.values())
    assert set(report["ablations"]) == set(ABLATIONS)
    # The untrained model's answers are garbage: check ranges and counts, not values.
    for section in [report, *(report["ablations"][name] for name in ABLATIONS)]:
        captions, qa = section["captions"], section["qa"]
        assert 0.0 <= captions["bleu4"] <= 1.0 and 0.0 <= captions["rouge_l"] <= 1.0
        assert 0.0 <= captions["cider_d"] <= 10.0 and _fraction(captions["exact"])
        attributes = captions["attributes"]
        assert attributes["clips"] == 3
        assert all(_fraction(attributes[a]) for a in (*ATTRIBUTES, "all"))
        assert qa["counts"] == kinds and set(qa["by_kind"]) == set(kinds)
        assert _fraction(qa["overall"])
        assert all(_fraction(v) for v in qa["by_kind"].values())


def test_run_eval_writes_the_report_as_json_and_markdown(
    evaluated: tuple[dict[str, Any], Path],
) -> None:
    report, out = evaluated
    assert json.loads((out / "eval-test.json").read_text()) == report
    md = (out / "eval-test.md").read_text()
    assert md == markdown_report(report)
    for text in ("CIDEr-D", "audio masked", "visual masked", "temporal", "overall", "colour"):
        assert text in md


def test_run_eval_with_a_limit_no_ablations_caption_only_and_kindless_questions(
    world: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    records = read_manifest(world / "test.jsonl")
    caption_only = {k: v for k, v in records[0].items() if k not in ("questions", "segments")}
    kindless = {**records[1], "questions": [{"question": "what is it?", "answer": "red"}]}
    (world / "mixed.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in (caption_only, kindless, records[2]))
    )
    report = run_eval(
        tiny_model_dir, world, "mixed", tmp_path, limit=2, device="cpu", ablations=False,
        progress=False,
    )  # fmt: skip
    assert report["clips"] == 2 and report["ablations"] == {}
    assert report["questions"] == 1 and report["qa"]["counts"] == {"qa": 1}
    assert report["captions"]["attributes"]["clips"] == 1  # only the second has segments
    md = (tmp_path / "eval-mixed.md").read_text()
    assert "audio masked" not in md and "| full |" in md and "| qa |" in md


def test_evaluate_with_no_records_reports_none_and_restores_the_batch_size(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    pipe = CaptionPipeline.from_pretrained(tiny_model_dir, device="cpu")
    before = pipe.batch_size
    report = evaluate(pipe, [], tmp_path, batch_size=3, progress=False)
    assert pipe.batch_size == before
    assert report["clips"] == 0 and report["questions"] == 0 and report["examples"] == []
    assert report["captions"]["cider_d"] is None and report["qa"]["overall"] is None
    assert report["ablations"]["audio_masked"]["qa"]["counts"] == {}
    assert "# Evaluation" in markdown_report(report)
    with pytest.raises(ValueError):
        evaluate(pipe, [], tmp_path, batch_size=0)
