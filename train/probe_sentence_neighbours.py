"""Does a pretrained sentence encoder place held-out phrasings near the training captions
that say the same? Two questions, asked of the encoder's mean-pooled sentence embedding
(the space sentence-transformers models are trained for):

- nearest neighbour: each of 1,000 `heldout-phrasing` captions ("a crimson star sits in
  the north-west area") against N training captions (`training_caption`, no typos); how
  often the nearest one names the same attributes;
- zero-shot words: each held-out colour, size and position word (`HELDOUT_SYNONYMS`) in a
  short caption, against the same caption with each trained value's name; how often the
  nearest is its own value.

  .venv/bin/python train/probe_sentence_neighbours.py [--encoder FOLDER] [--train-captions N]

FOLDER: a Hugging Face model folder (default: the MiniLM mmgen uses). If an encoder that
places these words well exists, a text-to-image model conditioned on it could read the
held-out phrasings; the Shapes training data alone cannot teach words it never holds.
"""

from __future__ import annotations

import argparse
import random

import torch
from transformers import AutoModel, AutoTokenizer

from mmgen.data.shapes import ATTRIBUTES
from mmgen.data.shapes_text import HELDOUT_SYNONYMS, heldout_caption, parse_caption, training_caption
from mmgen.text.encoder import minilm_path


def sentence_embeddings(model, tokenizer, texts: list[str], batch_size: int = 256) -> torch.Tensor:
    """Unit-length mean-pooled last hidden states [len(texts), hidden]."""
    embedded = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(texts[start : start + batch_size], padding=True, truncation=True, max_length=77, return_tensors="pt")
        with torch.no_grad():
            states = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        embedded.append(torch.nn.functional.normalize((states * mask).sum(1) / mask.sum(1), dim=-1))
    return torch.cat(embedded)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--encoder", default=None, help="a Hugging Face model folder (default: MiniLM)")
    parser.add_argument("--train-captions", type=int, default=20000)
    args = parser.parse_args()
    path = args.encoder or minilm_path()
    tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()

    def embed(texts: list[str]) -> torch.Tensor:
        return sentence_embeddings(model, tokenizer, texts)

    rng = random.Random(0)
    names = list(ATTRIBUTES)

    def draw() -> dict[str, str]:
        return {name: rng.choice(list(ATTRIBUTES[name])) for name in names}

    train_attributes = [draw() for _ in range(args.train_captions)]
    train_captions = [training_caption(a, rng, typos=False) for a in train_attributes]
    test_attributes = [draw() for _ in range(1000)]
    nearest = (embed([heldout_caption(a, rng) for a in test_attributes]) @ embed(train_captions).T).argmax(1)
    right = {name: 0 for name in names}
    all_right = 0
    for attributes, index in zip(test_attributes, nearest.tolist()):
        said = parse_caption(train_captions[index], partial=True)
        hits = [said.get(name) == attributes[name] for name in names]
        all_right += all(hits)
        for name, hit in zip(names, hits):
            right[name] += hit
    print("nearest training caption names the same: "
          + ", ".join(f"{name} {right[name] / 10:.1f}%" for name in names) + f", all four {all_right / 10:.1f}%")

    for name in ("color", "size", "position"):
        values = list(ATTRIBUTES[name])

        def caption(word: str) -> str:
            return f"a circle in the {word}" if name == "position" else f"a {word} circle"

        trained = embed([caption(value) for value in values])
        placed, missed = 0, []
        for value, words in HELDOUT_SYNONYMS[name].items():
            for word in words:
                guess = values[(embed([caption(word)]) @ trained.T).argmax().item()]
                placed += guess == value
                if guess != value:
                    missed.append(f"{word} -> {guess}")
        total = sum(len(words) for words in HELDOUT_SYNONYMS[name].values())
        print(f"zero-shot {name}: {placed} of {total} held-out words nearest their own value; missed: {', '.join(missed)}")


if __name__ == "__main__":
    main()
