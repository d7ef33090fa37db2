"""The everyday world: synthetic clips made of real-world ingredients, seen through the experts.

The captioner never sees the pixels of these clips. It hears the audio (rendered here for
real: espeak-ng speech, synthesized music-like tones, noise, silence, or no track at all) and
reads what the perception experts would report: a transcript (Whisper), on-screen text (OCR)
and per-frame ImageNet-1k tags (EfficientNet-Lite0). Those reports are SIMULATED from the
ground truth with realistic noise, and every description and answer is written from the
simulated reports and the rendered audio only, so that each example is true of what the
model gets.

Output of :func:`generate`: ``OUT/{split}.jsonl`` (one record per clip, keys in
:data:`RECORD_KEYS`) and ``OUT/{split}/{id}.npy`` (float32 mono audio at 16 kHz, absent when
``has_audio`` is false). Clips are deterministic for (split, seed, index); a rerun keeps the
clips already made (``OUT/{split}.parts.jsonl`` holds the records of an unfinished run).

Simulated expert outputs (they stand in for the real experts because real frames of these
classes, real signs and real voices cannot be rendered here):

* Tagger, one frame per second (times 0.5, 1.5, ...), top 5 by score, scores summing to at
  most 1. Per scene, each visible class gets a base score ``0.1 + 0.85 * Beta(2, 3)`` (mean
  0.44: often confident, often not); per frame the score is the base plus Gaussian jitter
  (sd 0.07) clipped to [0.1, 0.95]. In 15 % of frames an object is missed: its score drops to
  0.005-0.04, below the distractors. When the visible scores sum above 0.92 they are scaled
  down (a softmax shares its mass). Distractors: 0-2 classes sharing the object's most
  specific common name ("husky" for "malamute") at 0.1-0.6 times its score, then random
  classes at 0.01-0.08. In 5 % of frames a confident wrong class (0.3-0.6) appears. 10 % of
  scenes hold nothing recognisable: five random classes, all below 0.1.
* OCR: the sign as drawn (upper or mixed case); with 20 % chance one space between words is
  dropped ("SUNRISERANCH"), with 8 % one character becomes a look-alike ("0" for "O");
  confidence 0.7-0.99 (0.7-0.85 after an error); span jittered by up to 0.2 s; box as
  fractions of the frame.
* Whisper: one segment per spoken sentence at the voiced span (jittered by up to 0.1 s),
  sentence case and punctuation, numbers of 10 and more mostly as digits and smaller ones as
  digits in about a third of the sentences; in English each word is misheard (a plausible
  confusion, a dropped plural "s") or dropped with 3 % chance; confidence 0.6-0.95. Other
  languages keep their text as spoken.

Audio: speech at RMS 0.07-0.15 (espeak-ng, 130-190 wpm, pitch 30-70, resampled to 16 kHz);
under speech, music at RMS 0.008-0.025 and noise (white, pink or brown) at 0.003-0.012; without
speech, music at 0.05-0.15 and noise at 0.005-0.03; "silence" is zeros or a noise floor of
RMS 5e-5 to 2e-4. About 10 % of clips have no track and 10 % a silent one; about 65 % hold
speech, 15 % of that in another language (ru, de, fr, es, zh, it, pt).

What the descriptions say about the picture: common names whose summed tag score is at least
:data:`CONFIDENT` on most (over half) of the frames of a span, at most three, named by their
most specific common name (the ImageNet label where that name is generic, such as "mammal").
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import itertools
import json
import math
import os
import random
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
from tqdm import tqdm

from models.captioner.answers import NO_ANSWER
from models.training.data import everyday_words as W

WORLD = "everyday"
SAMPLE_RATE = 16_000
ESPEAK = "espeak-ng"
IMAGENET_JSON = Path(__file__).resolve().parents[2] / "perception" / "data" / "imagenet.json"

RECORD_KEYS = (
    "id", "split", "world", "duration_s", "has_audio", "speech", "sounds", "transcript", "text",
    "frame_tags", "visible", "caption", "segments", "questions",
)  # fmt: skip
QUESTION_KINDS = ("speech", "text", "visual", "audio", "none", "cross")
STRETCH_S = 5.0  # one segment description per stretch of this length
CONFIDENT = 0.3  # least tag score (summed per common name) for a frame to show a name
TOP_K = 5
# Most questions of a kind per clip before the other kinds have had their turn.
QUOTA = {"speech": 6, "text": 3, "visual": 3, "audio": 2, "cross": 3}

LANGUAGE_NAMES = {
    "en": "English", "ru": "Russian", "de": "German", "fr": "French", "es": "Spanish",
    "zh": "Chinese", "it": "Italian", "pt": "Portuguese",
}  # fmt: skip
ENGLISH_VOICES = (
    "en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-us+f3", "en+m2", "en-gb+f2",
    "en-us+m3", "en-us-nyc", "en-gb-x-rp+f4",
)  # fmt: skip
FOREIGN_VOICES = {
    "ru": ("ru", "ru+f2"), "de": ("de", "de+f3"), "fr": ("fr-fr", "fr-be"), "es": ("es", "es-419"),
    "zh": ("cmn-latn-pinyin",), "it": ("it", "it+f2"), "pt": ("pt", "pt-br"),
}  # fmt: skip

# Names too general to say: the ImageNet label is said instead ("a zebra", not "a mammal").
GENERIC_NAMES = frozenset(
    {"animal", "mammal", "structure", "container", "clothing", "food", "landscape", "dish",
     "drink", "reptile", "amphibian", "sports equipment", "weapon", "vehicle", "vegetable",
     "fruit", "furniture", "kitchen appliance", "musical instrument", "tool", "dessert"}
)  # fmt: skip
# Names of everyday things: the classes that carry one are drawn more often.
BASIC_NAMES = frozenset(
    {"dog", "cat", "bird", "horse", "cattle", "sheep", "pig", "elephant", "bear", "big cat",
     "monkey", "ape", "rabbit", "fish", "duck", "owl", "parrot", "car", "truck", "bus",
     "bicycle", "motorcycle", "train", "locomotive", "boat", "ship", "aircraft", "fruit",
     "vegetable", "bread", "dessert", "chair", "table", "bed", "furniture", "musical instrument",
     "tool", "lamp", "clock", "phone", "computer", "bottle", "ball", "toy", "shoe", "hat", "bag",
     "flower", "mushroom", "insect", "butterfly", "snake", "turtle", "frog", "squirrel", "fox",
     "wolf", "whale", "seal", "food", "vehicle"}
)  # fmt: skip
# Categories asked about ("What vehicle is shown?").
CATEGORIES = (
    "vehicle", "fruit", "food", "bird", "musical instrument", "tool", "furniture", "insect",
    "fish", "dog", "car", "boat", "vegetable", "clothing", "snake", "monkey", "toy", "truck",
)  # fmt: skip
COLOUR_WORDS = frozenset(
    {"red", "blue", "green", "yellow", "white", "black", "brown", "orange", "grey", "gray",
     "golden", "silver", "pink", "purple"}
)  # fmt: skip
# Mass nouns among labels: no "a" before them.
MASS_LABELS = frozenset(
    {"hay", "guacamole", "carbonara", "chocolate sauce", "dough", "ice cream", "trifle",
     "consomme", "hot pot", "meat loaf", "potpie", "red wine", "espresso", "eggnog", "jean"}
)  # fmt: skip
PUNCT = frozenset(
    {".", ",", ";", "?", "!", "\u3002", "\uff0c", "\uff1f"}
)  # with CJK full stop, comma, ?


# ---------------------------------------------------------------------------------------------
# ImageNet classes


@dataclass(frozen=True)
class ImageClass:
    """An ImageNet-1k class with its common names (most specific first)."""

    index: int
    synset: str
    label: str
    names: tuple[str, ...]

    @property
    def name(self) -> str:
        """What to call it: the most specific common name, or the label where that is generic."""
        if self.names and self.names[0] not in GENERIC_NAMES:
            return self.names[0]
        return self.label

    @property
    def words(self) -> set[str]:
        """Every name a tag of this class shows: label and common names, lower case."""
        return {self.label.lower(), *(n.lower() for n in self.names)}

    def tag(self, score: float) -> dict[str, Any]:
        """The tag record of this class with a score."""
        return {
            "index": self.index,
            "label": self.label,
            "synset": self.synset,
            "score": round(score, 4),
            "names": list(self.names),
        }


class Catalogue:
    """The 1000 classes, grouped by common name for sampling objects and their confusions."""

    def __init__(self, path: Path = IMAGENET_JSON) -> None:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        self.classes = [
            ImageClass(int(c["index"]), str(c["synset"]), str(c["label"]), tuple(c["names"]))
            for c in data["classes"]
        ]
        self.by_name: dict[str, list[ImageClass]] = {}
        for c in self.classes:
            if c.names:
                self.by_name.setdefault(c.names[0], []).append(c)
        self.basic = [c for c in self.classes if BASIC_NAMES.intersection(c.names)]
        self.display_names = sorted({c.name for c in self.classes})

    def sample(self, rng: random.Random) -> ImageClass:
        """A class: half the time uniform over all, half from everyday (basic-level) ones."""
        return rng.choice(self.basic if rng.random() < 0.5 else self.classes)

    def similar(self, cls: ImageClass) -> list[ImageClass]:
        """Classes sharing the most specific common name of ``cls`` (its likely confusions)."""
        if not cls.names:
            return []
        return [c for c in self.by_name.get(cls.names[0], []) if c.index != cls.index]


@functools.lru_cache(maxsize=1)
def catalogue() -> Catalogue:
    """The ImageNet catalogue, loaded once."""
    return Catalogue()


# ---------------------------------------------------------------------------------------------
# Sentences


@dataclass(frozen=True)
class Tok:
    """A word of a sentence with the parts it belongs to (``subj``, ``objp``, ``place``...)."""

    text: str
    roles: frozenset[str] = frozenset()
    digits: str | None = None


def _toks(text: str, *roles: str) -> list[Tok]:
    return [Tok(w, frozenset(roles)) for w in text.split()]


@dataclass
class Sentence:
    """One spoken sentence: its words with roles, and the questions its structure answers.

    Attributes:
        language: ISO 639-1 code.
        kind: ``statement``, ``travel``, ``meeting``, ``command``, ``question``,
            ``two_clause``, ``literary`` or ``foreign``.
        tokens: The words (punctuation as its own tokens).
        fields: The structure: subject, verb, object, modifier, place, time, number, ...
        qa: (question, roles whose words answer it, roles the question itself names); ``*``
            as answer role means the whole sentence.
        speak: What espeak-ng reads when it differs from the text (pinyin for Chinese).
        joiner: What separates words (nothing in Chinese).
    """

    language: str
    kind: str
    tokens: list[Tok]
    fields: dict[str, str] = field(default_factory=dict)
    qa: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = field(default_factory=list)
    speak: str | None = None
    joiner: str = " "

    @property
    def text(self) -> str:
        """The sentence as spoken."""
        return render(self.tokens, self.joiner)[0]


def render(tokens: Sequence[Tok], joiner: str = " ") -> tuple[str, dict[str, tuple[int, int]]]:
    """Join tokens into text (first letter upper case); character spans of each role."""
    out = ""
    spans: dict[str, tuple[int, int]] = {}
    for tok in tokens:
        if out and tok.text not in PUNCT:
            out += joiner
        start = len(out)
        out += tok.text
        for role in tok.roles:
            s, e = spans.get(role, (start, len(out)))
            spans[role] = (min(s, start), max(e, len(out)))
    return out[:1].upper() + out[1:], spans


def _a(word: str) -> str:
    w = word.lower()
    vowel = w[:1] in "aeiou" and not w.startswith(("uni", "use", "eu", "one", "ukulele"))
    return "an" if vowel else "a"


def _num(rng: random.Random) -> tuple[str, str]:
    return rng.choice(W.NUMBERS)


def _num_tok(rng: random.Random, *roles: str) -> Tok:
    word, digits = _num(rng)
    return Tok(word, frozenset({"num", *roles}), digits)


def _time(rng: random.Random) -> tuple[list[Tok], dict[str, str]]:
    if rng.random() < 0.45:
        day = rng.choice(W.WEEKDAYS)
        return [Tok("on", frozenset({"time"})), Tok(day, frozenset({"time", "weekday"}))], {
            "time": f"on {day}"
        }
    t = rng.choice(W.TIMES)
    return _toks(t, "time"), {"time": t}


def _place(rng: random.Random) -> tuple[list[Tok], dict[str, str]]:
    if rng.random() < 0.25:
        city = rng.choice(W.CITIES)
        return [Tok("in", frozenset({"place"})), Tok(city, frozenset({"place", "city"}))], {
            "place": f"in {city}",
            "city": city,
        }
    prep, np_ = rng.choice(W.PLACES)
    return _toks(f"{prep} {np_}", "place"), {"place": f"{prep} {np_}"}


def _object(rng: random.Random, groups: tuple[str, ...]) -> tuple[list[Tok], dict[str, str]]:
    things = [t for t in W.THINGS if t[2] in groups]
    masses = [m for m in W.MASS if m[2] in groups]
    fields: dict[str, str] = {}
    toks: list[Tok] = []
    if masses and (not things or rng.random() < 0.4):
        noun, mods, _ = rng.choice(masses)
        det = rng.choice(("some", "the", "", ""))
        if det:
            toks.append(Tok(det, frozenset({"objp"})))
        if rng.random() < 0.7:
            mod = rng.choice(mods)
            toks.append(Tok(mod, frozenset({"objp", "mod"})))
            fields["mod"] = mod
        toks.append(Tok(noun, frozenset({"objp", "obj"})))
        fields.update(noun=noun, number="mass")
        return toks, fields
    sg, pl, _ = rng.choice(things)
    r = rng.random()
    plural = True
    if r < 0.5:
        toks.append(_num_tok(rng, "objp"))
        fields["count"] = toks[-1].text
    elif r < 0.75:
        plural = False
        toks.append(Tok("a", frozenset({"objp"})))
    else:
        toks.append(Tok(rng.choice(("some", "the")), frozenset({"objp"})))
    if rng.random() < 0.6:
        mod = rng.choice(W.COLOURS if rng.random() < 0.5 else W.ADJECTIVES)
        toks.append(Tok(mod, frozenset({"objp", "mod"})))
        fields["mod"] = mod
    noun = pl if plural else sg
    toks.append(Tok(noun, frozenset({"objp", "obj"})))
    if not plural:  # a / an agrees with the next word
        toks[0] = Tok(_a(toks[1].text), toks[0].roles)
    fields.update(noun=noun, number="plural" if plural else "singular")
    return toks, fields


def _statement(rng: random.Random) -> Sentence:
    subj, _ = rng.choice(W.PEOPLE)
    past, base, groups = rng.choice(W.VERBS)
    obj, f = _object(rng, groups)
    toks = [Tok(subj, frozenset({"subj"})), Tok(past, frozenset({"verb"})), *obj]
    f.update(subject=subj, verb=past)
    if rng.random() < 0.6:
        p, pf = _place(rng)
        toks += p
        f.update(pf)
    if rng.random() < 0.5:
        t, tf = _time(rng)
        toks += t
        f.update(tf)
    toks.append(Tok("."))
    noun = f["noun"]
    be = "are" if f["number"] == "plural" else "is"
    sv = ("subj", "verb")
    qa: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
        (f"Who {past} the {noun}?", ("subj",), ("verb", "obj")),
        (f"What did {subj} {base}?", ("objp",), sv),
    ]
    if "place" in f:
        qa.append((f"Where did {subj} {base} the {noun}?", ("place",), (*sv, "obj")))
    if "city" in f:
        qa.append(("Which city is mentioned?", ("city",), ()))
    if "time" in f:
        qa.append((f"When did {subj} {base} the {noun}?", ("time",), (*sv, "obj")))
    if f.get("time", "").startswith("on "):
        qa.append(("Which day is mentioned?", ("weekday",), ()))
    if "count" in f:
        qa.append((f"How many {noun} did {subj} {base}?", ("num",), (*sv, "obj")))
    if "mod" in f:
        qa.append((f"What kind of {noun} {be} mentioned?", ("mod", "obj"), ()))
        if f["mod"] in W.COLOURS and f["number"] != "mass":
            qa.append((f"What colour {be} the {noun} that {subj} {past}?", ("mod",), (*sv, "obj")))
    return Sentence("en", "statement", toks, f, qa)


def _travel(rng: random.Random) -> Sentence:
    subj, _ = rng.choice(W.PEOPLE)
    past, base = rng.choice(W.TRAVEL_VERBS)
    city = rng.choice(W.CITIES)
    toks = [
        Tok(subj, frozenset({"subj"})),
        Tok(past, frozenset({"verb"})),
        Tok("to", frozenset({"dest"})),
        Tok(city, frozenset({"dest", "city"})),
    ]
    f = {"subject": subj, "verb": past, "city": city}
    qa: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
        ("Which city is mentioned?", ("city",), ()),
        (f"Where did {subj} {base}?", ("city",), ("subj", "verb")),
        (f"Who {past} to {city}?", ("subj",), ("verb", "city")),
    ]
    if rng.random() < 0.6:
        t, tf = _time(rng)
        toks += t
        f.update(tf)
        qa.append((f"When did {subj} {base} to {city}?", ("time",), ("subj", "verb", "city")))
    toks.append(Tok("."))
    return Sentence("en", "travel", toks, f, qa)


def _meeting(rng: random.Random) -> Sentence:
    (a, _), (b, _) = rng.sample(W.PEOPLE, 2)
    toks = [
        Tok(a, frozenset({"subj"})),
        Tok("met", frozenset({"verb"})),
        Tok(b, frozenset({"who2"})),
    ]
    f = {"subject": a, "verb": "met", "object": b}
    qa: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
        (f"Who did {a} meet?", ("who2",), ("subj", "verb")),
        (f"Who met {b}?", ("subj",), ("verb", "who2")),
    ]
    p, pf = _place(rng)
    toks += p
    f.update(pf)
    qa.append((f"Where did {a} meet {b}?", ("place",), ("subj", "verb", "who2")))
    if "city" in pf:
        qa.append(("Which city is mentioned?", ("city",), ()))
    if rng.random() < 0.5:
        t, tf = _time(rng)
        toks += t
        f.update(tf)
        qa.append((f"When did {a} meet {b}?", ("time",), ("subj", "verb", "who2")))
    toks.append(Tok("."))
    return Sentence("en", "meeting", toks, f, qa)


def _command(rng: random.Random) -> Sentence:
    kind = rng.choice(("go", "turn", "please", "take", "wait", "call"))
    f: dict[str, str] = {"command": kind}
    qa: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = []
    if kind == "go":
        unit = rng.choice(W.UNITS_DISTANCE)
        way = rng.choice(("forward", "back", "ahead"))
        toks = [Tok("Go"), Tok(way), _num_tok(rng, "dist"), Tok(unit, frozenset({"dist"}))]
        qa.append(("How far should the listener go?", ("dist",), ()))
        qa.append((f"How many {unit}?", ("num",), ()))
    elif kind == "turn":
        d = rng.choice(W.DIRECTIONS)
        toks = [
            Tok("Turn"),
            Tok(d, frozenset({"dir"})),
            *_toks("at " + rng.choice(W.LANDMARKS), "at"),
        ]
        qa.append(("Which way should the listener turn?", ("dir",), ()))
        qa.append(("Where should the listener turn?", ("at",), ()))
    elif kind == "please":
        verb, done = rng.choice(W.OPEN_VERBS)
        noun = rng.choice(W.OPENABLE)
        toks = [Tok("Please"), Tok(verb, frozenset({"cverb"})), *_toks(f"the {noun}", "what")]
        qa.append((f"What should be {done}?", ("what",), ("cverb",)))
    elif kind == "take":
        sg, _, _ = rng.choice(W.THINGS)
        mod = rng.choice(W.COLOURS)
        toks = [Tok("Take"), *_toks(f"the {mod} {sg}", "what")]
        qa.append(("What should the listener take?", ("what",), ()))
    elif kind == "wait":
        unit = rng.choice(W.UNITS_TIME)
        toks = [*_toks("Wait here for"), _num_tok(rng, "long"), Tok(unit, frozenset({"long"}))]
        qa.append(("How long should the listener wait?", ("long",), ()))
    else:
        name, _ = rng.choice(W.PEOPLE)
        day = rng.choice(W.WEEKDAYS)
        toks = [
            Tok("Call"),
            Tok(name, frozenset({"who"})),
            Tok("on", frozenset({"when"})),
            Tok(day, frozenset({"when", "weekday"})),
        ]
        qa.append(("Who should the listener call?", ("who",), ()))
        qa.append((f"When should the listener call {name}?", ("when",), ("who",)))
        qa.append(("Which day is mentioned?", ("weekday",), ()))
    toks.append(Tok("."))
    qa.append(
        (rng.choice(("What command is spoken?", "What does the speaker tell the listener to do?")),
         ("*",), ())
    )  # fmt: skip
    return Sentence("en", "command", toks, f, qa)


def _question(rng: random.Random) -> Sentence:
    template = rng.choice(W.QUESTION_TEMPLATES)
    name, _ = rng.choice(W.PEOPLE)
    _, base, _ = rng.choice([v for v in W.VERBS if "thing" in v[2]])
    sg, pl, _ = rng.choice([t for t in W.THINGS if t[2] == "thing"])
    prep, place = rng.choice(W.PLACES)
    city = rng.choice(W.CITIES)
    text = template.format(
        name=name, verb=base, things=pl, thing=sg, place=place, prep=prep, city=city,
        openable=rng.choice(W.OPENABLE),
    )  # fmt: skip
    toks = [Tok(w, frozenset({"city"}) if w == city else frozenset()) for w in text[:-1].split()]
    toks.append(Tok("?"))
    qa: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
        ("What does the speaker ask?", ("*",), ())
    ]
    if "{city}" in template:
        qa.append(("Which city is mentioned?", ("city",), ()))
    return Sentence("en", "question", toks, {"question": text}, qa)


def _two_clause(rng: random.Random) -> Sentence:
    first = _statement(rng)
    pron = next(p for n, p in W.PEOPLE if n == first.fields["subject"])
    (other, _), city = rng.choice(W.PEOPLE), rng.choice(W.CITIES)
    then = rng.choice(W.THEN_PHRASES).format(name=other, city=city)
    toks = [*first.tokens[:-1], Tok(","), Tok("and"), Tok(rng.choice(("then", "later")))]
    toks += [Tok(pron), *_toks(then, "then"), Tok(".")]
    qa = list(first.qa)
    qa.append((f"What did {first.fields['subject']} do after that?", ("then",), ("subj",)))
    return Sentence("en", "two_clause", toks, {**first.fields, "then": then}, qa)


def _literary(rng: random.Random) -> Sentence:
    subj = rng.choice(W.LIT_SUBJECTS)
    pred = rng.choice(W.LIT_PREDICATES)
    where = f"{rng.choice(W.LIT_PREPS)} the {rng.choice(W.LIT_ADJS)} {rng.choice(W.LIT_NOUNS)}"
    toks = [Tok("The", frozenset({"lsubj"})), *_toks(subj, "lsubj"), *_toks(pred), *_toks(where)]
    toks.append(Tok("."))
    qa: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
        ("What does the speaker describe?", ("lsubj",), ())
    ]
    return Sentence("en", "literary", toks, {"subject": subj, "verb": pred, "place": where}, qa)


# Open-vocabulary sentences: the same shapes filled from WordNet's common words, so that a
# question is answered by finding its words in the sentence, not by knowing the word lists.

OPEN_WORDS = Path(__file__).resolve().parent / "open_words.json"
TITLES = ("Mr.", "Mrs.", "Dr.", "Miss", "Captain", "Professor")
OPEN_PREPS = ("in", "on", "under", "near", "behind", "beside", "across", "into", "through",
              "above", "beyond", "along", "inside", "outside")  # fmt: skip
MODALS = ("must", "could", "would", "will", "should", "can", "might")
DETS = ("the", "the", "the", "a", "his", "her", "their", "our", "my", "this", "that", "every")
# Subject pronoun -> (how a question names it, the object form, be in the past).
PRONOUNS = {
    "I": (("the speaker",), "me", "was"), "you": (("we", "you", "the listener"), "you", "were"),
    "we": (("we", "they"), "us", "were"), "he": (("he",), "him", "was"),
    "she": (("she",), "her", "was"), "they": (("they",), "them", "were"),
}  # fmt: skip


@functools.cache
def open_words() -> dict[str, Any]:
    """WordNet's common nouns, adjectives and transitive verbs (see ``open_words.json``)."""
    return cast(dict[str, Any], json.loads(OPEN_WORDS.read_text()))


def _open_np(rng: random.Random, role: str, *, of: bool = True) -> tuple[list[Tok], dict[str, str]]:
    """A noun phrase of open words: determiner, maybe adjectives, noun, maybe "of" phrase."""
    words = open_words()
    sg, pl = rng.choice(words["nouns"])
    plural = rng.random() < 0.3
    noun = pl if plural else sg
    det = rng.choice(DETS)
    if plural and det in ("a", "every", "this"):
        det = rng.choice(("the", "some", "these", "many", ""))
    elif plural and det == "that":
        det = "those"
    toks: list[Tok] = []
    if det:
        toks.append(Tok(det, frozenset({role})))
    mods: list[str] = []
    if rng.random() < 0.55:
        mods = rng.sample(words["adjectives"], 1 if rng.random() < 0.75 else 2)
    for m in mods:
        toks.append(Tok(m, frozenset({role, f"{role}_mod"})))
    toks.append(Tok(noun, frozenset({role, f"{role}_noun"})))
    if det == "a":
        toks[0] = Tok(_a(toks[1].text), toks[0].roles)
    f = {role: "", f"{role}_noun": noun, f"{role}_number": "plural" if plural else "singular"}
    if mods:
        f[f"{role}_mod"] = " ".join(mods)
    if of and rng.random() < 0.2:
        inner, _ = _open_np(rng, f"{role}_of", of=False)
        toks += [Tok("of", frozenset({role})), *(Tok(t.text, t.roles | {role}) for t in inner)]
    return toks, f


def _open_subject(rng: random.Random) -> tuple[list[Tok], str, bool]:
    """Subject tokens, how a question names it, and whether it is a person."""
    r = rng.random()
    if r < 0.3:
        pron = rng.choice(sorted(PRONOUNS))
        return [Tok(pron, frozenset({"subj"}))], rng.choice(PRONOUNS[pron][0]), True
    if r < 0.55:
        name, _ = rng.choice(W.PEOPLE)
        toks = []
        if rng.random() < 0.5:  # "Mr. John Dashwood", "Dr. Baker"
            toks.append(Tok(rng.choice(TITLES), frozenset({"subj"})))
            surname = rng.choice(open_words()["nouns"])[0].title()
            if rng.random() < 0.5:
                toks.append(Tok(name, frozenset({"subj"})))
            toks.append(Tok(surname, frozenset({"subj"})))
        else:
            toks.append(Tok(name, frozenset({"subj"})))
        return toks, " ".join(t.text for t in toks), True
    toks, _ = _open_np(rng, "subj")
    if toks[0].text in ("his", "her", "their", "our", "my", "a", "an", "every"):
        toks[0] = Tok("the", toks[0].roles)
    return toks, " ".join(t.text for t in toks), False


def _cap(toks: list[Tok]) -> list[Tok]:
    if toks and toks[0].text != "I":
        toks = [Tok(toks[0].text[:1].upper() + toks[0].text[1:], toks[0].roles), *toks[1:]]
    return toks


def _lower_first(text: str) -> str:
    return text if text.split(" ", 1)[0] in ("I", *TITLES) else text[:1].lower() + text[1:]


def _open_action(rng: random.Random) -> Sentence:
    """ "[subject] [modal] verb [object] [where] [when]." with who / what / where / when /
    which kind questions that reuse the sentence's own words."""
    base, past_, _, _ = rng.choice(open_words()["verbs"])
    subj, named, person = _open_subject(rng)
    named = _lower_first(named)
    modal = rng.choice(MODALS) if rng.random() < 0.3 else None
    obj, f = _open_np(rng, "objp")
    verb = (
        [Tok(modal, frozenset({"verb"})), Tok(base, frozenset({"verb"}))]
        if modal
        else [Tok(past_, frozenset({"verb"}))]
    )
    if rng.random() < 0.12:  # negation: "did not" / "must not"
        verb = (
            [verb[0], Tok("not", frozenset({"verb"})), verb[1]]
            if modal
            else [Tok("did", frozenset({"verb"})), Tok("not", frozenset({"verb"})),
                  Tok(base, frozenset({"verb"}))]
        )  # fmt: skip
    toks = [*subj, *verb, *obj]
    verb_text = " ".join(t.text for t in verb)
    obj_text = " ".join(t.text for t in obj)
    place_text = ""
    if rng.random() < 0.55:
        prep = rng.choice(OPEN_PREPS)
        inner, pf = _open_np(rng, "pp", of=False)
        place = [
            Tok(prep, frozenset({"place"})),
            *(Tok(t.text, t.roles | {"place"}) for t in inner),
        ]
        toks += place
        f.update(pf)
        place_text = " ".join(t.text for t in place)
    if rng.random() < 0.3:
        t, tf = _time(rng)
        toks += t
        f.update(tf)
    toks = [*_cap(toks), Tok(".")]
    negated = " not " in f" {verb_text} "
    aux = modal or "did"
    who = "Who" if person else "What"
    qa: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = []
    if not negated:
        qa.append((f"{who} {verb_text} {obj_text}?", ("subj",), ("verb", "objp")))
        qa.append((f"What {aux} {named} {base}?", ("objp",), ("subj", "verb")))
        if place_text:
            qa.append((f"Where {aux} {named} {base} {obj_text}?", ("place",),
                       ("subj", "verb", "objp")))  # fmt: skip
            qa.append((f"Where {aux} {named} {base} it?", ("place",), ("subj", "verb")))
        if "time" in f:
            qa.append((f"When {aux} {named} {base} {obj_text}?", ("time",),
                       ("subj", "verb", "objp")))  # fmt: skip
    else:
        qa.append((f"What {aux} {named} not {base}?", ("objp",), ("subj", "verb")))
    for role in ("objp", "pp"):
        if f"{role}_mod" in f:
            noun = f[f"{role}_noun"]
            be = "are" if f[f"{role}_number"] == "plural" else "is"
            qa.append((f"What kind of {noun} {be} mentioned?", (f"{role}_mod", f"{role}_noun"),
                       ()))  # fmt: skip
            qa.append((f"How {be} the {noun} described?", (f"{role}_mod",), (f"{role}_noun",)))
    qa = [(_according(q, rng), a, n) for q, a, n in qa]
    return Sentence("en", "open_action", toks, {**f, "subject": named, "verb": verb_text}, qa)


def _open_be(rng: random.Random) -> Sentence:
    """ "[subject] was [not] [adjective | noun phrase] [where]." with what / how questions."""
    words = open_words()
    if rng.random() < 0.35:
        subj_toks = [Tok("It", frozenset({"subj"}))]
        named, be, person = "it", "was", False
    else:
        subj_toks, named, person = _open_subject(rng)
        first = subj_toks[0].text
        be = PRONOUNS[first][2] if first in PRONOUNS else "was"
        if first in PRONOUNS and len(subj_toks) == 1:
            named = rng.choice(PRONOUNS[first][0])
            be = "was" if named in ("the speaker", "he", "she", "it") else "were"
        elif len(subj_toks) > 1 and subj_toks[-1].text.endswith("s") and first not in TITLES:
            be = "were" if rng.random() < 0.5 else "was"
        named = _lower_first(named)
    toks = [*subj_toks, Tok(be)]
    neg = rng.random() < 0.2
    if neg:
        toks.append(Tok("not", frozenset({"pred"})))
    qa: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = []
    if rng.random() < 0.45 and named != "it":
        adjs = rng.sample(words["adjectives"], 1 if rng.random() < 0.7 else 2)
        pred = adjs if len(adjs) == 1 else [adjs[0], "and", adjs[1]]
        toks += [Tok(w, frozenset({"pred"})) for w in pred]
        qa.append((f"How {'is' if be == 'was' else 'are'} {named} described?", ("pred",),
                   ("subj",)))  # fmt: skip
        qa.append((f"What {be} {named} like?", ("pred",), ("subj",)))
    else:
        np_toks, f = _open_np(rng, "pred")
        if np_toks[0].text in ("the", "this", "that", "every"):
            np_toks[0] = Tok(rng.choice(("the", "a" if f["pred_number"] == "singular" else "the")),
                             np_toks[0].roles)  # fmt: skip
            if np_toks[0].text == "a":
                np_toks[0] = Tok(_a(np_toks[1].text), np_toks[0].roles)
        toks += np_toks
        qa.append((f"What {be} {named}?", ("pred",), ("subj",)))
        if not person and named != "it":
            qa.append((f"What {be} {named}, according to the speaker?", ("pred",), ("subj",)))
    if rng.random() < 0.3:
        prep = rng.choice(OPEN_PREPS)
        inner, _ = _open_np(rng, "pp", of=False)
        toks += [
            Tok(prep, frozenset({"place"})),
            *(Tok(t.text, t.roles | {"place"}) for t in inner),
        ]
        qa.append((f"Where {be} {named}?", ("place",), ("subj",)))
    toks = [*_cap(toks), Tok(".")]
    return Sentence("en", "open_be", toks, {"subject": named}, qa)


def _open_passive(rng: random.Random) -> Sentence:
    """ "The [noun] was [verb]ed by [agent] [where]." with what / who / by whom questions."""
    _, _, participle, _ = rng.choice(open_words()["verbs"])
    obj, f = _open_np(rng, "objp", of=False)
    if obj[0].text in ("a", "an", "some", "every", "many"):
        obj = [Tok("the", frozenset({"objp"})), *obj[1:]]
    elif obj[0].text not in ("the", "his", "her", "their", "our", "my", "this", "that", "these"):
        obj = [Tok("the", frozenset({"objp"})), *obj]
    plural = f["objp_number"] == "plural"
    be = "were" if plural else "was"
    agent, named, person = _open_subject(rng)
    if agent[0].text in PRONOUNS:
        pron = agent[0].text
        agent = [Tok(PRONOUNS[pron][1], frozenset({"subj"}))]
        named = rng.choice(PRONOUNS[pron][0])
        if named in ("he", "she", "they", "we"):
            named = PRONOUNS[named][1] if named in PRONOUNS else named
    toks = [*obj, Tok(be, frozenset({"verb"})), Tok(participle, frozenset({"verb"})), Tok("by"),
            *agent]  # fmt: skip
    obj_text = " ".join(t.text for t in obj)
    qa: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
        (f"What {be} {participle} by {_lower_first(named)}?", ("objp",), ("verb", "subj"))
    ]
    if len(agent) > 1 or agent[0].text not in {p[1] for p in PRONOUNS.values()}:
        # "by him" answers nothing: who did it is only asked of a named agent
        qa.append((f"Who {participle} {obj_text}?" if person else
                   f"What {participle} {obj_text}?", ("subj",), ("verb", "objp")))  # fmt: skip
        qa.append((f"By whom {be} {obj_text} {participle}?", ("subj",), ("verb", "objp")))
    if rng.random() < 0.4:
        prep = rng.choice(OPEN_PREPS)
        inner, _ = _open_np(rng, "pp", of=False)
        toks += [
            Tok(prep, frozenset({"place"})),
            *(Tok(t.text, t.roles | {"place"}) for t in inner),
        ]
        qa.append((f"Where {be} {obj_text} {participle}?", ("place",), ("verb", "objp")))
    toks = [*_cap(toks), Tok(".")]
    qa = [(_according(q, rng), a, n) for q, a, n in qa]
    return Sentence("en", "open_passive", toks, {"object": obj_text}, qa)


# Verbs that take a clause ("considered how much ..."), as (base, past).
CLAUSE_VERBS = (
    ("consider", "considered"), ("wonder", "wondered"), ("ask", "asked"), ("know", "knew"),
    ("remember", "remembered"), ("explain", "explained"), ("decide", "decided"),
    ("learn", "learned"), ("forget", "forgot"), ("understand", "understood"), ("say", "said"),
    ("discover", "discovered"), ("doubt", "doubted"), ("imagine", "imagined"),
)  # fmt: skip
CLAUSE_WORDS = ("how much", "whether", "why", "how", "that", "where", "when", "if")
# Connectives that keep both clauses true (no "if" or "unless": those make a clause a guess).
JOINERS = (", and", ", but", ", while", ", for", ", so", ", yet", "; then", ", and then")
SUBORDINATORS = ("Although", "Though", "Because", "While", "Since", "After", "As")
OPENERS = ("And", "But", "For", "So", "Yet", "Still,", "Then", "Now")
ASIDES = (
    "of course", "in fact", "as it happened", "no doubt", "it seems", "at present",
    "for the most part", "to be sure", "in a sense", "as a rule", "at first",
)  # fmt: skip
_LOWER_STARTS = frozenset(
    {"the", "a", "an", "this", "that", "these", "those", "his", "her", "their", "our", "my",
     "every", "some", "many", "it", "he", "she", "we", "you", "they"}
)  # fmt: skip


def _open_clause(rng: random.Random) -> Sentence:
    """ "[subject] considered how much / whether / why [clause]." The clause answers "What did
    [subject] consider?": the answer is a whole clause, not a noun phrase."""
    base, past_ = rng.choice(CLAUSE_VERBS)
    subj, named, _ = _open_subject(rng)
    named = _lower_first(named)
    inner = rng.choice((_open_action, _open_be, _open_passive))(rng)
    body = _lowered([t for t in inner.tokens if t.text != "."])
    word = rng.choice(CLAUSE_WORDS)
    clause = [Tok(w, frozenset({"clause"})) for w in word.split()]
    clause += [Tok(t.text, frozenset({"clause"})) for t in body]
    modal = rng.choice(MODALS) if rng.random() < 0.2 else None
    verb = [Tok(modal), Tok(base)] if modal else [Tok(past_)]
    toks = [*_cap([*subj, *verb, *clause]), Tok(".")]
    aux = modal or "did"
    qa: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
        (f"What {aux} {named} {base}?", ("clause",), ("subj",)),
    ]
    return Sentence("en", "open_clause", toks, {"subject": named, "verb": base}, qa)


def _lowered(toks: list[Tok]) -> list[Tok]:
    """A sentence's words as they read inside another sentence: "The cat" -> "the cat"."""
    if toks and toks[0].text.lower() in _LOWER_STARTS and toks[0].text != "I":
        return [Tok(toks[0].text.lower(), toks[0].roles, toks[0].digits), *toks[1:]]
    return toks


def _renamed(sentence: Sentence, tag: str) -> Sentence:
    """The sentence with every role renamed ``role#tag``, so two can share one sentence."""
    toks = [
        Tok(t.text, frozenset(f"{r}#{tag}" for r in t.roles), t.digits) for t in sentence.tokens
    ]
    qa = [
        (q, tuple(r if r == "*" else f"{r}#{tag}" for r in a), tuple(f"{r}#{tag}" for r in n))
        for q, a, n in sentence.qa
    ]
    return Sentence(sentence.language, sentence.kind, toks, sentence.fields, qa)


def _compound(rng: random.Random) -> Sentence:
    """Two or three open sentences as one long one, the way written English and Whisper's
    segments run on: "Although A, B.", "A, and B, but C.", "And A.", with an aside now and
    then ("A, in fact, ..."). Every part keeps its questions, so an answer has to be found
    among the other clauses' words; a question two parts would answer differently is dropped."""
    makers = (_open_action, _open_be, _open_passive, _open_clause)
    weights = (0.4, 0.25, 0.2, 0.15)
    n = 1 if rng.random() < 0.2 else (2 if rng.random() < 0.8 else 3)
    parts = [_renamed(rng.choices(makers, weights)[0](rng), str(i)) for i in range(n)]
    bodies = [[t for t in p.tokens if t.text != "."] for p in parts]
    if rng.random() < 0.3:  # an aside after the first part's first word or subject
        body = bodies[0]
        at = 1 + max((i for i, t in enumerate(body[:4]) if any(r.startswith("subj") for r in
                      t.roles)), default=0)  # fmt: skip
        if at < len(body):
            bodies[0] = [*body[:at], Tok(","), *_toks(rng.choice(ASIDES)), Tok(","), *body[at:]]
    toks: list[Tok] = []
    subordinate = False
    if n == 1 or rng.random() < 0.25:
        opener = rng.choice(OPENERS)
        toks += [*_toks(opener.rstrip(",")), *([Tok(",")] if opener.endswith(",") else [])]
        toks += _lowered(bodies[0])
    elif n == 2 and rng.random() < 0.35:
        toks += [*_toks(rng.choice(SUBORDINATORS)), *_lowered(bodies[0])]
        subordinate = True  # "Although A, B.": the main clause follows a bare comma
    else:
        toks += bodies[0]
    for body in bodies[1:]:
        last = body is bodies[-1]
        joiner = rng.choice(JOINERS) if not subordinate and (last or rng.random() < 0.5) else ","
        toks += _toks(joiner.replace(",", " ,").replace(";", " ;"))
        toks += _lowered(body)
    toks = [*_cap(toks), Tok(".")]
    counts = Counter(q for p in parts for q, _, _ in p.qa)
    qa = [item for p in parts for item in p.qa if counts[item[0]] == 1]
    return Sentence("en", "compound", toks, {"parts": str(n)}, qa)


def _according(question: str, rng: random.Random) -> str:
    """Now and then the question names its source, as people ask it."""
    r = rng.random()
    if r < 0.1:
        return question[:-1] + ", according to the speaker?"
    if r < 0.15:
        return "According to the speaker, " + question[:1].lower() + question[1:]
    return question


def english_sentence(rng: random.Random) -> Sentence:
    """A sentence of the English grammar: statement, command, question, two clauses, ..."""
    makers = (_statement, _travel, _meeting, _command, _question, _two_clause, _literary,
              _open_action, _open_be, _open_passive, _open_clause, _compound)  # fmt: skip
    weights = (0.12, 0.03, 0.02, 0.08, 0.04, 0.04, 0.02, 0.2, 0.1, 0.07, 0.08, 0.2)
    return rng.choices(makers, weights)[0](rng)


def foreign_sentence(rng: random.Random, language: str) -> Sentence:
    """A short sentence (subject, verb, object, maybe place and time) in another language."""
    lang = W.FOREIGN[language]
    verbs = cast(dict[Any, Sequence[Any]], lang["verbs"])
    verb = rng.choice(sorted(verbs))
    parts: list[Any] = [rng.choice(lang["subjects"]), verb, rng.choice(verbs[verb])]
    extra: list[Any] = []
    if rng.random() < 0.5:
        extra.append(rng.choice(lang["places"]))
    if rng.random() < 0.5:
        extra.append(rng.choice(lang["times"]))
    if language == "zh":  # subject, time, place, verb, object
        order = [parts[0], *extra[::-1], parts[1], parts[2]]
        text = "".join(p[0] for p in order) + "。"
        speak = " ".join(p[1] for p in order)
        return Sentence("zh", "foreign", [Tok(text)], {"text": text}, [], speak, "")
    words = " ".join([*parts, *extra])
    toks = [*_toks(words[:1].upper() + words[1:]), Tok(".")]
    return Sentence(language, "foreign", toks, {"text": words})


# ---------------------------------------------------------------------------------------------
# Audio


def _lowpass(x: np.ndarray, cutoff: float, taps: int = 63) -> np.ndarray:
    """Windowed-sinc low-pass filter; ``cutoff`` as a fraction of the sample rate."""
    n = np.arange(taps) - (taps - 1) / 2
    h = 2 * cutoff * np.sinc(2 * cutoff * n) * np.hamming(taps)
    return np.convolve(x, h / h.sum(), mode="same")


def resample(x: np.ndarray, rate: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """Resample by low-pass filtering (below the new Nyquist) and linear interpolation."""
    if rate == target or len(x) == 0:
        return x.astype(np.float32)
    if target < rate:
        x = _lowpass(x, 0.45 * target / rate)
    n = round(len(x) * target / rate)
    t = np.arange(n) * (rate / target)
    return np.interp(t, np.arange(len(x)), x).astype(np.float32)


def espeak(text: str, voice: str, speed: int, pitch: int) -> np.ndarray:
    """Speak ``text`` with espeak-ng; float32 mono at :data:`SAMPLE_RATE`."""
    proc = subprocess.run(
        [ESPEAK, "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", text],
        capture_output=True,
        check=True,
        timeout=60,
    )
    data = proc.stdout
    rate = int.from_bytes(data[24:28], "little")
    pos = data.find(b"data", 12) + 8
    pcm = np.frombuffer(data[pos : pos + (len(data) - pos) // 2 * 2], dtype="<i2")
    return resample(pcm.astype(np.float32) / 32768.0, rate)


def trim(x: np.ndarray, margin_s: float = 0.02) -> np.ndarray:
    """Cut the silence around a voiced stretch (10 ms frames under 2 % of the loudest)."""
    hop = SAMPLE_RATE // 100
    n = len(x) // hop
    if n == 0:
        return x
    rms = np.sqrt(np.mean(x[: n * hop].reshape(n, hop) ** 2, axis=1))
    loud = np.flatnonzero(rms > max(0.02 * rms.max(), 1e-4))
    if len(loud) == 0:
        return x
    m = int(margin_s * SAMPLE_RATE)
    return x[max(0, loud[0] * hop - m) : min(len(x), (loud[-1] + 1) * hop + m)]


def _fade(x: np.ndarray, seconds: float = 0.02) -> np.ndarray:
    k = min(len(x) // 2, int(seconds * SAMPLE_RATE))
    if k > 0:
        ramp = np.linspace(0.0, 1.0, k, dtype=np.float32)
        x[:k] *= ramp
        x[-k:] *= ramp[::-1]
    return x


def _to_rms(x: np.ndarray, level: float) -> np.ndarray:
    rms = float(np.sqrt(np.mean(x**2))) if len(x) else 0.0
    return (x * (level / rms)).astype(np.float32) if rms > 0 else x.astype(np.float32)


def music(n: int, rng: np.random.Generator, level: float) -> np.ndarray:
    """Music-like tones: a melody on a pentatonic scale (harmonics, decaying notes of 0.2-0.6 s)
    over an optional sustained chord pad; RMS ``level``."""
    out = np.zeros(n, dtype=np.float64)
    base = float(rng.uniform(196.0, 392.0))
    scale = (0, 2, 4, 7, 9, 12, 14, 16) if rng.random() < 0.6 else (0, 3, 5, 7, 10, 12, 15)
    harmonics = [(h, float(rng.uniform(0.2, 0.7)) ** (h - 1)) for h in range(1, 5)]
    decay = float(rng.uniform(2.0, 6.0))
    pos = 0
    while pos < n:
        k = min(n - pos, int(rng.uniform(0.2, 0.6) * SAMPLE_RATE))
        f = base * 2 ** (int(rng.choice(scale)) / 12)
        t = np.arange(k) / SAMPLE_RATE
        note = sum(a * np.sin(2 * np.pi * f * h * t) for h, a in harmonics)
        env = np.minimum(1.0, t / 0.01) * np.exp(-decay * t)
        out[pos : pos + k] += _fade(np.asarray(note * env, dtype=np.float32), 0.01)
        pos += k
    if rng.random() < 0.5:  # chord pad: a triad changing every 2 s
        t = np.arange(n) / SAMPLE_RATE
        pad = np.zeros(n)
        for start in range(0, n, 2 * SAMPLE_RATE):
            seg = slice(start, min(n, start + 2 * SAMPLE_RATE))
            root = base / 2 * 2 ** (int(rng.choice((0, 5, 7, 9))) / 12)
            third = 4 if rng.random() < 0.6 else 3
            for semis in (0, third, 7):
                pad[seg] += np.sin(2 * np.pi * root * 2 ** (semis / 12) * t[seg])
        out += 0.3 * pad / 3
    return _fade(_to_rms(out.astype(np.float32), level))


def noise(n: int, rng: np.random.Generator, level: float, colour: str) -> np.ndarray:
    """White, pink (1/f power) or brown (1/f^2 power) noise at RMS ``level``."""
    x = rng.standard_normal(n)
    if colour != "white" and n > 1:
        spec = np.fft.rfft(x)
        f = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
        f[0] = f[1]
        spec /= f ** (0.5 if colour == "pink" else 1.0)
        spec[0] = 0
        x = np.fft.irfft(spec, n)
    return _fade(_to_rms(x.astype(np.float32), level))


# ---------------------------------------------------------------------------------------------
# Clip


def _seed(*parts: object) -> int:
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def clip_id(split: str, index: int) -> str:
    """The id of clip ``index`` of ``split``."""
    return f"{split}-{index:06d}"


def _r(x: float) -> float:
    return round(float(x), 3)


def _span(start: float, end: float, duration: float) -> tuple[float, float]:
    s = min(max(0.0, start), duration)
    return _r(s), _r(min(max(s, end), duration))


def _ev(kind: str, start: float, end: float, snippet: str, duration: float) -> dict[str, Any]:
    s, e = _span(start, end, duration)
    return {"kind": kind, "start": s, "end": e, "snippet": snippet}


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


@dataclass
class Seen:
    """A common name the tagger supports over a span (summed score >= CONFIDENT on most
    frames)."""

    name: str
    cls: ImageClass
    score: float
    times: list[float]

    @property
    def phrase(self) -> str:
        """The name with its article ("a dog")."""
        return _with_article(self.name)


def _with_article(name: str) -> str:
    return f"some {name}" if name.lower() in MASS_LABELS else f"{_a(name)} {name}"


def _list(items: Sequence[str]) -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def confident(frames: Sequence[dict[str, Any]], start: float, end: float) -> list[Seen]:
    """Names the tagger supports over the frames with ``start <= time < end``, strongest first."""
    cat = catalogue()
    sel = [f for f in frames if start <= f["time"] < end]
    if not sel:
        return []
    hits: dict[str, list[float]] = {}
    total: dict[str, float] = {}
    by_class: dict[str, dict[int, float]] = {}
    for frame in sel:
        per_name: dict[str, float] = {}
        for tag in frame["tags"]:
            cls = cat.classes[tag["index"]]
            per_name[cls.name] = per_name.get(cls.name, 0.0) + tag["score"]
            mass = by_class.setdefault(cls.name, {})
            mass[cls.index] = mass.get(cls.index, 0.0) + tag["score"]
        for name, score in per_name.items():
            total[name] = total.get(name, 0.0) + score
            if score >= CONFIDENT:
                hits.setdefault(name, []).append(frame["time"])
    seen = [
        Seen(name, cat.classes[max(by_class[name], key=by_class[name].__getitem__)],
             total[name] / len(sel), times)
        for name, times in hits.items()
        if 2 * len(times) > len(sel)
    ]  # fmt: skip
    return sorted(seen, key=lambda s: (-s.score, s.name))


def _simulate_frame(
    objects: Sequence[ImageClass], bases: Sequence[float], rng: random.Random
) -> list[dict[str, Any]]:
    """Top-5 tags of one frame (see the module docstring for the distributions)."""
    cat = catalogue()
    cand: dict[int, float] = {}
    if not objects:
        for cls in rng.sample(cat.classes, TOP_K):
            cand[cls.index] = rng.uniform(0.01, 0.09)
    else:
        for cls, base in zip(objects, bases, strict=True):
            if rng.random() < 0.15:
                cand[cls.index] = rng.uniform(0.005, 0.04)
            else:
                cand[cls.index] = min(0.95, max(0.1, base + rng.gauss(0.0, 0.07)))
        total = sum(cand.values())
        if total > 0.92:
            cand = {k: v * 0.92 / total for k, v in cand.items()}
        visible = {c.index for c in objects}
        for cls in objects:
            similar = [c for c in cat.similar(cls) if c.index not in visible]
            for _ in range(rng.randint(0, 2) if similar else 0):
                room = 1.0 - sum(cand.values())
                conf = rng.choice(similar)
                score = min(cand[cls.index] * rng.uniform(0.1, 0.6), 0.5 * room)
                cand[conf.index] = max(cand.get(conf.index, 0.0), score)
        if rng.random() < 0.05:
            names = {n for c in objects for n in (*c.names, c.name)}
            wrong = rng.choice(cat.classes)
            if wrong.index not in cand and not names.intersection((*wrong.names, wrong.name)):
                s = rng.uniform(0.3, 0.6)
                total = sum(cand.values())
                if total + s > 0.99:
                    cand = {k: v * (0.99 - s) / total for k, v in cand.items()}
                cand[wrong.index] = s
        while len(cand) < TOP_K + 3:
            cls = rng.choice(cat.classes)
            if cls.index not in cand and cls.index not in visible:
                cand[cls.index] = rng.uniform(0.01, 0.08)
    top = sorted(cand.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_K]
    total = sum(v for _, v in top)
    scale = 0.99 / total if total > 0.99 else 1.0
    return [cat.classes[i].tag(v * scale) for i, v in top]


KIND_ASKS = ("What kind of {} is named?", "What kind of {} is named on the screen?",
             "What kind of {} is shown on the sign?", "What kind of {} is written on the screen?",
             "What kind of {} does the sign name?")  # fmt: skip
SIGN_TAILS = ("", "", "", "EXIT", "TODAY", "FOR SALE", "AHEAD", "OPEN", "CLOSED", "ENTRANCE",
              "SHOP", "CENTER", "TOURS", "NEXT LEFT")  # fmt: skip


def _sign(rng: random.Random) -> tuple[str, dict[str, str]]:
    """A sign as drawn, with the parts a question can ask about."""
    kinds = ("warning", "place", "food", "ranch", "price", "date", "street", "city", "open")
    kind = rng.choices(kinds, (1, 1, 1, 1, 1, 1, 1, 1, 3))[0]
    f: dict[str, str] = {}
    if kind == "open":  # open words: "SAFARI PARK EXIT", "WELCOME TO THE SILVER HARBOR"
        words = open_words()
        head = rng.choice(words["nouns"])[0].upper()
        if rng.random() < 0.5:
            mod = rng.choice(words["adjectives"]).upper()
        else:
            mod = rng.choice(words["nouns"])[0].upper()
        lead = rng.choice(("", "", "", "WELCOME TO THE", "VISIT THE", "THE", "NEW"))
        tail = rng.choice(SIGN_TAILS)
        text = " ".join(x for x in (lead, mod, head, tail) if x)
        f["kind"] = f"{mod} {head}"  # "What kind of park ...?": the head is its last word
        if tail == "FOR SALE":
            f["sale"] = f"{mod} {head}"
    elif kind == "warning":
        text = rng.choice(W.WARNINGS)
        if "24" in text:
            f["number"] = "24"
    elif kind == "place":
        text = f"{rng.choice(W.SIGN_ADJS)} {rng.choice(W.SIGN_PLACES)}"
    elif kind == "food":
        day = rng.choice(W.WEEKDAYS).upper()
        text, f["weekday"] = f"{rng.choice(W.SIGN_FOODS)} {day}", day
    elif kind == "ranch":
        text = f"{rng.choice(W.SIGN_NAMES)} {rng.choice(('RANCH', 'FARM', 'GARAGE', 'BAKERY'))}"
    elif kind == "price":
        price = f"${rng.randint(1, 19)}.{rng.choice(('99', '50', '25', '00'))}"
        text, f["price"] = f"{rng.choice(W.SIGN_ITEMS)} {price}", price
    elif kind == "date":
        day = str(rng.randint(1, 28))
        text, f["number"] = f"{rng.choice(W.MONTHS)} {day}", day
        if rng.random() < 0.5:
            wd = rng.choice(W.WEEKDAYS).upper()
            text, f["weekday"] = f"{wd} {text}", wd
    elif kind == "street":
        street = f"{rng.choice(W.STREETS)} {rng.choice(('STREET', 'ROAD', 'AVENUE'))}"
        text, f["street"] = street, street
        if rng.random() < 0.4:
            num = str(rng.randint(2, 240))
            text, f["number"] = f"{num} {street}", num
    else:
        city = rng.choice(W.CITIES).upper()
        if rng.random() < 0.5:
            text = f"WELCOME TO {city}"
        else:
            km = str(rng.randint(2, 300))
            text, f["number"] = f"{city} {km} KM", km
        f["city"] = city
    if rng.random() < 0.35:  # mixed case as drawn

        def title(w: str) -> str:
            return w if w in {"KM"} or not w[:1].isalpha() else w[:1] + w[1:].lower()

        text = " ".join(title(w) for w in text.split())
        f = {k: " ".join(title(w) for w in v.split()) for k, v in f.items()}
    return text, f


def _read(text: str, rng: random.Random) -> tuple[str, bool]:
    """What the OCR reads of a sign: a dropped space now and then, a look-alike character."""
    error = False
    words = text.split(" ")
    if len(words) > 1 and rng.random() < 0.2:
        i = rng.randrange(len(words) - 1)
        words[i : i + 2] = [words[i] + words[i + 1]]
    out = " ".join(words)
    if rng.random() < 0.08:
        spots = [i for i, ch in enumerate(out) if ch in W.LOOKALIKES]
        if spots:
            i = rng.choice(spots)
            out = out[:i] + W.LOOKALIKES[out[i]] + out[i + 1 :]
            error = True
    return out, error


def _whisper(
    sentence: Sentence, rng: random.Random
) -> tuple[str, dict[str, tuple[int, int]], set[str]]:
    """The sentence as Whisper writes it: text, role spans in it, and roles it got wrong."""
    if sentence.language != "en":
        text, spans = render(sentence.tokens, sentence.joiner)
        return text, spans, set()
    small_digits = rng.random() < 0.35
    out: list[Tok] = []
    damaged: set[str] = set()
    for tok in sentence.tokens:
        t = tok
        if tok.digits is not None:
            big = int(tok.digits) >= 10
            if (big and rng.random() < 0.8) or (not big and small_digits):
                t = Tok(tok.digits, tok.roles)
        if t.text not in PUNCT and rng.random() < 0.03:
            damaged |= set(tok.roles) | {"_any"}
            sub = W.CONFUSIONS.get(t.text)
            if sub is not None and rng.random() < 0.7:
                t = Tok(sub, tok.roles)
            elif len(t.text) > 3 and t.text.endswith("s") and rng.random() < 0.5:
                t = Tok(t.text[:-1], tok.roles)
            else:
                continue
        out.append(t)
    if not any(t.text not in PUNCT for t in out):
        out, damaged = list(sentence.tokens), set()
    while out and out[0].text in PUNCT:
        out.pop(0)
    text, spans = render(out, sentence.joiner)
    return text, spans, damaged


@dataclass
class Spoken:
    """A sentence placed on the clip's timeline, with what the simulated Whisper made of it."""

    sentence: Sentence
    start: float
    end: float
    voice: str
    text: str = ""
    spans: dict[str, tuple[int, int]] = field(default_factory=dict)
    damaged: set[str] = field(default_factory=set)
    segment: dict[str, Any] = field(default_factory=dict)

    def answer(self, roles: tuple[str, ...]) -> str | None:
        """The words of the transcript that fill ``roles`` (``*``: all of it)."""
        if roles == ("*",):
            return self.text
        spans = [self.spans[r] for r in roles if r in self.spans]
        if len(spans) != len(roles):
            return None
        return self.text[min(s for s, _ in spans) : max(e for _, e in spans)]


@dataclass
class Clip:
    """Everything known about a clip while its record is written."""

    duration: float
    has_audio: bool
    spoken: list[Spoken]
    language: str | None
    sounds: list[dict[str, Any]]
    scenes: list[tuple[float, float, list[ImageClass]]]
    frames: list[dict[str, Any]]
    ocr: list[tuple[dict[str, Any], dict[str, str]]]

    @property
    def segments(self) -> list[dict[str, Any]]:
        """The simulated transcript's segments."""
        return [s.segment for s in self.spoken]

    def pieces(self, start: float, end: float) -> list[tuple[float, float]]:
        """The span cut at scene and stretch boundaries: stretches of one unchanging scene."""
        cuts = {b for s, e, _ in self.scenes for b in (s, e)}
        cuts |= {b for s, e in _stretches(self.duration) for b in (s, e)}
        bounds = sorted({start, end} | {c for c in cuts if start < c < end})
        return list(itertools.pairwise(bounds))

    def sequence(self, start: float, end: float) -> list[list[Seen]]:
        """What the tags show piece by piece over a span (empty pieces left out, repeats
        merged)."""
        seq: list[list[Seen]] = []
        for a, b in self.pieces(start, end):
            seen = confident(self.frames, a, b)
            if seen and (not seq or [s.name for s in seq[-1]] != [s.name for s in seen]):
                seq.append(seen)
        return seq

    def seen(self, start: float = 0.0, end: float | None = None) -> list[Seen]:
        """Names the tags show in any piece of the span (best score kept), strongest first."""
        best: dict[str, Seen] = {}
        for seen in self.sequence(start, self.duration if end is None else end):
            for s in seen:
                if s.name not in best or s.score > best[s.name].score:
                    best[s.name] = s
        return sorted(best.values(), key=lambda s: (-s.score, s.name))

    def tag_words(self) -> set[str]:
        """Every label and common name any frame's tags show (lower case)."""
        cat = catalogue()
        return {w for f in self.frames for t in f["tags"] for w in cat.classes[t["index"]].words}

    def visual_ev(self, seen: Iterable[Seen]) -> list[dict[str, Any]]:
        """Visual evidence: the frames' span of each name."""
        return [
            _ev("visual", min(s.times) - 0.5, max(s.times) + 0.5, s.name, self.duration)
            for s in seen
        ]

    def sound_kinds(self) -> list[str]:
        """Kinds of background sound, in order of appearance (no repeats)."""
        out: list[str] = []
        for s in self.sounds:
            if s["kind"] not in out:
                out.append(s["kind"])
        return out


def _layout(rng: random.Random, lengths: list[float], long: bool) -> tuple[float, list[float]]:
    """Duration and start times of utterances of these lengths (seconds); a long clip has
    longer pauses and lasts 20-40 s."""
    lead = rng.uniform(0.3, 1.5)
    gaps = [rng.uniform(0.5, 3.0) if long else rng.uniform(0.4, 1.5) for _ in lengths]
    tail = rng.uniform(0.4, 2.0)
    need = lead + sum(lengths) + sum(gaps[:-1]) + tail
    if need > 40.0:  # no room for long pauses
        gaps = [0.5 for _ in gaps]
        lead = tail = 0.5
        need = lead + sum(lengths) + sum(gaps[:-1]) + tail
    target = rng.uniform(20.0, 40.0) if long else rng.uniform(4.0, 16.0)
    duration = math.ceil(max(need, target) * 10) / 10
    lead += rng.uniform(0.0, duration - need)
    starts, t = [], lead
    for length, gap in zip(lengths, gaps, strict=True):
        starts.append(t)
        t += length + gap
    return duration, starts


def _scenes(rng: random.Random, duration: float) -> list[tuple[float, float, list[ImageClass]]]:
    cat = catalogue()
    most = min(3, int(duration // 3))
    n = 1 if most <= 1 else rng.choices(range(1, most + 1), (0.35, 0.4, 0.25)[:most])[0]
    cuts: list[int] = []
    slots = list(range(2, int(duration) - 1))  # every scene lasts 2 s or more
    for _ in range(20 if n > 1 and len(slots) >= n - 1 else 0):
        cuts = sorted(rng.sample(slots, n - 1))
        if all(b - a >= 2 for a, b in itertools.pairwise(cuts)):
            break
        cuts = []
    bounds = [0.0, *map(float, cuts), duration]
    scenes = []
    for start, end in itertools.pairwise(bounds):
        objects: list[ImageClass] = []
        if rng.random() >= 0.1:
            want = rng.choices((1, 2, 3), (0.55, 0.3, 0.15))[0]
            for _ in range(want * 5):
                c = cat.sample(rng)
                if len(objects) < want and c.name not in {o.name for o in objects}:
                    objects.append(c)
        scenes.append((start, end, objects))
    return scenes


def make_clip(split: str, index: int, seed: int) -> tuple[dict[str, Any], np.ndarray | None]:
    """The record and audio (None without a track) of clip ``index`` of ``split``."""
    rng = random.Random(_seed(WORLD, split, seed, index))
    nrng = np.random.default_rng(_seed(WORLD, split, seed, index, "audio"))
    r = rng.random()
    has_audio = r >= 0.1
    silent = has_audio and r < 0.2
    has_speech = has_audio and not silent and rng.random() < 0.81

    # Speech: sentences, voice, synthesis, placement.
    spoken: list[Spoken] = []
    waves: list[np.ndarray] = []
    language: str | None = None
    voice = ""
    if has_speech:
        language = rng.choice(sorted(FOREIGN_VOICES)) if rng.random() < 0.15 else "en"
        voices = ENGLISH_VOICES if language == "en" else FOREIGN_VOICES[language]
        voice = rng.choice(voices)
        speed, pitch = rng.randint(130, 190), rng.randint(30, 70)
        m = rng.random()
        n_utt = 1 if m < 0.6 else 2 if m < 0.88 else rng.randint(3, 4) if m < 0.96 else 0
        long = n_utt == 0
        n_utt = n_utt or rng.randint(5, 9)
        sentences = [
            english_sentence(rng) if language == "en" else foreign_sentence(rng, language)
            for _ in range(n_utt)
        ]
        for sentence in sentences:
            wave = trim(espeak(sentence.speak or sentence.text, voice, speed, pitch))
            waves.append(_to_rms(wave, rng.uniform(0.07, 0.15)).clip(-0.98, 0.98))
        while len(waves) > 1 and sum(len(w) for w in waves) / SAMPLE_RATE + 0.5 * len(waves) > 38:
            waves.pop()
            sentences.pop()
        duration, starts = _layout(rng, [len(w) / SAMPLE_RATE for w in waves], long)
        for sentence, w, t in zip(sentences, waves, starts, strict=True):
            spoken.append(Spoken(sentence, t, t + len(w) / SAMPLE_RATE, voice))
    else:
        duration = round(rng.uniform(4.0, 16.0), 1)
    n = round(duration * SAMPLE_RATE)

    # Background sound.
    sounds: list[dict[str, Any]] = []
    audio: np.ndarray | None = None
    if has_audio:
        audio = np.zeros(n, dtype=np.float32)
        if silent:
            plan = [(0.0, duration, "silence")]
        else:
            kinds = ("silence", "music", "noise")
            if duration >= 6 and rng.random() < 0.25:
                a, b = rng.sample(kinds, 2)
                cut = round(rng.uniform(0.3, 0.7) * duration, 1)
                plan = [(0.0, cut, a), (cut, duration, b)]
            else:
                weights = (0.4, 0.3, 0.3) if has_speech else (0.0, 0.55, 0.45)
                plan = [(0.0, duration, rng.choices(kinds, weights)[0])]
        for start, end, kind in plan:
            i0, i1 = round(start * SAMPLE_RATE), round(end * SAMPLE_RATE)
            if kind == "music":
                level = rng.uniform(0.008, 0.025) if has_speech else rng.uniform(0.05, 0.15)
                audio[i0:i1] = music(i1 - i0, nrng, level)
            elif kind == "noise":
                level = rng.uniform(0.003, 0.012) if has_speech else rng.uniform(0.005, 0.03)
                audio[i0:i1] = noise(i1 - i0, nrng, level, rng.choice(("white", "pink", "brown")))
            elif not silent and rng.random() < 0.4:  # a very low noise floor
                audio[i0:i1] = noise(i1 - i0, nrng, rng.uniform(5e-5, 2e-4), "white")
            sounds.append({"start": _r(start), "end": _r(end), "kind": kind})
        for sp, w in zip(spoken, waves, strict=True):
            i0 = round(sp.start * SAMPLE_RATE)
            audio[i0 : i0 + len(w)] += w[: n - i0]
        audio = np.clip(audio, -1.0, 1.0).astype(np.float32)

    # Simulated Whisper.
    for sp in spoken:
        sp.text, sp.spans, sp.damaged = _whisper(sp.sentence, rng)
        s, e = _span(sp.start + rng.uniform(-0.1, 0.1), sp.end + rng.uniform(-0.1, 0.1), duration)
        conf = rng.uniform(0.6, 0.8) if sp.damaged else rng.uniform(0.7, 0.95)
        sp.segment = {
            "start": s, "end": e, "text": sp.text, "language": sp.sentence.language,
            "confidence": round(conf, 3),
        }  # fmt: skip

    # Scenes and simulated tags.
    scenes = _scenes(rng, duration)
    frames: list[dict[str, Any]] = []
    for start, end, objects in scenes:
        bases = [0.1 + 0.85 * rng.betavariate(2, 3) for _ in objects]
        k = math.ceil(start - 0.5) if start > 0 else 0
        while k + 0.5 < end:
            frames.append({"time": k + 0.5, "tags": _simulate_frame(objects, bases, rng)})
            k += 1

    # On-screen text and simulated OCR.
    ocr: list[tuple[dict[str, Any], dict[str, str]]] = []
    if rng.random() < 0.35:
        if duration >= 6 and rng.random() < 0.3:
            half = duration / 2
            s1 = rng.uniform(0, half - 1.5)
            s2 = rng.uniform(half, duration - 1.5)
            spans = [(s1, rng.uniform(s1 + 1.5, half)), (s2, rng.uniform(s2 + 1.5, duration))]
        else:
            length = rng.uniform(1.5, min(duration, 8.0))
            s1 = rng.uniform(0, duration - length)
            spans = [(s1, s1 + length)]
        drawn: set[str] = set()
        for span_start, span_end in spans:
            text, parts = _sign(rng)
            while text in drawn:
                text, parts = _sign(rng)
            drawn.add(text)
            read, error = _read(text, rng)
            width = min(0.9, (0.04 * len(read) + 0.1) * rng.uniform(0.8, 1.2))
            h = rng.uniform(0.05, 0.12)
            left, top = rng.uniform(0.02, 0.98 - width), rng.uniform(0.02, 0.9 - h)
            t0 = max(0.0, span_start + rng.uniform(-0.2, 0.2))
            t1 = min(duration, max(t0 + 0.5, span_end + rng.uniform(-0.2, 0.2)))
            item = {
                "start": _r(t0), "end": _r(t1), "text": read,
                "confidence": round(rng.uniform(0.7, 0.85) if error else rng.uniform(0.7, 0.99), 3),
                "box": [_r(left), _r(top), _r(left + width), _r(top + h)],
            }  # fmt: skip
            ocr.append((item, parts))

    clip = Clip(duration, has_audio, spoken, language, sounds, scenes, frames, ocr)
    caption, segments = describe(clip, rng)
    record = {
        "id": clip_id(split, index),
        "split": split,
        "world": WORLD,
        "seed": seed,
        "duration_s": duration,
        "has_audio": has_audio,
        "speech": [
            {
                "start": _r(sp.start),
                "end": _r(sp.end),
                "text": sp.sentence.text,
                "language": sp.sentence.language,
                "voice": sp.voice,
            }
            for sp in spoken
        ],
        "sounds": sounds,
        "transcript": {"language": language, "segments": clip.segments},
        "text": [item for item, _ in ocr],
        "frame_tags": frames,
        "visible": [
            {
                "start": _r(s),
                "end": _r(e),
                "index": c.index,
                "label": c.label,
                "names": list(c.names),
            }
            for s, e, objects in scenes
            for c in objects
        ],
        "caption": caption,
        "segments": segments,
        "questions": questions(clip, rng),
    }
    return record, audio


# ---------------------------------------------------------------------------------------------
# Descriptions


def _gist(segment: dict[str, Any]) -> str:
    text = str(segment["text"]).strip()
    # The start of what is said, as said: a shortened quote is still a true one.
    if segment["language"] == "zh":
        return text.rstrip("\u3002")[:20]
    return " ".join(text.split()[:12]).rstrip(",.")


def _visual_phrase(seen: Sequence[Seen], rng: random.Random) -> str | None:
    if not seen:
        return None  # no confident tag: say nothing about the picture rather than guess
    items = _list([s.phrase for s in seen[:3]])
    be = "are" if len(seen) > 1 else "is"
    return rng.choice((f"the video shows {items}", f"{items} {be} visible", f"{items} can be seen"))


def _speech_phrase(segments: Sequence[dict[str, Any]], rng: random.Random) -> str | None:
    if not segments:
        return None
    first = segments[0]
    gist = _gist(first)
    if first["language"] != "en":
        name = LANGUAGE_NAMES[first["language"]]
        return rng.choice(
            (f'someone says in {name}: "{gist}"', f'a voice says in {name}: "{gist}"')
        )
    return rng.choice(
        (f'someone says "{gist}"', f'a voice says "{gist}"', f'a speaker says "{gist}"')
    )


def _text_phrase(texts: Sequence[str], rng: random.Random) -> str | None:
    if not texts:
        return None
    # OCR knows the words, not what carries them (a sign, a caption, a shirt): never "a sign".
    if len(texts) > 1:
        return f'the text "{texts[0]}" appears, later "{texts[1]}"'
    t = texts[0]
    return rng.choice((f'the text "{t}" is shown', f'the words "{t}" appear'))


def _sound_phrase(
    clip: Clip, start: float, end: float, speech: bool, rng: random.Random
) -> str | None:
    if not clip.has_audio:
        return rng.choice(("there is no sound track", "the video has no sound track"))
    kinds = [s for s in clip.sounds if _overlap(start, end, s["start"], s["end"]) >= 0.3]
    names = [s["kind"] for s in kinds]
    if not speech and set(names) <= {"silence"}:
        return rng.choice(("the soundtrack is silent", "there is no sound"))
    parts = []
    for s in kinds:
        whole = s["start"] <= start and s["end"] >= end
        when = "" if whole else (" at first" if s["start"] <= start else " later on")
        if s["kind"] == "music":
            parts.append(rng.choice(("music plays", "music-like tones play")) + when)
        elif s["kind"] == "noise":
            parts.append(
                rng.choice(("there is background noise", "background noise is heard")) + when
            )
    return ", ".join(parts) or None


def _join(parts: Iterable[str | None]) -> str:
    text = "; ".join(p for p in parts if p)
    return text[:1].upper() + text[1:] + "."


def _in_span(items: Iterable[dict[str, Any]], start: float, end: float) -> list[dict[str, Any]]:
    return [i for i in items if _overlap(start, end, i["start"], i["end"]) >= 0.3]


def _stretches(duration: float) -> list[tuple[float, float]]:
    bounds = [0.0]
    while duration - bounds[-1] > STRETCH_S + 2.5:
        bounds.append(bounds[-1] + STRETCH_S)
    bounds.append(duration)
    return list(itertools.pairwise(bounds))


def describe(clip: Clip, rng: random.Random) -> tuple[str, list[dict[str, Any]]]:
    """The whole-clip caption and one description per stretch of about 5 s."""
    # Whole clip: what is seen, in order.
    seq = [seen[:3] for seen in clip.sequence(0.0, clip.duration)]
    if len(seq) > 3:
        seq = [clip.seen()[:3]]
    if len(seq) <= 1:
        visual = _visual_phrase(seq[0] if seq else [], rng)
    else:
        lists = [_list([s.phrase for s in seen]) for seen in seq]
        rest = "".join(f", then {x}" for x in lists[1:-1])
        last = ", and finally " if len(lists) > 2 else ", then "
        visual = rng.choice(
            (f"at first the video shows {lists[0]}{rest}{last}{lists[-1]}",
             f"first {lists[0]} can be seen{rest}{last}{lists[-1]}")
        )  # fmt: skip
    texts = [item["text"] for item, _ in clip.ocr]
    segs = clip.segments
    caption = _join(
        (visual, _speech_phrase(segs, rng), _text_phrase(texts, rng),
         _sound_phrase(clip, 0.0, clip.duration, bool(segs), rng))
    )  # fmt: skip
    out = []
    ocr = [item for item, _ in clip.ocr]
    for start, end in _stretches(clip.duration):
        here = _in_span(segs, start, end)
        out.append({
            "start": _r(start),
            "end": _r(end),
            "caption": _join(
                (_visual_phrase(clip.seen(start, end)[:3], rng),
                 _speech_phrase(here, rng),
                 _text_phrase([i["text"] for i in _in_span(ocr, start, end)], rng),
                 _sound_phrase(clip, start, end, bool(here), rng))
            ),
        })  # fmt: skip
    return caption, out


# ---------------------------------------------------------------------------------------------
# Questions


def _quote(text: str) -> str:
    """An answer copied from a transcript segment or a text item is quoted: the decoder then
    keeps it verbatim (models/captioner/copying.py), and the reader sees it is a quote."""
    return f'"{text.strip()}"'


def _quoted(texts: Sequence[str]) -> str:
    """Several segments or items, each its own quote (a quote never spans two of them)."""
    return " and then ".join(_quote(t) for t in texts)


def _q(question: str, answer: str, kind: str, evidence: list[dict[str, Any]]) -> dict[str, Any]:
    return {"question": question, "answer": answer, "kind": kind, "evidence": evidence}


def _speech_questions(clip: Clip, rng: random.Random) -> list[dict[str, Any]]:
    d = clip.duration
    segs = clip.segments
    ev = [_ev("speech", s["start"], s["end"], s["text"], d) for s in segs]
    full = _quoted([s["text"] for s in segs])
    out = [
        _q(rng.choice(("What does the speaker say?", "What is said in the video?",
                       "What words are spoken?")), full, "speech", ev),
        _q(rng.choice(("What language is spoken?", "What language does the speaker use?",
                       "In what language does the person speak?")),
           LANGUAGE_NAMES[segs[0]["language"]], "speech", ev[:1]),
    ]  # fmt: skip
    if len(segs) > 1:
        out.append(_q("What is said first?", _quote(segs[0]["text"]), "speech", ev[:1]))
        out.append(_q(rng.choice(("What is said last?", "What is said at the end?")),
                      _quote(segs[-1]["text"]), "speech", ev[-1:]))  # fmt: skip
    answers: dict[str, set[str]] = {}
    structured = []
    for sp, e in zip(clip.spoken, ev, strict=True):
        for question, roles, needs in sp.sentence.qa:
            if sp.damaged.intersection((*roles, *needs)):
                continue
            answer = sp.answer(roles)
            if answer:
                answers.setdefault(question, set()).add(answer.lower())
                structured.append(_q(question, _quote(answer), "speech", [e]))
    # A question two sentences answer differently is ambiguous: drop it.
    out += [q for q in structured if len(answers[q["question"]]) == 1]
    return out


def _text_questions(clip: Clip, rng: random.Random) -> list[dict[str, Any]]:
    d = clip.duration
    items = sorted(clip.ocr, key=lambda x: x[0]["start"])
    if not items:
        return [_q(rng.choice(("What text appears on the screen?", "What is written on the sign?")),
                   "no text appears on screen", "text", [])]  # fmt: skip
    evs = [_ev("text", i["start"], i["end"], i["text"], d) for i, _ in items]
    texts = [i["text"] for i, _ in items]
    out = []
    if len(items) == 1:
        q = rng.choice(("What text appears on the screen?", "What is written on the sign?",
                        "What does the sign say?"))  # fmt: skip
        out.append(_q(q, _quote(texts[0]), "text", evs))
    else:
        out.append(_q("What text appears on the screen?", _quoted(texts), "text", evs))
        out.append(_q("What text appears first?", _quote(texts[0]), "text", evs[:1]))
        second = items[1][0]["start"] >= d / 2
        q = "What text appears in the second half?" if second else "What text appears last?"
        out.append(_q(q, _quote(texts[1]), "text", evs[1:]))
    asks = {
        "weekday": "Which weekday is named on the screen?",
        "city": "Which city is named on the screen?",
        "number": "What number is shown on the screen?",
        "price": "What price is shown?",
        "street": "Which street is named on the sign?",
        "sale": "What is for sale?",
        "kind": rng.choice(KIND_ASKS),  # "What kind of park is named?" -> "safari park"
    }
    found: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for (item, parts), e in zip(items, evs, strict=True):
        for key, value in parts.items():
            at = item["text"].lower().find(value.lower())
            if at >= 0:
                question = asks[key].format(value.split()[-1].lower())
                found.setdefault(question, []).append((item["text"][at : at + len(value)], e))
    for question, hits in found.items():
        if len(hits) == 1:
            out.append(_q(question, _quote(hits[0][0]), "text", [hits[0][1]]))
    return out


def _visual_questions(clip: Clip, rng: random.Random) -> list[dict[str, Any]]:
    d = clip.duration
    cat = catalogue()
    seen = clip.seen()
    out = []
    if seen:
        q = rng.choice(
            ("What is in the video?", "What can be seen in the video?", "What is shown?")
        )
        out.append(_q(q, _list([s.phrase for s in seen[:4]]), "visual", clip.visual_ev(seen[:4])))
        animals = [s for s in seen if "animal" in s.cls.names]
        if animals:
            q = rng.choice(("What animal is shown?", "Which animal appears in the video?"))
            out.append(_q(q, _list([s.phrase for s in animals]), "visual", clip.visual_ev(animals)))
        cats = [c for c in CATEGORIES if any(c in s.cls.names for s in seen)]
        for c in rng.sample(cats, min(2, len(cats))):
            members = [s for s in seen if c in s.cls.names]
            names = [_with_article(s.cls.label if s.name == c else s.name) for s in members]
            out.append(_q(f"What {c} is shown?", _list(names), "visual", clip.visual_ev(members)))
        for s in rng.sample(seen, min(2, len(seen))):
            q = rng.choice(("Is there {} in the video?", "Does {} appear in the video?",
                            "Can you see {}?")).format(s.phrase)  # fmt: skip
            out.append(_q(q, "yes", "visual", clip.visual_ev([s])))
    absent = clip.tag_words() | {w for _, _, objs in clip.scenes for o in objs for w in o.words}
    snippet = ", ".join(s.name for s in seen) or "nothing recognisable"
    whole = [_ev("visual", 0.0, d, snippet, d)] if clip.frames else []
    for _ in range(2):
        name = rng.choice(cat.display_names)
        if name.lower() not in absent:
            q = rng.choice(("Is there {} in the video?", "Does {} appear in the video?",
                            "Can you see {}?")).format(_with_article(name))  # fmt: skip
            out.append(_q(q, "no", "visual", whole))
    seq = clip.sequence(0.0, d)
    first, last = (seq[0][:3], seq[-1][:3]) if len(seq) > 1 else ([], [])
    if first and last and min(first[0].times) < d / 3 and max(last[0].times) > 2 * d / 3:
        out.append(_q("What is shown at the beginning?", _list([s.phrase for s in first]),
                      "visual", clip.visual_ev(first)))  # fmt: skip
        out.append(_q("What is shown at the end?", _list([s.phrase for s in last]),
                      "visual", clip.visual_ev(last)))  # fmt: skip
    return out


def _sound_summary(clip: Clip) -> str:
    kinds = set(clip.sound_kinds()) - {"silence"}
    speech = bool(clip.spoken)
    if speech:
        if kinds == {"music"}:
            return "speech over music"
        if kinds == {"noise"}:
            return "speech over background noise"
        if kinds:
            return "speech, music-like tones and noise"
        return "speech"
    if kinds == {"music"}:
        return "music-like tones, no speech"
    if kinds == {"noise"}:
        return "noise"
    if kinds:
        return "music-like tones and noise, no speech"
    return "silence"


def _audio_questions(clip: Clip, rng: random.Random) -> list[dict[str, Any]]:
    d = clip.duration
    if not clip.has_audio:
        ev = [_ev("audio", 0.0, d, "no audio track", d)]
        none = "there is no sound track"
        return [
            _q("Does the video have an audio track?", "no", "audio", ev),
            _q("Is anyone speaking?", f"no, {none}", "audio", ev),
            _q("Is there any sound?", f"no, {none}", "audio", ev),
            _q("What kind of sound is heard?", f"none, {none}", "audio", ev),
            _q("What does the speaker say?", none, "audio", ev),
            _q("Is there music?", f"no, {none}", "audio", ev),
        ]
    summary = _sound_summary(clip)
    whole = [_ev("audio", 0.0, d, summary, d)]
    speech_ev = [_ev("audio", s["start"], s["end"], "speech", d) for s in clip.segments]
    music = [s for s in clip.sounds if s["kind"] == "music"]
    noises = [s for s in clip.sounds if s["kind"] == "noise"]
    silent = summary == "silence"
    out = [
        _q("Does the video have an audio track?", "yes", "audio", whole),
        _q(rng.choice(("Is anyone speaking?", "Does anyone speak?")),
           "yes" if clip.spoken else "no", "audio", speech_ev or whole),
        _q("Is there any sound?", "no, the soundtrack is silent" if silent else "yes", "audio",
           whole),
        _q(rng.choice(("What kind of sound is heard?", "What can be heard?")), summary, "audio",
           whole),
        _q("Is there music?", "yes" if music else "no", "audio",
           [_ev("audio", s["start"], s["end"], "music", d) for s in music] or whole),
    ]  # fmt: skip
    if clip.spoken:
        behind = [
            s for s in noises
            if any(_overlap(s["start"], s["end"], sp.start, sp.end) > 0.2 for sp in clip.spoken)
        ]  # fmt: skip
        ev = [_ev("audio", s["start"], s["end"], "noise", d) for s in behind] or speech_ev
        out.append(_q("Is there background noise behind the speech?", "yes" if behind else "no",
                      "audio", ev))  # fmt: skip
    else:
        out.append(_q("What does the speaker say?", "no one speaks", "audio", whole))
    return out


def _cross_questions(clip: Clip, rng: random.Random) -> list[dict[str, Any]]:
    d = clip.duration
    out = []
    ocr = [item for item, _ in clip.ocr]
    for seg in clip.segments[:2]:
        if seg["language"] == "zh":
            few = seg["text"][:4]
        else:
            few = " ".join(seg["text"].rstrip(".?!").split()[: rng.randint(3, 5)]).rstrip(",")
        seen = confident(clip.frames, seg["start"], seg["end"])[:3]
        shown = _in_span(ocr, seg["start"], seg["end"])
        parts = [s.phrase for s in seen] + [f'the text "{t["text"]}"' for t in shown]
        if not parts:
            continue
        q = rng.choice(('What is on screen when the speaker says "{}"?',
                        'What can be seen while the speaker says "{}"?')).format(few)  # fmt: skip
        ev = [_ev("speech", seg["start"], seg["end"], seg["text"], d), *clip.visual_ev(seen)]
        ev += [_ev("text", t["start"], t["end"], t["text"], d) for t in shown]
        out.append(_q(q, _list(parts), "cross", ev))
    for item in ocr:
        said = _in_span(clip.segments, item["start"], item["end"])
        if said:
            ev = [_ev("text", item["start"], item["end"], item["text"], d)]
            ev += [_ev("speech", s["start"], s["end"], s["text"], d) for s in said]
            q = f'What does the speaker say while "{item["text"]}" is shown?'
            out.append(_q(q, _quoted([s["text"] for s in said]), "cross", ev))
    for item in ocr:
        seen = confident(clip.frames, item["start"], item["end"])[:3]
        ev = [_ev("text", item["start"], item["end"], item["text"], d)]
        if seen:
            q = f'What is visible while "{item["text"]}" is shown?'
            out.append(_q(q, _list([x.phrase for x in seen]), "cross", ev + clip.visual_ev(seen)))
        heard = _heard(clip, item["start"], item["end"])
        q = f'What sound is heard while "{item["text"]}" is shown?'
        out.append(_q(q, heard, "cross", [*ev, _ev("audio", item["start"], item["end"], heard, d)]))
    for s in clip.sounds:
        if s["kind"] in ("music", "noise") and s["end"] - s["start"] >= 1.0:
            seen = confident(clip.frames, s["start"], s["end"])[:3]
            if seen:
                ev = [_ev("audio", s["start"], s["end"], s["kind"], d), *clip.visual_ev(seen)]
                q = (
                    "What is visible while music plays?"
                    if s["kind"] == "music"
                    else "What is visible while there is background noise?"
                )
                out.append(_q(q, _list([x.phrase for x in seen]), "cross", ev))
    return out


def _heard(clip: Clip, start: float, end: float) -> str:
    """What the soundtrack holds over a span, in a few words."""
    if not clip.has_audio:
        return "nothing, there is no sound track"
    speech = bool(_in_span(clip.segments, start, end))
    kinds = {s["kind"] for s in _in_span(clip.sounds, start, end)} - {"silence"}
    background = " and ".join(k if k == "music" else "background noise" for k in sorted(kinds))
    if speech:
        return f"speech over {background}" if background else "speech"
    return background or "silence"


def _none_questions(clip: Clip, rng: random.Random) -> list[dict[str, Any]]:
    out = [
        "What is the weather like?", "Who filmed this video?", "What year was the video made?",
        "What is the speaker's name?", "How old is the speaker?", "What season is it?",
        "How many people are in the video?",
    ]  # fmt: skip
    for s in clip.seen()[:2]:
        if "animal" in s.cls.names:
            out.append(f"What is the {s.name} doing?")
        out.append(f"How big is the {s.name}?")
        if not COLOUR_WORDS.intersection(s.cls.label.lower().split()):
            out.append(f"What colour is the {s.name}?")
    tagged = {n for f in clip.frames for c in _classes(f) for n in c.names}
    if "animal" not in tagged:
        out.append("What animal is shown?")
    # A question that names a kind of thing no tag is of: the question's word is no answer.
    missing = [c for c in CATEGORIES if c not in tagged]
    for c in rng.sample(missing, min(2, len(missing))):
        out.append(rng.choice(("What {} is shown?", "Which {} can be seen?")).format(c))
    return [_q(q, NO_ANSWER, "none", []) for q in out]


def _classes(frame: dict[str, Any]) -> list[ImageClass]:
    cat = catalogue()
    return [cat.classes[t["index"]] for t in frame["tags"]]


def questions(clip: Clip, rng: random.Random) -> list[dict[str, Any]]:
    """8-14 questions, spread over the kinds the clip can answer; about 15 % have no answer."""
    pools = {
        "speech": _speech_questions(clip, rng) if clip.spoken else [],
        "text": _text_questions(clip, rng),
        "visual": _visual_questions(clip, rng),
        "audio": _audio_questions(clip, rng),
        "cross": _cross_questions(clip, rng),
        "none": _none_questions(clip, rng),
    }
    for pool in pools.values():
        rng.shuffle(pool)
    n = rng.randint(8, 14)
    chosen: list[dict[str, Any]] = []
    asked: set[str] = set()

    def take(kind: str) -> bool:
        while pools[kind]:
            q = pools[kind].pop()
            if q["question"] not in asked:
                asked.add(q["question"])
                chosen.append(q)
                return True
        return False

    for _ in range(max(1, round(0.15 * n))):
        take("none")
    order = ["speech", "text", "visual", "audio", "cross"]
    rng.shuffle(order)
    count = dict.fromkeys(order, 0)
    while len(chosen) < n and any(pools[k] and count[k] < QUOTA[k] for k in order):
        for kind in order:
            if len(chosen) < n and count[kind] < QUOTA[kind] and take(kind):
                count[kind] += 1
    for kind in ("speech", "cross", "text", "visual", "audio"):  # fill up beyond the quotas
        while len(chosen) < n and take(kind):
            pass
    while len(chosen) < 8 and take("none"):
        pass
    rng.shuffle(chosen)
    return chosen


# ---------------------------------------------------------------------------------------------
# Files


def _complete(record: dict[str, Any], split: str, seed: int) -> bool:
    return all(k in record for k in RECORD_KEYS) and (record["split"], record.get("seed")) == (
        split,
        seed,
    )


def _load(paths: Iterable[Path], split: str, seed: int) -> dict[str, dict[str, Any]]:
    known: dict[str, dict[str, Any]] = {}
    for path in paths:
        if not path.exists():
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by an interrupted run
                continue
            if isinstance(record, dict) and _complete(record, split, seed):
                known[record["id"]] = record
    return known


def generate(
    out_dir: str | os.PathLike[str], *, split: str, clips: int, seed: int, progress: bool = True
) -> Path:
    """Write ``out_dir/{split}.jsonl`` and the audio of each clip in ``out_dir/{split}/``.

    Clips whose record and audio already exist (from an earlier, maybe interrupted, run with the
    same split and seed) are kept as they are.

    Args:
        out_dir: Output folder (created).
        split: Split name; part of every clip's seed and id.
        clips: Number of clips.
        seed: Base seed.
        progress: Show a tqdm progress bar.

    Returns:
        The path of the JSONL file.
    """
    if shutil.which(ESPEAK) is None:
        raise RuntimeError(f"{ESPEAK} is not installed: the everyday world needs it for speech")
    out = Path(out_dir)
    audio_dir = out / split
    audio_dir.mkdir(parents=True, exist_ok=True)
    final = out / f"{split}.jsonl"
    parts = out / f"{split}.parts.jsonl"
    known = _load((final, parts), split, seed)
    records = []
    with (
        parts.open("a", encoding="utf-8") as fh,
        tqdm(total=clips, disable=not progress, desc=f"everyday {split}", unit="clip") as bar,
    ):
        for index in range(clips):
            cid = clip_id(split, index)
            npy = audio_dir / f"{cid}.npy"
            record = known.get(cid)
            if record is None or (record["has_audio"] and not npy.exists()):
                record, audio = make_clip(split, index, seed)
                if audio is not None:
                    tmp = audio_dir / f"{cid}.tmp.npy"
                    np.save(tmp, audio)
                    os.replace(tmp, npy)
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
                fh.flush()
            records.append(record)
            bar.update()
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    if not final.exists() or final.read_text(encoding="utf-8") != text:
        tmp_path = out / f"{split}.jsonl.tmp"
        tmp_path.write_text(text, encoding="utf-8")
        os.replace(tmp_path, final)
    parts.unlink(missing_ok=True)
    return final


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m models.training.data.everyday OUT --split S --clips N``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("out", help="output folder")
    parser.add_argument("--split", default="train")
    parser.add_argument("--clips", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    path = generate(
        args.out, split=args.split, clips=args.clips, seed=args.seed, progress=not args.no_progress
    )
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
