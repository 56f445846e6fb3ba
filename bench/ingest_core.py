"""Ingest core: the CPU one interaction costs in the ingest step's own Python, without Kafka or Faust.

The dataset's first interactions (time order) go through what the worker's bulk path does with each, in batches of
1,000 as it takes them: decode and validate the record (:func:`lettingo.records.decode_record`), load each user's
state once per batch (JSON, as the table stores it), apply the event and decide on drift
(:func:`streams.ingest_batch.step`), encode what it caused (rated events, profile requests), and store each
changed state once per batch (:func:`lettingo.user_state.fit_user_state`). Microseconds per event by stage, the
median of the repeats. The ``ingest`` benchmark's worker spends its CPU per event on this and on Faust, aiokafka
and RocksDB: the difference between the two figures is what the stream machinery costs.
"""

from __future__ import annotations

import time
from collections import defaultdict

from bench.common import Options, median, print_table, write_result
from bench.ingest import load_messages

BATCH = 1000  # streams.agents.ingest.BATCH_MAX
STAGES = ("decode", "load", "apply", "outputs", "store")


def load_payloads(n: int) -> tuple[list[bytes], dict]:
    """The first ``n`` interactions as the worker reads them (``bench.ingest``'s messages), and the catalogue as its
    items agent holds it."""
    from lettingo.records import Item

    messages = load_messages(n)
    items = (Item.from_bytes(value) for _, value in messages.items)
    return [value for _, value in messages.interactions], {item.item_id: item for item in items}


def one_pass(payloads: list[bytes], catalog: dict) -> dict[str, float]:
    """Seconds spent in each stage over all of ``payloads``, from empty states."""
    from lettingo.bounds import Evictions
    from lettingo.records import Interaction, decode_record
    from lettingo.user_state import UserState, fit_user_state
    from streams.ingest_batch import rated_trigger, step
    from streams.runtime import Runtime
    from streams.settings import StreamSettings

    settings = StreamSettings.load()
    runtime = Runtime(settings, catalog=catalog)
    limits, max_bytes = runtime.input_limits, settings.bounds.max_state_bytes
    now = time.time()
    stored: dict[str, bytes] = {}
    spent: dict[str, float] = defaultdict(float)
    clock = time.perf_counter
    evicted = Evictions()
    for start in range(0, len(payloads), BATCH):
        states: dict[str, UserState] = {}
        for offset, payload in enumerate(payloads[start : start + BATCH], start):
            t0 = clock()
            interaction = decode_record(Interaction, payload, limits, now=now)
            t1 = clock()
            state = states.get(interaction.user_id)
            if state is None:
                raw = stored.get(interaction.user_id)
                state = UserState.from_bytes(raw) if raw else UserState(user_id=interaction.user_id)
                states[interaction.user_id] = state
            t2 = clock()
            result = step(runtime, state, interaction, evicted, ("interactions:0", offset))
            t3 = clock()
            if result.rated is not None:
                rated_trigger(interaction.user_id, result.rated)
            if result.request is not None:
                result.request.to_bytes()
            t4 = clock()
            spent["decode"] += t1 - t0
            spent["load"] += t2 - t1
            spent["apply"] += t3 - t2
            spent["outputs"] += t4 - t3
        t5 = clock()
        for user_id, state in states.items():
            stored[user_id] = fit_user_state(state, max_bytes, evicted)
        spent["store"] += clock() - t5
    return spent


def run(opts: Options) -> dict:
    started = time.perf_counter()
    payloads, catalog = load_payloads(10_000 if opts.quick else 100_000)
    n = len(payloads)
    passes = [one_pass(payloads, catalog) for _ in range(opts.repeats)]
    us = {stage: median([1e6 * p[stage] / n for p in passes]) for stage in STAGES}
    total = median([1e6 * sum(p.values()) / n for p in passes])
    print_table(
        f"ingest core: {n:,} MovieLens interactions in batches of {BATCH}, no Kafka (medians of {opts.repeats})",
        ["stage", "us/event"],
        [*([stage, us[stage]] for stage in STAGES), ["total", total]],
    )
    figures = {
        "events": n,
        "batch": BATCH,
        "core_us_per_event": total,
        "stages_us_per_event": us,
        "core_events_per_cpu_second": 1e6 / total,
    }
    write_result("ingest_core", opts, figures, started)
    return figures
