"""Prompt sets for measuring text conditioning beyond the training captions.

`shapes_freeform.jsonl`: 359 prompts for Shapes images written the way people type
them (partial prompts, paraphrases, capitals, typos, extra words, long descriptions),
each with the attributes it determines. It was written by someone who had not seen
the training captions' templates or synonyms, and no model is tuned on it.
"""

from __future__ import annotations

import json
from importlib import resources

FREEFORM_FILE = "shapes_freeform.jsonl"


def freeform_prompts(n: int | None = None) -> tuple[list[str], dict[str, list[str | None]]]:
    """The free-form prompts and their attributes as columns (None: left open by the
    prompt), cycled to `n` prompts when n is given (the same prompt then gets other noise)."""
    lines = resources.files(__package__).joinpath(FREEFORM_FILE).read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines if line.strip()]
    if n is not None:
        rows = [rows[i % len(rows)] for i in range(n)]
    names = ("shape", "color", "size", "position")
    return [row["prompt"] for row in rows], {name: [row["attributes"].get(name) for row in rows] for name in names}
