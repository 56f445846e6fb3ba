"""The nano tokenizer: a small byte-level BPE trained on the prompts and profiles, plus one token per title.

A model this small cannot learn to copy a title spelled over a dozen BPE pieces; with the quoted title
(`` "Heat (1995)"``, leading space included) as a single token, copying is one choice, and the title constraint
can allow exactly the titles of the prompt.

Pre-tokenization splits on whitespace only (a word keeps its leading space), so frequent prompt fragments
such as `` ["Drama",`` become single tokens and a 70-item history stays near 6 tokens per line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from lettingo.prompts.escape import quote
from lettingo.prompts.profile import PROFILE_CUE

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"

# Renders chat messages the way ProfilePrompt.text does; the assistant turn is " " + profile + EOS, after the cue,
# so TRL's prompt / prompt+completion tokenizations share their prefix exactly.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{{ '" + PROFILE_CUE + " ' + message['content'] + eos_token }}"
    "{%- else -%}"
    "{{ message['content'] + '\\n\\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '" + PROFILE_CUE + "' }}{%- endif -%}"
)

_TITLE_TOKEN = re.compile(r'^ ".*"$', re.DOTALL)


def title_token_text(title: str) -> str:
    """The token of a catalogue title: a space and the title exactly as :func:`quote` puts it in prompts."""
    return " " + quote(title)


def train_tokenizer(texts: Iterable[str], titles: Iterable[str], bpe_vocab_size: int) -> PreTrainedTokenizerFast:
    """Train the BPE on ``texts`` (titles already stripped out), then add one token per distinct title."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r"\s?\S+|\s+"), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=bpe_vocab_size,
        min_frequency=2,
        special_tokens=[EOS_TOKEN, PAD_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    title_tokens = sorted({title_token_text(t) for t in titles})
    tok.add_tokens([AddedToken(t, normalized=False, special=False) for t in title_tokens])
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        padding_side="left",  # generation pads prompts on the left
        model_max_length=2048,
        clean_up_tokenization_spaces=False,
    )
    wrapped.chat_template = CHAT_TEMPLATE
    return wrapped


def strip_titles(text: str, titles: Iterable[str]) -> str:
    """``text`` without its quoted titles, for BPE training (titles get their own tokens)."""
    for t in titles:
        text = text.replace(title_token_text(t), "")
    return text


def title_token_ids(tokenizer: PreTrainedTokenizerFast) -> dict[int, str]:
    """Ids of the title tokens (added tokens shaped `` "..."``), with their text; empty for ordinary tokenizers."""
    return {
        idx: content
        for content, idx in tokenizer.get_added_vocab().items()
        if _TITLE_TOKEN.match(content) and content not in tokenizer.all_special_tokens
    }


def quote_token_ids(tokenizer: PreTrainedTokenizerFast) -> set[int]:
    """Non-title tokens whose text holds a double quote (e.g. `` "Drama",`` learned from the prompt's genre lists).

    For a tokenizer with title tokens, a quote in a profile can only be part of a title; banning these keeps a
    model from quoting anything else (a genre, a made-up title) with plain BPE pieces.
    """
    titles = title_token_ids(tokenizer)
    special = set(tokenizer.all_special_ids)
    return {
        idx
        for idx in range(len(tokenizer))
        if idx not in titles and idx not in special and '"' in tokenizer.decode([idx])
    }
