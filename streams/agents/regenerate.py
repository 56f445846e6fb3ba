"""regenerate: batches of ``profile-requests`` -> the serving profile (``profiles`` topic and table) and, at the
exploration rate, K explored candidates (``profile-candidates``).

Generation runs in the model executor with a timeout, through the generators' interface
(:func:`lettingo.generators.make_generator`), on the real profile prompt over the user's H_u. A failed batch
keeps every previous profile; it is retried ``regen_retries`` times with exponential backoff, then its requests
are re-enqueued with ``attempt + 1``, and dead-lettered after ``regen_max_attempts``. Regenerating is
idempotent: the profile id is a digest of (user, history, policy), and a request whose history is not newer than
the serving profile's is stale and skipped; the serving profile's ``history_ref`` is stored in the same table
value as the profile, so a profile and the record of which request it answered are written at once.

A profile and its candidates are sent, and the broker has them, before the profile is stored: a kill in between
regenerates the request on restart and sends them again (same ids), so none is lost from the output topics.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

from faust.types import EventT
from tenacity import AsyncRetrying, stop_after_attempt, wait_exponential

from lettingo.generators import Generator
from lettingo.prompts.escape import escape_output
from lettingo.prompts.profile import ProfilePrompt
from lettingo.records import Profile, ProfileCandidate, ProfileRequest, RatedItem
from lettingo.serving import LoadedPolicy
from lettingo.user_state import HistoryEvent, UserState, history_entries
from streams import faults, faust_topics, metrics, tables
from streams.agents import RUNTIME
from streams.app import app
from streams.applied import AppliedOffsets
from streams.edge import dead_letter, decode_event
from streams.faust_adapter import BatchSender, flush
from streams.kafka.offsets import first_offset_from
from streams.quarantine import crash_counted, guarded, load_owned
from streams.settings import StreamSettings
from streams.tables import ProfileHistory, ProfileVersion, event_context

log = logging.getLogger(__name__)
APPLIED = RUNTIME.guard(AppliedOffsets(app, tables.applied_offsets, partial(first_offset_from, RUNTIME.settings)))
WATCH_EVERY_S = 3.0
SEED = 0  # the generators derive each prompt's sampling seed from this and the prompt text


@dataclass
class Job:
    event: EventT
    request: ProfileRequest
    prompt: ProfilePrompt
    explore: bool


@dataclass
class Generated:
    profile: str
    candidates: list[tuple[str, str]]  # (text, generator) of each explored candidate


def digest(*parts: str) -> int:
    return int.from_bytes(hashlib.blake2b("|".join(parts).encode(), digest_size=8).digest(), "big")


def prompt_for_ref(user_id: str, history_ref: str, history: list[RatedItem] | None = None) -> ProfilePrompt:
    """The real profile prompt (:mod:`lettingo.prompts.profile`) over the user's H_u as of ``history_ref``: the
    request's own copy of it, or (a request without one) what the user's kept window still holds of it."""
    described: Sequence[HistoryEvent | RatedItem] | None = history
    if not described:
        state = tables.read(tables.user_state, user_id, UserState) or UserState(user_id=user_id)
        described = state.events_up_to(history_ref)[-RUNTIME.settings.worker.history_max :]
    return RUNTIME.profile_prompt(history_entries(described, RUNTIME.catalog, RUNTIME.labels), user_id)


def generate_batch(policy: LoadedPolicy, explorer: Generator, jobs: list[Job], s: StreamSettings) -> list[Generated]:
    """One policy call for every job's serving profile, one explorer call for every job's K candidates.

    Samples are seeded per prompt by the generators (from the call's seed and the prompt text), so a profile
    does not depend on which requests share its batch, and a retried or replayed request writes the same text.
    """
    served = policy.generator.generate(
        [j.prompt for j in jobs],
        n=1,
        temperature=s.worker.serve_temperature,
        max_new_tokens=s.worker.max_new_tokens,
        seed=SEED,
    )
    exploring = [j for j in jobs if j.explore]
    explored = (
        explorer.generate(
            [j.prompt for j in exploring],
            n=s.explore.k,
            temperature=s.explore.temperature,
            max_new_tokens=s.worker.max_new_tokens,
            seed=SEED,
        )
        if exploring
        else []
    )
    by_job = {id(j): [(g.text, g.generator) for g in gens] for j, gens in zip(exploring, explored, strict=True)}
    return [Generated(gens[0].text, by_job.get(id(j), [])) for j, gens in zip(jobs, served, strict=True)]


def _seq(request: ProfileRequest) -> int:
    return int(request.history_ref.split("@", 1)[0]) if request.history_ref else 1 << 62


async def _job(event) -> Job | None:
    request = await decode_event(event, ProfileRequest)
    if request is None:
        return None
    current = await load_owned(tables.profiles, request.user_id, ProfileHistory, event)
    if current is not None and current.seq >= _seq(request):
        log.info(
            "stale request user_id=%s history=%s (serving %s)",
            request.user_id,
            request.history_ref,
            current.history_ref,
        )
        return None
    draw = digest(request.user_id, request.history_ref)
    explore = (draw % 10_000) / 10_000 < RUNTIME.settings.explore.rate and RUNTIME.settings.explore.k > 0
    return Job(event, request, prompt_for_ref(request.user_id, request.history_ref, request.history), explore)


async def _generate(policy: LoadedPolicy, jobs: list[Job]) -> list[Generated]:
    loop = asyncio.get_running_loop()
    s = RUNTIME.settings
    retrying = AsyncRetrying(
        stop=stop_after_attempt(s.regen.retries), wait=wait_exponential(s.regen.backoff_seconds, max=30), reraise=True
    )
    async for attempt in retrying:
        with attempt:
            call = loop.run_in_executor(RUNTIME.executor, generate_batch, policy, RUNTIME.exploring, jobs, s)
            try:
                return await asyncio.wait_for(call, s.regen.timeout_seconds)
            except TimeoutError as e:
                raise TimeoutError(f"generation batch took over {s.regen.timeout_seconds}s") from e
    raise AssertionError("unreachable")


async def _publish(job: Job, generated: Generated, policy: LoadedPolicy) -> None:
    request = job.request
    profile_id = f"{digest(request.user_id, request.history_ref, policy.version):016x}"
    if RUNTIME.forgotten(request.user_id, job.event.message.timestamp):
        return  # forgotten while the batch generated (streams.agents.erasures)
    history = await load_owned(tables.profiles, request.user_id, ProfileHistory, job.event)
    if history is not None and history.seq >= _seq(request):
        return  # the same request twice in one batch
    version = history.current.version + 1 if history else 1
    profile = Profile(
        user_id=request.user_id,
        profile_id=profile_id,
        version=version,
        text=escape_output(generated.profile),
        model_version=policy.version,
        reason=request.reason,
        ts=request.ts,
        history_ref=request.history_ref,
        generator=policy.generator.name,
    )
    versions = [
        *(history.versions if history else []),
        ProfileVersion(
            version=version,
            profile_id=profile_id,
            model_version=policy.version,
            reason=request.reason.value,
            history_ref=request.history_ref,
            ts=request.ts,
        ),
    ][-tables.MAX_PROFILE_VERSIONS :]
    key = tables.key(request.user_id)
    sender = BatchSender(app)
    await sender.add(faust_topics.profiles.get_topic_name(), key, profile.to_bytes())
    metrics.REGENERATIONS.labels(reason=request.reason.value).inc()
    if request.caused_at:
        metrics.PROFILE_LATENCY.observe(max(0.0, time.time() - request.caused_at))
    metrics.GENERATED_TOKENS.labels(use="serve").inc(policy.generator.count_tokens(generated.profile))
    if job.explore:
        # The served profile competes in its own round, so clicks on it score it too.
        texts = [(profile_id, generated.profile, policy.generator.name)] + [
            (f"{digest(profile_id, str(i)):016x}", text, generator)
            for i, (text, generator) in enumerate(generated.candidates)
        ]
        for candidate_id, text, generator in texts:
            candidate = ProfileCandidate(
                profile_id=candidate_id,
                user_id=request.user_id,
                text=escape_output(text),
                generator=generator,
                model_version=policy.version,
                history_ref=request.history_ref,
                seed=SEED,
                ts=request.ts,
                prompt=job.prompt.text,
            )
            await sender.add(faust_topics.profile_candidates.get_topic_name(), key, candidate.to_bytes())
            metrics.GENERATED_TOKENS.labels(use="explore").inc(count_tokens(generator, text))
        metrics.CANDIDATES.inc(len(texts))
    await sender.sent()  # before the store: a kill in between regenerates and sends them again
    with event_context(job.event):
        tables.store(
            tables.profiles,
            request.user_id,
            ProfileHistory(current=profile, history_ref=request.history_ref, versions=versions),
        )
    log.info(
        "profile user_id=%s profile_id=%s version=%d model_version=%s reason=%s explored=%d",
        request.user_id,
        profile_id,
        version,
        policy.version,
        request.reason.value,
        len(generated.candidates),
        extra={"user_id": request.user_id, "profile_id": profile_id, "model_version": policy.version},
    )


def count_tokens(generator_name: str, text: str) -> int:
    """A candidate's tokens by the tokenizer of the generator that wrote it (the served policy or the explorer)."""
    policy = RUNTIME.serving.current.generator
    return (policy if generator_name == policy.name else RUNTIME.exploring).count_tokens(text)


async def _retry_later(job: Job, error: str) -> None:
    request = job.request
    if request.attempt + 1 >= RUNTIME.settings.regen.max_attempts:
        m = job.event.message
        await dead_letter(m.topic, m.partition, m.offset, m.key, m.value, "generation_failed", error)
        return
    retry = request.model_copy(update={"attempt": request.attempt + 1})
    await (await faust_topics.profile_requests.send(key=tables.key(request.user_id), value=retry.to_bytes()))


@app.agent(faust_topics.profile_requests)
@crash_counted
async def regenerate(stream):
    with APPLIED.working():  # read-ahead while the models load is not a gap
        await RUNTIME.catalog_ready.wait()
        await RUNTIME.generators_ready.wait()
    s = RUNTIME.settings
    async for events in stream.take_events(s.regen.batch_size, within=s.regen.batch_seconds):
        with APPLIED.working():
            # A request Faust acked without running the agent is sought back and regenerated: see streams.applied.
            admitted = [event for event in events if await APPLIED.admit(event)]
            await regenerate_batch(admitted)
            faults.crash_point("regenerate", admitted)  # test-only: off unless STREAMS_TEST_CRASH_AT names it
            await flush(app)  # the profiles' table writes are on the broker before the applied offset
            APPLIED.applied_batch(admitted)  # after every profile of the batch is sent and stored


@app.timer(WATCH_EVERY_S)
async def watch_applied() -> None:
    topic = faust_topics.profile_requests.get_topic_name()
    try:
        await APPLIED.watch(topic)
        await APPLIED.sample_lag(topic, RUNTIME.settings.app.stall_seconds)
    except Exception:  # a timer that raises stops the worker; a rebalance under way is retried in a few seconds
        log.warning("watching the applied offsets of %s failed; trying again at the next tick", topic, exc_info=True)


async def regenerate_batch(events: list[EventT]) -> None:
    tries = RUNTIME.settings.app.poison_retries
    jobs: list[Job] = []
    for event in events:
        job = await guarded(event, partial(_job, event), "regenerate", tries)
        if job is not None:
            jobs.append(job)
    if not jobs:
        return
    policy = RUNTIME.serving.current
    started = time.perf_counter()
    try:
        results = await _generate(policy, jobs)
    except Exception as e:
        error = f"{type(e).__name__}: {e}"
        metrics.REGENERATION_FAILURES.labels(error=type(e).__name__).inc()
        log.warning(
            "generation failed model_version=%s users=%s: %s",
            policy.version,
            [j.request.user_id for j in jobs],
            error,
        )
        for job in jobs:
            await _retry_later(job, error)
        return
    metrics.GENERATION_SECONDS.observe(time.perf_counter() - started)
    for job, generated in zip(jobs, results, strict=True):
        await guarded(job.event, partial(_publish, job, generated, policy), "regenerate", tries)
