"""Build ``models/perception/data/imagenet.json``: ImageNet-1k classes and their common names.

Run once, at build time (the runtime reads only the JSON; WordNet is never needed there)::

    apt-get install -y wordnet-base                  # WordNet 3.0: /usr/share/wordnet
    pip download timm --no-deps -d /tmp/timm         # only for its class list (not a dependency)
    python scripts/build_imagenet_table.py --timm-wheel /tmp/timm/timm-*.whl

Inputs:

- ImageNet-1k's 1000 synset ids in class-index order: ``timm/data/_info/imagenet_synsets.txt``
  inside the timm wheel (the sorted-wnid order every ImageNet classifier, this one included,
  was trained with).
- WordNet 3.0's noun database (``data.noun``, ``index.noun``): ImageNet's synset ``nXXXXXXXX``
  is the WordNet 3.0 noun at byte offset ``XXXXXXXX``.

Per class the table holds the synset id, a short readable label (the synset's first lemma,
underscores as spaces) and ``names``: the basic-level names of :data:`COMMON_NAMES` whose synset
lies on the class's hypernym chain (all paths, instance hypernyms included), most specific
first. "golden retriever" -> ["dog", "mammal", "animal"]: later stages can say "a dog" even when
the probability is split over 120 breeds.
"""

from __future__ import annotations

import argparse
import json
import re
import zipfile
from collections import deque
from pathlib import Path

WORDNET = Path("/usr/share/wordnet")
OUT = Path(__file__).resolve().parents[1] / "models/perception/data/imagenet.json"
TIMM_SYNSETS = "timm/data/_info/imagenet_synsets.txt"

# Basic-level categories: the names people use in a caption ("a dog", "a car", "some food").
# Rosch's basic level (Rosch et al., "Basic objects in natural categories", 1976) sits between
# the too specific ImageNet leaves ("Walker hound") and WordNet's too abstract upper nodes
# ("placental", "artifact", "whole"): each entry below is a word a describer would say, tied to
# the WordNet sense (lemma, sense number as in index.noun) that has that meaning. A few broader
# words (animal, vehicle, food, ...) are kept as fallbacks for classes with no basic-level
# name. Order does not matter: names are sorted per class by distance up the hypernym chain.
COMMON_NAMES: dict[str, tuple[str, int]] = {
    # animals
    "animal": ("animal", 1),
    "mammal": ("mammal", 1),
    "bird": ("bird", 1),
    "fish": ("fish", 1),
    "reptile": ("reptile", 1),
    "amphibian": ("amphibian", 3),
    "insect": ("insect", 1),
    "spider": ("spider", 1),
    "dog": ("dog", 1),
    "wolf": ("wolf", 1),
    "fox": ("fox", 1),
    "cat": ("cat", 1),
    "big cat": ("big_cat", 1),
    "bear": ("bear", 1),
    "monkey": ("monkey", 1),
    "ape": ("ape", 1),
    "horse": ("horse", 1),
    "cattle": ("cattle", 1),
    "sheep": ("sheep", 1),
    "pig": ("swine", 1),
    "deer": ("deer", 1),
    "rodent": ("rodent", 1),
    "rabbit": ("rabbit", 1),
    "squirrel": ("squirrel", 1),
    "elephant": ("elephant", 1),
    "whale": ("whale", 2),
    "seal": ("seal", 9),
    "snake": ("snake", 1),
    "lizard": ("lizard", 1),
    "turtle": ("turtle", 2),
    "frog": ("frog", 1),
    "shark": ("shark", 1),
    "parrot": ("parrot", 1),
    "owl": ("owl", 1),
    "bird of prey": ("bird_of_prey", 1),
    "duck": ("duck", 1),
    "chicken": ("chicken", 2),
    "butterfly": ("butterfly", 1),
    "beetle": ("beetle", 1),
    "crab": ("crab", 1),
    "shellfish": ("shellfish", 1),
    # people
    "person": ("person", 1),
    # vehicles
    "vehicle": ("vehicle", 1),
    "car": ("car", 1),
    "truck": ("truck", 1),
    "bus": ("bus", 1),
    "bicycle": ("bicycle", 1),
    "motorcycle": ("motorcycle", 1),
    "train": ("train", 1),
    "locomotive": ("locomotive", 1),
    "boat": ("boat", 1),
    "ship": ("ship", 1),
    "aircraft": ("aircraft", 1),
    # food and plants
    "food": ("food", 1),
    "food ": ("food", 2),  # the solid-food sense; shown as "food" (see _display)
    "fruit": ("edible_fruit", 1),
    "vegetable": ("vegetable", 1),
    "dish": ("dish", 2),
    "bread": ("bread", 1),
    "dessert": ("dessert", 1),
    "drink": ("beverage", 1),
    "mushroom": ("mushroom", 3),  # the fungus
    "mushroom ": ("mushroom", 5),  # the food
    "flower": ("flower", 1),
    "plant": ("plant", 2),
    "tree": ("tree", 1),
    # things
    "building": ("building", 1),
    "house": ("house", 1),
    "structure": ("structure", 1),
    "bridge": ("bridge", 1),
    "furniture": ("furniture", 1),
    "chair": ("chair", 1),
    "table": ("table", 2),
    "bed": ("bed", 1),
    "musical instrument": ("musical_instrument", 1),
    "clothing": ("clothing", 1),
    "shoe": ("footwear", 2),
    "hat": ("hat", 1),
    "bag": ("bag", 1),
    "container": ("container", 1),
    "bottle": ("bottle", 1),
    "cup": ("cup", 1),
    "tool": ("tool", 1),
    "weapon": ("weapon", 1),
    "ball": ("ball", 1),
    "toy": ("toy", 1),
    "computer": ("computer", 1),
    "phone": ("telephone", 1),
    "screen": ("display", 6),  # electronic display (monitor, TV)
    "kitchen appliance": ("kitchen_appliance", 1),
    "sports equipment": ("sports_equipment", 1),
    "boat ": ("vessel", 2),  # watercraft in general; shown as "boat"
    "landscape": ("geological_formation", 1),
    "clock": ("timepiece", 1),
    "lamp": ("lamp", 1),
}

# WordNet files every wheeled vehicle under "container" too (a car holds its passengers); no
# one calls a car a container, so that name is dropped where the first one is on the chain.
NOT_WITH = {"container": "vehicle"}


def _display(name: str) -> str:
    # Two senses may share one spoken name ("food"): keys differ only by trailing spaces.
    return name.strip()


def read_nouns(wordnet: Path) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Lemmas and hypernyms (``@`` and ``@i``) of every noun synset, keyed by offset."""
    lemmas: dict[str, list[str]] = {}
    parents: dict[str, list[str]] = {}
    for line in (wordnet / "data.noun").read_text(encoding="latin-1").splitlines():
        if line.startswith(" "):  # the licence header
            continue
        fields = line.split(" | ")[0].split()
        offset, n_words = fields[0], int(fields[3], 16)
        words = [fields[4 + 2 * i] for i in range(n_words)]
        i = 4 + 2 * n_words
        n_pointers = int(fields[i])
        pointers = [fields[i + 1 + 4 * k : i + 5 + 4 * k] for k in range(n_pointers)]
        lemmas[offset] = [re.sub(r"\(.*\)$", "", w) for w in words]  # drop "(a)" markers
        parents[offset] = [p[1] for p in pointers if p[0] in ("@", "@i") and p[2] == "n"]
    return lemmas, parents


def sense_offsets(wordnet: Path) -> dict[tuple[str, int], str]:
    """(lemma, sense number) -> synset offset, from index.noun."""
    out: dict[tuple[str, int], str] = {}
    for line in (wordnet / "index.noun").read_text(encoding="latin-1").splitlines():
        if line.startswith(" "):
            continue
        fields = line.split()
        lemma, n_senses, n_pointers = fields[0], int(fields[2]), int(fields[3])
        offsets = fields[6 + n_pointers : 6 + n_pointers + n_senses]
        for k, offset in enumerate(offsets, start=1):
            out[(lemma, k)] = offset
    return out


def ancestors(offset: str, parents: dict[str, list[str]]) -> dict[str, int]:
    """Every hypernym of ``offset`` (itself included) with its shortest distance."""
    dist = {offset: 0}
    queue = deque([offset])
    while queue:
        node = queue.popleft()
        for parent in parents.get(node, []):
            if parent not in dist:
                dist[parent] = dist[node] + 1
                queue.append(parent)
    return dist


def build(synsets: list[str], wordnet: Path) -> dict[str, object]:
    """The table as JSON-able data."""
    if len(synsets) != 1000 or len(set(synsets)) != 1000:
        raise ValueError(f"expected 1000 unique ImageNet synsets, got {len(synsets)}")
    lemmas, parents = read_nouns(wordnet)
    senses = sense_offsets(wordnet)
    common = {}
    for name, key in COMMON_NAMES.items():
        if key not in senses:
            raise KeyError(f"WordNet has no noun sense {key} for {name!r}")
        common[senses[key]] = _display(name)
    specificity: dict[str, int] = {}
    for offset, name in common.items():
        specificity[name] = max(specificity.get(name, 0), len(ancestors(offset, parents)))
    classes = []
    for index, wnid in enumerate(synsets):
        offset = wnid[1:]
        chain = ancestors(offset, parents)
        found: dict[str, int] = {}
        for node, d in chain.items():
            name = common.get(node)
            if name is not None and (name not in found or d < found[name]):
                found[name] = d
        for name, other in NOT_WITH.items():
            if other in found:
                found.pop(name, None)
        # Most specific first: a name with more ancestors of its own is narrower ("dog" before
        # "mammal" before "animal", whatever path reached them first).
        names = sorted(found, key=lambda n: (-specificity[n], found[n], n))
        label = lemmas[offset][0].replace("_", " ")
        classes.append({"index": index, "synset": wnid, "label": label, "names": names})
    return {
        "source": "ImageNet-1k class order (timm imagenet_synsets.txt); WordNet 3.0 nouns",
        "common_names": sorted({_display(n) for n in COMMON_NAMES}),
        "classes": classes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timm-wheel", type=Path, required=True, help="a timm wheel (.whl)")
    parser.add_argument("--wordnet", type=Path, default=WORDNET, help="WordNet 3.0 dict folder")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    with zipfile.ZipFile(args.timm_wheel) as wheel:
        synsets = wheel.read(TIMM_SYNSETS).decode().split()
    table = build(synsets, args.wordnet)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(table, ensure_ascii=False, separators=(",", ":"))
    # One class per line: small, yet a diff shows which class changed.
    text = text.replace(',{"index"', ',\n{"index"')
    args.out.write_text(text + "\n")
    unnamed = sum(not c["names"] for c in table["classes"])  # type: ignore[attr-defined]
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes); classes without a name: {unnamed}")


if __name__ == "__main__":
    main()
