"""Does any layer of the frozen MiniLM read the held-out colour and position words? A
linear probe per hidden-state layer (the embeddings, then each of the 6 layers), trained
on the training lexicon's words (`TRAINING_SYNONYMS`) in a few caption contexts, tested on
the `heldout-phrasing` split's synonyms (`HELDOUT_SYNONYMS`: "crimson", "northwest"), which
no training caption holds. If one layer read them much better than the last, which the
text-to-image models attend to, conditioning on it would be the cheap fix.

  .venv/bin/python train/probe_minilm_layers.py

Prints the held-out accuracy per layer for colours (8 classes) and positions (9 classes).
A word's feature is the mean of its word pieces' states; the probe is an L2-regularised
logistic regression on standardised features.
"""

from __future__ import annotations

import torch
from transformers import AutoModel, AutoTokenizer

from mmgen.data.shapes_text import HELDOUT_SYNONYMS, TRAINING_SYNONYMS
from mmgen.text.encoder import minilm_path

COLOUR_CONTEXTS = (
    "a small {} circle in the top left", "a large {} star at the bottom", "a {} square",
    "draw a big {} cross on the right", "a tiny {} triangle in the middle", "there is a {} diamond in the top right corner",
)
POSITION_CONTEXTS = (
    "a small red circle in the {}", "a large blue star at the {}", "draw a green square, {}", "a cross in the {} of the image",
)


def word_states(model, tokenizer, words: dict[str, tuple[str, ...]], contexts: tuple[str, ...]) -> tuple[torch.Tensor, list[str]]:
    """[words x contexts, layers, hidden] states of each word in each context, and its class."""
    features, labels = [], []
    for label, phrases in words.items():
        for phrase in phrases:
            pieces = len(tokenizer(phrase, add_special_tokens=False)["input_ids"])
            for context in contexts:
                start = 1 + len(tokenizer(context.split("{}")[0].strip(), add_special_tokens=False)["input_ids"])
                with torch.no_grad():
                    states = model(**tokenizer(context.format(phrase), return_tensors="pt"), output_hidden_states=True)
                features.append(torch.stack([layer[0, start : start + pieces].mean(0) for layer in states.hidden_states]))
                labels.append(label)
    return torch.stack(features), labels


def probe_accuracy(train: torch.Tensor, train_labels: torch.Tensor, test: torch.Tensor, test_labels: torch.Tensor) -> float:
    mean, std = train.mean(0), train.std(0) + 1e-6
    train, test = (train - mean) / std, (test - mean) / std
    weights = torch.zeros(train.shape[1], int(train_labels.max()) + 1, requires_grad=True)
    bias = torch.zeros(weights.shape[1], requires_grad=True)
    optimiser = torch.optim.LBFGS([weights, bias], max_iter=200)

    def loss() -> torch.Tensor:
        optimiser.zero_grad()
        value = torch.nn.functional.cross_entropy(train @ weights + bias, train_labels) + 1e-2 * weights.square().sum()
        value.backward()
        return value

    optimiser.step(loss)
    return float(((test @ weights + bias).argmax(1) == test_labels).float().mean())


def per_layer(model, tokenizer, attribute: str, contexts: tuple[str, ...]) -> list[float]:
    classes = sorted(TRAINING_SYNONYMS[attribute])
    train, train_labels = word_states(model, tokenizer, TRAINING_SYNONYMS[attribute], contexts)
    test, test_labels = word_states(model, tokenizer, HELDOUT_SYNONYMS[attribute], contexts)
    train_labels = torch.tensor([classes.index(label) for label in train_labels])
    test_labels = torch.tensor([classes.index(label) for label in test_labels])
    return [probe_accuracy(train[:, layer], train_labels, test[:, layer], test_labels) for layer in range(train.shape[1])]


def main() -> None:
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    model = AutoModel.from_pretrained(minilm_path()).eval()
    for attribute, contexts in (("color", COLOUR_CONTEXTS), ("position", POSITION_CONTEXTS)):
        accuracies = per_layer(model, tokenizer, attribute, contexts)
        print(f"{attribute}: held-out synonyms read right, layer 0 (embeddings) to 6: "
              + " ".join(f"{accuracy:.0%}" for accuracy in accuracies))


if __name__ == "__main__":
    main()
