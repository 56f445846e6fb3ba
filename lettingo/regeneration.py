"""Regenerating a user's serving profile, as pure decisions: what a worker's ``regenerate`` agent computes between
decoding a request and sending what it returns (``streams.agents.regenerate``).

- **Identity.** A profile's id is a digest of (user, history, policy version): a retried or replayed request
  makes the same id (:func:`profile_id`).
- **Staleness.** A request whose history is not newer than the serving profile's is stale (:func:`is_stale`).
- **The exploration draw.** Whether a request also explores K candidates is a deterministic draw from (user,
  history) against the exploration rate (:func:`explores`), so a replay draws the same.
- **Explored candidates.** Sampled texts are deduplicated by their normalized text and named by a digest of it,
  exactly as ``lettingo explore`` does offline (:func:`lettingo.explore.candidate_id`), so the stream and the
  offline pipeline give one text of one user's history the same candidate id (:func:`explored_candidates`).
- **Versions.** The serving profile keeps its earlier versions, newest last, at most
  :data:`MAX_PROFILE_VERSIONS` (:class:`ProfileHistory`).
- **Generation.** One policy call writes every request's serving profile of a batch, one explorer call the K
  candidates of the exploring ones, each prompt seeded from :data:`SEED` and its text (:func:`generate`).
- **Retries.** A request whose batch failed is asked again with ``attempt + 1``, until its last attempt
  (:func:`retry`).

:func:`plan` says what a request needs (nothing when it is stale); :func:`regenerate` is the one call after
generation: the request, the serving history and the generated texts in, the new serving history and the records
to send out (or None for a stale request).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from lettingo.explore import candidate_id, normalize_profile
from lettingo.history_ref import HistoryRef, HistoryRefField, to_wire
from lettingo.prompts.escape import escape_output
from lettingo.records import Profile, ProfileCandidate, ProfileRequest

if TYPE_CHECKING:
    from lettingo.generators import Generator
    from lettingo.prompts.profile import ProfilePrompt
    from lettingo.settings import Settings
    from lettingo.user_state import HistoryEvent, UserState

MAX_PROFILE_VERSIONS = 20
DRAW_BUCKETS = 10_000
SEED = 0  # the generators derive each prompt's sampling seed from this and the prompt text


class ProfileVersion(BaseModel):
    version: int
    profile_id: str
    model_version: str
    reason: str
    history_ref: HistoryRefField
    ts: float


class ProfileHistory(BaseModel):
    """A user's serving profile, the history it answered, and its versions (newest last, bounded)."""

    current: Profile
    history_ref: HistoryRefField
    versions: list[ProfileVersion] = Field(default_factory=list)


def digest(*parts: str) -> int:
    return int.from_bytes(hashlib.blake2b("|".join(parts).encode(), digest_size=8).digest(), "big")


def profile_id(user_id: str, history: HistoryRef | None, policy_version: str) -> str:
    return f"{digest(user_id, to_wire(history), policy_version):016x}"


def is_stale(request: HistoryRef | None, serving: ProfileHistory | None) -> bool:
    """Whether a request for ``request``'s history is already answered by the serving profile: its history is
    not newer. A request that names no history asks for the user's latest and is never stale; a serving profile
    that named none answered no known history, so it makes no request stale."""
    if request is None or serving is None or serving.history_ref is None:
        return False
    return serving.history_ref >= request


def exploration_draw(user_id: str, history: HistoryRef | None) -> float:
    """A request's draw in [0, 1): a digest of (user, history), the same for every replay of the request."""
    return (digest(user_id, to_wire(history)) % DRAW_BUCKETS) / DRAW_BUCKETS


def explores(user_id: str, history: HistoryRef | None, rate: float, k: int) -> bool:
    """Whether regenerating for this (user, history) also explores ``k`` candidates, at ``rate`` of requests."""
    return k > 0 and exploration_draw(user_id, history) < rate


@dataclass(frozen=True, slots=True)
class Plan:
    """What regenerating a request generates: its serving profile, and ``explore``: K candidates too. (Not a
    ``bool | None``: there "explores nothing" and "needs nothing" would both be falsy.)"""

    explore: bool


def plan(request: ProfileRequest, serving: ProfileHistory | None, rate: float, k: int) -> Plan | None:
    """What ``request`` needs generated given the ``serving`` profile: nothing (None) when it is stale; else its
    profile, and K candidates when it draws under the exploration ``rate``."""
    if is_stale(request.history_ref, serving):
        return None
    return Plan(explores(request.user_id, request.history_ref, rate, k))


def kept_history(state: UserState, history: HistoryRef | None, history_max: int) -> list[HistoryEvent]:
    """What a prompt describes of a request that carries no H_u of its own: the events of ``history`` the user's
    kept window still holds, the most recent ``history_max``."""
    return state.events_up_to(history)[-history_max:]


@dataclass(frozen=True, slots=True)
class Generated:
    """One request's generated texts: its serving profile, and for an exploring request each sampled candidate's
    ``(text, generator)`` (None: it does not explore)."""

    profile: str
    samples: list[tuple[str, str]] | None


def generate(
    policy: Generator, explorer: Generator, prompts: Sequence[ProfilePrompt], explore: Sequence[bool], s: Settings
) -> list[Generated]:
    """One ``policy`` call for every prompt's serving profile, one ``explorer`` call for the K candidates of each
    prompt whose ``explore`` is set.

    Samples are seeded per prompt by the generators (from :data:`SEED` and the prompt text), so a profile does not
    depend on which requests share its batch, and a retried or replayed request writes the same text.
    """
    served = policy.generate(
        list(prompts), n=1, temperature=s.worker.serve_temperature, max_new_tokens=s.worker.max_new_tokens, seed=SEED
    )
    exploring = [i for i, e in enumerate(explore) if e]
    explored = (
        explorer.generate(
            [prompts[i] for i in exploring],
            n=s.explore.k,
            temperature=s.explore.temperature,
            max_new_tokens=s.worker.max_new_tokens,
            seed=SEED,
        )
        if exploring
        else []
    )
    samples = {i: [(g.text, g.generator) for g in gens] for i, gens in zip(exploring, explored, strict=True)}
    return [Generated(gens[0].text, samples.get(i)) for i, gens in zip(range(len(prompts)), served, strict=True)]


def explored_tokens(samples: Sequence[tuple[str, str]] | None, policy: Generator, explorer: Generator) -> int:
    """Tokens of the sampled candidates, each counted by the tokenizer of the generator that wrote it (the
    served ``policy`` or the ``explorer``)."""
    return sum((policy if name == policy.name else explorer).count_tokens(text) for text, name in samples or ())


def retry(request: ProfileRequest, max_attempts: int) -> ProfileRequest | None:
    """``request`` asked again after its generation batch failed (``attempt`` one more), or None when that was its
    last of ``max_attempts``: it is dead-lettered."""
    if request.attempt + 1 >= max_attempts:
        return None
    return request.model_copy(update={"attempt": request.attempt + 1})


def next_versions(serving: ProfileHistory | None, profile: Profile) -> list[ProfileVersion]:
    """The serving history's versions with ``profile`` appended, the oldest dropped past the bound."""
    added = ProfileVersion(
        version=profile.version,
        profile_id=profile.profile_id,
        model_version=profile.model_version,
        reason=profile.reason.value,
        history_ref=profile.history_ref,
        ts=profile.ts,
    )
    return [*(serving.versions if serving else []), added][-MAX_PROFILE_VERSIONS:]


def explored_candidates(
    profile: Profile, served_text: str, samples: Sequence[tuple[str, str]], *, prompt: str, seed: int
) -> list[ProfileCandidate]:
    """The candidates of an exploring regeneration: the served profile first (it competes in its own round, so
    clicks on it score it too), then each sampled ``(text, generator)`` that is neither blank nor a repeat of an
    earlier one once normalized (:func:`lettingo.explore.normalize_profile`), named as ``lettingo explore`` names
    it."""
    seen = {normalize_profile(served_text)}
    named = [(profile.profile_id, served_text, profile.generator)]
    for text, generator in samples:
        key = normalize_profile(text)
        if not key or key in seen:
            continue
        seen.add(key)
        named.append((candidate_id(profile.user_id, profile.history_ref, key), text, generator))
    return [
        ProfileCandidate(
            profile_id=pid,
            user_id=profile.user_id,
            text=escape_output(text),
            generator=generator,
            model_version=profile.model_version,
            history_ref=profile.history_ref,
            seed=seed,
            ts=profile.ts,
            prompt=prompt,
        )
        for pid, text, generator in named
    ]


@dataclass(frozen=True, slots=True)
class Regeneration:
    """What one regenerated request writes: the new serving history (the table value), and the records to send
    (the profile, then its explored candidates, empty when the request did not explore)."""

    history: ProfileHistory
    profile: Profile
    candidates: list[ProfileCandidate]


def regenerate(
    request: ProfileRequest,
    serving: ProfileHistory | None,
    *,
    text: str,
    samples: Sequence[tuple[str, str]] | None,
    policy_version: str,
    generator: str,
    prompt: str,
    seed: int,
) -> Regeneration | None:
    """The new serving profile for ``request`` written as ``text`` by ``generator``, and for an exploring
    request its candidates from ``samples`` (None: the request does not explore); None for a stale request."""
    if is_stale(request.history_ref, serving):
        return None
    profile = Profile(
        user_id=request.user_id,
        profile_id=profile_id(request.user_id, request.history_ref, policy_version),
        version=serving.current.version + 1 if serving else 1,
        text=escape_output(text),
        model_version=policy_version,
        reason=request.reason,
        ts=request.ts,
        history_ref=request.history_ref,
        generator=generator,
    )
    history = ProfileHistory(current=profile, history_ref=request.history_ref, versions=next_versions(serving, profile))
    candidates = explored_candidates(profile, text, samples, prompt=prompt, seed=seed) if samples is not None else []
    return Regeneration(history, profile, candidates)
