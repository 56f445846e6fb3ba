"""The worker's agents, one module each. Importing them declares nothing: :func:`register_all` declares every
agent, timer and task on a worker's app, each module's ``register`` taking the worker (its settings, app,
runtime, topics and tables) that its agents share."""

from __future__ import annotations

from typing import TYPE_CHECKING

from streams.agents import (
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

if TYPE_CHECKING:
    from streams.app import Worker

MODULES = (loading, items, erasures, models, ingest, regenerate, feedback, preferences, task_eval, monitor)


def register_all(worker: Worker) -> None:
    for module in MODULES:
        module.register(worker)
