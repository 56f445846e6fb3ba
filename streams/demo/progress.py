"""The demo's live view: what the topics have received and what the worker serves, once a second."""

from __future__ import annotations

import json
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from rich.table import Table

WATCHED = [
    "interactions",
    "profiles",
    "profile-candidates",
    "rewards",
    "preference-pairs",
    "model-versions",
    "dead-letters",
]


def _get(url: str, timeout_s: float = 1.0) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.read()
    except OSError:
        return None


def worker_health(port: int) -> dict[str, Any] | None:
    body = _get(f"http://127.0.0.1:{port}/health")
    return json.loads(body) if body else None


def worker_events(port: int, topic: str = "interactions") -> float | None:
    """Events of one input topic the worker has processed (``lettingo_events_total``; the items topic's catalogue
    load would otherwise count as thousands of interactions)."""
    body = _get(f"http://127.0.0.1:{port}/metrics")
    if body is None:
        return None
    total = 0.0
    for family in text_string_to_metric_families(body.decode()):
        if family.name == "lettingo_events":
            total += sum(
                s.value for s in family.samples if s.name == "lettingo_events_total" and s.labels["topic"] == topic
            )
    return total


@dataclass
class Snapshot:
    at: float
    counts: dict[str, int]
    processed: float
    model_version: object
    phase: str


@dataclass
class Progress:
    """Keeps the snapshots (the report plots them) and renders the latest as a table."""

    history: list[Snapshot] = field(default_factory=list)

    def add(self, snapshot: Snapshot) -> None:
        self.history.append(snapshot)

    def rate(self, window_s: float = 5.0) -> float:
        if len(self.history) < 2:
            return 0.0
        last = self.history[-1]
        first = next((s for s in self.history if last.at - s.at <= window_s), self.history[0])
        return (last.processed - first.processed) / (last.at - first.at) if last.at > first.at else 0.0

    def line(self) -> str:
        """The latest snapshot as one line, for logs and terminals without live redraw."""
        last = self.history[-1]
        counts = " ".join(f"{name}={last.counts.get(name, 0)}" for name in WATCHED)
        return (
            f"{last.phase}: processed={last.processed:,.0f} ({self.rate():,.0f}/s) {counts} model={last.model_version}"
        )

    def table(self) -> Table:
        last = self.history[-1] if self.history else Snapshot(time.time(), {}, 0.0, None, "starting")
        table = Table(title=f"lettingo demo: {last.phase}", show_header=True, header_style="bold")
        table.add_column("what")
        table.add_column("value", justify="right")
        table.add_row("interactions processed by the worker", f"{last.processed:,.0f}")
        table.add_row("interactions/s (5 s)", f"{self.rate():,.0f}")
        for name in WATCHED:
            table.add_row(f"records on {name}", f"{last.counts.get(name, 0):,}")
        table.add_row("serving model version", str(last.model_version))
        return table
