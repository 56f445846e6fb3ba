"""What a model is trained and scored on: a profile prompt rendered for its tokenizer, and a profile after it.

A preference pair or an explore line stores the prompt as plain text (``ProfilePrompt.text``). The nano
tokenizer's chat template renders the chat messages to exactly that text, so nano sees it as it is. A model with
an ordinary chat template (SmolLM2: ``<|im_start|>user ...<|im_end|>``) was sampled through its template at
generation time, so training and scoring must render the same way, or DPO would teach it a format it is never
served in. :func:`model_prompt` does that for any tokenizer; :func:`prompt_messages` recovers the messages from
the stored text.
"""

from __future__ import annotations

from typing import Any

from lettingo.prompts.profile import PROFILE_CUE, render_prompt_text


def prompt_messages(text: str) -> tuple[dict[str, str], ...]:
    """The (system, user) messages of a profile prompt's plain text (the inverse of ``render_prompt_text``)."""
    system, sep, rest = text.partition("\n\n")
    user, cue = rest.rpartition("\n\n")[::2]
    messages = ({"role": "system", "content": system}, {"role": "user", "content": user})
    if not sep or cue != PROFILE_CUE or render_prompt_text(messages) != text:
        raise ValueError("not a profile prompt's text (system, user and the profile cue, separated by blank lines)")
    return messages


def renders_plain(tokenizer: Any) -> bool:
    """Whether the tokenizer's chat template renders a prompt's messages to its plain text (the nano's)."""
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        return True
    probe = ({"role": "system", "content": "s"}, {"role": "user", "content": "u"})
    rendered = tokenizer.apply_chat_template(list(probe), add_generation_prompt=True, tokenize=False)
    return rendered == render_prompt_text(probe)


def model_prompt(tokenizer: Any, text: str) -> str:
    """The string the model reads before a profile: ``text`` itself, or its messages through the chat template."""
    if renders_plain(tokenizer):
        return text
    return tokenizer.apply_chat_template(list(prompt_messages(text)), add_generation_prompt=True, tokenize=False)


def model_completion(tokenizer: Any, profile: str) -> str:
    """A profile as the model writes it after :func:`model_prompt` (EOS not included): after nano's cue, a space."""
    return " " + profile if renders_plain(tokenizer) else profile
