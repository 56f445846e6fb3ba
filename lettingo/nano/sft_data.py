"""SFT data for nano: profile prompts over the training users' H_u, completed by the profile writers.

Completions are drawn afresh each time a prompt is visited (writers are cheap and seeded), so several epochs
over the same prompts still see varied wording.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from lettingo.data import Dataset, LabelScheme, split_dataset
from lettingo.nano.config import NanoConfig
from lettingo.nano.tokenizer import strip_titles
from lettingo.prompts.profile import ProfilePrompt, profile_prompt
from lettingo.writers import WRITERS


@dataclass(frozen=True, slots=True)
class SftPrompt:
    prompt: ProfilePrompt
    titles: tuple[str, ...]  # raw titles shown, for stripping them from the BPE corpus


def completion_text(profile: str) -> str:
    """What follows the prompt's cue: a space, then the profile (the tokenizer adds nothing else)."""
    return " " + profile


def training_prompts(dataset: Dataset, cfg: NanoConfig) -> list[SftPrompt]:
    """One prompt per (training user, target position); validation and test users are never looked at."""
    split = split_dataset(dataset)
    users = list(split.train)
    if cfg.max_train_users is not None:
        users = random.Random(cfg.seed).sample(users, min(cfg.max_train_users, len(users)))
    chosen = set(users)
    labels = LabelScheme.for_scale(dataset.integer_scale)
    cases = [c for c in split.cases(dataset, "train", targets_per_user=cfg.targets_per_user) if c.user_id in chosen]
    out = []
    for case in cases:
        prompt = profile_prompt(case.long_history, dataset.items, labels)
        out.append(SftPrompt(prompt, tuple(e.item.title for e in prompt.entries)))
    return out


def draw_profiles(prompt: ProfilePrompt, count: int, rng: random.Random) -> list[str]:
    """``count`` writer profiles for one prompt: every writer in turn, in a random order, cycling if needed."""
    names = list(WRITERS)
    rng.shuffle(names)
    return [WRITERS[names[i % len(names)]](prompt.entries, rng) for i in range(count)]


def tokenizer_corpus(prompts: Sequence[SftPrompt], rng: random.Random) -> Iterator[str]:
    """Prompts and one profile per writer, titles stripped (they get their own tokens)."""
    for p in prompts:
        yield strip_titles(p.prompt.text, p.titles)
        for profile in draw_profiles(p.prompt, len(WRITERS), rng):
            yield strip_titles(completion_text(profile), p.titles)
