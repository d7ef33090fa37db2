"""models.training.evaluate_real: normalisation, answer matching, evidence, descriptions,
hallucination, and evaluate_manifest on two real videos with a fixed predictor."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from models.captioner.answers import NO_ANSWER, Answer, Evidence
from models.media.errors import MediaError, MediaErrorCode
from models.perception.result import Perception, SpeechSegment, Tag, TextItem, Transcript
from models.training.evaluate_real import (
    VideoPrediction,
    answer_matches,
    evaluate_manifest,
    exact_match,
    hallucination,
    in_experts,
    markdown_report,
    named_visible,
    normalise,
    overlaps,
    reference_alternatives,
    reference_spans,
    speech_gist,
    tag_nameable,
    tokens,
    world_words,
)

# Handcrafted records in the manifest's format (no files needed).
APPLE: dict[str, Any] = {
    "file": "clips/apple.mp4",
    "duration_s": 5.0,
    "speech": [],
    "visible": ["apple", "countertop"],
    "action": None,
    "on_screen_text": [],
    "questions": [{"question": "What color is it?", "answer": "red", "kind": "visual"}],
}
DOG_SPEECH: dict[str, Any] = {
    "file": "derived/photo_dog_speech.mp4",
    "duration_s": 6.0,
    "speech": [
        {
            "start": 0.5,
            "end": 3.42,
            "text": "She had your dark suit in greasy wash water all year.",
            "language": "en",
        }
    ],
    "visible": ["dog", "bicycle", "truck", "porch", "tree"],
    "action": None,
    "on_screen_text": [],
    "questions": [],
    "audio": "speech audio/en_ldc93s1_dark_suit.wav starting at 0.5 s",
}
SILENT_TONES: dict[str, Any] = {
    "file": "derived/photo_horses_tones.mp4",
    "duration_s": 8.0,
    "speech": [],
    "visible": ["horses", "field", "mountains", "sky"],
    "action": None,
    "on_screen_text": [],
    "questions": [],
    "audio": "synthesized melody + chord pad (tones.py seed 21, 8 s)",
}
SILENT: dict[str, Any] = {**SILENT_TONES, "audio": "silent AAC track (digital silence)"}


# ---------------------------------------------------------------------- normalisation


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Go forward TEN meters.", "go forward 10 meters"),
        ("forty-two", "42"),
        ("one hundred and five", "100 and 5"),
        ("twenty one", "21"),
        ("The dog", "dog"),
        ("an apple", "apple"),
        ("A (brown) bear", "brown bear"),
        ("Mr. John Dashwood", "mister john dashwood"),
        ("mrs smith and dr who", "missus smith and doctor who"),
        ("Grey", "gray"),
        ("a colourful shirt, 10 metres", "colorful shirt 10 meters"),
        ("  lots\tof   space ", "lots of space"),
        ("Guangzhou (广州)", "guangzhou 广州"),
        ("\uff26\uff55\uff4c\uff4c", "full"),  # fullwidth letters
        ("бедняга, ребят!", "бедняга ребят"),
    ],
)
def test_normalise(text: str, expected: str) -> None:
    assert normalise(text) == expected


def test_chinese_characters_are_tokens_of_their_own() -> None:
    assert tokens("广州市 in China") == ["广", "州", "市", "in", "china"]


def test_number_words_and_digits_compare_equal() -> None:
    assert normalise("ten") == normalise("10")
    assert normalise("go forward ten meters") == normalise("Go forward 10 metres")


# ---------------------------------------------------------------------- alternatives


def _normalised(answer: str) -> set[str]:
    return {normalise(a) for a in reference_alternatives(answer)}


@pytest.mark.parametrize(
    ("answer", "name"),
    [
        ("a dog", "dog"),
        ("horses", "horse"),  # a plural answer, the singular common name
        ("a bird (an eagle)", "bird"),
        ("a dog and a horse", "dog + horse"),
        ("red", None),  # colours, rooms, places, actions: no class is one
        ("red and white", None),
        ("a kitchen", None),
        ("on a sofa", None),
        ("flying a kite", None),
        ("a giraffe and a zebra", None),  # ImageNet-1k has zebras but no giraffes
    ],
)
def test_tag_nameable_says_which_answers_a_tag_could_be(answer: str, name: str | None) -> None:
    assert tag_nameable(answer) == name


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("a bird (an eagle)", {"bird eagle", "bird", "eagle"}),
        ("no, the soundtrack is silent", {"no soundtrack is silent", "no", "soundtrack is silent"}),
        ("Guangzhou (广州)", {"guangzhou 广州", "guangzhou", "广州"}),
        (
            "yes (steady synthetic noise)",
            {"yes steady synthetic noise", "yes", "steady synthetic noise"},
        ),
        ("a (brown) bear", {"brown bear", "bear"}),
        ("red", {"red"}),
    ],
)  # fmt: skip
def test_reference_alternatives(answer: str, expected: set[str]) -> None:
    assert _normalised(answer) == expected


def test_the_reference_itself_comes_first() -> None:
    assert reference_alternatives("a bird (an eagle)")[0] == "a bird (an eagle)"


# ---------------------------------------------------------------------- matching


@pytest.mark.parametrize(
    ("prediction", "reference", "right"),
    [
        ("dog", "a dog", True),
        ("The Dog.", "a dog", True),
        ("a dog on a porch", "a dog", True),  # says a little more: still right
        ("there is a dog, a bicycle and a truck parked by the porch", "a dog", False),  # a dump
        ("an eagle", "a bird (an eagle)", True),
        ("a bird", "a bird (an eagle)", True),
        ("gray", "grey", True),
        ("10", "ten", True),
        ("广州", "Guangzhou (广州)", True),
        ("广州市", "Guangzhou (广州)", True),
        ("广州市房地产中介协会分析", "Guangzhou (广州)", False),  # the whole transcript
        ("no", "no, the soundtrack is silent", True),
        ("no, it is silent", "no", True),
        ("yes", "no", False),
        ("not really", "no", False),  # yes/no only as the first token
        ("there is no doubt", "no", False),
        ("I would say yes", "yes", False),
        ("yes", "yes (steady synthetic noise)", True),
        ("a cat", "a dog", False),
        (NO_ANSWER, "a dog", False),
        ("The video does not say.", "no", False),
        ("", "a dog", False),
    ],
)
def test_answer_matches(prediction: str, reference: str, right: bool) -> None:
    assert answer_matches(prediction, reference) is right


def test_the_video_does_not_say_never_matches_even_itself() -> None:
    assert not answer_matches(NO_ANSWER, NO_ANSWER)
    assert not exact_match(NO_ANSWER, NO_ANSWER)


def test_exact_match_is_equality_with_the_whole_reference() -> None:
    assert exact_match("A dog.", "a dog")
    assert exact_match("Gray", "grey")
    assert not exact_match("an eagle", "a bird (an eagle)")  # right, but not exact
    assert answer_matches("an eagle", "a bird (an eagle)")


# ---------------------------------------------------------------------- evidence


def test_evidence_overlap_allows_half_a_second_either_side() -> None:
    spans = [(0.5, 3.42)]
    assert overlaps(Evidence("speech", 1.0, 2.0, "dark suit"), spans)
    assert overlaps(Evidence("speech", 3.8, 4.5, "..."), spans)  # 0.38 s after the end
    assert not overlaps(Evidence("speech", 4.0, 4.5, "..."), spans)  # 0.58 s after
    assert overlaps(Evidence("visual", 0.0, 0.0, "dog"), spans)  # 0.5 s before the start
    assert not overlaps(Evidence("visual", 5.0, 6.0, "dog"), spans)


def test_reference_spans_by_question_kind() -> None:
    speech = {"question": "What kind of water?", "answer": "greasy wash water", "kind": "speech"}
    assert reference_spans(DOG_SPEECH, speech, 6.0) == [(0.5, 3.42)]
    visual = {"question": "What animal?", "answer": "a dog", "kind": "visual"}
    assert reference_spans(DOG_SPEECH, visual, 6.0) == [(0.0, 6.0)]  # no scenes: whole clip
    audio = {"question": "Any audio track?", "answer": "no", "kind": "audio"}
    assert reference_spans(APPLE, audio, 5.0) == [(0.0, 5.0)]


def test_reference_spans_pick_the_utterance_and_the_scene_that_hold_the_answer() -> None:
    record = {
        "speech": [
            {"start": 1.0, "end": 8.1, "text": "and mister john dashwood had then leisure"},
            {"start": 32.24, "end": 34.09, "text": "go forward ten meters"},
        ],
        "scenes": [
            {"start": 0.0, "end": 11.2, "visible": ["man", "kitchen"]},
            {"start": 11.2, "end": 22.4, "visible": ["baby", "cake"]},
        ],
        "on_screen_text_timed": [
            {"text": "SUNRISE RANCH", "start": 0, "end": 3.8},
            {"text": "HORSES FOR SALE", "start": 4.2, "end": 8},
        ],
    }

    def spans(answer: str, kind: str) -> list[tuple[float, float]]:
        return reference_spans(record, {"answer": answer, "kind": kind}, 67.2)

    assert spans("Mister John Dashwood", "speech") == [(1.0, 8.1)]
    assert spans("go forward 10 metres", "speech") == [(32.24, 34.09)]
    assert spans("two", "speech") == [(1.0, 8.1), (32.24, 34.09)]  # no words: all utterances
    assert spans("a cake", "visual") == [(11.2, 22.4)]
    assert spans("a zebra", "visual") == [(0.0, 67.2)]  # in no scene: the whole clip
    assert spans("HORSES FOR SALE", "text") == [(4.2, 8.0)]


# ---------------------------------------------------------------------- descriptions


def test_named_visible_is_whole_word_and_plural_tolerant() -> None:
    assert named_visible("Two dogs sit on a porch", DOG_SPEECH["visible"]) == ["dog", "porch"]
    assert named_visible("a horse in a field", SILENT["visible"]) == ["horses", "field"]
    assert named_visible("a hotdog stand", DOG_SPEECH["visible"]) == []  # not a whole word
    assert named_visible("a man in a grey t-shirt", ["grey t-shirt"]) == ["grey t-shirt"]


def test_speech_gist_needs_three_content_words_or_a_four_word_quote() -> None:
    said = [DOG_SPEECH["speech"][0]["text"]]
    assert speech_gist("someone talks about a dark suit and greasy water", said)
    assert speech_gist("she had your dark", said)  # a quote of 4 words
    assert not speech_gist("someone mentions water and a suit", said)  # 2 content words
    assert not speech_gist("she had your", said)  # 3 words, none of them content
    assert not speech_gist("", said)


# ---------------------------------------------------------------------- hallucination


def _flat(found: dict[str, list[str]]) -> set[str]:
    return {w for words in found.values() for w in words}


def test_the_synthetic_world_on_a_real_clip_is_a_hallucination() -> None:
    found = hallucination("a red circle moves left while a drum plays", APPLE, None)
    assert {"circle", "drum"} <= set(found["world"])
    assert "red" not in _flat(found)  # the apple is red: an ordinary word of its ground truth


def test_a_description_of_what_is_there_does_not_hallucinate() -> None:
    assert not _flat(hallucination("a dog is visible", DOG_SPEECH, None))
    assert not _flat(hallucination("a red apple on a countertop", APPLE, None))
    said = "a dog on a porch; someone says she had your dark suit in greasy wash water"
    assert not _flat(hallucination(said, DOG_SPEECH, None))
    assert not _flat(hallucination(NO_ANSWER, APPLE, None))


def test_a_thing_that_is_not_there_is_unsupported() -> None:
    found = hallucination("a dog chases a giraffe", DOG_SPEECH, None)
    assert set(found["unsupported"]) == {"chases", "giraffe"}


def test_what_the_experts_found_supports_a_word() -> None:
    perception = Perception(
        duration_s=6.0,
        text=(TextItem(0.0, 6.0, "BEWARE", 0.9),),
        tags=(Tag("golden retriever", "n02099601", 0.8, ("dog", "animal")),),
    )
    description = "a golden retriever, an animal, under a sign that reads beware"
    found = hallucination(description, DOG_SPEECH, perception)
    assert found["unsupported"] == ["sign"]
    assert set(hallucination(description, DOG_SPEECH, None)["unsupported"]) > {"retriever"}


def test_in_experts_says_which_answers_the_findings_hold() -> None:
    said = SpeechSegment(0.0, 3.0, "She had a dark suit in greasy washwater.", "en", 0.9)
    heard = Perception(
        duration_s=6.0,
        transcript=Transcript(language="en", segments=(said,)),
        text=(TextItem(3.0, 6.0, "GO FORWARD TEN METERS", 0.9),),
    )
    assert in_experts("a dark suit", heard)  # a run of the transcript's words
    assert in_experts("go forward 10 meters", heard)  # of the screen text, numbers normalised
    assert in_experts("English", heard)  # the language heard
    assert not in_experts("greasy wash water", heard)  # what Whisper misheard
    assert not in_experts("suit dark", heard)  # words, not a run
    assert not in_experts("1", heard)  # how many speakers: no expert says
    assert not in_experts("a dark suit", None)


def test_sound_claims_are_checked_against_the_soundtrack() -> None:
    assert hallucination("a dog in silence", DOG_SPEECH, None)["sound"] == ["silence"]
    assert hallucination("horses while music plays", SILENT, None)["sound"] == ["music"]
    assert not _flat(hallucination("horses while music plays", SILENT_TONES, None))
    assert not _flat(hallucination("horses, the video is silent", SILENT, None))
    assert hallucination("horses, the video is silent", SILENT_TONES, None)["sound"] == ["silent"]
    assert hallucination("a man speaks about horses", SILENT, None)["sound"] == ["speaks"]
    assert not _flat(hallucination("horses; nobody speaks and there is no music", SILENT, None))


def test_a_segment_s_sound_claims_are_checked_against_its_own_stretch() -> None:
    """Speech at 0.5-3.42 s of a speech-only soundtrack: the stretch 5-6 s is silent, and a
    voice in the stretch 4-6 s is not there; the whole clip is not silent."""
    assert not _flat(hallucination("a dog; the soundtrack is silent", DOG_SPEECH, None, (5, 6)))
    found = hallucination("a dog; the soundtrack is silent", DOG_SPEECH, None, (0, 5))
    assert found["sound"] == ["silent"]
    assert hallucination("a voice speaks", DOG_SPEECH, None, (4, 6))["sound"] == ["voice", "speaks"]
    assert not _flat(hallucination("a voice speaks", DOG_SPEECH, None, (3, 6)))
    assert hallucination("a dog; the soundtrack is silent", DOG_SPEECH, None)["sound"] == ["silent"]


def test_world_vocabulary_comes_from_the_world_module() -> None:
    words = world_words()
    assert {"circle", "triangle", "purple", "chirp", "drum", "twice"} <= words
    assert not {"up", "down", "once", "still"} & words  # function words are left out


# ---------------------------------------------------------------------- evaluate_manifest


def _fixed_predictor(predictions: dict[str, VideoPrediction], unreadable: set[str]) -> Any:
    def predict(path: str, questions: list[str]) -> VideoPrediction:
        name = Path(path).name
        if name in unreadable:
            raise MediaError(MediaErrorCode.CORRUPT_MEDIA, "the file is broken")
        prediction = predictions[name]
        assert len(prediction.answers) == len(questions)
        return prediction

    return predict


def test_evaluate_manifest_on_two_real_videos(
    tmp_path: Path, real_data: Path, real_manifest: dict[str, dict[str, Any]]
) -> None:
    dog = dict(real_manifest["derived/photo_dog_speech.mp4"])
    apple = dict(real_manifest["clips/apple.mp4"])
    for entry in (dog, apple):
        assert (real_data / entry["file"]).is_file()
        entry["file"] = str(real_data / entry["file"])  # absolute: the manifest is elsewhere
    broken = {**apple, "file": str(tmp_path / "broken.mp4")}
    photo = dict(real_manifest["photos/eagle.jpg"])
    manifest = tmp_path / "manifest.jsonl"
    lines = [json.dumps(e) for e in (dog, photo, apple, broken)]
    manifest.write_text("\n".join(lines) + "\n")

    # dog: visual (a dog, a bicycle), speech (the sentence, greasy wash water), audio (yes)
    assert [q["kind"] for q in dog["questions"]] == [
        "visual",
        "visual",
        "speech",
        "speech",
        "audio",
    ]
    # apple: visual (an apple, red), audio (no audio track: no)
    assert [q["kind"] for q in apple["questions"]] == ["visual", "visual", "audio"]
    dog_prediction = VideoPrediction(
        description="a dog on a porch while someone says she had your dark suit",
        segments=[(0.0, 5.0, "a dog and a bicycle"), (5.0, 6.0, "a blue square moves up")],
        answers=[
            Answer("a dog", (Evidence("visual", 2.0, 3.0, "dog"),)),  # right, grounded
            Answer("a cat"),  # confident wrong
            Answer("She had your dark suit in greasy wash water all year."),  # right, no evidence
            Answer("greasy wash water", (Evidence("speech", 4.5, 5.5, "..."),)),  # right, off
            Answer(NO_ANSWER),  # honest
        ],
        perception=None,
    )
    apple_prediction = VideoPrediction(
        description="a red circle moves left while a drum plays",
        segments=[(0.0, 5.0, "a red circle moves left")],
        answers=[
            Answer("an apple", (Evidence("visual", 0.0, 5.0, "apple"),)),  # right, grounded
            Answer("red"),  # right, no evidence
            Answer("no", (Evidence("audio", 0.0, 5.0, "no audio track"),)),  # right, grounded
        ],
        perception=None,
    )
    predict = _fixed_predictor(
        {"photo_dog_speech.mp4": dog_prediction, "apple.mp4": apple_prediction}, {"broken.mp4"}
    )
    report = evaluate_manifest(manifest, predict, progress=False)

    assert report["files"] == {
        "entries": 4,
        "videos": 3,
        "evaluated": 3,
        "not_videos": 1,
        "not_videos_by_suffix": {".jpg": 1},
        "errors": 1,
    }
    qa = report["qa"]
    assert qa["overall"]["questions"] == 5 + 3 + 3
    assert qa["overall"]["right"] == 6
    assert qa["overall"]["answered"] == 7
    assert qa["overall"]["confident_wrong"] == 1
    assert qa["overall"]["no_answer"] == 1
    assert qa["overall"]["errored"] == 3
    assert qa["overall"]["accuracy"] == pytest.approx(6 / 11)
    assert qa["by_kind"]["visual"]["questions"] == 6
    assert qa["by_kind"]["visual"]["right"] == 3
    # of the six visual references only "a dog" and "a bicycle" are ImageNet class names
    assert qa["by_kind"]["visual"]["tag_nameable"] == 2
    assert qa["by_kind"]["speech"]["accuracy"] == 1.0
    assert qa["by_kind"]["speech"]["exact"] == 2
    assert qa["by_kind"]["audio"]["right"] == 1
    assert list(qa["by_kind"]) == ["speech", "visual", "audio"]

    evidence = report["evidence"]["overall"]
    assert evidence["right"] == 6
    assert evidence["without_evidence"] == 2
    assert evidence["grounded"] == 3
    assert evidence["precision"] == pytest.approx(3 / 6)
    assert evidence["precision_when_given"] == pytest.approx(3 / 4)

    descriptions = report["descriptions"]
    assert descriptions["files"] == 2
    assert descriptions["covered"] == 1  # the dog's; the apple's names nothing
    assert descriptions["speech_gist"] == 1

    described = report["hallucination"]["descriptions"]
    assert (described["checked"], described["hallucinating"]) == (2, 1)
    [item] = described["items"]
    assert item["file"].endswith("apple.mp4")
    assert {"circle", "drum"} <= set(item["words"]["world"])
    segments = report["hallucination"]["segments"]
    assert (segments["checked"], segments["hallucinating"]) == (3, 2)

    [error] = report["errors"]
    assert error["code"] == "corrupt_media"
    assert error["questions"] == [q["question"] for q in apple["questions"]]
    assert report["captions"]["note"] == "n/a (no reference captions)"

    text = markdown_report(report)
    assert "| overall | 11 | 7 | 0.545 |" in text
    assert "corrupt_media" in text
    assert "n/a (no reference captions)" in text
    assert "a red circle moves left while a drum plays" in text
    assert "✓" in text and "✗" in text


def test_limit_counts_videos_only(tmp_path: Path) -> None:
    entries = [
        {"file": "a.wav", "speech": [], "visible": [], "questions": []},
        {"file": "b.mp4", "duration_s": 2.0, "speech": [], "visible": ["cat"], "questions": []},
        {"file": "c.mp4", "duration_s": 2.0, "speech": [], "visible": ["dog"], "questions": []},
    ]
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(e) + "\n" for e in entries))
    seen: list[str] = []

    def predict(path: str, questions: list[str]) -> VideoPrediction:
        seen.append(Path(path).name)
        return VideoPrediction("a cat", [], [], None)

    report = evaluate_manifest(manifest, predict, progress=False, limit=1)
    assert seen == ["b.mp4"]
    assert report["files"]["evaluated"] == 1
    assert report["files"]["not_videos"] == 1
    assert report["descriptions"]["covered"] == 1
