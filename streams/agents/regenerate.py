"""regenerate: batches of ``profile-requests`` -> the serving profile (``profiles`` topic and table) and, at the
exploration rate, K explored candidates (``profile-candidates``).

Generation runs in the model executor with a timeout, through the generators' interface
(:func:`lettingo.generators.make_generator`), on the real profile prompt over the user's H_u. A failed batch
keeps every previous profile; it is retried ``regen_retries`` times with exponential backoff, then its requests
are re-enqueued with ``attempt + 1``, and dead-lettered after ``regen_max_attempts``. Regenerating is
idempotent: the profile id is a digest of (user, history, policy), and a request whose history is not newer than
the serving profile's is stale and skipped; the serving profile's ``history_ref`` is stored in the same table
value as the profile, so a profile and the record of which request it answered are written at once. Those
decisions, the exploration draw, the explored candidates and the versions are :mod:`lettingo.regeneration`'s:
this agent decodes, calls it, and sends and stores what it returns.

A profile and its candidates are sent, and the broker has them, before the profile is stored: a kill in between
regenerates the request on restart and sends them again (same ids), so none is lost from the output topics.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from faust.types import EventT
from tenacity import AsyncRetrying, stop_after_attempt, wait_exponential

from lettingo import regeneration
from lettingo.generators import Generator
from lettingo.history_ref import HistoryRef
from lettingo.prompts.profile import ProfilePrompt
from lettingo.records import ProfileRequest, RatedItem
from lettingo.regeneration import ProfileHistory
from lettingo.serving import LoadedPolicy
from lettingo.user_state import HistoryEvent, UserState, history_entries
from streams import faults, metrics, tables
from streams.applied import AppliedOffsets
from streams.edge import dead_letter, decode_event
from streams.faust_adapter import BatchSender, flush
from streams.kafka.offsets import first_offset_from
from streams.quarantine import crash_counted, guarded, load_owned
from streams.settings import StreamSettings
from streams.tables import event_context

if TYPE_CHECKING:
    from streams.app import Worker

log = logging.getLogger(__name__)
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


def prompt_for_ref(
    worker: Worker, user_id: str, history_ref: HistoryRef | None, history: list[RatedItem] | None = None
) -> ProfilePrompt:
    """The real profile prompt (:mod:`lettingo.prompts.profile`) over the user's H_u as of ``history_ref``: the
    request's own copy of it, or (a request without one) what the user's kept window still holds of it."""
    described: Sequence[HistoryEvent | RatedItem] | None = history
    if not described:
        state = tables.read(worker.tables.user_state, user_id, UserState) or UserState(user_id=user_id)
        described = state.events_up_to(history_ref)[-worker.settings.worker.history_max :]
    runtime = worker.runtime
    return runtime.profile_prompt(history_entries(described, runtime.catalog, runtime.labels), user_id)


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


async def _job(worker: Worker, event: EventT) -> Job | None:
    request = await decode_event(worker, event, worker.topics.profile_requests)
    if request is None:
        return None
    current = await load_owned(worker, worker.tables.profiles, request.user_id, ProfileHistory, event)
    if current is not None and regeneration.is_stale(request.history_ref, current):
        log.info(
            "stale request user_id=%s history=%s (serving %s)",
            request.user_id,
            request.history_ref,
            current.history_ref,
        )
        return None
    s = worker.settings
    explore = regeneration.explores(request.user_id, request.history_ref, s.explore.rate, s.explore.k)
    return Job(event, request, prompt_for_ref(worker, request.user_id, request.history_ref, request.history), explore)


async def _generate(worker: Worker, policy: LoadedPolicy, jobs: list[Job]) -> list[Generated]:
    loop = asyncio.get_running_loop()
    s, runtime = worker.settings, worker.runtime
    retrying = AsyncRetrying(
        stop=stop_after_attempt(s.regen.retries), wait=wait_exponential(s.regen.backoff_seconds, max=30), reraise=True
    )
    async for attempt in retrying:
        with attempt:
            call = loop.run_in_executor(runtime.executor, generate_batch, policy, runtime.exploring, jobs, s)
            try:
                return await asyncio.wait_for(call, s.regen.timeout_seconds)
            except TimeoutError as e:
                raise TimeoutError(f"generation batch took over {s.regen.timeout_seconds}s") from e
    raise AssertionError("unreachable")


async def _publish(worker: Worker, job: Job, generated: Generated, policy: LoadedPolicy) -> None:
    request = job.request
    if worker.runtime.forgotten(request.user_id, job.event.message.timestamp):
        return  # forgotten while the batch generated (streams.agents.erasures)
    serving = await load_owned(worker, worker.tables.profiles, request.user_id, ProfileHistory, job.event)
    done = regeneration.regenerate(
        request,
        serving,
        text=generated.profile,
        samples=generated.candidates if job.explore else None,
        policy_version=policy.version,
        generator=policy.generator.name,
        prompt=job.prompt.text,
        seed=SEED,
    )
    if done is None:
        return  # the same request twice in one batch
    key = tables.key(request.user_id)
    sender = BatchSender(worker.app)
    await sender.add(worker.topics.profiles.name, key, done.profile.to_bytes())
    for candidate in done.candidates:
        await sender.add(worker.topics.profile_candidates.name, key, candidate.to_bytes())
    await sender.sent()  # before the store: a kill in between regenerates and sends them again
    with event_context(job.event):
        tables.store(worker.tables.profiles, request.user_id, done.history)
    metrics.REGENERATIONS.labels(reason=request.reason.value).inc()
    if request.caused_at:
        metrics.PROFILE_LATENCY.observe(max(0.0, time.time() - request.caused_at))
    metrics.GENERATED_TOKENS.labels(use="serve").inc(policy.generator.count_tokens(generated.profile))
    for text, generator in generated.candidates:
        metrics.GENERATED_TOKENS.labels(use="explore").inc(count_tokens(worker, generator, text))
    metrics.CANDIDATES.inc(len(done.candidates))
    profile = done.profile
    log.info(
        "profile user_id=%s profile_id=%s version=%d model_version=%s reason=%s explored=%d",
        request.user_id,
        profile.profile_id,
        profile.version,
        policy.version,
        request.reason.value,
        len(done.candidates),
        extra={"user_id": request.user_id, "profile_id": profile.profile_id, "model_version": policy.version},
    )


def count_tokens(worker: Worker, generator_name: str, text: str) -> int:
    """A candidate's tokens by the tokenizer of the generator that wrote it (the served policy or the explorer)."""
    policy = worker.runtime.serving.current.generator
    return (policy if generator_name == policy.name else worker.runtime.exploring).count_tokens(text)


async def _retry_later(worker: Worker, job: Job, error: str) -> None:
    request = job.request
    if request.attempt + 1 >= worker.settings.regen.max_attempts:
        m = job.event.message
        await dead_letter(worker, m.topic, m.partition, m.offset, m.key, m.value, "generation_failed", error)
        return
    retry = request.model_copy(update={"attempt": request.attempt + 1})
    await (await worker.topics.profile_requests.send(tables.key(request.user_id), retry.to_bytes()))


def register(worker: Worker) -> None:
    """Declare the regenerate agent and the watchdog of its applied offsets on ``worker``'s app."""
    app, runtime, s = worker.app, worker.runtime, worker.settings
    applied = runtime.guard(
        AppliedOffsets(app, worker.tables.applied_offsets, partial(first_offset_from, worker.settings))
    )
    topic = worker.topics.profile_requests

    @app.agent(topic.topic)
    @crash_counted
    async def regenerate(stream):
        with applied.working():  # read-ahead while the models load is not a gap
            await runtime.catalog_ready.wait()
            await runtime.generators_ready.wait()
        async for events in stream.take_events(s.regen.batch_size, within=s.regen.batch_seconds):
            with applied.working():
                # A request Faust acked without running the agent is sought back and regenerated: see
                # streams.applied.
                admitted = [event for event in events if await applied.admit(event)]
                await regenerate_batch(worker, admitted)
                faults.crash_point("regenerate", admitted)  # test-only: off unless STREAMS_TEST_CRASH_AT names it
                await flush(app)  # the profiles' table writes are on the broker before the applied offset
                applied.applied_batch(admitted)  # after every profile of the batch is sent and stored

    @app.timer(WATCH_EVERY_S)
    async def watch_applied() -> None:
        try:
            await applied.watch(topic.name)
            await applied.sample_lag(topic.name, s.app.stall_seconds)
        except Exception:  # a timer that raises stops the worker; a rebalance under way is retried in a few seconds
            log.warning(
                "watching the applied offsets of %s failed; trying again at the next tick", topic.name, exc_info=True
            )


async def regenerate_batch(worker: Worker, events: list[EventT]) -> None:
    tries = worker.settings.app.poison_retries
    jobs: list[Job] = []
    for event in events:
        job = await guarded(worker, event, partial(_job, worker, event), "regenerate", tries)
        if job is not None:
            jobs.append(job)
    if not jobs:
        return
    policy = worker.runtime.serving.current
    started = time.perf_counter()
    try:
        results = await _generate(worker, policy, jobs)
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
            await _retry_later(worker, job, error)
        return
    metrics.GENERATION_SECONDS.observe(time.perf_counter() - started)
    for job, generated in zip(jobs, results, strict=True):
        await guarded(worker, job.event, partial(_publish, worker, job, generated, policy), "regenerate", tries)
