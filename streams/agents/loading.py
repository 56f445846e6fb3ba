"""loading: when the worker starts, load the generators, then the task evaluator, off the event loop.

They load one after the other in a thread of the loop's default executor (the model executor stays free for
generation; importing transformers from two threads at once is not safe), each setting its ready event so
agents that need it can start. A model that cannot load stops the worker: it must not run half-configured.

After each load, what is alive is frozen out of the cyclic garbage collector's reach (:func:`gc.freeze`): the
imports, the dataset and the models are hundreds of thousands of objects that live as long as the worker, and
Faust runs a full ``gc.collect()`` per table on every rebalance and again on stop, each one walking all of them
(0.7 s each with the reader loaded, blocking the event loop: 3 s or more per rebalance with five tables). Frozen
objects freed by their reference counts (a swapped-out generator's model is) are still freed.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import faust

if TYPE_CHECKING:
    from streams.app import Worker

log = logging.getLogger(__name__)


def freeze_heap() -> None:
    """Collect the garbage there is (so that none of it is frozen for good), then freeze what is left."""
    gc.collect()
    gc.freeze()


async def _load(app: faust.App, what: str, load: Callable[[], None], ready: asyncio.Event) -> bool:
    started = time.perf_counter()
    loop = asyncio.get_running_loop()
    try:
        await loop.run_in_executor(None, load)
    except Exception as e:
        log.exception("cannot load the %s; stopping the worker", what)
        await app.crash(e)
        return False
    ready.set()
    log.info("%s loaded in %.1fs", what, time.perf_counter() - started)
    await loop.run_in_executor(None, freeze_heap)
    return True


def register(worker: Worker) -> None:
    """Declare the task that loads the models when ``worker`` starts."""
    app, runtime = worker.app, worker.runtime

    @app.task
    async def load_models() -> None:
        if await _load(app, "generators", runtime.load_generators, runtime.generators_ready):
            await _load(app, "task evaluator", runtime.load_evaluator, runtime.evaluator_ready)
