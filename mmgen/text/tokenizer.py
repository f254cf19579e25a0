"""Caption tokenizers built offline with `tokenizers`, wrapped as transformers tokenizers
so they save and load with `save_pretrained` / `AutoTokenizer.from_pretrained`."""

from __future__ import annotations

import json
from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

PAD, UNK, BOS, EOS = "<|pad|>", "<|unk|>", "<|startoftext|>", "<|endoftext|>"
# CLIP's end-of-word marker: lets decode() put spaces back between words.
END_OF_WORD = "</w>"


def train_caption_tokenizer(
    captions: Iterable[str], vocab_size: int = 2048, max_length: int = 77
) -> PreTrainedTokenizerFast:
    """Train a lower-cased BPE tokenizer (CLIP-style, with start/end tokens) on `captions`.

    Ids 0-3 are pad, unk, start and end, so a `CLIPTextConfig` can name them.
    """
    tokenizer = Tokenizer(models.BPE(unk_token=UNK, end_of_word_suffix=END_OF_WORD))
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.decoder = decoders.BPEDecoder(suffix=END_OF_WORD)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[PAD, UNK, BOS, EOS], end_of_word_suffix=END_OF_WORD, show_progress=False
    )
    tokenizer.train_from_iterator(captions, trainer=trainer)
    tokenizer = _renumbered(tokenizer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}", special_tokens=[(BOS, tokenizer.token_to_id(BOS)), (EOS, tokenizer.token_to_id(EOS))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token=PAD,
        unk_token=UNK,
        bos_token=BOS,
        eos_token=EOS,
        model_max_length=max_length,
    )


def _renumbered(tokenizer: Tokenizer) -> Tokenizer:
    """The trained tokenizer with ids in a canonical order: special tokens, then every other
    token sorted. BpeTrainer numbers tokens in hash-map order, which changes from run to
    run, so the same captions gave different ids (and a model trained on them different
    results) on every run. (Merges of equal count may still come in a different order, which
    only matters for words split into pieces.)"""
    state = json.loads(tokenizer.to_str())
    specials = [PAD, UNK, BOS, EOS]
    tokens = sorted(set(state["model"]["vocab"]) - set(specials))
    state["model"]["vocab"] = {token: i for i, token in enumerate([*specials, *tokens])}
    return Tokenizer.from_str(json.dumps(state))
