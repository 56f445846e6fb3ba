"""The worker's agents, one module each; importing this package registers them on :data:`streams.app.app`."""

from streams.app import settings
from streams.runtime import build_runtime

RUNTIME = build_runtime(settings)

from streams.agents import (  # noqa: E402, F401
    feedback,
    ingest,
    items,
    models,
    monitor,
    preferences,
    regenerate,
    task_eval,
)
