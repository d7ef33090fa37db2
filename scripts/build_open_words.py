"""Build ``models/training/data/open_words.json``: common English nouns, adjectives and verbs
from WordNet 3.0, for the everyday world's open-vocabulary sentences.

The captioner must read and quote any English it hears, not the few hundred words of a fixed
grammar: a model trained on ``Tom bought three apples`` learns where ``apples`` sits, not how
to find the words a question points at. These lists let the generator fill the same sentence
shapes with thousands of words.

Needs WordNet's database files (Debian: ``apt-get install wordnet-base``, read from
``/usr/share/wordnet``). Only this script needs them: the JSON it writes is committed.
WordNet 3.0 licence (Princeton University): use, copy, modify and distribute for any purpose,
with its copyright notice, which the JSON carries.

    python scripts/build_open_words.py [--wordnet /usr/share/wordnet]
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "models" / "training" / "data" / "open_words.json"
WORD = re.compile(r"^[a-z]{3,12}$")
VOWELS = "aeiou"

# Irregular verbs whose past tense WordNet's exception list cannot tell from the participle.
IRREGULAR = {
    "begin": ("began", "begun"), "break": ("broke", "broken"), "bring": ("brought", "brought"),
    "build": ("built", "built"), "buy": ("bought", "bought"), "catch": ("caught", "caught"),
    "choose": ("chose", "chosen"), "draw": ("drew", "drawn"), "drink": ("drank", "drunk"),
    "drive": ("drove", "driven"), "eat": ("ate", "eaten"), "feed": ("fed", "fed"),
    "find": ("found", "found"), "forget": ("forgot", "forgotten"), "give": ("gave", "given"),
    "hide": ("hid", "hidden"), "hold": ("held", "held"), "keep": ("kept", "kept"),
    "leave": ("left", "left"), "lend": ("lent", "lent"), "lose": ("lost", "lost"),
    "make": ("made", "made"), "meet": ("met", "met"), "pay": ("paid", "paid"),
    "read": ("read", "read"), "ride": ("rode", "ridden"), "ring": ("rang", "rung"),
    "see": ("saw", "seen"), "sell": ("sold", "sold"), "send": ("sent", "sent"),
    "shake": ("shook", "shaken"), "sing": ("sang", "sung"), "steal": ("stole", "stolen"),
    "sweep": ("swept", "swept"), "take": ("took", "taken"), "teach": ("taught", "taught"),
    "tear": ("tore", "torn"), "tell": ("told", "told"), "throw": ("threw", "thrown"),
    "wear": ("wore", "worn"), "win": ("won", "won"), "write": ("wrote", "written"),
    "carry": ("carried", "carried"), "bury": ("buried", "buried"), "grow": ("grew", "grown"),
    "know": ("knew", "known"), "fly": ("flew", "flown"), "spend": ("spent", "spent"),
    "light": ("lit", "lit"), "dig": ("dug", "dug"),
    "wake": ("woke", "woken"), "understand": ("understood", "understood"),
}  # fmt: skip
# Transitive frames: "Somebody ----s something / somebody", "Something ----s something".
TRANSITIVE_FRAMES = {"8", "9", "10", "11"}


def index(path: Path) -> dict[str, int]:
    """lemma -> tagged sense count (how often its senses occur in the SemCor corpus)."""
    out: dict[str, int] = {}
    for line in path.read_text().splitlines():
        if line.startswith(" "):
            continue
        parts = line.split()
        synsets, pointers = int(parts[2]), int(parts[3])
        tagged = int(parts[5 + pointers])
        if synsets and WORD.match(parts[0]):
            out[parts[0]] = tagged
    return out


def proper_or_odd(data: Path) -> set[str]:
    """Lemmas written with a capital in some synset (names, places): not common nouns."""
    out: set[str] = set()
    for line in data.read_text().splitlines():
        if line.startswith(" "):
            continue
        parts = line.split()
        for i in range(int(parts[3], 16)):
            word = parts[4 + 2 * i]
            if word[:1].isupper():
                out.add(word.lower())
    return out


def frames(data: Path) -> dict[str, set[str]]:
    """verb lemma -> the sentence frames (numbers) its senses allow."""
    out: dict[str, set[str]] = {}
    for line in data.read_text().splitlines():
        if line.startswith(" "):
            continue
        head = line.split("|")[0].split()
        n_words = int(head[3], 16)
        words = [head[4 + 2 * i] for i in range(n_words)]
        rest = head[4 + 2 * n_words :]
        n_ptr = int(rest[0])
        tail = rest[1 + 4 * n_ptr :]
        nums = {tail[i + 1] for i in range(1, len(tail) - 2, 3) if tail[i] == "+"}
        for w in words:
            out.setdefault(w, set()).update(nums)
    return out


def exceptions(path: Path) -> dict[str, list[str]]:
    """base -> its irregular forms, from WordNet's morphological exception list."""
    out: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        form, *bases = line.split()
        for base in bases:
            out.setdefault(base, []).append(form)
    return out


def plural(noun: str, irregular: dict[str, list[str]]) -> str | None:
    forms = [f for f in irregular.get(noun, []) if WORD.match(f)]
    if forms:
        return forms[0]
    if noun.endswith(("s", "x", "z", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and noun[-2] not in VOWELS:
        return noun[:-1] + "ies"
    if noun.endswith(("f", "fe", "o")):
        return None  # knife/knives, potato/potatoes: unsure, left out
    return noun + "s"


def past(verb: str, irregular: dict[str, list[str]]) -> tuple[str, str] | None:
    if verb in IRREGULAR:
        return IRREGULAR[verb]
    forms = irregular.get(verb, [])
    if forms:  # doubled consonants (abetted) are listed; anything else is a true irregular
        eds = [f for f in forms if f.endswith("ed") and WORD.match(f)]
        return (eds[0], eds[0]) if eds else None
    if verb.endswith("e"):
        return verb + "d", verb + "d"
    if verb.endswith("y") and verb[-2] not in VOWELS:
        return verb[:-1] + "ied", verb[:-1] + "ied"
    groups = re.findall(r"[aeiou]+", verb)
    if (
        len(groups) == 1
        and re.search(r"[^aeiou][aeiou][^aeiouwxy]$", verb)
        and not verb.endswith(("ck", "ng"))
    ):
        return verb + verb[-1] + "ed", verb + verb[-1] + "ed"
    if len(groups) > 1 and re.search(r"[^aeiou][aeiou][^aeiouwxy]$", verb):
        return None  # visit/visited but prefer/preferred: stress decides, unknown here
    return verb + "ed", verb + "ed"


def third(verb: str) -> str:
    if verb.endswith(("s", "x", "z", "ch", "sh", "o")):
        return verb + "es"
    if verb.endswith("y") and verb[-2] not in VOWELS:
        return verb[:-1] + "ies"
    return verb + "s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wordnet", type=Path, default=Path("/usr/share/wordnet"))
    parser.add_argument("--nouns", type=int, default=3000)
    parser.add_argument("--adjectives", type=int, default=1200)
    parser.add_argument("--verbs", type=int, default=900)
    args = parser.parse_args()
    wn = args.wordnet

    proper = proper_or_odd(wn / "data.noun")
    noun_exc = exceptions(wn / "noun.exc")
    nouns = [
        (w, plural(w, noun_exc))
        for w, n in sorted(index(wn / "index.noun").items(), key=lambda x: (-x[1], x[0]))
        if n >= 2 and w not in proper and (not w.endswith("s") or w.endswith("ss"))
    ]
    noun_rows = [[sg, pl] for sg, pl in nouns if pl][: args.nouns]

    adjectives = [
        w
        for w, n in sorted(index(wn / "index.adj").items(), key=lambda x: (-x[1], x[0]))
        if n >= 2 and not w.endswith(("er", "est"))
    ][: args.adjectives]

    verb_frames = frames(wn / "data.verb")
    verb_exc = exceptions(wn / "verb.exc")
    verbs = []
    for w, n in sorted(index(wn / "index.verb").items(), key=lambda x: (-x[1], x[0])):
        if n < 3 or w in {"be", "have", "do", "get", "let", "seem", "become"}:
            continue
        if not verb_frames.get(w, set()) & TRANSITIVE_FRAMES:
            continue
        forms = past(w, verb_exc)
        if forms:
            verbs.append([w, forms[0], forms[1], third(w)])
    verb_rows = verbs[: args.verbs]

    licence = (wn.parent / "doc" / "wordnet-base" / "copyright").exists()
    OUT.write_text(
        json.dumps(
            {
                "source": "WordNet 3.0 (Princeton University), by scripts/build_open_words.py",
                "licence": (
                    "WordNet 3.0 Copyright 2006 by Princeton University. All rights reserved. "
                    "Permission to use, copy, modify and distribute this software and database "
                    "and its documentation for any purpose and without fee or royalty is hereby "
                    "granted, provided that this notice appears in all copies."
                ),
                "nouns": noun_rows,
                "adjectives": adjectives,
                "verbs": verb_rows,
            },
            indent=0,
        )
        + "\n"
    )
    print(
        f"{OUT}: {len(noun_rows)} nouns, {len(adjectives)} adjectives, {len(verb_rows)} "
        f"transitive verbs (licence file found: {licence})"
    )


if __name__ == "__main__":
    main()
