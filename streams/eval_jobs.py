"""Scoring a batch of task-evaluation cases, for the ``task_eval`` agent (:mod:`streams.agents.task_eval`): one
call of the frozen f_Rec in its own executor, and, when that raises, case by case, so that one case that cannot be
scored is dead-lettered with its rated event and the others are not."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from faust.types import EventT

from lettingo.records import Reward
from lettingo.stream_eval import StreamCase
from streams.quarantine import guarded

if TYPE_CHECKING:
    from streams.app import Worker

log = logging.getLogger(__name__)
# The header naming a task-evaluation reward's rated event: the scoreboard (streams.agents.preferences) counts a
# reward once per (candidate, event).
EVENT_ID_HEADER = "event-id"


async def score(worker: Worker, cases: list[StreamCase], events_of: dict[int, EventT]) -> Sequence[list[Reward] | None]:
    """Every case's rewards in one executor call; if that raises, case by case, so that one case that cannot be
    scored is dead-lettered (None) and the others are not."""
    loop, runtime = asyncio.get_running_loop(), worker.runtime

    def evaluate(batch: list[StreamCase]) -> asyncio.Future[list[list[Reward]]]:
        return loop.run_in_executor(runtime.eval_executor, runtime.task_evaluator.evaluate, batch, runtime.catalog)

    try:
        return await evaluate(cases)
    except Exception as e:
        log.warning(
            "task evaluation of %d cases raised (%s: %s); scoring them one by one", len(cases), type(e).__name__, e
        )
    out: list[list[Reward] | None] = []
    for case in cases:

        async def one(case=case):
            return (await evaluate([case]))[0]

        out.append(await guarded(worker, events_of[id(case)], one, "task_eval", worker.settings.app.poison_retries))
    return out
