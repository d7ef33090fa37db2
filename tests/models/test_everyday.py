"""The everyday world: records are complete, answers rest on the simulated experts' outputs,
speech is where the record says, and generation is deterministic and resumable."""

from __future__ import annotations

import itertools
import json
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from models.captioner.answers import NO_ANSWER
from models.training.data import everyday

pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="espeak-ng is not installed (it speaks the clips)"
)

CLIPS = 30
SEED = 3
YES_NO = {"yes", "no"}
# Words a question may use that its sentence need not hold: question words, the verb forms
# that carry the question, and how it names the people of the sentence.
ASKING = {
    *("who", "what", "where", "when", "how", "whom", "by", "which", "kind", "of", "like"),
    *("is", "are", "was", "were", "did", "described", "mentioned", "according", "to"),
    *("the", "speaker", "listener", "we", "you", "they", "he", "she", "it", "him", "her"),
    *("them", "us", "me", "must", "could", "would", "will", "should", "can", "might", "not"),
}


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("everyday")
    everyday.generate(root, split="val", clips=CLIPS, seed=SEED, progress=False)
    return root


@pytest.fixture(scope="module")
def records(made: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (made / "val.jsonl").read_text().splitlines()]


def _audio(root: Path, record: dict[str, Any]) -> np.ndarray:
    return np.load(root / "val" / f"{record['id']}.npy")


def test_the_sample_covers_the_cases_the_other_tests_check(records: list[dict]) -> None:
    assert len(records) == CLIPS
    assert any(not r["has_audio"] for r in records)
    assert any(r["speech"] for r in records)
    assert any(r["text"] for r in records)
    assert any(r["has_audio"] and not r["speech"] for r in records)
    assert sum(bool(r["speech"]) for r in records) >= CLIPS // 3


def test_records_are_complete_and_audio_lasts_the_duration(made: Path, records: list[dict]) -> None:
    for r in records:
        assert set(everyday.RECORD_KEYS) <= set(r), r["id"]
        assert r["world"] == "everyday" and r["split"] == "val"
        assert 4.0 <= r["duration_s"] <= 40.0
        npy = made / "val" / f"{r['id']}.npy"
        if r["has_audio"]:
            audio = _audio(made, r)
            assert audio.dtype == np.float32 and audio.ndim == 1
            assert len(audio) == round(r["duration_s"] * everyday.SAMPLE_RATE)
            assert np.abs(audio).max() <= 1.0
            # Background sound covers the clip without gaps.
            ends = [0.0] + [s["end"] for s in r["sounds"]]
            assert [s["start"] for s in r["sounds"]] == ends[:-1]
            assert ends[-1] == pytest.approx(r["duration_s"])
        else:
            assert not npy.exists() and not r["speech"] and not r["sounds"]
        assert 8 <= len(r["questions"]) <= 14
        assert {q["kind"] for q in r["questions"]} <= set(everyday.QUESTION_KINDS)
        assert any(q["kind"] == "none" for q in r["questions"])
        segs = r["segments"]
        assert segs[0]["start"] == 0.0 and segs[-1]["end"] == pytest.approx(r["duration_s"])
        assert all(a["end"] == b["start"] for a, b in itertools.pairwise(segs))


def test_frame_tags_look_like_a_top5_tagger(records: list[dict]) -> None:
    for r in records:
        times = [f["time"] for f in r["frame_tags"]]
        assert times == [k + 0.5 for k in range(len(times))]
        assert times[-1] < r["duration_s"] <= times[-1] + 1.0
        for f in r["frame_tags"]:
            scores = [t["score"] for t in f["tags"]]
            assert len(scores) == 5 and scores == sorted(scores, reverse=True)
            assert sum(scores) <= 1.0 + 1e-6


def test_speech_spans_hold_the_energy(made: Path, records: list[dict]) -> None:
    checked = 0
    for r in records:
        if not r["speech"]:
            continue
        audio = _audio(made, r).astype(np.float64)
        t = np.arange(len(audio)) / everyday.SAMPLE_RATE
        inside = np.zeros(len(audio), dtype=bool)
        near = np.zeros(len(audio), dtype=bool)
        for s in r["speech"]:
            inside |= (t >= s["start"]) & (t < s["end"])
            near |= (t >= s["start"] - 0.1) & (t < s["end"] + 0.1)
        speech_rms = np.sqrt(np.mean(audio[inside] ** 2))
        rest_rms = np.sqrt(np.mean(audio[~near] ** 2))
        music = any(s["kind"] == "music" for s in r["sounds"])
        assert speech_rms > (2.0 if music else 4.0) * rest_rms, r["id"]
        checked += 1
    assert checked


def test_a_clip_without_a_track_says_so(made: Path, records: list[dict]) -> None:
    for r in (r for r in records if not r["has_audio"]):
        assert not (made / "val" / f"{r['id']}.npy").exists()
        assert r["transcript"] == {"language": None, "segments": []}
        assert "no sound track" in r["caption"]
        for q in r["questions"]:
            if q["kind"] == "audio":
                assert q["answer"] == "no" or "no sound track" in q["answer"], q
            assert q["kind"] != "speech"


def test_silent_and_speechless_clips_answer_accordingly(records: list[dict]) -> None:
    for r in records:
        for q in r["questions"]:
            if q["question"] in ("Is anyone speaking?", "Does anyone speak?"):
                assert q["answer"].startswith("yes" if r["speech"] else "no")
            if q["question"] == "What does the speaker say?" and not r["speech"]:
                assert q["kind"] == "audio" and q["answer"] in (
                    "no one speaks",
                    "there is no sound track",
                )


def test_text_answers_are_what_the_ocr_read(records: list[dict]) -> None:
    for r in records:
        texts = [t["text"] for t in r["text"]]
        for q in r["questions"]:
            if q["kind"] != "text":
                continue
            if not texts:
                assert q["answer"] == "no text appears on screen" and q["evidence"] == []
                continue
            _assert_quotes_of(q["answer"], texts)
            assert all(e["snippet"] in texts for e in q["evidence"])


def _assert_quotes_of(answer: str, sources: list[str]) -> None:
    """The answer is one quote, or quotes joined by "and then", each inside one source."""
    parts = re.findall(r'"([^"]*)"', answer)
    assert parts and re.sub(r'"[^"]*"', "", answer).replace("and then", "").strip() == "", answer
    for part in parts:
        assert part and any(part in s for s in sources), (answer, sources)


def test_speech_answers_are_spans_of_the_transcript(records: list[dict]) -> None:
    languages = set(everyday.LANGUAGE_NAMES.values())
    checked = 0
    for r in records:
        for q in r["questions"]:
            if q["kind"] != "speech" or q["answer"] in languages | YES_NO:
                continue
            _assert_quotes_of(q["answer"], [s["text"] for s in r["transcript"]["segments"]])
            checked += 1
    assert checked


def test_no_answer_questions_have_no_evidence(records: list[dict]) -> None:
    for r in records:
        for q in r["questions"]:
            assert (q["answer"] == NO_ANSWER) == (q["kind"] == "none"), q
            if q["kind"] == "none":
                assert q["evidence"] == []
            elif q["kind"] != "text" or r["text"]:
                assert q["evidence"], q


def test_evidence_lies_inside_the_clip(records: list[dict]) -> None:
    for r in records:
        for q in r["questions"]:
            for e in q["evidence"]:
                assert e["kind"] in ("speech", "text", "visual", "audio")
                assert 0.0 <= e["start"] <= e["end"] <= r["duration_s"], (q, r["duration_s"])


def _words(tags: list[dict[str, Any]]) -> set[str]:
    return {w.lower() for t in tags for w in (t["label"], *t["names"])}


def test_descriptions_name_only_what_the_tagger_showed(records: list[dict]) -> None:
    cat = everyday.catalogue()
    vocab = sorted({w for c in cat.classes for w in c.words}, key=len, reverse=True)
    pattern = re.compile(r"(?<![\w-])(" + "|".join(map(re.escape, vocab)) + r")(?![\w-])")

    def named(text: str) -> set[str]:
        return set(pattern.findall(re.sub(r'"[^"]*"', "", text).lower()))

    for r in records:
        frames = r["frame_tags"]
        assert named(r["caption"]) <= _words([t for f in frames for t in f["tags"]]), r["caption"]
        for s in r["segments"]:
            here = [t for f in frames if s["start"] <= f["time"] < s["end"] for t in f["tags"]]
            assert named(s["caption"]) <= _words(here), s["caption"]


def test_same_seed_gives_the_same_records(made: Path, tmp_path: Path) -> None:
    path = everyday.generate(tmp_path, split="val", clips=6, seed=SEED, progress=False)
    first = (made / "val.jsonl").read_text().splitlines()[:6]
    assert path.read_text().splitlines() == first
    for npy in sorted((tmp_path / "val").glob("*.npy")):
        assert np.array_equal(np.load(npy), np.load(made / "val" / npy.name))
    other, _ = everyday.make_clip("val", 0, SEED + 1)
    assert json.dumps(other) != first[0]


def test_resuming_regenerates_nothing(tmp_path: Path) -> None:
    everyday.generate(tmp_path, split="train", clips=5, seed=1, progress=False)
    files = sorted((tmp_path / "train").glob("*.npy"))
    assert files
    before = {p: p.stat().st_mtime_ns for p in files}
    jsonl = (tmp_path / "train.jsonl").read_text()
    everyday.generate(tmp_path, split="train", clips=5, seed=1, progress=False)
    assert {p: p.stat().st_mtime_ns for p in files} == before
    assert (tmp_path / "train.jsonl").read_text() == jsonl
    # An interrupted run: one clip's audio is missing; only that clip is made again.
    gone = files[0]
    gone.unlink()
    everyday.generate(tmp_path, split="train", clips=5, seed=1, progress=False)
    assert gone.exists()
    assert {p: p.stat().st_mtime_ns for p in files[1:]} == {p: before[p] for p in files[1:]}
    assert (tmp_path / "train.jsonl").read_text() == jsonl


def test_open_sentences_ask_with_their_own_words_about_thousands_of_words() -> None:
    """The open-vocabulary sentences: each question names the sentence's words (so the model
    learns to find them, not to know a word list), its answer is a span of the sentence that
    the question itself does not hold, and the words come from far more than a fixed grammar."""
    rng = random.Random(7)
    makers = (everyday._open_action, everyday._open_be, everyday._open_passive,
              everyday._open_clause, everyday._compound)  # fmt: skip
    bases = {verb[0] for verb in everyday.open_words()["verbs"]}  # "What did he find?"
    bases |= {base for base, _ in everyday.CLAUSE_VERBS}
    words: set[str] = set()
    asked = 0
    for i in range(600):
        sentence = makers[i % len(makers)](rng)
        text, spans = everyday.render(sentence.tokens)
        words.update(w.lower() for w in re.findall(r"[A-Za-z]+", text))
        for question, roles, _ in sentence.qa:
            spans_of = [spans[r] for r in roles]
            answer = text[min(s for s, _ in spans_of) : max(e for _, e in spans_of)]
            assert answer and answer.lower() in text.lower(), (text, question)
            if "kind of" not in question:
                assert f" {answer.lower()} " not in f" {question.lower()[:-1]} ", (text, question)
            said = set(re.findall(r"[a-z]+", text.lower()))
            named = set(re.findall(r"[a-z]+", question.lower())) - ASKING - bases
            assert named <= said, (text, question, named - said)
            asked += 1
    assert asked > 1500
    assert len(words) > 1500


def test_the_claim_check_keeps_every_target_the_model_is_taught_to_write(made: Path) -> None:
    """With the phrasing recorded from the targets, the check at decoding time leaves every
    taught description and answer whole (it only removes what no target says), while a
    transcript word written outside quotes is still cut."""
    from models.captioner.claims import ClaimCheck
    from models.training.train_grounded import target_phrasing

    phrasing = target_phrasing(made, "val")
    assert {"visible", "voice", "says", "appear", "music", "silent", "does", "not"} <= phrasing
    check = ClaimCheck(phrasing)
    for record in (json.loads(x) for x in (made / "val.jsonl").read_text().splitlines()):
        for text in (record["caption"], *(s["caption"] for s in record["segments"])):
            assert check.description(text, []) == text
        for q in record["questions"]:
            assert check.answer(q["answer"], []) == q["answer"]
    assert check.description('a voice says "hello"; grumpily fortnight.', []) == (
        'a voice says "hello".'
    )


def test_the_span_head_is_taught_nearly_every_quote_of_the_targets(
    made: Path, tmp_path: Path
) -> None:
    """A quote in a description or answer teaches the span head only where the inputs hold it
    verbatim inside one read piece. The world's quotes come from its transcripts and screen
    text, so nearly all must be found (not: Chinese characters MiniLM reads as [UNK], and a
    quote that opens on a symbol, "$8.50")."""
    from models.training.train_grounded import GroundedTrainer, parse

    data = tmp_path / "data"
    data.mkdir()
    (data / "val").symlink_to(made / "val")
    for split in ("train", "val"):
        shutil.copy(made / "val.jsonl", data / f"{split}.jsonl")
    argv = ["--data", str(data), "--out", str(tmp_path / "run")]
    argv += ["--init", "models/checkpoints/default", "--model-config", '{"quote_spans": true}']
    trainer = GroundedTrainer(parse(argv))
    assert trainer.model.config.quote_spans
    examples = trainer.examples["train"]
    quotes = found = 0
    for i in range(0, len(examples), 32):
        inputs, chunk = trainer.batch("train", examples[i : i + 32])
        with torch.no_grad():
            encoded = trainer.model.encode(**inputs["_packed"].inputs)
        spans = trainer.model.quote_targets(encoded, inputs["labels"])
        source = torch.cat([torch.zeros_like(inputs["frame_units"]), inputs["text_ids"]], dim=1)
        labels = inputs["labels"]
        for row, at, first, last in spans.tolist():
            # the span holds exactly the words the target quotes
            close = labels[row].tolist().index(labels[row, at - 1].item(), at)
            assert source[row, first : last + 1].tolist() == labels[row, at:close].tolist()
        for row, example in enumerate(chunk):
            quotes += example.answer.count('"') // 2
            found += int((spans[:, 0] == row).sum())
    assert quotes > 50
    assert found >= 0.9 * quotes
