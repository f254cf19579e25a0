"""Caption tokenizers built offline with `tokenizers`, wrapped as transformers tokenizers
so they save and load with `save_pretrained` / `AutoTokenizer.from_pretrained`."""

from __future__ import annotations

import json
from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

PAD, UNK, BOS, EOS = "<|pad|>", "<|unk|>", "<|startoftext|>", "<|endoftext|>"


def train_caption_tokenizer(
    captions: Iterable[str], vocab_size: int = 2048, max_length: int = 77
) -> PreTrainedTokenizerFast:
    """Train a lower-cased byte-level BPE tokenizer (as CLIP's and GPT-2's, with start and
    end tokens) on `captions`.

    Byte-level: every one of the 256 bytes is in the vocabulary, so any text encodes,
    words the captions never held as byte pieces, and no token is ever unknown (a
    character-level BPE trained on Shapes' captions alone could not spell v, k, x, z or j,
    and turned unseen words into unknown tokens). Ids 0-3 are pad, unk (kept so that a
    `CLIPTextConfig` can name it; never produced), start and end.
    """
    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    # Every word carries its leading space ("Ġa"), the first one too; decoding drops that one.
    tokenizer.decoder = decoders.Sequence([decoders.ByteLevel(), decoders.Strip(" ", 1, 0)])
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[PAD, UNK, BOS, EOS], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
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
        clean_up_tokenization_spaces=False,
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
