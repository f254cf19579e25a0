"""How Shapes is put into words: the captions of its splits, caption augmentation for
training, a held-out phrasing set for evaluation, and parsing captions back.

Three vocabularies, by what may see them:

- `SYNONYMS` and `CAPTION_TEMPLATES`: the captions of `train`, `val`, `test` and
  `compositional` (`make_sample`), unchanged since the first release so that figures stay
  comparable.
- `TRAINING_SYNONYMS` and the frames of `training_caption`: a superset for caption
  augmentation (other word orders, lead-ins, fillers, case, punctuation, typos, captions
  that omit attributes, a lexicon of common colour words, stressed positions such as
  "right in the middle", an edge's other axis spelled out: "at the top, centered
  horizontally").
- `HELDOUT_SYNONYMS` and `HELDOUT_TEMPLATES`: the `heldout-phrasing` split, never in any
  training caption (tests check 50,000 of them), as `compositional` holds out pairs.

Values are keyed by the attribute names of `mmgen.data.shapes.ATTRIBUTES`.
"""

from __future__ import annotations

import random
import re

from mmgen.data.captions import restyle, with_typo

# --- the captions of train/val/test/compositional -----------------------------------------

# Caption vocabulary: attribute -> value -> the phrases that may name it.
SYNONYMS: dict[str, dict[str, tuple[str, ...]]] = {
    "shape": {shape: (shape,) for shape in ("circle", "square", "triangle", "diamond", "star", "cross")},
    "color": {color: (color,) for color in ("red", "orange", "yellow", "green", "cyan", "blue", "purple", "white")},
    "size": {"small": ("small", "little", "tiny"), "large": ("large", "big")},
    "position": {
        "top left": ("top left", "upper left", "top-left"),
        "top": ("top", "upper middle"),
        "top right": ("top right", "upper right", "top-right"),
        "left": ("left", "left side"),
        "center": ("center", "middle"),
        "right": ("right", "right side"),
        "bottom left": ("bottom left", "lower left", "bottom-left"),
        "bottom": ("bottom", "lower middle"),
        "bottom right": ("bottom right", "lower right", "bottom-right"),
    },
}

# {where} is a prepositional phrase ("in the top left"), {place} the bare position phrase.
CAPTION_TEMPLATES = (
    "a {size} {color} {shape} {where}",
    "{size} {color} {shape}, {place}",
    "there is a {size} {color} {shape} {where} of the image",
    "{where} is a {size} {color} {shape}",
    "an image of a {size} {color} {shape} {where}",
    "{size} {color} {shape} {where}",
    "a {color} {shape} that is {size}, {where}",
)


def _preposition(place: str) -> str:
    """Edges and sides take "at"/"on"; corners, the middle and everything else "in"."""
    words = place.replace("-", " ").split()
    if words[-1] in ("side", "edge") or words == ["left"] or words == ["right"]:
        return "on"
    if words in (["top"], ["bottom"]):
        return "at"
    return "in"


def _article(text: str) -> str:
    return re.sub(r"\ba (?=[aeiou])", "an ", text)  # "an orange ...", not "a orange ..."


def format_caption(template: str, *, shape: str, color: str, size: str, position: str) -> str:
    """Fill a caption template with the chosen phrases (synonyms, not class names)."""
    where = f"{_preposition(position)} the {position}"
    return _article(template.format(shape=shape, color=color, size=size, place=position, where=where))


# --- caption augmentation for training ------------------------------------------------------


def _extended(base: dict[str, tuple[str, ...]], extra: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    return {value: base[value] + extra.get(value, ()) for value in base}


# Common words people use, each clearly one value; nothing here occurs in HELDOUT_SYNONYMS
# (nor shares a word piece with it: "snow" would hand "snowy" over).
TRAINING_SYNONYMS: dict[str, dict[str, tuple[str, ...]]] = {
    "shape": _extended(SYNONYMS["shape"], {
        "circle": ("disc", "disk", "round shape", "dot", "ball"),
        "square": ("box", "block"),
        "diamond": ("rhombus", "lozenge"),
        "star": ("five-pointed star",),
        "cross": ("plus sign", "plus shape"),
    }),
    "color": _extended(SYNONYMS["color"], {
        "red": ("ruby", "cherry", "cardinal", "carmine", "vermilion", "strawberry", "tomato", "blood-red", "brick-red",
                "rose-red", "reddish", "fire-engine red"),
        "orange": ("pumpkin", "apricot", "carrot", "copper", "marigold", "saffron", "papaya", "mango", "persimmon",
                   "orangey", "burnt orange"),
        "yellow": ("canary", "banana", "sunflower", "butter", "mustard", "dandelion", "maize", "yellowish", "buttercup",
                   "daffodil", "sunshine", "bright yellow"),
        "green": ("mint", "grass", "leaf", "kelly", "shamrock", "lime", "forest", "pine", "pea", "fern", "clover",
                  "greenish", "moss", "grass-green", "leaf-green"),
        "cyan": ("teal", "blue-green", "bluish-green", "cyan-blue", "lagoon", "caribbean", "seafoam"),
        "blue": ("sapphire", "navy", "royal blue", "ultramarine", "denim", "cornflower", "blueberry", "bluish",
                 "ocean blue", "deep blue"),
        "purple": ("amethyst", "grape", "plum", "mauve", "orchid", "lilac", "eggplant", "heliotrope", "purplish",
                   "mulberry"),
        "white": ("pearl", "chalk", "milk", "cream", "off-white", "bone", "alabaster", "linen", "whitish",
                  "paper white", "cotton", "porcelain"),
    }),
    "size": _extended(SYNONYMS["size"], {
        "small": ("mini", "smallish", "teeny"),
        "large": ("huge", "massive", "oversized"),
    }),
    "position": _extended(SYNONYMS["position"], {
        "top left": ("top left corner", "upper left corner", "top-left corner"),
        "top": ("top center", "top middle", "top edge"),
        "top right": ("top right corner", "upper right corner", "top-right corner"),
        "left": ("left edge", "middle left"),
        "center": ("very middle", "exact center"),
        "right": ("right edge", "middle right"),
        "bottom left": ("bottom left corner", "lower left corner", "bottom-left corner"),
        "bottom": ("bottom center", "bottom middle", "bottom edge"),
        "bottom right": ("bottom right corner", "lower right corner", "bottom-right corner"),
    }),
}

# Nouns for a shape the caption does not name.
_SHAPELESS = ("shape", "object", "thing", "figure")
_DETERMINERS = ("a", "a", "a", "one", "the", "")
# Sentence frames: {np} a noun phrase, {w} a prepositional position phrase, {place} a bare one.
_FRAMES_WITH_PLACE = (
    "{np} {w}", "{np} {w}", "{np}, {place}", "there is {np} {w}", "{w} is {np}", "an image of {np} {w}",
    "{np} {w} of the image", "{place}, {np}", "{place}: {np}", "{np} located {w}", "a picture of {np} {w}",
    "{w} there is {np}", "{np} over {w}",
)
_FRAMES_WITHOUT_PLACE = ("{np}", "{np}", "{np}", "there is {np}", "an image of {np}", "a picture of {np}", "just {np}")
_LEAD_INS = (
    "please draw", "draw", "show", "generate", "make", "create", "i need", "give me", "an illustration of",
    "a drawing of", "a simple drawing of", "clip art of", "an icon of", "a photo of", "a render of",
)
_ENDINGS = (
    "on a black background", "on black", "against a dark background", "with a black background", "flat colors",
    "simple", "minimal", "nothing else", "no other objects", "centered composition", "high quality", "clean edges",
    "please", "thanks",
)
# Words people put before a position: "right in the middle", "just at the top". A model
# that never saw "right" name no side reads "right in the middle" as the right edge.
_INTENSIFIERS = ("right", "right", "exactly", "just")
# An edge's other axis, spelled out as people do: "at the top, centered horizontally".
_ACROSS = ("centered horizontally", "horizontally centered", "halfway across")
_DOWN = ("halfway down", "halfway up", "centered vertically", "vertically centered", "at mid height")
_AXIS_QUALIFIERS = {"top": _ACROSS, "bottom": _ACROSS, "left": _DOWN, "right": _DOWN}
# Probabilities of the augmentations: per caption; the intensifier's per position phrase
# that has its own preposition (half of them: the others say "toward" or "near").
PARTIAL_PROBABILITY = 0.25
TYPO_PROBABILITY = 0.15
INTENSIFIER_PROBABILITY = 0.15
AXIS_QUALIFIER_PROBABILITY = 0.2


def _phrases(table: dict[str, dict[str, tuple[str, ...]]], name: str, value: str) -> tuple[str, ...]:
    """The phrases `table` has for an attribute value; a shape it lacks (one being taught to
    a trained model) is named by itself, any other unknown value is a KeyError."""
    if name == "shape" and value not in table[name]:
        return (value,)
    return table[name][value]


def _noun_phrase(phrases: dict[str, str], rng: random.Random) -> str:
    adjectives = [phrases[name] for name in ("size", "color") if name in phrases]
    if len(adjectives) == 2 and rng.random() < 0.25:
        adjectives.reverse()  # "red big star" is not good English, but people type it
    noun = phrases.get("shape") or rng.choice(_SHAPELESS)
    return " ".join([rng.choice(_DETERMINERS), *adjectives, noun]).strip()


def _where(place: str, rng: random.Random) -> str:
    preposition = _preposition(place)
    if rng.random() < 0.5:
        preposition = rng.choice(("toward", "near"))
    elif rng.random() < INTENSIFIER_PROBABILITY:
        preposition = f"{rng.choice(_INTENSIFIERS)} {preposition}"
    return f"{preposition} the {place}"


def _sentence(phrases: dict[str, str], rng: random.Random) -> tuple[str, bool]:
    """A sentence naming exactly the attributes in `phrases` (name -> chosen phrase), and
    whether it starts with its noun phrase (so that a lead-in such as "draw" can precede it)."""
    if "size" in phrases and "color" in phrases and "shape" in phrases and rng.random() < 0.1:
        # The size as a relative clause, as in CAPTION_TEMPLATES' last one.
        noun_phrase = _noun_phrase({k: v for k, v in phrases.items() if k != "size"}, rng) + f" that is {phrases['size']}"
    elif len(phrases) >= 2 and rng.random() < 0.1:
        # Keywords in any order: "star, red, small, top left".
        keywords = list(phrases.values())
        rng.shuffle(keywords)
        return ", ".join(keywords), True
    else:
        noun_phrase = _noun_phrase(phrases, rng)
    frames = _FRAMES_WITH_PLACE if "position" in phrases else _FRAMES_WITHOUT_PLACE
    frame = rng.choice(frames)
    place = phrases.get("position", "")
    text = frame.format(np=noun_phrase, w=_where(place, rng) if place else "", place=place)
    return text, frame.startswith("{np}")


def training_caption(attributes: dict[str, str], rng: random.Random, typos: bool = True) -> str:
    """One augmented caption of a Shapes image with these attributes: a random frame,
    training synonyms, sometimes only some attributes (PARTIAL_PROBABILITY), a lead-in or
    an ending, another case or punctuation, and (if `typos`) sometimes a typo. Without
    typos it parses back to the attributes it names (`parse_caption(..., partial=True)`).
    A shape outside the vocabulary (a new one being taught: "heart") is named by itself."""
    names = list(attributes)
    if rng.random() < PARTIAL_PROBABILITY:
        names = rng.sample(names, rng.randint(1, len(names) - 1))
    # Half the time from the split's own synonyms, so that the common words stay common.
    phrases = {
        name: rng.choice(_phrases(SYNONYMS if rng.random() < 0.5 else TRAINING_SYNONYMS, name, attributes[name]))
        for name in names
    }
    text, bare = _sentence(phrases, rng)
    qualifiers = _AXIS_QUALIFIERS.get(attributes["position"], ()) if "position" in phrases else ()
    if qualifiers and rng.random() < AXIS_QUALIFIER_PROBABILITY:
        text = f"{text}, {rng.choice(qualifiers)}"
    if bare and rng.random() < 0.3:
        text = f"{rng.choice(_LEAD_INS)} {text}"
    if rng.random() < 0.15:
        text = f"{text}, {rng.choice(_ENDINGS)}"
    text = restyle(_article(text), rng)
    if typos and rng.random() < TYPO_PROBABILITY:
        slipped = with_typo(text, rng)
        # A slip can make a held-out word ("center" -> "centre"): keep the split held out.
        if not _HELDOUT_WORDS & set(_words(slipped)):
            text = slipped
    return text


# --- held-out phrasing ------------------------------------------------------------------------

# Never in a training caption: words and sentence shapes a user may type that training
# never showed, to measure how far text conditioning generalises.
HELDOUT_SYNONYMS: dict[str, dict[str, tuple[str, ...]]] = {
    "color": {
        "red": ("crimson", "scarlet"), "orange": ("tangerine", "amber"), "yellow": ("golden", "lemon"),
        "green": ("emerald", "jade"), "cyan": ("turquoise", "aqua"), "blue": ("azure", "cobalt"),
        "purple": ("violet", "lavender"), "white": ("ivory", "snowy"),
    },
    "size": {"small": ("miniature", "petite"), "large": ("enormous", "giant")},
    "position": {
        "top left": ("northwest", "upper-left area"),
        "top": ("north", "top-middle area"),
        "top right": ("northeast", "upper-right area"),
        "left": ("west", "left-hand side"),
        "center": ("centre", "central area"),
        "right": ("east", "right-hand side"),
        "bottom left": ("southwest", "lower-left area"),
        "bottom": ("south", "bottom-middle area"),
        "bottom right": ("southeast", "lower-right area"),
    },
}

# Other word orders, lead-ins, relative clauses, prepositions and longer sentences; each has
# a word no training caption uses. {np}: "a small red circle"; {w}: "in the top left".
HELDOUT_TEMPLATES = (
    "could you render {np} {w}?",
    "somewhere {w} sits {np}",
    "i'd like {np}; put it {w}",
    "a {shape} which is {color} and {size}, placed {w}",
    "{W}, you can see {np}",
    "on an otherwise empty canvas, {np} appears {w}, and nothing else is drawn",
    "the {shape} {w} should be {color} and {size}",
    "my picture: {size} {shape}, painted {color}, positioned {w}",
    "look {w}: there's {np}",
    "a single {color} {shape} of {size} proportions, drawn {w} of the frame",
)
# How often each attribute is named by a held-out synonym (else by a training one).
HELDOUT_SYNONYM_PROBABILITY = 0.5


def heldout_caption(attributes: dict[str, str], rng: random.Random) -> str:
    """A caption of all four attributes in a held-out sentence shape, each attribute named
    by a held-out synonym with probability HELDOUT_SYNONYM_PROBABILITY (a shape outside
    the vocabulary by itself, as in `training_caption`)."""
    phrases = {}
    for name, value in attributes.items():
        heldout = HELDOUT_SYNONYMS.get(name, {}).get(value)
        phrases[name] = rng.choice(
            heldout if heldout and rng.random() < HELDOUT_SYNONYM_PROBABILITY else _phrases(SYNONYMS, name, value)
        )
    where = f"{_preposition(phrases['position'])} the {phrases['position']}"
    noun_phrase = f"a {phrases['size']} {phrases['color']} {phrases['shape']}"
    text = rng.choice(HELDOUT_TEMPLATES).format(
        np=noun_phrase, w=where, W=where[0].upper() + where[1:], shape=phrases["shape"], color=phrases["color"],
        size=phrases["size"],
    )
    return _article(text)


# Every word of a held-out synonym that no training synonym uses.
_HELDOUT_WORDS = {
    word for table in HELDOUT_SYNONYMS.values() for phrases in table.values() for phrase in phrases
    for word in re.findall(r"[a-z]+", phrase)
} - {
    word for table in TRAINING_SYNONYMS.values() for phrases in table.values() for phrase in phrases
    for word in re.findall(r"[a-z]+", phrase)
}


# --- parsing --------------------------------------------------------------------------------

ATTRIBUTE_ORDER = ("shape", "color", "size", "position")


def _words(text: str) -> tuple[str, ...]:
    """Lower-case words; punctuation, hyphens and runs of whitespace all separate words."""
    return tuple(re.findall(r"[a-z]+", text.lower()))


_PHRASES = {
    _words(phrase): (name, value)
    for table in (TRAINING_SYNONYMS, HELDOUT_SYNONYMS)
    for name, values in table.items()
    for value, phrases in values.items()
    for phrase in phrases
}
_LONGEST_PHRASE = max(len(words) for words in _PHRASES)


_PREPOSITION_THE = {("in", "the"), ("at", "the"), ("on", "the")}


def _stresses_a_position(words: tuple[str, ...], i: int) -> bool:
    """Whether words[i] is a "right" that stresses the position named next ("right in the
    middle") rather than naming a side ("on the right in the picture", "star, right, on black")."""
    if words[i] != "right" or words[i - 1 : i] == ("the",) or words[i + 1 : i + 3] not in _PREPOSITION_THE:
        return False
    after = words[i + 3 :]
    return any(_PHRASES.get(after[:length], ("",))[0] == "position" for length in range(1, _LONGEST_PHRASE + 1))


def parse_caption(text: str, partial: bool = False) -> dict[str, str]:
    """The attributes a caption names, from any of the vocabularies above. Matching takes
    the longest phrase at each word, so "top left" is one position, not "top" and "left".
    A caption that leaves an attribute open is an error unless `partial` (then only the
    named ones are returned); one that names two values of an attribute always is. "right"
    can stress the position after it ("right in the middle": the middle)."""
    words = _words(text)
    found: dict[str, set[str]] = {name: set() for name in ATTRIBUTE_ORDER}
    i = 0
    while i < len(words):
        if _stresses_a_position(words, i):
            i += 1
            continue
        for length in range(min(_LONGEST_PHRASE, len(words) - i), 0, -1):
            match = _PHRASES.get(words[i : i + length])
            if match is not None:
                found[match[0]].add(match[1])
                i += length
                break
        else:
            i += 1
    problems = [] if partial else [f"no {name}" for name, values in found.items() if not values]
    problems += [f"ambiguous {name} ({', '.join(sorted(v))})" for name, v in found.items() if len(v) > 1]
    if partial and not any(found.values()):
        problems.append("no attribute")
    if problems:
        raise ValueError(f"caption {text!r} does not determine its attributes: {'; '.join(problems)}")
    return {name: values.pop() for name, values in found.items() if values}
