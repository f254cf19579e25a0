"""The prior of the DALL-E baseline: a decoder-only transformer that writes an image's
tokens one by one after the caption's text-encoder states.

The transformer body is transformers' GPT-2 (causal attention, KV cache, SDPA); the
caption enters as a prefix of projected text-encoder hidden states, image tokens after a
begin-of-image token. Sampling uses transformers' logits warpers for temperature, top-k
and top-p, and classifier-free guidance against the empty prompt.
"""

from __future__ import annotations

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn
from transformers import GPT2Config, GPT2Model
from transformers.generation.logits_process import (
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from mmgen.errors import ConfigError


class DiscreteVAEPrior(ModelMixin, ConfigMixin):
    """p(image tokens | caption): [text prefix (text_seq_len), BOS, token_1 .. token_N-1]
    -> logits for token_1 .. token_N."""

    @register_to_config
    def __init__(
        self,
        num_image_tokens: int = 512,
        image_seq_len: int = 64,
        text_hidden_size: int = 384,
        text_seq_len: int = 32,
        hidden_size: int = 256,
        num_layers: int = 4,
        num_heads: int = 4,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.text_projection = nn.Linear(text_hidden_size, hidden_size)
        # Image tokens and the begin-of-image token (the last id) have their own table; the
        # transformer is only ever fed embeddings, so its word table is one unused row.
        self.image_embedding = nn.Embedding(num_image_tokens + 1, hidden_size)
        self.transformer = GPT2Model(GPT2Config(
            vocab_size=1, n_positions=text_seq_len + image_seq_len, n_embd=hidden_size, n_layer=num_layers,
            n_head=num_heads, resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout,
            bos_token_id=None, eos_token_id=None,
        ))
        self.head = nn.Linear(hidden_size, num_image_tokens, bias=False)

    @property
    def begin_of_image(self) -> int:
        return self.config.num_image_tokens

    def _check_text(self, text_states: torch.Tensor) -> None:
        expected = (self.config.text_seq_len, self.config.text_hidden_size)
        if tuple(text_states.shape[1:]) != expected:
            raise ConfigError(
                f"text states of shape {tuple(text_states.shape[1:])} given; this prior was built for "
                f"{expected} (text_seq_len, text_hidden_size): use the text encoder it was trained with"
            )

    def forward(self, text_states: torch.Tensor, image_tokens: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits [B, N, num_image_tokens] for `image_tokens` [B, N]."""
        self._check_text(text_states)
        begin = torch.full_like(image_tokens[:, :1], self.begin_of_image)
        shifted = torch.cat([begin, image_tokens[:, :-1]], dim=1)
        inputs = torch.cat([self.text_projection(text_states), self.image_embedding(shifted)], dim=1)
        hidden = self.transformer(inputs_embeds=inputs, use_cache=False).last_hidden_state
        return self.head(hidden[:, text_states.shape[1]:])

    @torch.no_grad()
    def generate(
        self,
        text_states: torch.Tensor,
        unconditional_states: torch.Tensor | None = None,
        guidance_scale: float = 1.0,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        generator: torch.Generator | None = None,
        use_cache: bool = True,
    ) -> torch.Tensor:
        """Sample image tokens [B, image_seq_len]. With `unconditional_states` (the empty
        prompt's states, [1 or B, T, D]) and `guidance_scale` != 1, each step's logits are
        unconditional + scale x (conditional - unconditional). `use_cache` keeps keys and
        values so each step runs one new position (False re-runs the whole sequence; same
        tokens, for testing and benchmarks)."""
        self._check_text(text_states)
        batch = len(text_states)
        guided = unconditional_states is not None and guidance_scale != 1.0
        if guided:
            text_states = torch.cat([text_states, unconditional_states.expand(batch, -1, -1)])
        warpers = LogitsProcessorList()
        if temperature != 1.0:
            warpers.append(TemperatureLogitsWarper(temperature))
        if top_k:
            warpers.append(TopKLogitsWarper(top_k))
        if top_p is not None and top_p < 1.0:
            warpers.append(TopPLogitsWarper(top_p))

        prefix = torch.cat([
            self.text_projection(text_states),
            self.image_embedding(torch.full((len(text_states), 1), self.begin_of_image, device=text_states.device)),
        ], dim=1)
        tokens = torch.empty(batch, 0, dtype=torch.long, device=text_states.device)
        inputs, past = prefix, None
        for _ in range(self.config.image_seq_len):
            # The cache goes in and comes out by position: transformers 5 renamed past_key_values
            # to cache (warning at every call under the old name), 4.x knows only the old one.
            output = self.transformer(None, past, inputs_embeds=inputs, use_cache=use_cache)
            logits = self.head(output.last_hidden_state[:, -1]).float()
            if guided:
                conditional, unconditional = logits.chunk(2)
                logits = unconditional + guidance_scale * (conditional - unconditional)
            logits = warpers(tokens, logits)
            probabilities = logits.softmax(-1)
            if generator is not None and generator.device != probabilities.device:
                # A CPU generator (as diffusers pipelines take one) draws on the CPU.
                probabilities = probabilities.cpu()
            next_token = torch.multinomial(probabilities, 1, generator=generator).to(logits.device)
            tokens = torch.cat([tokens, next_token], dim=1)
            embedded = self.image_embedding(torch.cat([next_token, next_token]) if guided else next_token)
            if use_cache:
                inputs, past = embedded, output[1]
            else:
                inputs = torch.cat([inputs, embedded], dim=1)
        return tokens
