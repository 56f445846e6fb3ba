"""loading: when the worker starts, load the generators and the task evaluator off the event loop.

Each loads in its own thread of the loop's default executor (the model executor stays free for generation),
then sets its ready event. A model that cannot load stops the worker: it must not run half-configured.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from streams.agents import RUNTIME
from streams.app import app

log = logging.getLogger(__name__)


async def _load(what: str, load: Callable[[], None], ready: asyncio.Event) -> None:
    started = time.perf_counter()
    try:
        await asyncio.get_running_loop().run_in_executor(None, load)
    except Exception as e:
        log.exception("cannot load the %s; stopping the worker", what)
        await app.crash(e)
        return
    ready.set()
    log.info("%s loaded in %.1fs", what, time.perf_counter() - started)


@app.task
async def load_generators() -> None:
    await _load("generators", RUNTIME.load_generators, RUNTIME.generators_ready)


@app.task
async def load_evaluator() -> None:
    await _load("task evaluator", RUNTIME.load_evaluator, RUNTIME.evaluator_ready)
