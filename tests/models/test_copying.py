"""The decoding rules that keep copied text verbatim (models/captioner/copying.py)."""

from __future__ import annotations

from typing import Any

import torch

from models.captioner.copying import CopyRules

# A toy vocabulary: ids of word pieces.
PAD, SEP, START, QUOTE, COLON = 0, 1, 2, 3, 4
SAID, IN, ENGLISH = 5, 6, 7
SHE, HAD, YOUR, DARK, SUIT, GREA, GREA_SY, WATER = 10, 11, 12, 13, 14, 15, 16, 17
SO, WHAT, SAYS, VOICE, A = 20, 21, 22, 23, 24
V = 30
CONTINUATION = torch.zeros(V, dtype=torch.bool)
CONTINUATION[GREA_SY] = True  # "grea" "##sy"


def rules(*pieces: list[int], question: list[int] | None = None, **options: Any) -> CopyRules:
    """Inputs: the question (unit -1), then each piece as its own unit; ``options``: the
    rules' optional arguments (``wordlike``, ``unknown_id``)."""
    ids, units = list(question or [WHAT, SAYS]), [-1] * len(question or [WHAT, SAYS])
    for u, piece in enumerate(pieces):
        ids += piece
        units += [u] * len(piece)
    source = torch.tensor([[0, 0, *ids]])  # two video positions first
    copyable = torch.tensor([[False, False] + [True] * len(ids)])
    return CopyRules(
        source, copyable, torch.tensor([[-1, -1, *units]]), CONTINUATION,
        quote_id=QUOTE, label_end_id=COLON, end_id=SEP, **options,
    )  # fmt: skip


def allowed(r: CopyRules, decoded: list[int]) -> set[int]:
    scores = torch.zeros(1, V)
    out = r.apply(scores, torch.tensor([[START, *decoded]]))
    return {i for i in range(V) if torch.isfinite(out[0, i])}


SPEECH = [SAID, IN, ENGLISH, COLON, SHE, HAD, YOUR, DARK, SUIT, GREA, GREA_SY, WATER]


def test_a_quote_opens_on_a_word_of_a_piece_content_not_its_label_or_the_question() -> None:
    r = rules(SPEECH)
    first = allowed(r, [VOICE, SAYS, QUOTE])
    assert first == {SHE, HAD, YOUR, DARK, SUIT, GREA, WATER}  # no label, no "##sy", no close


def test_a_quote_goes_on_verbatim_and_closes_only_between_words() -> None:
    r = rules(SPEECH)
    assert allowed(r, [QUOTE, SHE]) == {HAD, QUOTE}
    assert allowed(r, [QUOTE, SHE, HAD]) == {YOUR, QUOTE}  # "she had a ..." is not what she said
    assert allowed(r, [QUOTE, DARK, SUIT, GREA]) == {GREA_SY}  # no quote ends inside "greasy"
    assert allowed(r, [QUOTE, GREA, GREA_SY, WATER]) == {QUOTE}  # the piece ends: close


def test_a_quote_never_runs_from_one_piece_into_the_next() -> None:
    r = rules([COLON, SHE, HAD], [COLON, YOUR, DARK])
    assert allowed(r, [QUOTE, SHE, HAD]) == {QUOTE}


def test_outside_quotes_the_decoder_is_free_but_never_writes_a_word_twice_in_a_row() -> None:
    r = rules(SPEECH)
    after = allowed(r, [A, VOICE])
    assert VOICE not in after and {A, SAYS, WATER, SEP, QUOTE} <= after
    # ... unless the inputs say it twice in a row
    assert SO in allowed(rules([COLON, SO, SO, WATER]), [SO])


def test_a_closed_quote_frees_the_decoder_again() -> None:
    r = rules(SPEECH)
    after = allowed(r, [QUOTE, SHE, HAD, QUOTE])
    assert {SEP, A, VOICE} <= after and QUOTE not in after


def test_when_every_continuation_is_forbidden_the_quote_closes() -> None:
    r = rules(SPEECH)
    scores = torch.zeros(1, V)
    scores[0, GREA_SY] = float("-inf")  # e.g. the no-repeat-trigram rule took it
    out = r.apply(scores, torch.tensor([[START, QUOTE, DARK, SUIT, GREA]]))
    assert int(out.argmax()) == QUOTE and bool(torch.isfinite(out[0]).sum() == 1)


def test_with_nothing_quotable_read_no_quote_opens() -> None:
    r = rules([SAID, COLON])  # a label and no content (e.g. only tags were read)
    assert QUOTE not in allowed(r, [A, VOICE])
    assert allowed(r, [QUOTE]) == {QUOTE}  # (were one open, it could only close)


def test_a_quote_never_opens_on_punctuation() -> None:
    """A transcript piece that holds "printing," must not yield the quote '","' or '"."'."""
    comma, full_stop = 25, 26
    wordlike = torch.ones(V, dtype=torch.bool)
    wordlike[[comma, full_stop, QUOTE, COLON]] = False
    r = rules([SAID, COLON, SHE, comma, HAD, full_stop], wordlike=wordlike)
    assert allowed(r, [QUOTE]) == {SHE, HAD}
    assert allowed(r, [QUOTE, SHE]) == {comma, QUOTE}  # inside a quote punctuation is copied


def test_a_quote_never_runs_through_an_unknown_piece() -> None:
    """Decoding drops [UNK]: a quote through one would splice the words either side."""
    unk = 27
    r = rules([SAID, COLON, SHE, unk, HAD, YOUR], unknown_id=unk)
    assert allowed(r, [QUOTE]) == {SHE, HAD, YOUR}  # never opens on it
    assert allowed(r, [QUOTE, SHE]) == {QUOTE}  # "she [UNK] had" would read "she had"
    assert allowed(r, [QUOTE, HAD]) == {YOUR, QUOTE}


def test_a_whole_quote_is_a_run_of_whole_words_of_one_piece_content() -> None:
    r = rules(SPEECH, [COLON, SO, WATER])
    spans = r.quotable_spans(0, max_tokens=40)
    source = r.sources[0]
    at = {p: i for i, p in enumerate(source.index)}
    texts = {tuple(source.tokens[at[a] : at[b] + 1]) for a, b in spans}
    assert (SHE, HAD, YOUR) in texts and (DARK, SUIT, GREA, GREA_SY, WATER) in texts
    assert (SO, WATER) in texts
    assert not any(t[0] in (SAID, COLON, GREA_SY, WHAT) for t in texts)  # no label or question
    assert (SUIT, GREA) not in texts  # never ends inside "greasy"
    assert not any(SHE in t and SO in t for t in texts)  # never across two pieces
    short = r.quotable_spans(0, max_tokens=2)
    assert all(b - a < 2 for a, b in short)


def test_a_target_quote_is_found_where_the_inputs_hold_it_verbatim() -> None:
    r = rules(SPEECH)
    found = r.locate(0, [GREA, GREA_SY, WATER], max_tokens=40)
    assert found is not None
    source = r.sources[0]
    at = {p: i for i, p in enumerate(source.index)}
    assert source.tokens[at[found[0]] : at[found[1]] + 1] == [GREA, GREA_SY, WATER]
    assert r.locate(0, [SHE, YOUR], max_tokens=40) is None  # not a run of the inputs
    assert r.locate(0, [GREA_SY, WATER], max_tokens=40) is None  # starts inside a word


def test_a_quote_holds_words_said_or_shown_never_a_tag_name() -> None:
    # the second piece is a tag stretch ("seen: dog"): its name is no one's words
    quotable = torch.tensor([[False] * 4 + [True] * len(SPEECH) + [False] * 3])
    r = rules(SPEECH, [SAID, COLON, WATER], quotable=quotable)
    assert WATER in allowed(r, [QUOTE])  # the transcript's "water"
    tag_starts = 4 + len(SPEECH)  # 2 video positions, 2 question tokens, the transcript
    assert all(last < tag_starts for _, last in r.quotable_spans(0, max_tokens=40))
    assert r.locate(0, [WATER], max_tokens=40) == (tag_starts - 1, tag_starts - 1)


def test_no_piece_is_quoted_twice_in_one_text() -> None:
    r = rules([COLON, SHE, HAD], [COLON, DARK, SUIT])
    # "she had" was quoted: a second quote opens only on the other piece
    assert allowed(r, [QUOTE, SHE, HAD, QUOTE, A, QUOTE]) == {DARK, SUIT}
    assert r.quoted_units(0, [QUOTE, SHE, HAD, QUOTE]) == {0}
    # with both pieces quoted, no quote opens
    both = [QUOTE, HAD, QUOTE, A, QUOTE, SUIT, QUOTE]
    assert QUOTE not in allowed(r, both) and SEP in allowed(r, both)
