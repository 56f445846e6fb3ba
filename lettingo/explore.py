"""Exploration: K candidate profiles per user from several generators and decoding settings.

The paper samples N profiles at temperature 1.0 from several LLMs; here each :class:`ExploreSource` is one
generator with its own sample count and temperature (e.g. nano at 1.0 plus writer profiles). Candidates are
deduplicated by normalized text across sources, and a source that lost samples to duplicates is asked again
with a fresh seed (up to ``max_rounds``). Each candidate keeps its provenance: generator, model version, seed.

Pure: reads nothing and writes nothing; the caller persists the results (see ``lettingo explore``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from lettingo.data import Item, LabelScheme, Rating
from lettingo.generators.base import Generator
from lettingo.history_ref import HistoryRef, to_wire
from lettingo.offline_files import ExploredCandidate, ExploredCase
from lettingo.prompts.profile import HistoryEntry, ProfilePrompt, history_entries, profile_prompt_from_entries

# Builds a case's prompt from its history entries and user id (e.g. within a token budget: profile_prompt_within).
PromptBuilder = Callable[[Sequence[HistoryEntry], str], ProfilePrompt]

_SPACE = re.compile(r"\s+")
_EDGE_PUNCT = re.compile(r"^[\s.,;:!]+|[\s.,;:!]+$")


class HistoryCase(Protocol):
    """What exploration needs of a case; :class:`lettingo.data.UserSplit` fits."""

    @property
    def user_id(self) -> str: ...

    @property
    def long_history(self) -> Sequence[Rating]: ...


@dataclass(frozen=True, slots=True)
class ExploreSource:
    generator: Generator
    n: int
    temperature: float = 1.0
    max_new_tokens: int = 96


@dataclass(slots=True)
class UserCandidates:
    user_id: str
    position: int  # which target the history precedes (0 = the user's last rating)
    history_ref: HistoryRef  # which ratings the prompt saw; its event id is "<last item id>:<last ts>"
    prompt: ProfilePrompt
    candidates: list[ExploredCandidate] = field(default_factory=list)
    duplicates: int = 0  # samples dropped as repeats of an earlier candidate
    empty: int = 0  # samples dropped as blank

    def to_record(self) -> ExploredCase:
        """The line of the explore output (:data:`lettingo.offline_files.EXPLORE`)."""
        return ExploredCase(
            user_id=self.user_id,
            position=self.position,
            history_ref=str(self.history_ref),
            prompt=self.prompt.text,
            messages=list(self.prompt.messages),
            candidates=self.candidates,
            duplicates=self.duplicates,
            empty=self.empty,
        )


def normalize_profile(text: str) -> str:
    """The form two profiles are compared in: case-folded, whitespace collapsed, edge punctuation dropped."""
    return _EDGE_PUNCT.sub("", _SPACE.sub(" ", text.casefold()))


def history_ref(history: Sequence[Rating]) -> HistoryRef:
    """The reference of an offline history: a rating has no event id, so its item id and time stand in."""
    last = history[-1] if history else None
    return HistoryRef.of(len(history), f"{last.item_id}:{last.ts}" if last else "")


def candidate_id(user_id: str, ref: HistoryRef | None, normalized: str) -> str:
    """A candidate's id: a digest of its user, history and normalized text (:func:`normalize_profile`), so one
    text of one history has one id however often, and by whom (offline or the stream), it is sampled."""
    return hashlib.sha256(f"{user_id}\x00{to_wire(ref)}\x00{normalized}".encode()).hexdigest()[:16]


def _chunks(cases: Iterable[HistoryCase], size: int) -> Iterator[list[HistoryCase]]:
    chunk: list[HistoryCase] = []
    for case in cases:
        chunk.append(case)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _collect(
    users: list[UserCandidates], seen: list[set[str]], source: ExploreSource, seed: int, wanted: list[int]
) -> list[int]:
    """Sample ``source`` for the users with ``wanted[i] > 0``; returns how many each still lacks."""
    todo = [i for i, w in enumerate(wanted) if w > 0]
    if not todo:
        return wanted
    results = source.generator.generate(
        [users[i].prompt for i in todo],
        n=source.n,
        temperature=source.temperature,
        max_new_tokens=source.max_new_tokens,
        seed=seed,
    )
    still = list(wanted)
    for i, generations in zip(todo, results, strict=True):
        user = users[i]
        for g in generations:
            if still[i] == 0:
                break
            key = normalize_profile(g.text)
            if not key:
                user.empty += 1
                continue
            if key in seen[i]:
                user.duplicates += 1
                continue
            seen[i].add(key)
            still[i] -= 1
            user.candidates.append(
                ExploredCandidate(
                    profile_id=candidate_id(user.user_id, user.history_ref, key),
                    text=g.text,
                    generator=g.generator,
                    model_version=g.model_version,
                    seed=g.seed,
                    temperature=source.temperature,
                    prompt_tokens=g.prompt_tokens,
                    completion_tokens=g.completion_tokens,
                    latency_s=round(g.latency_s, 4),
                    finished=g.finished,
                )
            )
    return still


def explore(
    cases: Iterable[HistoryCase],
    items: Mapping[str, Item],
    sources: Sequence[ExploreSource],
    *,
    labels: LabelScheme | None = None,
    seed: int = 0,
    batch_size: int = 16,
    max_rounds: int = 2,
    build_prompt: PromptBuilder = profile_prompt_from_entries,
) -> Iterator[UserCandidates]:
    """Candidates for each case, in order, computed ``batch_size`` users at a time (lazily, so a caller can
    persist and report progress as it goes). Deterministic for a seed and the generators' own determinism.
    ``build_prompt`` turns a case's history entries into its prompt (all of H_u by default)."""
    if not sources:
        raise ValueError("explore needs at least one source")
    labels = labels or LabelScheme()
    for chunk in _chunks(cases, batch_size):
        users = [
            UserCandidates(
                c.user_id,
                getattr(c, "position", 0),
                history_ref(c.long_history),
                # The prompt carries the case's user even when its history is empty.
                replace(build_prompt(history_entries(c.long_history, items, labels), c.user_id), user_id=c.user_id),
            )
            for c in chunk
        ]
        seen: list[set[str]] = [set() for _ in users]
        for s, source in enumerate(sources):
            wanted = [source.n] * len(users)
            for round_ in range(max_rounds):
                wanted = _collect(users, seen, source, seed + 7919 * s + 104729 * round_, wanted)
        yield from users
