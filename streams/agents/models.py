"""models: follow ``model-versions`` (every worker reads all of it) and hot-swap the serving policy.

A version is loaded in the model executor: checksums verified, loaded, smoke-generated, then switched; the
previous one is kept for rollback. A refused version is counted, logged and reported to ``dead-letters``
(reason ``model_refused``), and the worker keeps serving what it served.
"""

from __future__ import annotations

import asyncio
import logging

from lettingo.records import ModelStatus, ModelVersion, RecordError, decode_record
from lettingo.serving import ModelRefusedError
from streams import metrics
from streams.agents import RUNTIME
from streams.agents.follower import follow
from streams.app import app, settings
from streams.edge import dead_letter

log = logging.getLogger(__name__)
SERVABLE = {ModelStatus.CANDIDATE, ModelStatus.CHAMPION}


def _report_serving() -> None:
    metrics.MODEL_INFO.info(
        {"version": RUNTIME.policy.current.version, "generator": RUNTIME.policy.current.generator.name}
    )


async def _on_version(key: bytes | None, value: bytes | None) -> None:
    try:
        record = decode_record(ModelVersion, value, settings.max_message_bytes)
    except RecordError as e:
        await dead_letter(settings.topic("model-versions"), 0, -1, key, value, e.reason, str(e))
        return
    if record.status is not ModelStatus.CHAMPION:
        return  # only the registry's champion is served; candidates wait for their gate
    loop = asyncio.get_running_loop()
    try:
        loaded = await loop.run_in_executor(RUNTIME.executor, RUNTIME.policy.switch_to, record)
    except ModelRefusedError as e:
        metrics.MODELS_REFUSED.labels(reason=e.reason).inc()
        await dead_letter(settings.topic("model-versions"), 0, -1, key, value, "model_refused", str(e))
        return
    metrics.MODEL_SWITCHES.inc()
    _report_serving()
    log.info("hot-swapped model_version=%s", loaded.version)


@app.task
async def follow_model_versions() -> None:
    _report_serving()
    await follow(settings, "model-versions", _on_version)
