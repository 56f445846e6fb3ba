"""Test-only fault injection, off unless ``STREAMS_TEST_CRASH_AT`` is set (tests set it on a worker subprocess).

``STREAMS_TEST_CRASH_AT="ingest:2+5,regenerate:1"`` makes the named agent step raise :class:`InjectedCrash` at
its 2nd and 5th (1st) non-empty batch in the process (``ingest:>=3``: at its 3rd and every later one), after the
batch's effects and before its offsets are recorded as applied. Faust's supervisor then restarts the agent inside
the running worker (tests/test_streams_recovery.py).
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Sized

log = logging.getLogger(__name__)


class InjectedCrash(RuntimeError):
    pass


def _plan(spec: str) -> dict[str, set[int] | int]:
    """Agent name -> the batch numbers that crash, or the first of every batch that crashes (``>=N``)."""
    out: dict[str, set[int] | int] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, batches = part.partition(":")
        out[name] = int(batches[2:]) if batches.startswith(">=") else {int(n) for n in (batches or "1").split("+")}
    return out


_PLAN = _plan(os.environ.get("STREAMS_TEST_CRASH_AT", ""))
_batches: Counter[str] = Counter()


def crash_point(name: str, batch: Sized) -> None:
    """Raise :class:`InjectedCrash` if the plan says ``name`` crashes at this (non-empty) batch."""
    if name not in _PLAN or not len(batch):
        return
    _batches[name] += 1
    plan = _PLAN[name]
    if _batches[name] >= plan if isinstance(plan, int) else _batches[name] in plan:
        log.warning("injected crash in %s at batch %d (%d events)", name, _batches[name], len(batch))
        raise InjectedCrash(f"injected crash in {name}")
