"""models: follow ``model-versions`` (every worker reads all of it) and hot-swap the serving policy.

A new ``champion`` is loaded in the model executor: the registry verifies every file's sha256, the generators'
``hf`` backend loads it (LoRA adapter on its base model, or a full model), a smoke generation runs, then it is
switched in; the previous one is kept. A ``rolled_back`` record for the served version, or a ``champion``
record for the previous one, switches back (rollback). A refused version is counted, logged and reported to
``dead-letters`` (reason ``model_refused``, the detail naming why), and the worker keeps serving what it served.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from lettingo.records import ModelStatus, ModelVersion, RecordError
from lettingo.serving import LoadedPolicy, ModelRefusedError
from streams import metrics
from streams.agents.follower import follow
from streams.edge import dead_letter
from streams.kafka.topics import MODEL_VERSIONS
from streams.runtime import Runtime

if TYPE_CHECKING:
    from streams.app import Worker

log = logging.getLogger(__name__)


def _report_serving(runtime: Runtime) -> None:
    current = runtime.serving.current
    metrics.MODEL_INFO.info({"version": current.version, "generator": current.generator.name})


async def _switch(runtime: Runtime, record: ModelVersion) -> LoadedPolicy | None:
    loop = asyncio.get_running_loop()
    policy = runtime.serving
    if record.status is ModelStatus.ROLLED_BACK:
        return await loop.run_in_executor(runtime.executor, policy.roll_back_from, record)
    if record.status is ModelStatus.CHAMPION:
        before = policy.current
        loaded = await loop.run_in_executor(runtime.executor, policy.switch_to, record)
        return None if loaded is before else loaded
    return None  # candidates wait for their gate; refused ones never serve


async def _on_version(worker: Worker, key: bytes | None, value: bytes | None) -> None:
    topic = worker.topics.model_versions
    try:
        record = topic.decode(value, worker.runtime.input_limits)
    except RecordError as e:
        await dead_letter(worker, topic.name, 0, -1, key, value, e.reason, str(e))
        return
    try:
        loaded = await _switch(worker.runtime, record)
    except ModelRefusedError as e:
        metrics.MODELS_REFUSED.labels(reason=e.reason).inc()
        await dead_letter(worker, topic.name, 0, -1, key, value, "model_refused", str(e))
        return
    if loaded is None:
        return
    metrics.MODEL_SWITCHES.inc()
    _report_serving(worker.runtime)
    log.info(
        "serving model_version=%s after %s record of %s:%d",
        loaded.version,
        record.status.value,
        record.name,
        record.version,
    )


def register(worker: Worker) -> None:
    """Declare the task that follows ``model-versions`` once the generators are loaded."""

    async def on_version(key: bytes | None, value: bytes | None) -> None:
        await _on_version(worker, key, value)

    @worker.app.task
    async def follow_model_versions() -> None:
        await worker.runtime.generators_ready.wait()
        _report_serving(worker.runtime)
        await follow(worker.settings, MODEL_VERSIONS.name, on_version)
