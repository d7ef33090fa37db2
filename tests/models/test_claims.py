"""The check of what the captioner says outside quotes (models/captioner/claims.py)."""

from __future__ import annotations

from models.captioner.answers import NO_ANSWER
from models.captioner.claims import ClaimCheck, phrasing_words
from models.captioner.grounding import Piece

TARGETS = [
    'A dog is visible; a voice says "we must find a new home"; music plays.',
    'the words "open 24 hours" appear; background noise is heard later on.',
    "the video does not say",
    "yes",
    '"in the stars"',
]
CHECK = ClaimCheck(phrasing_words(TARGETS))
SPEECH = Piece("speech", 0.0, 4.0, "said in english: printing, in the only sense", "Printing, in")
SEEN = Piece("visual", 0.0, 5.0, "seen: kite (bird of prey)", "kite (bird of prey)")


def test_phrasing_is_what_the_targets_say_outside_their_quotes() -> None:
    words = phrasing_words(TARGETS)
    assert {"voice", "says", "music", "plays", "words", "appear", "not", "yes"} <= words
    assert not {"find", "home", "open", "24", "stars"} & words  # only ever quoted


def test_a_description_keeps_its_supported_clauses_and_drops_transcript_words_outside_quotes() -> (
    None
):
    said = 'a voice says "printing,"; the only sense in the most crafts are; music plays.'
    assert CHECK.description(said, [SPEECH]) == 'a voice says "printing,"; music plays.'
    whole = 'a voice says "printing, in the only sense"; music plays.'
    assert CHECK.description(whole, [SPEECH]) == whole  # quoted words are the transcript's


def test_the_tagger_names_of_the_video_are_supported_words() -> None:
    said = 'a kite is visible; a voice says "printing".'
    assert CHECK.description(said, [SPEECH, SEEN]) == said
    assert CHECK.description(said, [SPEECH]) == 'a voice says "printing".'  # no kite was seen


def test_an_empty_quote_is_no_quote() -> None:
    assert CHECK.description('a dog is visible; the words "." appear.', [SPEECH]) == (
        "a dog is visible."
    )
    assert CHECK.answer('"."', [SPEECH]) == NO_ANSWER


def test_an_answer_with_a_word_no_expert_gave_becomes_the_video_does_not_say() -> None:
    assert CHECK.answer("this \u0440 room", [SPEECH]) == NO_ANSWER
    assert CHECK.answer('"in the only sense"', [SPEECH]) == '"in the only sense"'
    assert CHECK.answer("a bird of prey", [SEEN]) == "a bird of prey"
    assert CHECK.answer("yes", [SPEECH]) == "yes"
    assert CHECK.answer("Russian", [SPEECH]) == "Russian"  # language names are its own words


def test_a_description_with_nothing_supported_is_empty_not_invented() -> None:
    assert CHECK.description("the only sense in the most crafts.", [SPEECH]) == ""
