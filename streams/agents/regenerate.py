"""regenerate: batches of ``profile-requests`` -> the serving profile (``profiles`` topic and table) and, at the
exploration rate, K explored candidates (``profile-candidates``).

Regenerating is idempotent: the profile id is a digest of (user, history, policy), a request whose history is not
newer than the serving profile's is stale and skipped, and the serving profile's ``history_ref`` is stored in the
same table value as the profile. Those decisions, the exploration draw, the generation calls, the candidates, the
versions and a failed request's retry are :mod:`lettingo.regeneration`'s; the delivery (generating with retries,
re-enqueueing, sending then storing, metrics) is :mod:`streams.regen_jobs`'. This agent batches and decodes the
requests and calls them.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import TYPE_CHECKING

from faust.types import EventT

from lettingo import regeneration
from lettingo.regeneration import Generated, ProfileHistory
from lettingo.serving import LoadedPolicy
from streams import faults, regen_jobs
from streams.applied import AppliedOffsets
from streams.edge import decode_event
from streams.faust_adapter import flush
from streams.kafka.offsets import first_offset_from
from streams.quarantine import crash_counted, guarded, load_owned
from streams.regen_jobs import Job

if TYPE_CHECKING:
    from streams.app import Worker

log = logging.getLogger(__name__)
WATCH_EVERY_S = 3.0


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
    results = await regen_jobs.generate_or_requeue(worker, policy, jobs)
    if results is None:
        return  # the batch failed: its requests are re-enqueued or dead-lettered
    for job, generated in zip(jobs, results, strict=True):
        await guarded(worker, job.event, partial(_publish, worker, job, generated, policy), "regenerate", tries)


async def _job(worker: Worker, event: EventT) -> Job | None:
    request = await decode_event(worker, event, worker.topics.profile_requests)
    if request is None:
        return None
    serving = await load_owned(worker, worker.tables.profiles, request.user_id, ProfileHistory, event)
    plan = regeneration.plan(request, serving, worker.settings.explore.rate, worker.settings.explore.k)
    if plan is None:
        served = serving.history_ref if serving else None
        log.info("stale request user_id=%s history=%s (serving %s)", request.user_id, request.history_ref, served)
        return None
    prompt = regen_jobs.prompt_for_ref(worker, request.user_id, request.history_ref, request.history)
    return Job(event, request, prompt, plan.explore)


async def _publish(worker: Worker, job: Job, generated: Generated, policy: LoadedPolicy) -> None:
    request = job.request
    if worker.runtime.forgotten(request.user_id, job.event.message.timestamp):
        return  # forgotten while the batch generated (streams.agents.erasures)
    serving = await load_owned(worker, worker.tables.profiles, request.user_id, ProfileHistory, job.event)
    done = regeneration.regenerate(
        request,
        serving,
        text=generated.profile,
        samples=generated.samples,
        policy_version=policy.version,
        generator=policy.generator.name,
        prompt=job.prompt.text,
        seed=regeneration.SEED,
    )
    if done is None:
        return  # the same request twice in one batch
    await regen_jobs.send_then_store(worker, job.event, done)
    regen_jobs.observe(worker, request, done, generated, policy)
