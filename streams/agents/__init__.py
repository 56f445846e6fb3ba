"""The worker's agents, one module each; importing this package registers them on :data:`streams.app.app`."""

from streams.app import settings
from streams.runtime import Runtime

RUNTIME = Runtime(settings)

from streams.agents import (  # noqa: E402, F401
    erasures,
    feedback,
    ingest,
    items,
    loading,
    models,
    monitor,
    preferences,
    regenerate,
    task_eval,
)
