"""Prometheus metrics of the trainer, served by ``lettingo train --watch`` on ``LETTINGO_TRAINER_METRICS_PORT``.

Rounds by outcome (``champion``: the gate passed it and it was promoted; ``refused``: the gate refused it;
``failed``: it raised; ``skipped``: too few valid pairs), pairs consumed and trained, round durations, and the
time of the last round that produced a champion, so an alert can fire when rounds keep failing or stop.
"""

from __future__ import annotations

from prometheus_client import (
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)

from lettingo.prometheus_registry import process_registry

REGISTRY = process_registry()

ROUNDS = Counter("lettingo_trainer_rounds_total", "DPO rounds, by outcome.", ["outcome"], registry=REGISTRY)
PAIRS_CONSUMED = Counter(
    "lettingo_trainer_pairs_consumed_total",
    "Preference pairs read from the topic, by fate.",
    ["fate"],
    registry=REGISTRY,
)
PAIRS_TRAINED = Counter("lettingo_trainer_pairs_trained_total", "Pairs a round trained on.", registry=REGISTRY)
ROUND_SECONDS = Histogram(
    "lettingo_trainer_round_seconds",
    "Wall time of one round (training, gate, publication).",
    buckets=(10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200),
    registry=REGISTRY,
)
LAST_SUCCESS = Gauge(
    "lettingo_trainer_last_success_timestamp_seconds",
    "When the last round produced a champion (epoch s).",
    registry=REGISTRY,
)
CHAMPION_VERSION = Gauge("lettingo_trainer_champion_version", "The registry's champion version.", registry=REGISTRY)

for _outcome in ("champion", "refused", "failed", "skipped"):
    ROUNDS.labels(outcome=_outcome)  # every series exists from the start: rate() and absence alerts work


def serve(port: int, address: str) -> None:
    """Serve ``/metrics`` from a daemon thread (the trainer's rounds block the main thread for minutes)."""
    start_http_server(port, addr=address, registry=REGISTRY)
