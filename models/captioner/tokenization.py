"""The text side's tokenizer: byte-level BPE trained offline, with BART's special tokens.

A tokenizer trained here and a BART tokenizer saved in a directory behave the same way:
``<s>`` 0, ``<pad>`` 1, ``</s>`` 2, ``<unk>`` 3, ``<mask>`` 4; encoded text is
``<s> ... </s>``. It is saved beside the model and loaded with :func:`load_tokenizer`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

SPECIAL_TOKENS = {"bos": "<s>", "pad": "<pad>", "eos": "</s>", "unk": "<unk>", "mask": "<mask>"}
SPECIAL_IDS = {"bos": 0, "pad": 1, "eos": 2, "unk": 3, "mask": 4}


def train_tokenizer(
    texts: Iterable[str],
    *,
    vocab_size: int = 1024,
    min_frequency: int = 1,
    model_max_length: int = 128,
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on a corpus, offline.

    Args:
        texts: The corpus (captions, questions, answers, ...).
        vocab_size: Vocabulary size, special tokens and the 256 bytes included.
        min_frequency: Merges seen fewer times are not learnt.
        model_max_length: Longest sequence the model takes, in tokens.

    Returns:
        A transformers fast tokenizer with BART's special tokens at BART's ids.
    """
    if vocab_size < 256 + len(SPECIAL_TOKENS):
        raise ValueError(f"vocab_size must be at least {256 + len(SPECIAL_TOKENS)}")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS.values()),  # ids 0-4, in BART's order
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    eos, bos = SPECIAL_TOKENS["eos"], SPECIAL_TOKENS["bos"]
    # Positional on purpose: RobertaProcessing takes (sep, cls) and rejects keywords.
    tok.post_processor = processors.RobertaProcessing(
        (eos, SPECIAL_IDS["eos"]), (bos, SPECIAL_IDS["bos"]), add_prefix_space=False
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=bos,
        eos_token=eos,
        sep_token=eos,
        cls_token=bos,
        unk_token=SPECIAL_TOKENS["unk"],
        pad_token=SPECIAL_TOKENS["pad"],
        mask_token=SPECIAL_TOKENS["mask"],
        model_max_length=model_max_length,
    )


def load_tokenizer(path: str | os.PathLike[str]) -> PreTrainedTokenizerBase:
    """A tokenizer saved in a directory: ours, or a BART tokenizer."""
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"no tokenizer directory at {path!r}")
    return AutoTokenizer.from_pretrained(path)


def check_tokenizer(tokenizer: PreTrainedTokenizerBase, vocab_size: int) -> None:
    """Raise ValueError unless the tokenizer fits a model with BART's special ids."""
    for role, wanted in SPECIAL_IDS.items():
        got = getattr(tokenizer, f"{role}_token_id")
        if got != wanted:
            raise ValueError(f"tokenizer's {role} token has id {got}, the model expects {wanted}")
    if len(tokenizer) > vocab_size:
        raise ValueError(
            f"tokenizer has {len(tokenizer)} tokens but the model's vocabulary is {vocab_size}"
        )
