"""Score a captioner on real videos with known ground truth (a real-data manifest).

>>> predict = baseline_predictor("models/checkpoints/default")
>>> report = evaluate_manifest("../shared/data/real/manifest.jsonl", predict, limit=6)
>>> print(markdown_report(report))

The manifest is JSONL, one file per line (see ``shared/data/real/README.md``): ``file``
(relative to the manifest's folder), ``duration_s``, ``speech`` (``start``/``end``/``text``),
``visible``, ``action``, ``on_screen_text``, ``questions`` (``question``/``answer``/``kind``
with kind ``speech``, ``text``, ``visual`` or ``audio``) and optionally ``audio``,
``scenes``, ``on_screen_text_timed`` and ``captions``. Only videos (``.mp4``, ``.avi``,
``.mkv``, ``.mov``, ``.webm``) are evaluated; other entries (speech recordings, photos) are
counted as "not videos". The harness knows nothing about the model: a :data:`Predictor`
maps (video path, questions) to a :class:`VideoPrediction`; :func:`baseline_predictor` is
the one for today's captioner. A media error on a file is recorded (code and message), its
questions count as wrong, and the run goes on. The data is for evaluation only: nothing here
is tuned to it.

Metrics
-------

- **Normalisation** (:func:`normalise`): Unicode NFKC, lowercase; apostrophes dropped; every
  other character that is not a letter, digit or mark (of any script) becomes a space, so
  hyphens split words; the articles a/an/the are dropped; number words become digits
  ("forty two" -> "42", "ten" -> "10", "one hundred" -> "100"); spoken forms mr -> mister,
  mrs -> missus, dr -> doctor; British spellings of a few common words become American
  (grey -> gray, colour -> color, metres -> meters, ...); whitespace collapsed. Text in
  scripts written without spaces (Chinese, Japanese) is compared character by character.
- **Reference alternatives** (:func:`reference_alternatives`): the reference answer, its
  parts split at ", " (outside parentheses), and for each part its parenthesis variants: a
  trailing "X (Y)" gives X and Y; a parenthesis inside ("a (brown) bear") is optional, giving
  "a bear" and "a brown bear".
- **Normalised match** (:func:`answer_matches`, column "acc"): the normalised prediction
  equals an alternative, or an alternative occurs in it as a run of whole tokens and the
  prediction has at most max(4, 2 x the alternative's tokens) tokens (a short answer that says
  a little more counts, a long dump does not). Characters of space-less scripts are tokens of
  their own. An alternative "yes" or "no" matches only a prediction whose first token it is.
  "the video does not say" never matches.
- **Exact match** (column "exact"): the normalised prediction equals the normalised whole
  reference.
- **Answered / confident wrong**: answered = not "the video does not say" (and no media
  error); confident wrong = answered but not a normalised match (the honest "the video does
  not say" is counted apart, as "no answer"). Questions of a file that could not be read count
  as wrong and unanswered, and are listed.
- **Tag-nameable** (``tag_nameable``): a question whose reference answer (an alternative, or
  each part of "X and Y") is an ImageNet-1k label or common name of the tagger's table,
  singular/plural tolerant. Only these could be answered from the tags however well the
  tagger saw; for visual questions the count is the ceiling of what the tags can give.
- **In the experts' output** (``in_experts``): a question whose reference answer (an
  alternative) is a run of whole normalised words of a transcript segment, a translation or
  an on-screen text item, or the name of a language heard. For speech and text questions the
  count is the ceiling of what reading these findings can give; the rest need a word the
  experts got wrong or something they do not report (how many speakers).
- **Evidence precision**: among right answers, the share whose evidence has at least one
  item overlapping the reference moment (0.5 s tolerance each side). Reference moment by
  question kind: speech, the manifest's speech spans (with several spans, those whose text
  holds the most of the answer's words, for each reference alternative; none holding any:
  all spans); text, the ``on_screen_text_timed`` spans (chosen the same way) or else the
  whole clip; visual, the ``scenes`` whose ``visible`` names the answer (or the answer names
  one of them) or else the whole clip; audio, the whole clip (so any evidence inside the clip,
  including audio evidence for "no audio track"). Also reported: right answers without any
  evidence, and the precision among right answers that give evidence.
- **Description coverage**: a whole-video description covers its video when it names a
  listed visible object (whole words after normalisation, singular/plural tolerant: a trailing
  "s", "es" or "ies"/"y" may differ) or gives the gist of the speech (at least 3 distinct
  content words of the reference transcript, or a quote of at least 4 consecutive normalised
  words of it). Files with neither visible objects nor speech count "correct silence" instead:
  their description does not hallucinate.
- **Hallucination** (:func:`hallucination`): a description hallucinates when it has
  (a) a word of the synthetic shapes-and-tones world (its shapes, colours, motions, sounds and
  patterns, less function words such as up/down/once) that the clip's ground truth does not
  use; (b) a content word (not a stopword, not a number, not one of the description-frame words
  such as video/shows/says/screen/sound/first/then or a language name) supported neither by
  the ground truth (visible, action, motion, on-screen text, speech text, audio description,
  scene lists, reference answers) nor by the experts' output (transcript and translation,
  on-screen text read, tag labels and their common names), singular/plural tolerant; or (c) a
  sound claim the ground truth contradicts: music/melody/tones when the manifest's audio field
  mentions no tones, melody or music; silent/silence when the clip has speech or an audible
  soundtrack (music, tones, noise); speaks/says/voice when the clip has no speech. A word
  within three words after no/not/without/nobody is not a claim. The rate is over the
  descriptions of the files read; segment descriptions are checked the same way with their own
  rate, against the whole clip's support except for speech: a segment has speech only where a
  reference speech span overlaps it by more than 0.25 s (so "silent" after the last word of a
  speech-only soundtrack is true, and "a voice says" before the first word is not).
- **BLEU-4 / CIDEr-D**: pycocoevalcap's, through :func:`models.training.evaluate.caption_metrics`,
  over the files whose entry has reference ``captions``; "n/a" when none has.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from models.captioner.answers import NO_ANSWER, Answer, Evidence
from models.media.errors import MediaError
from models.perception.languages import spaceless  # compared character by character
from models.perception.result import Perception

if TYPE_CHECKING:
    from models.captioner.features import VideoFeatures
    from models.media import MediaLimits

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm")
QUESTION_KINDS = ("speech", "text", "visual", "audio")
TOLERANCE_S = 0.5  # evidence may miss the reference moment by this much either side
SEGMENT_SECONDS = 5.0  # the baseline's segment length
BASELINE_ABLATIONS = ("no_audio", "no_visual", "no_text")
REPORT_NAME = "eval-real"

# ---------------------------------------------------------------------- normalisation


def _word_list(text: str) -> frozenset[str]:
    """The whitespace-separated words of ``text`` (word lists are written as prose)."""
    return frozenset(text.split())


def _ordered(text: str) -> list[str]:
    """The whitespace-separated words of ``text``, in order."""
    return text.split()


_ARTICLES = frozenset({"a", "an", "the"})
_UNITS = {
    w: i
    for i, w in enumerate(
        _ordered(
            "zero one two three four five six seven eight nine ten eleven twelve thirteen"
            " fourteen fifteen sixteen seventeen eighteen nineteen"
        )
    )
}
_TENS = {
    w: 10 * i
    for i, w in enumerate(_ordered("twenty thirty forty fifty sixty seventy eighty ninety"), 2)
}
_SPOKEN = {"mr": "mister", "mrs": "missus", "dr": "doctor"}
_SPELLING = {
    "grey": "gray",
    "greys": "grays",
    "colour": "color",
    "colours": "colors",
    "coloured": "colored",
    "colourful": "colorful",
    "metre": "meter",
    "metres": "meters",
    "kilometre": "kilometer",
    "kilometres": "kilometers",
    "centimetre": "centimeter",
    "centimetres": "centimeters",
    "litre": "liter",
    "litres": "liters",
    "centre": "center",
    "centres": "centers",
    "theatre": "theater",
    "favourite": "favorite",
    "neighbour": "neighbor",
    "neighbours": "neighbors",
    "harbour": "harbor",
    "honour": "honor",
}
_APOSTROPHES = frozenset("'\u2019\u02bc")


def _clean(text: str) -> str:
    """NFKC, lowercase; apostrophes dropped; anything but letters, digits, marks -> space."""
    out: list[str] = []
    for char in unicodedata.normalize("NFKC", text).lower():
        if char in _APOSTROPHES:
            continue
        out.append(char if unicodedata.category(char)[0] in "LNM" else " ")
    return "".join(out)


def _numbers_to_digits(words: list[str]) -> list[str]:
    """Number words as digits: runs like "forty two" or "one hundred five" become one number."""
    out: list[str] = []
    value: int | None = None
    last = ""  # kind of the previous number word: unit, tens, hundred

    def flush() -> None:
        nonlocal value
        if value is not None:
            out.append(str(value))
            value = None

    for word in words:
        if word in _UNITS:
            if value is not None and ((last == "tens" and value % 10 == 0) or last == "hundred"):
                value += _UNITS[word]
            else:
                flush()
                value = _UNITS[word]
            last = "unit"
        elif word in _TENS:
            if value is not None and last == "hundred":
                value += _TENS[word]
            else:
                flush()
                value = _TENS[word]
            last = "tens"
        elif word == "hundred":
            if value is not None and last in ("unit", "tens") and 0 < value < 100:
                value *= 100
            else:
                flush()
                value = 100
            last = "hundred"
        else:
            flush()
            out.append(word)
            last = ""
    flush()
    return out


def normalise(text: str) -> str:
    """Text as every comparison here reads it (see the module docstring).

    ``"The Grey-Haired Mr. Smith, forty-two!"`` -> ``"gray haired mister smith 42"``.
    """
    words = [_SPELLING.get(w, _SPOKEN.get(w, w)) for w in _clean(text).split()]
    return " ".join(_numbers_to_digits([w for w in words if w not in _ARTICLES]))


def tokens(text: str) -> list[str]:
    """The words of :func:`normalise`'d text; characters of space-less scripts are tokens."""
    out: list[str] = []
    for word in normalise(text).split():
        run = ""
        for char in word:
            if spaceless(char):
                if run:
                    out.append(run)
                    run = ""
                out.append(char)
            else:
                run += char
        if run:
            out.append(run)
    return out


def _contains(haystack: Sequence[str], needle: Sequence[str]) -> bool:
    """Whether ``needle`` occurs in ``haystack`` as a run of whole tokens."""
    n = len(needle)
    return n > 0 and any(
        list(haystack[i : i + n]) == list(needle) for i in range(len(haystack) - n + 1)
    )


# ---------------------------------------------------------------------- answers


def _split_outside_parentheses(text: str, separator: str) -> list[str]:
    parts, depth, start, i = [], 0, 0, 0
    while i < len(text):
        if text[i] == "(":
            depth += 1
        elif text[i] == ")":
            depth = max(0, depth - 1)
        elif depth == 0 and text.startswith(separator, i):
            parts.append(text[start:i])
            start = i + len(separator)
            i = start
            continue
        i += 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def _parenthesis_variants(text: str) -> list[str]:
    """ "X (Y)" -> [X, Y]; "a (b) c" -> ["a c", "a b c"]; no parenthesis -> []."""
    trailing = re.fullmatch(r"(.*?)\s*\(([^()]*)\)\s*", text)
    if trailing and trailing.group(1).strip() and "(" not in trailing.group(1):
        return [trailing.group(1).strip(), trailing.group(2).strip()]
    if "(" not in text:
        return []
    without = re.sub(r"\s*\([^()]*\)\s*", " ", text)
    with_words = re.sub(r"[()]", " ", text)
    return [re.sub(r"\s+([,.;:])", r"\1", " ".join(t.split())) for t in (without, with_words)]


def reference_alternatives(answer: str) -> list[str]:
    """The reference answer and the parts that also count as right (see the module docstring).

    ``"a bird (an eagle)"`` -> ``["a bird (an eagle)", "a bird", "an eagle"]``; alternatives
    with the same normalised form appear once; empty ones are dropped.
    """
    found: list[str] = []
    seen: set[str] = set()

    def add(text: str) -> None:
        key = normalise(text)
        if key and key not in seen:
            seen.add(key)
            found.append(text.strip())

    add(answer)
    parts = _split_outside_parentheses(answer, ", ")
    for part in [answer, *parts] if len(parts) > 1 else [answer]:
        add(part)
        for variant in _parenthesis_variants(part):
            add(variant)
    return found


def is_answered(prediction: str) -> bool:
    """False for "the video does not say" (and for an empty prediction)."""
    return (
        bool(normalise(prediction))
        and Answer(prediction).answered
        and normalise(prediction) != normalise(NO_ANSWER)
    )


def answer_matches(prediction: str, reference: str) -> bool:
    """The normalised match of a predicted answer against a reference (module docstring)."""
    if not is_answered(prediction):
        return False
    predicted = tokens(prediction)
    for alternative in reference_alternatives(reference):
        wanted = tokens(alternative)
        if not wanted:
            continue
        if wanted in (["yes"], ["no"]):
            if predicted[0] == wanted[0]:
                return True
            continue
        if predicted == wanted:
            return True
        if len(predicted) <= max(4, 2 * len(wanted)) and _contains(predicted, wanted):
            return True
    return False


def exact_match(prediction: str, reference: str) -> bool:
    """Normalised equality with the whole reference ("the video does not say" never is)."""
    return is_answered(prediction) and tokens(prediction) == tokens(reference)


# ---------------------------------------------------------------------- word lists

STOPWORDS = _word_list("""
    i me my myself we our ours ourselves you your yours yourself yourselves he him his himself
    she her hers herself it its itself they them their theirs themselves what which who whom
    whose this that these those am is are was were be been being have has had having do does
    did doing done will would shall should can could may might must ought and but if or
    because as until while of at by for with about against between into through during before
    after above below to from up down in out on off over under again further then once here
    there when where why how all any both each few more most other some such no nor not only
    own same so than too very s t just now also still yet ever even much many lot lots
    something anything nothing everything someone anyone everyone nobody somebody anybody one
    ones thing things kind sort way its isnt arent wasnt werent dont doesnt didnt cant cannot
    wont wouldnt shouldnt couldnt hasnt havent hadnt theres thats whats lets get gets got
    getting go goes going went make makes made like around along across toward towards onto
    upon within without via per among amongst behind beside besides near next far away back
    front top bottom side inside outside together apart another either neither else well yes
    okay ok maybe perhaps probably possibly likely seems seem seemed appears appear appearing
    """)

# Words that frame a description rather than claim what is in the video.
FRAME_WORDS = _word_list("""
    video videos clip clips footage film recording shows show showing shown depicts depicting
    features featuring someone somebody says say saying said speaks speak speaking spoken
    speaker speakers speech talk talks talking voice voices narrator narration narrates
    visible seen see sees seeing screen onscreen text texts reads read reading written writes
    word words caption captions sound sounds sounding music musical melody silence silent
    silently quiet noise noises noisy background foreground track soundtrack audio audible
    heard hear hears play plays playing played first second third then next last finally later
    afterwards beginning start starts started begin begins end ends ending throughout moment
    moments time times part parts half segment segments meanwhile scene scenes image images
    picture pictures photo photos photograph frame frames camera view shot shots closeup
    language languages english chinese mandarin cantonese russian french german spanish
    italian portuguese japanese korean arabic hindi dutch polish turkish ukrainian swedish
    greek hebrew foreign accent unclear unknown
    """)

_NEGATIONS = _word_list(
    "no not without nobody never none nothing neither nor isnt doesnt dont didnt cannot cant"
    " wasnt arent"
)
_MUSIC_CLAIMS = _word_list("music musical melody melodies tune tunes song songs tone tones")
_MUSIC_SUPPORT = _word_list("music musical melody tone tones chord chords song")
_SILENCE_CLAIMS = _word_list("silent silence silently quiet mute muted soundless")
_AUDIBLE = _MUSIC_SUPPORT | {"noise", "noisy"}
_SPEECH_CLAIMS = _word_list(
    "speaks speak speaking speaker speakers says saying said speech talks talking voice voices"
    " narrator narrates narration spoken"
)
# World words that are ordinary function or position words: the hallucination check leaves
# them to the content-word rule (they are stopwords there) rather than to the world rule.
_WORLD_ORDINARY = _word_list("up down still once times 3 silence")


@functools.cache
def world_words() -> frozenset[str]:
    """The words of the synthetic shapes-and-tones world (shapes, colours, motions, sounds,
    patterns), normalised, less ordinary function words (up, down, still, once, ...).

    Plurals are matched through the singular/plural tolerance of the check ("circles")."""
    from models.training.data import world

    phrases = [*world.SHAPES, *world.COLOURS, *world.MOTIONS, *world.SOUNDS, *world.PATTERNS]
    found = {t for phrase in phrases for t in tokens(phrase)}
    return frozenset(found - _WORLD_ORDINARY)


def _forms(word: str) -> set[str]:
    """The word and its singular guesses: "horses" -> {horses, horse, hors}."""
    forms = {word}
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        forms.add(word[:-1])
        if word.endswith("es") and len(word) > 4:
            forms.add(word[:-2])
        if word.endswith("ies") and len(word) > 4:
            forms.add(word[:-3] + "y")
    return forms


def _same_word(a: str, b: str) -> bool:
    return bool(_forms(a) & _forms(b))


def in_experts(reference: str, perception: Perception | None) -> bool:
    """Whether a reference answer is in what the experts heard or read: an alternative is a
    run of whole words of a transcript segment, a translation or an on-screen text item, or
    the name of a language heard. Only such answers can be read off the experts' output;
    the rest need what they got wrong (a misheard word) or never give (how many speakers)."""
    if perception is None:
        return False
    from models.captioner.grounding import language_name

    texts = [s.text for s in perception.transcript.segments]
    if perception.translation is not None:
        texts += [s.text for s in perception.translation.segments]
    texts += [item.text for item in perception.text]
    found = [tokens(t) for t in texts]
    languages = {s.language for s in perception.transcript.segments if s.language}
    found += [tokens(language_name(code)) for code in languages]
    for alternative in reference_alternatives(reference):
        wanted = tokens(alternative)
        if wanted and any(_contains(words, wanted) for words in found):
            return True
    return False


@functools.cache
def _class_names() -> dict[tuple[str, ...], str]:
    """Every ImageNet-1k label and common name, by its normalised tokens."""
    from models.perception.tags import imagenet_classes

    names: dict[tuple[str, ...], str] = {}
    for c in imagenet_classes():
        for name in (c.label, *c.names):
            names.setdefault(tuple(tokens(name)), name)
    return names


def _class_named(phrase: str) -> str | None:
    """The ImageNet-1k label or common name that ``phrase`` is (plural tolerant)."""
    words = tokens(phrase)
    if not words:
        return None
    names = _class_names()
    for last in sorted(_forms(words[-1])):
        found = names.get((*words[:-1], last))
        if found is not None:
            return found
    return None


def tag_nameable(reference: str) -> str | None:
    """The ImageNet-1k label or common name (or "X + Y" for "X and Y") that a reference answer
    is, or None: no tag of the tagger can be that answer, whatever the frames show (colours,
    actions, rooms, places, and objects without a class: "a giraffe", "a cake", "a kitchen")."""
    for alternative in reference_alternatives(reference):
        found = _class_named(alternative)
        if found is not None:
            return found
        parts = _split_outside_parentheses(alternative, " and ")
        if len(parts) > 1:
            named = [_class_named(part) for part in parts]
            if all(named):
                return " + ".join(str(n) for n in named)
    return None


def _mentions(words: Sequence[str], phrase: Sequence[str]) -> bool:
    """Whether ``phrase`` occurs in ``words`` as a run, each word singular/plural tolerant."""
    n = len(phrase)
    return n > 0 and any(
        all(_same_word(words[i + j], phrase[j]) for j in range(n))
        for i in range(len(words) - n + 1)
    )


def _content(words: Iterable[str]) -> list[str]:
    return [w for w in words if w not in STOPWORDS and not w.isdigit()]


# ---------------------------------------------------------------------- ground truth


def _speech_texts(record: dict[str, Any]) -> list[str]:
    texts: list[str] = []
    for item in record.get("speech") or []:
        texts += [str(item[k]) for k in ("text", "text_normalized") if item.get(k)]
    return texts


def _visible(record: dict[str, Any]) -> list[str]:
    items = [str(v) for v in record.get("visible") or []]
    for scene in record.get("scenes") or []:
        items += [str(v) for v in scene.get("visible") or [] if str(v) not in items]
    return items


def ground_truth_words(record: dict[str, Any]) -> set[str]:
    """Normalised words of everything the manifest says is in the clip (its support)."""
    texts = [*_visible(record), *_speech_texts(record)]
    texts += [str(t) for t in record.get("on_screen_text") or []]
    texts += [str(record[k]) for k in ("action", "audio", "motion") if record.get(k)]
    texts += [str(q.get("answer") or "") for q in record.get("questions") or []]
    texts += [str(c) for c in record.get("captions") or []]
    return {w for text in texts for w in tokens(text)}


def perception_words(perception: Perception | None) -> set[str]:
    """Normalised words of what the experts found: speech, text read, tags and their names."""
    if perception is None:
        return set()
    texts = [s.text for s in perception.transcript.segments]
    if perception.translation is not None:
        texts += [s.text for s in perception.translation.segments]
    texts += [item.text for item in perception.text]
    tags = list(perception.tags)
    for timed in (*perception.segment_tags, *perception.frame_tags):
        tags += timed.tags
    for tag in tags:
        texts += [tag.label, *tag.names]
    return {w for text in texts for w in tokens(text)}


def _supported(word: str, support: set[str]) -> bool:
    return bool(_forms(word) & support)


def _all_forms(words: Iterable[str]) -> set[str]:
    return {f for w in words for f in _forms(w)}


# ---------------------------------------------------------------------- descriptions


def named_visible(description: str, visible: Sequence[str]) -> list[str]:
    """The listed visible objects the description names (whole words, plural tolerant)."""
    words = tokens(description)
    return [v for v in visible if _mentions(words, tokens(v))]


def speech_gist(description: str, transcripts: Sequence[str]) -> bool:
    """Whether the description gives the gist of the speech: 3 distinct content words of the
    transcript, or a quote of 4 consecutive normalised words of it."""
    words = tokens(description)
    if not words:
        return False
    said = _all_forms(_content(w for text in transcripts for w in tokens(text)))
    shared = {w for w in _content(words) if w not in FRAME_WORDS and _forms(w) & said}
    if len(shared) >= 3:
        return True
    for text in transcripts:
        spoken = tokens(text)
        if any(_contains(words, spoken[i : i + 4]) for i in range(len(spoken) - 3)):
            return True
    return False


def _negated(words: Sequence[str], i: int) -> bool:
    return any(w in _NEGATIONS for w in words[max(0, i - 3) : i])


SPAN_SLACK_S = 0.25  # speech must overlap a segment by more than this to count as heard in it


def hallucination(
    description: str,
    record: dict[str, Any],
    perception: Perception | None,
    span: tuple[float, float] | None = None,
) -> dict[str, list[str]]:
    """The words by which a description hallucinates (module docstring), by rule. With
    ``span`` (a segment description's start and end), speech counts as heard only where a
    reference speech span overlaps it, so "silent" is true of a stretch after the last word
    and "a voice says" false of one before the first; other sounds are not timed in the
    manifest and count for the whole clip.

    Returns:
        ``world`` (words of the synthetic world the ground truth does not use),
        ``unsupported`` (content words supported neither by the ground truth nor by the
        experts' output) and ``sound`` (sound claims the ground truth contradicts); all empty
        when the description does not hallucinate.
    """
    found: dict[str, list[str]] = {"world": [], "unsupported": [], "sound": []}
    if not is_answered(description):
        return found
    words = tokens(description)
    truth = _all_forms(ground_truth_words(record))
    support = truth | _all_forms(perception_words(perception))
    audio = {w for w in tokens(str(record.get("audio") or ""))}
    has_speech = bool(record.get("speech"))
    if span is not None:
        has_speech = any(
            float(x["start"]) < span[1] - SPAN_SLACK_S and float(x["end"]) > span[0] + SPAN_SLACK_S
            for x in record.get("speech") or []
        )
    audible = has_speech or bool(_all_forms(audio) & _AUDIBLE)
    world = world_words()

    def add(rule: str, word: str) -> None:
        if word not in found[rule]:
            found[rule].append(word)

    for i, word in enumerate(words):
        if _forms(word) & world and not _supported(word, truth):
            add("world", word)
        elif word in _MUSIC_CLAIMS:
            if not _all_forms(audio) & _MUSIC_SUPPORT and not _negated(words, i):
                add("sound", word)
        elif word in _SILENCE_CLAIMS:
            if audible and not _negated(words, i):
                add("sound", word)
        elif word in _SPEECH_CLAIMS:
            if not has_speech and not _negated(words, i):
                add("sound", word)
        elif (
            word not in STOPWORDS
            and word not in FRAME_WORDS
            and not word.isdigit()
            and not _supported(word, support)
        ):
            add("unsupported", word)
    return found


# ---------------------------------------------------------------------- evidence


Span = tuple[float, float]


def overlaps(evidence: Evidence, spans: Sequence[Span], tolerance: float = TOLERANCE_S) -> bool:
    """Whether the evidence touches one of the spans, give or take ``tolerance`` seconds."""
    return any(
        evidence.start <= end + tolerance and evidence.end >= start - tolerance
        for start, end in spans
    )


def _best_spans(candidates: Sequence[tuple[float, float, str]], answer: str) -> list[Span]:
    """The candidates whose text holds most of the answer's words, per reference alternative
    (the union over the alternatives); all candidates when none holds any word of any."""
    texts = [_all_forms(tokens(text)) for _, _, text in candidates]
    chosen: set[int] = set()
    for alternative in reference_alternatives(answer):
        wanted = {w for w in tokens(alternative) if w not in STOPWORDS}
        scores = [sum(1 for w in wanted if _forms(w) & have) for have in texts]
        best = max(scores, default=0)
        if best > 0:
            chosen |= {i for i, score in enumerate(scores) if score == best}
    keep = sorted(chosen) if chosen else range(len(candidates))
    return [(candidates[i][0], candidates[i][1]) for i in keep]


def _names_answer(item: str, answer: str) -> bool:
    """Whether a visible item names the answer, or the answer names the item."""
    item_words = [w for w in tokens(item) if w not in STOPWORDS]
    for alternative in reference_alternatives(answer):
        answer_words = [w for w in tokens(alternative) if w not in STOPWORDS]
        if answer_words and (
            _mentions(item_words, answer_words) or _mentions(answer_words, item_words)
        ):
            return True
    return False


def reference_spans(
    record: dict[str, Any], question: dict[str, Any], duration: float
) -> list[Span]:
    """Where in the clip the answer to ``question`` is (module docstring), as (start, end)."""
    whole = [(0.0, max(duration, 0.0))]
    kind, answer = str(question.get("kind") or ""), str(question.get("answer") or "")
    if kind == "speech":
        speech = [
            (float(s["start"]), float(s["end"]), " ".join(_speech_texts({"speech": [s]})))
            for s in record.get("speech") or []
        ]
        if not speech:
            return whole
        return _best_spans(speech, answer) if len(speech) > 1 else [speech[0][:2]]
    if kind == "text":
        timed = [
            (float(t["start"]), float(t["end"]), str(t["text"]))
            for t in record.get("on_screen_text_timed") or []
        ]
        return _best_spans(timed, answer) if timed else whole
    if kind == "visual" and record.get("scenes"):
        spans = [
            (float(s["start"]), float(s["end"]))
            for s in record["scenes"]
            if any(_names_answer(str(v), answer) for v in s.get("visible") or [])
        ]
        return spans or whole
    return whole


# ---------------------------------------------------------------------- predictions


@dataclass
class VideoPrediction:
    """What a model says about one video.

    Attributes:
        description: The whole-video description.
        segments: Per-segment descriptions, (start, end, text).
        answers: One per question, in the questions' order.
        perception: The experts' output (support for the hallucination check), if any.
    """

    description: str
    segments: list[tuple[float, float, str]]
    answers: list[Answer]
    perception: Perception | None


Predictor = Callable[[str, list[str]], VideoPrediction]  # (video path, questions) -> prediction


class PredictorFactory(Protocol):
    """Makes the predictor to evaluate, for the full model or one ablation."""

    def __call__(self, *, ablation: str | None = None) -> Predictor: ...


def _identity(features: VideoFeatures) -> VideoFeatures:
    return features


class BaselinePredictor:
    """Today's captioner as a :data:`Predictor`: the experts run (their output is the
    hallucination check's support), the captioner describes and answers from its own features;
    answers carry no evidence.

    Perception and features are computed once per file and kept, so ablations
    (:meth:`ablated`) only rerun the captioner.

    Args:
        model_dir: A directory written by ``CaptionPipeline.save_pretrained``.
        whisper_model: The speech expert (``base``, ``tiny.en`` or a CTranslate2 directory).
        ablation: None, or one of :data:`BASELINE_ABLATIONS` (``no_audio`` / ``no_visual``
            mask that stream of the features; ``no_text`` changes nothing: this captioner
            reads no on-screen text).
        device: Where to run (default: CUDA when present).
        limits: Media limits for decoding (default: the media layer's).
        backend: The frame decoder (default: PyAV).
        segment_seconds: Length of the described segments.
    """

    def __init__(
        self,
        model_dir: str | os.PathLike[str],
        whisper_model: str = "base",
        *,
        ablation: str | None = None,
        device: str | None = None,
        limits: MediaLimits | None = None,
        backend: str | None = None,
        segment_seconds: float = SEGMENT_SECONDS,
    ) -> None:
        from models.captioner.pipeline import CaptionPipeline
        from models.perception.runner import Perceiver

        _check_ablation(ablation)
        options: dict[str, Any] = {"device": device, "limits": limits}
        if backend is not None:
            options["backend"] = backend
        self.pipe = CaptionPipeline.from_pretrained(model_dir, **options)
        self.perceiver = Perceiver(whisper_model=whisper_model, device=device, limits=limits)
        self.ablation = ablation
        self.segment_seconds = segment_seconds
        self._seen: dict[str, tuple[Perception, VideoFeatures]] = {}

    @property
    def note(self) -> str:
        """What the report should say about this predictor."""
        text = (
            "baseline: the synthetic-world captioner (CaptionPipeline) with the perception"
            " experts run beside it for the hallucination check; answers carry no evidence"
        )
        if self.ablation == "no_text":
            text += "; no_text is a no-op for the baseline (it reads no on-screen text)"
        elif self.ablation is not None:
            text += f"; {self.ablation}: that stream of the captioner's features is masked"
        return text

    def ablated(self, ablation: str | None) -> BaselinePredictor:
        """The same loaded models and cache, with another ablation."""
        _check_ablation(ablation)
        other = copy.copy(self)  # shares pipe, perceiver and the cache
        other.ablation = ablation
        return other

    def _perceive(self, path: str) -> tuple[Perception, VideoFeatures]:
        if path not in self._seen:
            found, features = self.perceiver.run(
                path,
                segment_seconds=self.segment_seconds,
                during=lambda: self.pipe.extract(path),
            )
            self._seen[path] = (found, features)
        return self._seen[path]

    def __call__(self, path: str, questions: list[str]) -> VideoPrediction:
        """Describe the video, its segments, and answer the questions.

        Raises:
            MediaError: The file is not an acceptable video.
        """
        from models.training.evaluate import mask_audio, mask_visual

        masks: dict[str | None, Callable[[VideoFeatures], VideoFeatures]] = {
            None: _identity,
            "no_audio": mask_audio,
            "no_visual": mask_visual,
            "no_text": _identity,
        }
        found, features = self._perceive(path)
        features = masks[self.ablation](features)
        description = self.pipe.caption(features)
        segments = [
            (s.start, s.end, s.text)
            for s in self.pipe.caption_segments(features, self.segment_seconds)
        ]
        texts = self.pipe.answer(features, questions) if questions else []
        return VideoPrediction(description, segments, [Answer(t) for t in texts], found)


def _check_ablation(ablation: str | None) -> None:
    if ablation is not None and ablation not in BASELINE_ABLATIONS:
        raise ValueError(
            f"unknown ablation {ablation!r} for the baseline: use {', '.join(BASELINE_ABLATIONS)}"
        )


def baseline_predictor(
    model_dir: str | os.PathLike[str],
    whisper_model: str = "base",
    **options: Any,
) -> BaselinePredictor:
    """Today's captioner as a :data:`Predictor` (see :class:`BaselinePredictor` for options)."""
    return BaselinePredictor(model_dir, whisper_model, **options)


class GroundedPredictor:
    """The grounded captioner as a :data:`Predictor`: it reads the experts' findings, so its
    answers carry evidence. Perception and contexts are computed once per file.

    Ablations: ``no_audio`` zeroes the audio stream (and drops the soundtrack facts),
    ``no_visual`` drops the tags (frames and tag pieces), ``no_text`` drops the transcript and
    the on-screen text pieces.
    """

    def __init__(
        self,
        model_dir: str | os.PathLike[str],
        whisper_model: str = "base",
        *,
        ablation: str | None = None,
        device: str | None = None,
        limits: MediaLimits | None = None,
        segment_seconds: float = SEGMENT_SECONDS,
        **_: Any,
    ) -> None:
        from models.captioner.grounded_pipeline import GroundedPipeline
        from models.perception.runner import Perceiver

        _check_ablation(ablation)
        self.pipe = GroundedPipeline.from_pretrained(model_dir, device=device)
        self.perceiver = Perceiver(whisper_model=whisper_model, device=device, limits=limits)
        self.limits = limits
        self.ablation = ablation
        self.segment_seconds = segment_seconds
        self._seen: dict[str, tuple[Perception, Any]] = {}

    @property
    def note(self) -> str:
        """What the report should say about this predictor."""
        text = "grounded captioner: reads the experts' findings; answers carry evidence"
        if self.ablation is not None:
            text += f"; ablation {self.ablation}"
        return text

    def ablated(self, ablation: str | None) -> GroundedPredictor:
        """The same loaded models and cache, with another ablation."""
        _check_ablation(ablation)
        other = copy.copy(self)
        other.ablation = ablation
        return other

    def __call__(self, path: str, questions: list[str]) -> VideoPrediction:
        """Describe the video, its segments, and answer the questions."""
        import numpy as np

        if path not in self._seen:
            found, _ = self.perceiver.run(path, segment_seconds=self.segment_seconds)
            self._seen[path] = (found, self.pipe.context(found, path, limits=self.limits))
        found, ctx = self._seen[path]
        if self.ablation == "no_audio":
            ctx = copy.copy(ctx)
            ctx.audio_mels = np.zeros_like(ctx.audio_mels)
            ctx.audio_heard = np.zeros_like(ctx.audio_heard)
            ctx.pieces = [p for p in ctx.pieces if p.kind != "audio"]
        elif self.ablation == "no_visual":
            ctx = copy.copy(ctx)
            ctx.frame_scores = np.zeros_like(ctx.frame_scores)
            ctx.pieces = [p for p in ctx.pieces if p.kind != "visual"]
        elif self.ablation == "no_text":
            ctx = copy.copy(ctx)
            ctx.pieces = [p for p in ctx.pieces if p.kind not in ("speech", "text")]
        description = self.pipe.describe(ctx)
        segments = [
            (s.start, s.end, s.text) for s in self.pipe.describe_segments(ctx, self.segment_seconds)
        ]
        answers = self.pipe.answer(ctx, questions) if questions else []
        return VideoPrediction(description, segments, answers, found)


def predictor_for(
    model_dir: str | os.PathLike[str], whisper_model: str = "base", **options: Any
) -> BaselinePredictor | GroundedPredictor:
    """The predictor that fits the model in ``model_dir``."""
    from models.captioner.grounded_pipeline import is_grounded

    if is_grounded(model_dir):
        return GroundedPredictor(model_dir, whisper_model, **options)
    return BaselinePredictor(model_dir, whisper_model, **options)


# ---------------------------------------------------------------------- evaluation


def read_manifest(manifest: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The manifest's entries, in order (blank lines skipped)."""
    lines = Path(manifest).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def is_video(entry: dict[str, Any]) -> bool:
    """Whether a manifest entry is a video the harness evaluates (by file suffix)."""
    return Path(str(entry.get("file", ""))).suffix.lower() in VIDEO_SUFFIXES


def _new_counts() -> dict[str, int]:
    return dict.fromkeys(
        (
            "questions", "answered", "right", "exact", "confident_wrong", "no_answer", "errored",
            "tag_nameable", "in_experts",
        ),
        0,
    )  # fmt: skip


def _new_evidence() -> dict[str, int]:
    return dict.fromkeys(("right", "without_evidence", "with_evidence", "grounded"), 0)


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _qa_summary(counts: dict[str, int]) -> dict[str, Any]:
    return {
        **counts,
        "accuracy": _rate(counts["right"], counts["questions"]),
        "exact_accuracy": _rate(counts["exact"], counts["questions"]),
    }


def _evidence_summary(counts: dict[str, int]) -> dict[str, Any]:
    return {
        **counts,
        "precision": _rate(counts["grounded"], counts["right"]),
        "precision_when_given": _rate(counts["grounded"], counts["with_evidence"]),
    }


def _order(kinds: Iterable[str]) -> list[str]:
    kinds = list(kinds)
    known = [k for k in QUESTION_KINDS if k in kinds]
    return known + sorted(k for k in kinds if k not in QUESTION_KINDS)


def _score_questions(
    record: dict[str, Any],
    answers: Sequence[Answer] | None,
    duration: float,
    perception: Perception | None = None,
) -> list[dict[str, Any]]:
    """One scored row per question of the record (``answers`` None: the file failed)."""
    rows = []
    for i, question in enumerate(record.get("questions") or []):
        reference = str(question.get("answer") or "")
        answer = answers[i] if answers is not None and i < len(answers) else None
        predicted = answer.text if answer is not None else ""
        evidence = list(answer.evidence) if answer is not None else []
        right = answer_matches(predicted, reference)
        spans = reference_spans(record, question, duration)
        rows.append(
            {
                "question": str(question.get("question") or ""),
                "kind": str(question.get("kind") or "other"),
                "reference": reference,
                "prediction": predicted if answer is not None else None,
                "answered": answer is not None and is_answered(predicted),
                "right": right,
                "exact": exact_match(predicted, reference),
                "evidence": [e.to_dict() for e in evidence],
                "reference_spans": [[round(s, 3), round(e, 3)] for s, e in spans],
                "grounded": right and any(overlaps(e, spans) for e in evidence),
                "tag_nameable": tag_nameable(reference),
                "in_experts": in_experts(reference, perception),
            }
        )
    return rows


def evaluate_manifest(
    manifest: str | Path,
    predict: Predictor,
    *,
    progress: bool = True,
    limit: int | None = None,
    ablation: str | None = None,
) -> dict[str, Any]:
    """Run a predictor over the videos of a manifest and score it (module docstring).

    Args:
        manifest: A JSONL manifest; its ``file`` paths are relative to its folder.
        predict: The model under test.
        progress: Show a progress bar (stderr).
        limit: Evaluate only the first ``limit`` videos.
        ablation: The ablation ``predict`` runs with, recorded in the report (None: full).

    Returns:
        A JSON-able report: ``manifest``, ``ablation``, ``predictor_note``, ``files``
        (entries, videos, evaluated, not videos by suffix, errors), ``qa`` and ``evidence``
        (``by_kind`` and ``overall``), ``descriptions``, ``hallucination`` (``descriptions``
        and ``segments``, each with the hallucinating texts and their words), ``captions``
        (BLEU-4 / CIDEr-D or a note), ``errors`` (per file: code, message, its questions),
        ``per_file`` and ``seconds``.
    """
    from tqdm import tqdm

    if limit is not None and limit < 0:
        raise ValueError(f"limit must not be negative, got {limit}")
    began = time.perf_counter()
    manifest = Path(manifest)
    entries = read_manifest(manifest)
    videos = [e for e in entries if is_video(e)]
    not_videos = Counter(Path(str(e.get("file", ""))).suffix.lower() or "(none)" for e in entries)
    for suffix in VIDEO_SUFFIXES:
        not_videos.pop(suffix, None)
    chosen = videos if limit is None else videos[:limit]

    per_file: list[dict[str, Any]] = []
    for record in tqdm(chosen, desc="eval-real", unit="video", disable=not progress):
        path = manifest.parent / str(record["file"])
        questions = [str(q.get("question") or "") for q in record.get("questions") or []]
        tick = time.perf_counter()
        item: dict[str, Any] = {"file": str(record["file"]), "kind": record.get("kind")}
        prediction: VideoPrediction | None = None
        try:
            prediction = predict(str(path), questions)
        except MediaError as e:
            item["error"] = e.to_dict()
        item["seconds"] = round(time.perf_counter() - tick, 3)
        if prediction is not None and len(prediction.answers) != len(questions):
            raise ValueError(
                f"{record['file']}: {len(questions)} questions but"
                f" {len(prediction.answers)} answers"
            )
        duration = float(record.get("duration_s") or 0.0)
        if duration <= 0 and prediction is not None and prediction.perception is not None:
            duration = prediction.perception.duration_s
        item["questions"] = _score_questions(
            record,
            prediction.answers if prediction is not None else None,
            duration,
            prediction.perception if prediction is not None else None,
        )
        if prediction is not None:
            item.update(_describe(record, prediction))
        per_file.append(item)

    report = _aggregate(per_file, chosen)
    report = {
        "manifest": str(manifest),
        "ablation": ablation,
        "predictor_note": getattr(predict, "note", None),
        "files": {
            "entries": len(entries),
            "videos": len(videos),
            "evaluated": len(chosen),
            "not_videos": sum(not_videos.values()),
            "not_videos_by_suffix": dict(sorted(not_videos.items())),
            "errors": sum("error" in f for f in per_file),
        },
        **report,
        "per_file": per_file,
        "seconds": {
            "total": round(time.perf_counter() - began, 3),
            "per_video_mean": round(sum(f["seconds"] for f in per_file) / len(per_file), 3)
            if per_file
            else None,
        },
    }
    return report


def _describe(record: dict[str, Any], prediction: VideoPrediction) -> dict[str, Any]:
    """The description checks of one file: coverage, correct silence, hallucinations."""
    visible = _visible(record)
    speech = _speech_texts(record)
    description = prediction.description
    named = named_visible(description, visible)
    gist = bool(speech) and speech_gist(description, speech)
    words = hallucination(description, record, prediction.perception)
    segments = []
    for start, end, text in prediction.segments:
        found = hallucination(text, record, prediction.perception, (start, end))
        segments.append(
            {
                "start": round(start, 3),
                "end": round(end, 3),
                "text": text,
                "hallucination": found,
                "hallucinates": any(found.values()),
            }
        )
    return {
        "experts": _experts(prediction.perception),
        "description": description,
        "named_visible": named,
        "speech_gist": gist,
        "has_content": bool(visible or speech),
        "covered": bool(named) or gist,
        "hallucination": words,
        "hallucinates": any(words.values()),
        "segments": segments,
    }


def _experts(perception: Perception | None) -> dict[str, Any] | None:
    """A short summary of what the experts found (for reading the report, not scored)."""
    if perception is None:
        return None
    return {
        "language": perception.transcript.language,
        "speech": perception.transcript.text,
        "translation": perception.translation.text if perception.translation else None,
        "text": [item.text for item in perception.text],
        "tags": [f"{tag.label} {tag.score:.2f}" for tag in perception.tags[:5]],
    }


def _aggregate(per_file: list[dict[str, Any]], records: list[dict[str, Any]]) -> dict[str, Any]:
    """The report's summary sections over the scored files."""
    counts: dict[str, dict[str, int]] = {}
    evidence: dict[str, dict[str, int]] = {}
    for item in per_file:
        failed = "error" in item
        for row in item["questions"]:
            for kind in (row["kind"], "overall"):
                c = counts.setdefault(kind, _new_counts())
                c["questions"] += 1
                c["errored"] += failed
                c["answered"] += row["answered"]
                c["right"] += row["right"]
                c["exact"] += row["exact"]
                c["confident_wrong"] += row["answered"] and not row["right"]
                c["no_answer"] += not failed and not row["answered"]
                c["tag_nameable"] += row.get("tag_nameable") is not None
                c["in_experts"] += bool(row.get("in_experts"))
                if row["right"]:
                    e = evidence.setdefault(kind, _new_evidence())
                    e["right"] += 1
                    e["without_evidence"] += not row["evidence"]
                    e["with_evidence"] += bool(row["evidence"])
                    e["grounded"] += row["grounded"]
    kinds = _order(k for k in counts if k != "overall")
    qa = {
        "by_kind": {k: _qa_summary(counts[k]) for k in kinds},
        "overall": _qa_summary(counts.get("overall", _new_counts())),
    }
    evidence_report = {
        "by_kind": {k: _evidence_summary(evidence.get(k, _new_evidence())) for k in kinds},
        "overall": _evidence_summary(evidence.get("overall", _new_evidence())),
    }

    read = [f for f in per_file if "error" not in f]
    with_content = [f for f in read if f["has_content"]]
    with_speech = [
        f for f, r in zip(per_file, records, strict=True) if "error" not in f and r.get("speech")
    ]
    without_content = [f for f in read if not f["has_content"]]
    descriptions = {
        "files": len(read),
        "with_content": len(with_content),
        "covered": sum(f["covered"] for f in with_content),
        "coverage": _rate(sum(f["covered"] for f in with_content), len(with_content)),
        "named_visible": sum(bool(f["named_visible"]) for f in with_content),
        "with_speech": len(with_speech),
        "speech_gist": sum(f["speech_gist"] for f in with_speech),
        "without_content": len(without_content),
        "correct_silence": sum(not f["hallucinates"] for f in without_content),
    }
    listed = [
        {"file": f["file"], "description": f["description"], "words": f["hallucination"]}
        for f in read
        if f["hallucinates"]
    ]
    segments = [(f["file"], s) for f in read for s in f["segments"]]
    segment_listed = [
        {
            "file": file,
            "start": s["start"],
            "end": s["end"],
            "description": s["text"],
            "words": s["hallucination"],
        }
        for file, s in segments
        if s["hallucinates"]
    ]
    hallucinations = {
        "descriptions": {
            "checked": len(read),
            "hallucinating": len(listed),
            "rate": _rate(len(listed), len(read)),
            "items": listed,
        },
        "segments": {
            "checked": len(segments),
            "hallucinating": len(segment_listed),
            "rate": _rate(len(segment_listed), len(segments)),
            "items": segment_listed,
        },
    }
    errors = [
        {
            "file": f["file"],
            **f["error"],
            "questions": [q["question"] for q in f["questions"]],
        }
        for f in per_file
        if "error" in f
    ]
    return {
        "qa": qa,
        "evidence": evidence_report,
        "descriptions": descriptions,
        "hallucination": hallucinations,
        "captions": _caption_scores(per_file, records),
        "errors": errors,
    }


def _caption_scores(
    per_file: list[dict[str, Any]], records: list[dict[str, Any]]
) -> dict[str, Any]:
    """BLEU-4 / CIDEr-D over the files with reference captions, or why there are none."""
    pairs = [
        (f["description"], [str(c) for c in r.get("captions") or [] if str(c).strip()])
        for f, r in zip(per_file, records, strict=True)
        if "error" not in f
    ]
    pairs = [(d, refs) for d, refs in pairs if refs]
    if not pairs:
        return {"scored": 0, "bleu4": None, "cider_d": None, "note": "n/a (no reference captions)"}
    from models.training.evaluate import caption_metrics

    scores = caption_metrics([d for d, _ in pairs], [refs for _, refs in pairs])
    return {"scored": len(pairs), "bleu4": scores["bleu4"], "cider_d": scores["cider_d"]}


def run_real_eval(
    manifest: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    factory: PredictorFactory,
    *,
    ablations: Sequence[str] = (),
    limit: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate the full predictor and each ablation; write ``eval-real.json`` and ``.md``.

    Args:
        manifest: The real-data manifest.
        out_dir: Where the report goes (made if missing).
        factory: Called as ``factory(ablation=None)`` for the full model, then
            ``factory(ablation=name)`` for each of ``ablations``.
        ablations: Ablation names the factory understands.
        limit: Evaluate only the first ``limit`` videos.
        progress: Show progress bars.

    Returns:
        The full model's report (:func:`evaluate_manifest`) with ``ablations``: per name,
        that run's ``predictor_note``, ``qa``, ``evidence``, ``descriptions`` and
        hallucination rates.
    """
    path = Path(manifest)
    report = evaluate_manifest(path, factory(ablation=None), progress=progress, limit=limit)
    report["ablations"] = {}
    for name in ablations:
        run = evaluate_manifest(
            path, factory(ablation=name), progress=progress, limit=limit, ablation=name
        )
        report["ablations"][name] = {
            "predictor_note": run["predictor_note"],
            "qa": run["qa"],
            "evidence": run["evidence"],
            "descriptions": run["descriptions"],
            "hallucination": {
                k: {x: v for x, v in part.items() if x != "items"}
                for k, part in run["hallucination"].items()
            },
        }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{REPORT_NAME}.json").write_text(
        json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    (out / f"{REPORT_NAME}.md").write_text(markdown_report(report), encoding="utf-8")
    return report


# ---------------------------------------------------------------------- report

# The module docstring's metric definitions, with Sphinx roles as plain markdown code.
_DEFINITIONS = re.sub(
    r":func:`([^`]+)`|``([^`]+)``",
    lambda m: f"`{m.group(1) or m.group(2)}`",
    (__doc__ or "").partition("Metrics\n-------\n")[2].strip(),
)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(_fmt(v)) for v in row) + " |" for row in rows]
    return lines


def _words(found: dict[str, list[str]]) -> str:
    return "; ".join(f"{rule}: {', '.join(words)}" for rule, words in found.items() if words)


def _evidence_text(row: dict[str, Any]) -> str:
    if not row["evidence"]:
        return "no evidence"
    items = [f"{e['kind']} {e['start']:.1f}-{e['end']:.1f}s" for e in row["evidence"][:3]]
    return ", ".join(items) + (" (grounded)" if row["grounded"] else "")


def markdown_report(report: dict[str, Any]) -> str:
    """The report of :func:`evaluate_manifest` (or :func:`run_real_eval`) as markdown."""
    files = report["files"]
    title = "Evaluation on real videos" + (
        f" (ablation: {report['ablation']})" if report.get("ablation") else ""
    )
    lines = [f"# {title}", "", f"Manifest: `{report['manifest']}`.", ""]
    if report.get("predictor_note"):
        lines += [f"Predictor: {report['predictor_note']}.", ""]
    lines += [
        f"{files['evaluated']} of {files['videos']} videos evaluated ({files['entries']} manifest"
        f" entries; {files['not_videos']} not videos: "
        + (", ".join(f"{n} {s}" for s, n in files["not_videos_by_suffix"].items()) or "none")
        + f"); {files['errors']} could not be read.",
        "",
    ]
    if _DEFINITIONS:
        lines += ["<details><summary>How each number is defined</summary>", "", _DEFINITIONS, ""]
        lines += ["</details>", ""]

    qa = report["qa"]
    lines += ["## Questions", ""]
    header = ["kind", "questions", "answered", "acc", "exact", "confident wrong", "no answer"]
    header.append("unreadable file")
    rows = [
        [
            k,
            *(c[x] for x in ("questions", "answered", "accuracy", "exact_accuracy")),
            *(c[x] for x in ("confident_wrong", "no_answer", "errored")),
        ]
        for k, c in [*qa["by_kind"].items(), ("overall", qa["overall"])]
    ]
    lines += _table(header, rows)
    for kind in ("speech", "text"):
        c = qa["by_kind"].get(kind)
        if c and "in_experts" in c:
            lines += [
                "",
                f"{kind.capitalize()} questions whose reference answer is in what the experts"
                f" heard or read (a run of words of the transcript, a translation or the"
                f" on-screen text, or a language heard; `in_experts`): {c['in_experts']} of"
                f" {c['questions']}, the most a perfect reader of these findings could get.",
            ]
    visual = qa["by_kind"].get("visual")
    if visual and "tag_nameable" in visual:
        lines += [
            "",
            f"Visual questions whose reference answer is an ImageNet-1k class name (the most"
            f" the tagger could ever report, however well it saw): {visual['tag_nameable']} of"
            f" {visual['questions']}. The rest ask for colours, actions, rooms, places or"
            " objects no class names (`tag_nameable`).",
        ]

    ev = report["evidence"]
    lines += ["", "## Evidence (right answers)", ""]
    lines += _table(
        ["kind", "right", "no evidence", "grounded", "precision", "precision when given"],
        [
            [
                k,
                *(c[x] for x in ("right", "without_evidence", "grounded")),
                *(c[x] for x in ("precision", "precision_when_given")),
            ]
            for k, c in [*ev["by_kind"].items(), ("overall", ev["overall"])]
        ],
    )

    d = report["descriptions"]
    lines += ["", "## Descriptions", ""]
    lines += _table(
        ["measure", "count", "of", "share"],
        [
            [
                "covers the video",
                d["covered"],
                d["with_content"],
                _rate(d["covered"], d["with_content"]),
            ],
            [
                "names a visible object",
                d["named_visible"],
                d["with_content"],
                _rate(d["named_visible"], d["with_content"]),
            ],
            [
                "gives the speech's gist",
                d["speech_gist"],
                d["with_speech"],
                _rate(d["speech_gist"], d["with_speech"]),
            ],
            [
                "correct silence",
                d["correct_silence"],
                d["without_content"],
                _rate(d["correct_silence"], d["without_content"]),
            ],
        ],
    )

    h = report["hallucination"]
    lines += ["", "## Hallucination", ""]
    lines += _table(
        ["descriptions", "checked", "hallucinating", "rate"],
        [[name, part["checked"], part["hallucinating"], part["rate"]] for name, part in h.items()],
    )
    if h["descriptions"]["items"]:
        lines += ["", "Hallucinating descriptions:", ""]
        lines += _table(
            ["file", "description", "offending words"],
            [[x["file"], x["description"], _words(x["words"])] for x in h["descriptions"]["items"]],
        )

    captions = report["captions"]
    lines += ["", "## Caption metrics", ""]
    if captions.get("note"):
        lines += [f"BLEU-4 / CIDEr-D: {captions['note']}."]
    else:
        lines += _table(
            ["files", "BLEU-4", "CIDEr-D"],
            [[captions["scored"], captions["bleu4"], captions["cider_d"]]],
        )

    if report.get("ablations"):
        lines += ["", "## Ablations", ""]
        columns = [("full", report), *report["ablations"].items()]
        lines += _table(
            ["measure", *(name for name, _ in columns)],
            [
                ["question acc", *(c["qa"]["overall"]["accuracy"] for _, c in columns)],
                ["answered", *(c["qa"]["overall"]["answered"] for _, c in columns)],
                ["description coverage", *(c["descriptions"]["coverage"] for _, c in columns)],
                [
                    "hallucination rate",
                    *(c["hallucination"]["descriptions"]["rate"] for _, c in columns),
                ],
            ]
            + [
                [
                    f"{kind} acc",
                    *(c["qa"]["by_kind"].get(kind, {}).get("accuracy") for _, c in columns),
                ]
                for kind in report["qa"]["by_kind"]
            ],
        )
        notes = [(n, a["predictor_note"]) for n, a in report["ablations"].items()]
        lines += [""] + [f"- {name}: {note}" for name, note in notes if note]

    if report["errors"]:
        lines += ["", "## Files that could not be read", ""]
        lines += _table(
            ["file", "code", "message", "questions counted wrong"],
            [[e["file"], e["code"], e["message"], len(e["questions"])] for e in report["errors"]],
        )

    lines += ["", "## Per file", ""]
    rows = []
    for f in report["per_file"]:
        if "error" in f:
            description = f"(unreadable: {f['error']['code']})"
        else:
            description = f["description"] + (
                " ⚠ " + _words(f["hallucination"]) if f["hallucinates"] else ""
            )
        answers = "<br>".join(
            f"{q['question']} → {q['prediction'] if q['prediction'] is not None else '-'}"
            f" {'✓' if q['right'] else '✗'} (ref: {q['reference']}; {_evidence_text(q)})"
            for q in f["questions"]
        )
        rows.append([f["file"], description, answers])
    lines += _table(["file", "description", "questions → prediction (evidence)"], rows)
    lines += ["", f"{report['seconds']['total']:.1f} s in all."]
    return "\n".join(lines).rstrip() + "\n"
