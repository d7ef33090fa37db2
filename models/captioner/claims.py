"""The last check before the captioner's words reach a user: outside quotes, say only what the
model's own phrasing and the experts' findings support.

The decoder writes two kinds of words. Inside ``"..."`` it quotes the transcript or on-screen
text verbatim (``models/captioner/copying.py`` keeps quotes true). Outside quotes it should
only use the phrasing it was trained to write ("a voice says", "music plays", "the video does
not say") and the names of what the tagger saw. A pointer that drifts on an unfamiliar real
transcript breaks that: it goes on copying the speaker's words after a quote has closed
('a voice says "printing,"; the only sense in the most crafts ...'), or puts a word of the
transcript into an answer ("this \u0440 room", with a Cyrillic letter). Those words are
claims about the video that no expert made. The check:

- a description is cut into clauses at ``;`` outside quotes; a clause with an unsupported
  word outside its quotes is dropped (the others stay: saying less is not lying);
- an answer with an unsupported word outside its quotes becomes "the video does not say";
- a quote with no letter or digit in it ('"."') is no quote: its clause or answer goes too.

Supported words: :attr:`GroundedCaptionerConfig.phrasing_words` (the words the training
targets use outside quotes, recorded when the model is trained) and every word of the names of
the classes the tagger reported in the piece of video read (its visual pieces).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from models.captioner.answers import NO_ANSWER
from models.captioner.grounding import LANGUAGE_NAMES, Piece

_WORD = re.compile(r"[^\W_]+")
_QUOTED = re.compile(r'"[^"]*"?')


def words(text: str) -> list[str]:
    """Lower-case words (letters and digits of any script)."""
    return [w.lower() for w in _WORD.findall(text)]


def unquoted(text: str) -> str:
    """``text`` without its quotes (an unclosed quote runs to the end)."""
    return _QUOTED.sub(" ", text)


def phrasing_words(targets: Iterable[str]) -> set[str]:
    """The words that ``targets`` (training descriptions and answers) use outside quotes."""
    found: set[str] = set()
    for text in targets:
        found.update(words(unquoted(text)))
    return found


class ClaimCheck:
    """The check above for one model's phrasing.

    Args:
        phrasing: Words the model may write outside quotes in any video.
    """

    def __init__(self, phrasing: Iterable[str]) -> None:
        self.phrasing = {w.lower() for w in phrasing} | set(
            words(" ".join(LANGUAGE_NAMES.values()))
        )

    def allowed(self, pieces: Sequence[Piece]) -> set[str]:
        """The words supported outside quotes for a video (or stretch) read as ``pieces``."""
        seen = {w for p in pieces if p.kind == "visual" for w in words(f"{p.text} {p.snippet}")}
        return self.phrasing | seen

    @staticmethod
    def _empty_quote(text: str) -> bool:
        return any(not words(q) for q in re.findall(r'"([^"]*)"', text))

    def supported(self, text: str, allowed: set[str]) -> bool:
        """Whether every word of ``text`` outside its quotes is in ``allowed``, and every quote
        holds a word."""
        return not self._empty_quote(text) and set(words(unquoted(text))) <= allowed

    def description(self, text: str, pieces: Sequence[Piece]) -> str:
        """The clauses of a description that the check keeps, joined as written."""
        allowed = self.allowed(pieces)
        clauses = [c.strip() for c in _clauses(text)]
        kept = [c for c in clauses if c and self.supported(c, allowed)]
        if kept == clauses:
            return text
        out = "; ".join(c.rstrip(".") for c in kept)
        return f"{out}." if out else ""

    def answer(self, text: str, pieces: Sequence[Piece]) -> str:
        """The answer, or "the video does not say" when it says more than was found."""
        return text if self.supported(text, self.allowed(pieces)) else NO_ANSWER


def _clauses(text: str) -> list[str]:
    """``text`` cut at every ``;`` that is outside quotes."""
    out, current, inside = [], "", False
    for char in text:
        if char == '"':
            inside = not inside
        if char == ";" and not inside:
            out.append(current)
            current = ""
        else:
            current += char
    out.append(current)
    return out


__all__ = ["ClaimCheck", "phrasing_words", "unquoted", "words"]
