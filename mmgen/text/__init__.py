"""Text encoders shared by every model family."""

from mmgen.text.cache import CachedTextEncoder, default_cache_root, training_conditioning
from mmgen.text.encoder import UNCONDITIONAL_PROMPT, TextEncoder, TextEncoding, load_text_encoder, text_encoder_config
from mmgen.text.tokenizer import train_caption_tokenizer

__all__ = [
    "UNCONDITIONAL_PROMPT",
    "CachedTextEncoder",
    "TextEncoder",
    "TextEncoding",
    "default_cache_root",
    "load_text_encoder",
    "text_encoder_config",
    "training_conditioning",
    "train_caption_tokenizer",
]
