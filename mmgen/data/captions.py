"""Caption augmentation: the same caption as people would type it in other ways.

Prompts at sampling time come in every case, with or without punctuation, with words
around the description ("please draw ...", "..., high quality") and with typos; a model
trained on one spelling of each caption reads them as new sentences. `caption_variants`
gives a caption's variants for training, drawn deterministically from a seed so that a
frozen text encoder's outputs can be cached for each of them. (Shapes has its own, richer
grammar in `mmgen.data.shapes_text`.)
"""

from __future__ import annotations

import random
import string

from mmgen.data.seeding import derive_seed

_LEAD_INS = ("a picture of", "an image of", "a photo of", "please draw", "draw", "generate", "show me", "i want")
_ENDINGS = ("high quality", "detailed", "simple", "on a plain background", "please")


def restyle(text: str, rng: random.Random) -> str:
    """`text` in another case (kept, lower, Capitalised, Title Case or UPPER) and with or
    without a closing full stop or exclamation mark."""
    case = rng.random()
    if case < 0.2:
        text = text.capitalize()
    elif case < 0.3:
        text = string.capwords(text)
    elif case < 0.35:
        text = text.upper()
    elif case < 0.5:
        text = text.lower()
    ending = rng.random()
    if ending < 0.2:
        text = text.rstrip(".!") + "."
    elif ending < 0.23:
        text = text.rstrip(".!") + "!"
    return text


def with_typo(text: str, rng: random.Random) -> str:
    """`text` with one typing slip in one of its words of four letters or more: two letters
    swapped, one dropped or one doubled."""
    words = text.split(" ")
    candidates = [i for i, word in enumerate(words) if sum(c.isalpha() for c in word) >= 4]
    if not candidates:
        return text
    index = rng.choice(candidates)
    word = words[index]
    letters = [i for i, c in enumerate(word) if c.isalpha()]
    at = rng.choice(letters[1:-1])  # first and last letters are rarely mistyped
    slip = rng.randrange(3)
    if slip == 0:
        word = word[:at] + word[at + 1] + word[at] + word[at + 2 :]
    elif slip == 1:
        word = word[:at] + word[at + 1 :]
    else:
        word = word[:at] + word[at] + word[at:]
    words[index] = word
    return " ".join(words)


def augment_caption(text: str, rng: random.Random) -> str:
    """`text` with, at random, a lead-in or an ending, another case or punctuation, and
    rarely a typo. Its words and their order are kept: a user's caption may say anything,
    so nothing is dropped or swapped for a synonym."""
    if rng.random() < 0.25:
        text = f"{rng.choice(_LEAD_INS)} {text}"
    if rng.random() < 0.15:
        text = f"{text.rstrip('.!')}, {rng.choice(_ENDINGS)}"
    text = restyle(text, rng)
    if rng.random() < 0.05:
        text = with_typo(text, rng)
    return text


def caption_variants(text: str, count: int, seed: int = 0) -> tuple[str, ...]:
    """`text` and `count` - 1 augmented variants of it (fewer if some coincide), the same
    for the same (text, count, seed) on every machine."""
    rng = random.Random(derive_seed("caption-variants", seed, text))
    return tuple(dict.fromkeys([text, *(augment_caption(text, rng) for _ in range(count - 1))]))
