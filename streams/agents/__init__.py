"""The worker's agents, one module each; :func:`streams.app.configure` imports this package to declare them on the
worker's app, with the worker's :class:`~streams.runtime.Runtime` (``RUNTIME``) that they share."""

import streams.app

RUNTIME = streams.app.current().runtime  # the configured worker's, set before its agents are declared

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

__all__ = ["RUNTIME"]
