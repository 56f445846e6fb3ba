"""Delivery of profile regeneration, for the ``regenerate`` agent (:mod:`streams.agents.regenerate`); what to
generate, and what a generated text becomes, are :mod:`lettingo.regeneration`'s.

- :func:`generate_or_requeue` runs a batch's generation in the model executor with a timeout, through the
  generators' interface (:func:`lettingo.generators.make_generator`), on the real profile prompt over each user's
  H_u (:func:`prompt_for_ref`). A failed batch keeps every previous profile: it is retried ``regen_retries`` times
  with exponential backoff, then its requests are re-enqueued with ``attempt + 1``, and dead-lettered after
  ``regen_max_attempts``.
- :func:`send_then_store` sends a regenerated profile and its candidates, then stores the serving history.
- :func:`observe` counts a published regeneration in the metrics and logs it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from faust.types import EventT
from tenacity import AsyncRetrying, stop_after_attempt, wait_exponential

from lettingo import regeneration
from lettingo.history_ref import HistoryRef
from lettingo.prompts.profile import ProfilePrompt
from lettingo.records import ProfileRequest, RatedItem
from lettingo.regeneration import Generated, Regeneration
from lettingo.serving import LoadedPolicy
from lettingo.user_state import HistoryEvent, UserState, history_entries
from streams import metrics, tables
from streams.edge import dead_letter
from streams.faust_adapter import BatchSender
from streams.tables import event_context

if TYPE_CHECKING:
    from streams.app import Worker

log = logging.getLogger(__name__)


@dataclass
class Job:
    """A request of the batch to generate for: its event, the request, its prompt and whether it explores."""

    event: EventT
    request: ProfileRequest
    prompt: ProfilePrompt
    explore: bool


def prompt_for_ref(
    worker: Worker, user_id: str, history_ref: HistoryRef | None, history: list[RatedItem] | None = None
) -> ProfilePrompt:
    """The real profile prompt (:mod:`lettingo.prompts.profile`) over the user's H_u as of ``history_ref``: the
    request's own copy of it, or (a request without one) what the user's kept window still holds of it."""
    described: Sequence[HistoryEvent | RatedItem] | None = history
    if not described:
        state = tables.read(worker.tables.user_state, user_id, UserState) or UserState(user_id=user_id)
        described = regeneration.kept_history(state, history_ref, worker.settings.worker.history_max)
    runtime = worker.runtime
    return runtime.profile_prompt(history_entries(described, runtime.catalog, runtime.labels), user_id)


async def generate_or_requeue(worker: Worker, policy: LoadedPolicy, jobs: list[Job]) -> list[Generated] | None:
    """Every job's texts (:func:`lettingo.regeneration.generate`), or None when the batch failed its retries: then
    each of its requests has been re-enqueued or dead-lettered (:func:`_retry_later`)."""
    started = time.perf_counter()
    try:
        results = await _generate_with_retries(worker, policy, jobs)
    except Exception as e:
        error = f"{type(e).__name__}: {e}"
        metrics.REGENERATION_FAILURES.labels(error=type(e).__name__).inc()
        log.warning(
            "generation failed model_version=%s users=%s: %s", policy.version, [j.request.user_id for j in jobs], error
        )
        for job in jobs:
            await _retry_later(worker, job, error)
        return None
    metrics.GENERATION_SECONDS.observe(time.perf_counter() - started)
    return results


async def _generate_with_retries(worker: Worker, policy: LoadedPolicy, jobs: list[Job]) -> list[Generated]:
    loop = asyncio.get_running_loop()
    s, runtime = worker.settings, worker.runtime
    prompts, explore = [j.prompt for j in jobs], [j.explore for j in jobs]
    retrying = AsyncRetrying(
        stop=stop_after_attempt(s.regen.retries), wait=wait_exponential(s.regen.backoff_seconds, max=30), reraise=True
    )
    async for attempt in retrying:
        with attempt:
            call = loop.run_in_executor(
                runtime.executor, regeneration.generate, policy.generator, runtime.exploring, prompts, explore, s
            )
            try:
                return await asyncio.wait_for(call, s.regen.timeout_seconds)
            except TimeoutError as e:
                raise TimeoutError(f"generation batch took over {s.regen.timeout_seconds}s") from e
    raise AssertionError("unreachable")


async def _retry_later(worker: Worker, job: Job, error: str) -> None:
    """Re-enqueue the job's request for another attempt, or dead-letter it after its last
    (:func:`lettingo.regeneration.retry`)."""
    retry = regeneration.retry(job.request, worker.settings.regen.max_attempts)
    if retry is None:
        m = job.event.message
        await dead_letter(worker, m.topic, m.partition, m.offset, m.key, m.value, "generation_failed", error)
        return
    await (await worker.topics.profile_requests.send(tables.key(retry.user_id), retry.to_bytes()))


async def send_then_store(worker: Worker, event: EventT, done: Regeneration) -> None:
    """Send the profile and its candidates, and once the broker has them, store the serving history: a kill in
    between regenerates the request on restart and sends them again (same ids), so none is lost from the output
    topics."""
    key = tables.key(done.profile.user_id)
    sender = BatchSender(worker.app)
    await sender.add(worker.topics.profiles.name, key, done.profile.to_bytes())
    for candidate in done.candidates:
        await sender.add(worker.topics.profile_candidates.name, key, candidate.to_bytes())
    await sender.sent()
    with event_context(event):
        tables.store(worker.tables.profiles, done.profile.user_id, done.history)


def observe(
    worker: Worker, request: ProfileRequest, done: Regeneration, generated: Generated, policy: LoadedPolicy
) -> None:
    """A published regeneration's metrics and log line; ``policy`` is the one its batch was generated with."""
    metrics.REGENERATIONS.labels(reason=request.reason.value).inc()
    if request.caused_at:
        metrics.PROFILE_LATENCY.observe(max(0.0, time.time() - request.caused_at))
    metrics.GENERATED_TOKENS.labels(use="serve").inc(policy.generator.count_tokens(generated.profile))
    if generated.samples:
        # the policy the batch was generated with: the one served now may have been hot-swapped since
        explored = regeneration.explored_tokens(generated.samples, policy.generator, worker.runtime.exploring)
        metrics.GENERATED_TOKENS.labels(use="explore").inc(explored)
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
