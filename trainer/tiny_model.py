"""A tiny, randomly initialised Llama with its own word-level tokenizer, and synthetic preference pairs.

For tests and the training benchmark when the nano model is not built: no hub, seconds to create.
"""

from __future__ import annotations

import random
from pathlib import Path

from lettingo.records import PreferencePair

TITLES = [f"title{i}" for i in range(40)]
GENRES = ["drama", "comedy", "horror", "action", "romance", "thriller", "animation", "documentary"]
WORDS = [
    "describe",
    "user",
    "who",
    "watched",
    "liked",
    "disliked",
    "profile",
    "likes",
    "prefers",
    "genre",
    "titles",
    "and",
    "the",
    "a",
    "of",
    "films",
    "mostly",
    "old",
    "new",
    "rates",
    "high",
    "low",
    ":",
    ".",
]


def build_tiny_policy(folder: Path, seed: int = 0, hidden_size: int = 32, layers: int = 2) -> Path:
    """Save a tiny LlamaForCausalLM and its tokenizer with ``save_pretrained`` into ``folder``."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    vocab = {token: i for i, token in enumerate(specials + WORDS + GENRES + TITLES + [f"u{i}" for i in range(200)])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=vocab["<pad>"],
        bos_token_id=vocab["<s>"],
        eos_token_id=vocab["</s>"],
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


def synthetic_pairs(count: int, seed: int = 0, users: int = 50, history: int = 5) -> list[PreferencePair]:
    """Pairs whose chosen profile names titles from the prompt and whose rejected one names random genres.

    ``history`` is how many titles each prompt lists (its length in tokens is about ``history + 10``).
    """
    rng = random.Random(seed)
    pairs = []
    for i in range(count):
        user = f"u{rng.randrange(users)}"
        seen = rng.sample(TITLES, history) if history <= len(TITLES) else rng.choices(TITLES, k=history)
        prompt = f"describe user {user} who watched {' '.join(seen)} . profile :"
        chosen = f" likes titles {' '.join(seen[:3])} ."
        rejected = f" likes genre {' and '.join(rng.sample(GENRES, 2))} ."
        pairs.append(
            PreferencePair(
                pair_id=f"pair-{seed}-{i}",
                user_id=user,
                prompt=prompt,
                chosen=chosen,
                rejected=rejected,
                chosen_reward=1.0,
                rejected_reward=0.0,
                chosen_profile_id=f"p{i}c",
                rejected_profile_id=f"p{i}r",
                policy_version="base",
            )
        )
    return pairs
