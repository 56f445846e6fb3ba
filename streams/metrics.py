"""Prometheus metrics of a worker, named by Prometheus conventions (``lettingo_`` prefix, ``_total`` counters,
base units). One registry per process, served at ``/metrics`` by the worker's web server, with the standard
process, platform and garbage-collector collectors."""

from __future__ import annotations

from prometheus_client import (
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)

from lettingo.prometheus_registry import process_registry

REGISTRY = process_registry()

EVENTS = Counter(
    "lettingo_events_total", "Input events processed, by topic and kind.", ["topic", "kind"], registry=REGISTRY
)
DUPLICATES = Counter(
    "lettingo_duplicate_events_total", "Interactions seen before (not applied again).", registry=REGISTRY
)
DEAD_LETTERS = Counter(
    "lettingo_dead_letters_total", "Rejected messages, by topic and reason.", ["topic", "reason"], registry=REGISTRY
)
DRIFT_SCORE = Histogram(
    "lettingo_drift_score",
    "Drift scores where they decide: past the minimum evidence and the cooldown (Jensen-Shannon, base 2).",
    buckets=(0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0),
    registry=REGISTRY,
)
PROFILE_REQUESTS = Counter(
    "lettingo_profile_requests_total", "Profile requests emitted, by reason.", ["reason"], registry=REGISTRY
)
REGENERATIONS = Counter("lettingo_regenerations_total", "Profiles written, by reason.", ["reason"], registry=REGISTRY)
REGENERATION_FAILURES = Counter(
    "lettingo_regeneration_failures_total", "Failed generation batches, by error.", ["error"], registry=REGISTRY
)
# Buckets past the generation timeout (LETTINGO_REGEN_TIMEOUT_SECONDS, 60 s by default), so a slow batch shows.
GENERATION_SECONDS = Histogram(
    "lettingo_generation_seconds",
    "Wall time of one generation batch.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300),
    registry=REGISTRY,
)
PROFILE_LATENCY = Histogram(
    "lettingo_profile_latency_seconds",
    "From the interaction that caused a profile request (its Kafka timestamp) to the profile sent.",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600),
    registry=REGISTRY,
)
GENERATED_TOKENS = Counter(
    "lettingo_generated_tokens_total",
    "Tokens of generated profiles, by the generator's tokenizer.",
    ["use"],
    registry=REGISTRY,
)
CANDIDATES = Counter("lettingo_candidates_total", "Explored candidate profiles emitted.", registry=REGISTRY)
REWARDS = Counter(
    "lettingo_rewards_total", "Rewards emitted, by source and correctness.", ["source", "correct"], registry=REGISTRY
)
PAIRS = Counter("lettingo_preference_pairs_total", "Preference pairs emitted.", registry=REGISTRY)
MODEL_INFO = Info("lettingo_model_version", "The model version this worker serves.", registry=REGISTRY)
MODEL_SWITCHES = Counter("lettingo_model_switches_total", "Model versions switched in.", registry=REGISTRY)
MODELS_REFUSED = Counter(
    "lettingo_models_refused_total", "Model versions refused, by reason.", ["reason"], registry=REGISTRY
)
TABLE_KEYS = Gauge(
    "lettingo_table_keys", "Keys in this worker's active table partitions.", ["table"], registry=REGISTRY
)
CACHE_ENTRIES = Gauge(
    "lettingo_cache_entries", "Entries of an in-process cache of this worker.", ["cache"], registry=REGISTRY
)
CACHE_BYTES = Gauge(
    "lettingo_cache_bytes",
    "Approximate bytes an in-process cache holds (keys, values and the dict's own cost).",
    ["cache"],
    registry=REGISTRY,
)
CACHE_MAX_BYTES = Gauge(
    "lettingo_cache_max_bytes",
    "The memory bound of an in-process cache (LETTINGO_CACHE_*_MIB).",
    ["cache"],
    registry=REGISTRY,
)
ROCKSDB_BYTES = Gauge(
    "lettingo_rocksdb_memory_bytes",
    "Bytes RocksDB holds in this worker's shared block cache and in all its memtables (RocksDB's own accounting).",
    ["part"],
    registry=REGISTRY,
)
ROCKSDB_MAX_BYTES = Gauge(
    "lettingo_rocksdb_memory_max_bytes",
    "The bound of a part of lettingo_rocksdb_memory_bytes (LETTINGO_APP_ROCKSDB_BLOCK_CACHE_MIB, "
    "LETTINGO_APP_ROCKSDB_MEMTABLES_MIB).",
    ["part"],
    registry=REGISTRY,
)
CONSUMER_LAG = Gauge(
    "lettingo_consumer_lag_messages",
    "High watermark minus the consumer's position, per assigned partition.",
    ["topic", "partition"],
    registry=REGISTRY,
)

# Hostile input and stalls: what a bound dropped, what was quarantined, agents that crashed, partitions stuck.
STATE_EVICTIONS = Counter(
    "lettingo_state_evictions_total",
    "Entries dropped by the bounds on kept state, by table and what.",
    ["table", "what"],
    registry=REGISTRY,
)
QUARANTINED_STATES = Counter(
    "lettingo_quarantined_states_total",
    "Stored table values that did not decode, dead-lettered and reset.",
    ["table"],
    registry=REGISTRY,
)
POISON_EVENTS = Counter(
    "lettingo_poison_events_total",
    "Events whose processing kept raising, dead-lettered and skipped.",
    ["agent"],
    registry=REGISTRY,
)
ERASURES = Counter("lettingo_erasures_total", "Users forgotten by this worker.", registry=REGISTRY)
FORGOTTEN_EVENTS = Counter(
    "lettingo_forgotten_events_total",
    "Events of forgotten users dropped (not dead-lettered).",
    ["topic"],
    registry=REGISTRY,
)
AGENT_CRASHES = Counter(
    "lettingo_agent_crashes_total", "Agent crashes (Faust restarts the agent).", ["agent"], registry=REGISTRY
)
APPLIED_LAG = Gauge(
    "lettingo_applied_offset_lag_messages",
    "Messages of an input partition past the worker's own applied offset.",
    ["topic", "partition"],
    registry=REGISTRY,
)
PARTITION_STALLED = Gauge(
    "lettingo_partition_stalled",
    "1 while messages wait on a partition whose applied offset has not moved for the stall interval.",
    ["topic", "partition"],
    registry=REGISTRY,
)


def render() -> bytes:
    return generate_latest(REGISTRY)


# Series that exist from the start at 0, so that rate() and increase() see the first event (Prometheus does not
# count a counter's first appearance as an increase) and dashboards show 0 rather than no data.
AGENTS = ("ingest", "regenerate", "feedback_join", "preferences", "task_eval", "forget")
EVICTIONS = {
    "user_state": (
        "history",
        "history_bytes",
        "unsent_history_bytes",
        "seen_ids",
        "seen_ids_bytes",
        "event_attributes",
        "attribute_keys",
    ),
    "pending_join": ("impressions", "impression_items", "early_clicks"),
    "scoreboard": ("rounds", "candidates", "rewards"),
}
for _kind in ("rating", "click", "view", "purchase"):
    EVENTS.labels(topic="interactions", kind=_kind)
for _agent in AGENTS:
    AGENT_CRASHES.labels(agent=_agent)
    POISON_EVENTS.labels(agent=_agent)
for _table, _whats in EVICTIONS.items():
    QUARANTINED_STATES.labels(table=_table)
    for _what in _whats:
        STATE_EVICTIONS.labels(table=_table, what=_what)
