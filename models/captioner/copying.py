"""Decoding rules that keep what the grounded captioner copies true to what it read.

The decoder copies names, quotes and answers from its inputs with a pointer. A pointer trained
on a small synthetic world drifts on real transcripts: it skips words, jumps between sentences
and loops ("mr mr mr much much"), and the result puts words in a speaker's mouth. Two rules,
applied to the scores before each greedy step, make that impossible without retraining:

- **Quotes are verbatim.** Between an opening and a closing ``"`` the decoder may only write a
  contiguous run of one piece's content (a transcript segment, an on-screen text item; never
  the piece's "said in English:" label, never the question), and may close the quote only at
  a word boundary. A shortened quote is still a true quote; a spliced one is not.
- **A quote opens on a word**: its first piece has a letter or digit (no '"."', no '", ..."').
- **A quote holds no unknown piece.** A character the vocabulary lacks reads as ``[UNK]``,
  which decoding drops: a quote through it would join the characters either side of a gap
  (Chinese "州 地" out of "廣州市佛地產"). It ends before one instead.
- **No piece is quoted twice** in one text ('the text "sunrise ranch" appears, later
  "sunrise"' claimed a second sign): once every piece was quoted, no quote opens.
- **No word twice in a row** unless the inputs have it twice in a row ("so so" may be said).

The rules only ever remove choices; when they leave none (a forced continuation that the
no-repeat-trigram rule forbids), the quote is closed or the text ends.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import torch


@dataclass
class _Source:
    """One example's copyable inputs, in order."""

    tokens: list[int]
    units: list[int]
    content: list[bool]  # may be quoted: after its piece's label, and not the question
    index: list[int]  # each token's encoder position
    positions: dict[int, list[int]] = field(default_factory=dict)  # token -> content positions
    doubled: set[int] = field(default_factory=set)  # tokens the inputs repeat back to back


class CopyRules:
    """The rules above for one batch of encoded inputs.

    Args:
        source_ids: (B, S) word-piece ids of the encoder positions.
        copyable: (B, S) bool, the text positions the decoder may copy.
        units: (B, S) evidence unit of each position (-1: the question, or none).
        continuation: (V,) bool, True at pieces that continue a word ("##ing").
        quote_id: The ``"`` token.
        label_end_id: The token that ends a piece's label (``:``).
        end_id: The end-of-text token (written when nothing else is allowed).
        wordlike: (V,) bool, True at pieces with a letter or digit (None: every piece).
        unknown_id: The ``[UNK]`` piece (None: the vocabulary has none).
        quotable: (B, S) bool, the positions of pieces a quote may hold (transcript segments
            and text items; None: every copyable one).
    """

    def __init__(
        self,
        source_ids: torch.Tensor,
        copyable: torch.Tensor,
        units: torch.Tensor,
        continuation: torch.Tensor,
        quote_id: int,
        label_end_id: int,
        end_id: int,
        wordlike: torch.Tensor | None = None,
        unknown_id: int | None = None,
        quotable: torch.Tensor | None = None,
    ) -> None:
        self.continuation = continuation.bool().cpu()
        self.wordlike = (
            wordlike.bool().cpu() if wordlike is not None else torch.ones_like(self.continuation)
        )
        self.quote_id = quote_id
        self.end_id = end_id
        self.sources: list[_Source] = []
        for row in range(source_ids.shape[0]):
            keep = copyable[row].cpu()
            index = keep.nonzero().flatten().tolist()
            tokens = source_ids[row].cpu()[keep].tolist()
            unit_of = units[row].cpu()[keep].tolist()
            said = (quotable[row].cpu()[keep] if quotable is not None else keep[keep]).tolist()
            content = [False] * len(tokens)
            labelled: dict[int, bool] = {}
            for i, (tok, unit) in enumerate(zip(tokens, unit_of, strict=True)):
                if unit < 0:
                    continue
                if unit not in labelled:  # a piece's first token: does a label follow?
                    rest = [t for t, u in zip(tokens[i:], unit_of[i:], strict=True) if u == unit]
                    labelled[unit] = label_end_id in rest
                    in_label = labelled[unit]
                content[i] = not in_label and tok != unknown_id and said[i]
                if in_label and tok == label_end_id:
                    in_label = False
            src = _Source(tokens, unit_of, content, index)
            found: dict[int, list[int]] = defaultdict(list)
            for i, tok in enumerate(tokens):
                if content[i]:
                    found[tok].append(i)
                if i and tok == tokens[i - 1] and unit_of[i] == unit_of[i - 1]:
                    src.doubled.add(tok)
            src.positions = dict(found)
            self.sources.append(src)

    def quoted_units(self, row: int, seq: list[int]) -> set[int]:
        """The pieces (units) that the closed quotes of the decoded ``seq`` were taken from."""
        src = self.sources[row]
        marks = [i for i, t in enumerate(seq) if t == self.quote_id]
        out: set[int] = set()
        for a, b in zip(marks[::2], marks[1::2], strict=False):
            run = seq[a + 1 : b]
            for p in src.positions.get(run[0], ()) if run else ():
                if (
                    src.tokens[p : p + len(run)] == run
                    and src.units[p + len(run) - 1] == src.units[p]
                ):
                    out.add(src.units[p])
        return out

    def _quote_choices(self, src: _Source, run: list[int], quoted: set[int]) -> set[int]:
        """What may follow ``run`` inside a quote (from a piece not in ``quoted``)."""
        if not run:  # a quote opens on the first piece of a word, with a letter or digit
            starts = {
                src.tokens[p]
                for ps in src.positions.values()
                for p in ps
                if src.units[p] not in quoted
                and not self.continuation[src.tokens[p]]
                and self.wordlike[src.tokens[p]]
            }
            return starts or {self.quote_id}
        allowed: set[int] = set()
        k = len(run)
        for p in src.positions.get(run[-1], ()):
            first = p - k + 1
            if first < 0 or not src.content[first] or src.units[first] != src.units[p]:
                continue
            if src.units[p] in quoted:
                continue
            if src.tokens[first : p + 1] != run:
                continue
            nxt = p + 1
            ends = nxt >= len(src.tokens) or src.units[nxt] != src.units[p]
            if ends or not self.continuation[src.tokens[nxt]]:
                allowed.add(self.quote_id)  # the run ends a word here: the quote may close
            if not ends and src.content[nxt]:
                allowed.add(src.tokens[nxt])
        return allowed or {self.quote_id}

    def _word_runs(self, src: _Source, i: int, max_tokens: int) -> list[int]:
        """The last indices j of the whole-word runs i..j of one piece's content a quote may
        hold (none unless i opens a word with a letter or digit)."""
        n = len(src.tokens)
        tok = src.tokens[i]
        if not src.content[i] or self.continuation[tok] or not self.wordlike[tok]:
            return []
        out = []
        for j in range(i, min(n, i + max_tokens)):
            if not src.content[j] or src.units[j] != src.units[i]:
                break
            ends = j + 1 >= n or src.units[j + 1] != src.units[j]
            if ends or not self.continuation[src.tokens[j + 1]]:
                out.append(j)
        return out

    def quotable_spans(self, row: int, max_tokens: int) -> list[tuple[int, int]]:
        """Every run of whole words of one piece's content that a quote may hold, as the
        encoder positions (first, last) of its first and last word piece; at most
        ``max_tokens`` pieces, and never through an unknown piece."""
        src = self.sources[row]
        return [
            (src.index[i], src.index[j])
            for i in range(len(src.tokens))
            for j in self._word_runs(src, i, max_tokens)
        ]

    def locate(self, row: int, run: list[int], max_tokens: int) -> tuple[int, int] | None:
        """Where the inputs hold the quote ``run`` (its first occurrence), as in
        :meth:`quotable_spans`; None when they do not."""
        src = self.sources[row]
        last = len(run) - 1
        for i in src.positions.get(run[0], ()) if run else ():
            if src.tokens[i : i + len(run)] == run and i + last in self._word_runs(
                src, i, max_tokens
            ):
                return src.index[i], src.index[i + last]
        return None

    def apply(self, scores: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Mask the next-token ``scores`` (B, V) after the decoded ``ids`` (B, L, with the start
        token first)."""
        out = scores.clone()
        for row, seq in enumerate(ids[:, 1:].tolist()):
            src = self.sources[row]
            if seq and seq[-1] not in src.doubled:
                out[row, seq[-1]] = float("-inf")  # no word twice in a row
            quotes = [i for i, t in enumerate(seq) if t == self.quote_id]
            quoted = self.quoted_units(row, seq)
            if len(quotes) % 2 == 0 and all(
                src.units[p] in quoted for ps in src.positions.values() for p in ps
            ):  # nothing was read that could be quoted, or every piece was quoted already
                out[row, self.quote_id] = float("-inf")
            if len(quotes) % 2 == 1:
                allowed = self._quote_choices(src, seq[quotes[-1] + 1 :], quoted)
                keep = torch.full_like(out[row], float("-inf"))
                index = torch.tensor(sorted(allowed), dtype=torch.long, device=out.device)
                keep[index] = out[row, index]
                out[row] = keep
                if not bool(torch.isfinite(out[row]).any()):
                    out[row, self.quote_id] = 0.0
            elif not bool(torch.isfinite(out[row]).any()):
                out[row, self.end_id] = 0.0
        return out


__all__ = ["CopyRules"]
