"""On-disk cache of a frozen text encoder's outputs, keyed by caption text.

A frozen encoder gives the same output for the same caption every epoch, so it is run
once per distinct caption. Entries live under `<cache root>/text/<encoder fingerprint>/`
as safetensors shards: any model family that uses the same encoder weights finds them.
"""

from __future__ import annotations

import json
import os
import time
import uuid
import warnings
from collections.abc import Iterable
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from mmgen.errors import ConfigError
from mmgen.text.encoder import UNCONDITIONAL_PROMPT, TextEncoder, TextEncoding, prompt_problems


# Captions per shard file: bounds the memory of one write and safetensors' header size.
SHARD_SIZE = 4096
# Encoding expected to take longer than this gets a time estimate up front.
ESTIMATE_ABOVE_SECONDS = 10


def default_cache_root() -> Path:
    """`$MMGEN_CACHE`, else `~/.cache/mmgen`."""
    return Path(os.environ.get("MMGEN_CACHE", Path.home() / ".cache" / "mmgen"))


class CachedTextEncoder:
    """Call it like the encoder (`cached(texts) -> TextEncoding`); misses are encoded and
    remembered, `flush()` writes them to disk. Stored in `dtype` (float16 halves the disk
    and memory cost at ~1e-3 relative error), returned as float32."""

    def __init__(
        self,
        encoder: TextEncoder,
        cache_root: str | Path | None = None,
        dtype: torch.dtype = torch.float16,
        batch_size: int = 256,
    ):
        if encoder.trainable:
            raise ConfigError("only a frozen text encoder can be cached: its outputs change while it trains")
        self.encoder = encoder
        self.dtype = dtype
        self.batch_size = batch_size
        dtype_name = str(dtype).removeprefix("torch.")
        self.directory = Path(cache_root or default_cache_root()) / "text" / f"{encoder.fingerprint()[:24]}-{dtype_name}"
        self.hits = 0
        self.misses = 0
        self._entries: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}  # states, mask, pooled
        self._unsaved: list[str] = []
        for shard in sorted(self.directory.glob("shard-*.safetensors")):
            self._load_shard(shard)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, text: str) -> bool:
        return text in self._entries

    def __call__(self, texts: list[str]) -> TextEncoding:
        if isinstance(texts, str):
            texts = [texts]
        if not texts:
            raise ValueError("no texts to encode")
        missing = [t for t in texts if t not in self._entries]
        self.misses += len(missing)
        self.hits += len(texts) - len(missing)
        missing = list(dict.fromkeys(missing))
        self._warn_of_problems(missing)
        self._encode(missing)
        return self._assemble(texts)

    def precompute(self, texts: Iterable[str], progress: bool = True) -> None:
        """Encode every distinct text not cached yet, then write them to disk. After the
        first batch, says how long the rest will take when that is more than a few seconds."""
        missing = [t for t in dict.fromkeys(texts) if t not in self._entries]
        self._warn_of_problems(missing)
        batches = range(0, len(missing), self.batch_size)
        started = time.perf_counter()
        for index, start in enumerate(tqdm(batches, desc="encoding captions", disable=not progress or not missing)):
            self._encode(missing[start : start + self.batch_size])
            if index == 0 and progress and len(batches) > 1:
                estimate = (time.perf_counter() - started) * len(batches)
                if estimate > ESTIMATE_ABOVE_SECONDS:
                    tqdm.write(
                        f"encoding {len(missing):,} captions once with the frozen text encoder: about "
                        f"{estimate / 60:.1f} min; later runs read them from {self.directory}"
                    )
            if len(self._unsaved) >= SHARD_SIZE:
                self.flush()
        self.flush()

    def flush(self) -> None:
        """Write the entries added since the last flush as one new shard (atomically)."""
        if not self._unsaved:
            return
        texts = self._unsaved
        hidden, mask, pooled = (torch.stack(parts) for parts in zip(*(self._entries[t] for t in texts)))
        tensors = {"hidden_states": hidden, "attention_mask": mask, "pooled": pooled}
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"shard-{uuid.uuid4().hex}.safetensors"
        temporary = self.directory / f".{name}.tmp"
        save_file(tensors, temporary, metadata={"texts": json.dumps(texts)})
        os.replace(temporary, self.directory / name)
        self._unsaved = []

    def _warn_of_problems(self, texts: list[str]) -> None:
        """What the encoder does not read of `texts`, said once for all of them (the
        encoder, given them in chunks, is told not to)."""
        for problem in prompt_problems(self.encoder.tokenizer, self.encoder.max_length, texts):
            warnings.warn(problem, stacklevel=3)

    @torch.no_grad()
    def _encode(self, texts: list[str]) -> None:
        for start in range(0, len(texts), self.batch_size):
            chunk = texts[start : start + self.batch_size]
            encoding = self.encoder(chunk, warn=False)
            for i, text in enumerate(chunk):
                self._entries[text] = (
                    encoding.hidden_states[i].to("cpu", self.dtype).clone(),
                    encoding.attention_mask[i].cpu().clone(),
                    encoding.pooled[i].to("cpu", self.dtype).clone(),
                )
            self._unsaved.extend(chunk)

    def _assemble(self, texts: list[str]) -> TextEncoding:
        hidden, mask, pooled = (torch.stack(parts) for parts in zip(*(self._entries[t] for t in texts)))
        return TextEncoding(hidden.float(), mask, pooled.float())

    def _load_shard(self, path: Path) -> None:
        with safe_open(path, framework="pt") as shard:
            texts = json.loads(shard.metadata()["texts"])
        tensors = load_file(path)
        for text, *entry in zip(texts, tensors["hidden_states"], tensors["attention_mask"], tensors["pooled"]):
            self._entries[text] = tuple(entry)


def training_conditioning(
    encoder: TextEncoder, captions: list[str], device: torch.device | str
) -> TextEncoder | CachedTextEncoder:
    """What a training objective reads caption states from: a trainable encoder itself
    (it learns on every step), or a frozen one's cache, with `captions` and the
    unconditional prompt encoded up front."""
    if encoder.trainable:
        return encoder
    cached = CachedTextEncoder(encoder.to(device))
    cached.precompute([UNCONDITIONAL_PROMPT, *captions])
    return cached
