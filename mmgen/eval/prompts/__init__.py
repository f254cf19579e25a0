"""Prompt sets for measuring text conditioning beyond the training captions.

`shapes_freeform.jsonl`: 359 prompts for Shapes images written the way people type
them (partial prompts, paraphrases, capitals, typos, extra words, long descriptions),
each with the attributes it determines. It was written by someone who had not seen
the training captions' templates or synonyms. The checkpoints shipped so far were not
tuned on it; but since commit `cfbfd70` the Shapes caption augmentation holds phrasings
that an analysis of its failures pointed to ("right in the middle", an edge's other axis
spelled out, "dot", "ball", "box", "block"; 73 of the 359 prompts use them), so for a
model trained on that augmentation this split is no longer wholly unseen: `mmgen eval`
reports it beside the prompts without those phrasings (`FIXED_PHRASINGS`).
"""

from __future__ import annotations

import json
import re
from importlib import resources

# Where text conditioning is measured: `test` and `compositional` (the training captions'
# phrasing; compositional holds out pairs), `heldout-phrasing` (sentence shapes and
# synonyms no training caption uses) and `freeform` (prompts as people type them, scored
# on the attributes each determines).
PROMPT_SPLITS = ("test", "compositional", "heldout-phrasing", "freeform")
FREEFORM_FILE = "shapes_freeform.jsonl"
# The free-form phrasings that the training augmentation took up after a failure analysis,
# with their close spellings ("centred", "middle height"), so that what is left is unseen.
FIXED_PHRASINGS = re.compile(
    r"\b(dots?|balls?|box(es)?|blocks?)\b|\bright (in|at|on) the\b|horizontally|vertically|halfway|mid(dle)? height|centred|centered",
    re.IGNORECASE,
)


def freeform_prompts(n: int | None = None) -> tuple[list[str], dict[str, list[str | None]]]:
    """The free-form prompts and their attributes as columns (None: left open by the
    prompt), cycled to `n` prompts when n is given (the same prompt then gets other noise)."""
    lines = resources.files(__package__).joinpath(FREEFORM_FILE).read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines if line.strip()]
    if n is not None:
        rows = [rows[i % len(rows)] for i in range(n)]
    names = ("shape", "color", "size", "position")
    return [row["prompt"] for row in rows], {name: [row["attributes"].get(name) for row in rows] for name in names}
