"""The tokenizer: trained offline with BART's special ids, saved and loaded; BART's own works."""

from pathlib import Path

import pytest
from transformers import BartTokenizer

from models.captioner.tokenization import (
    SPECIAL_IDS,
    check_tokenizer,
    load_tokenizer,
    train_tokenizer,
)

CORPUS = ["a red circle moves left", "what colour is the square?", "a low tone sounds twice"]


def test_trained_tokenizer_has_barts_special_ids_and_round_trips_text(tmp_path: Path) -> None:
    tok = train_tokenizer(CORPUS * 5, vocab_size=320)
    assert {role: getattr(tok, f"{role}_token_id") for role in SPECIAL_IDS} == SPECIAL_IDS
    ids = tok("a red circle moves left")["input_ids"]
    assert ids[0] == SPECIAL_IDS["bos"] and ids[-1] == SPECIAL_IDS["eos"]
    assert tok.decode(ids, skip_special_tokens=True) == "a red circle moves left"
    # Words it never saw still encode (byte-level: no unknown token).
    assert (
        tok.decode(tok("zebra ünïcode")["input_ids"], skip_special_tokens=True) == "zebra ünïcode"
    )
    tok.save_pretrained(tmp_path)
    again = load_tokenizer(tmp_path)
    assert (
        again("what colour is the square?")["input_ids"]
        == tok("what colour is the square?")["input_ids"]
    )
    check_tokenizer(again, vocab_size=320)


def test_a_bart_tokenizer_directory_works_too(tmp_path: Path) -> None:
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": 4, "a": 5, "b": 6, "ab": 7}
    BartTokenizer(vocab=vocab, merges=[("a", "b")]).save_pretrained(tmp_path)
    tok = load_tokenizer(tmp_path)
    check_tokenizer(tok, vocab_size=8)
    assert tok("ab")["input_ids"] == [0, 7, 2]


def test_check_tokenizer_refuses_one_that_does_not_fit() -> None:
    tok = train_tokenizer(CORPUS, vocab_size=300)
    with pytest.raises(ValueError, match="tokens but the model's vocabulary"):
        check_tokenizer(tok, vocab_size=100)


def test_missing_tokenizer_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no tokenizer directory"):
        load_tokenizer(tmp_path / "absent")


def test_vocabulary_smaller_than_the_bytes_is_refused() -> None:
    with pytest.raises(ValueError, match="at least"):
        train_tokenizer(CORPUS, vocab_size=100)
