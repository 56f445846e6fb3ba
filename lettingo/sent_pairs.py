"""What one task-evaluation worker remembers of the (candidate, rated event) pairs it tested, as a pure,
memory bounded in bytes: which pairs it sent, so it rarely sends one twice, and how many rewards of each candidate the
broker acknowledged, so a candidate whose round has the rewards it needs is not tested again.

The scoreboard counts a reward once per (candidate, event) in any case; this memory only saves work. On a lagging
worker the scoreboard's own count trails far behind, and without the cap a full replay scored each candidate about
50 times instead of 10. A restarted worker starts from nothing and may test a pair again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from lettingo.byte_lru import MIB, ByteLRU
from lettingo.stream_eval import EvalTrigger, StreamCase, cases_for

if TYPE_CHECKING:
    from lettingo.scoreboard import Scoreboard
    from lettingo.user_state import UserState

# Half each: about 48,000 sent pairs and 78,000 candidates' counts, far more than the candidates open on a worker.
SENT_BYTES = 32 * MIB


class SentPairs:
    """(candidate, event) pairs this worker evaluated, and each candidate's acknowledged rewards, in at most
    ``max_bytes`` together (half each); the least recently added or counted forgotten first."""

    def __init__(self, max_bytes: int = SENT_BYTES) -> None:
        self._pairs: ByteLRU[tuple[str, str], None] = ByteLRU(max_bytes // 2)
        self._acked: ByteLRU[str, int] = ByteLRU(max_bytes - max_bytes // 2)

    @property
    def max_bytes(self) -> int:
        return self._pairs.max_bytes + self._acked.max_bytes

    @max_bytes.setter
    def max_bytes(self, value: int) -> None:
        self._pairs.resize(value // 2)
        self._acked.resize(value - value // 2)

    def memory_usage(self) -> tuple[int, int]:
        """(entries, bytes) of both memories together."""
        (pairs, pair_bytes), (acked, acked_bytes) = self._pairs.usage(), self._acked.usage()
        return pairs + acked, pair_bytes + acked_bytes

    def add(self, case: StreamCase) -> None:
        for candidate in case.candidates:
            self._pairs.put((candidate.profile_id, case.event_id), None)

    def acknowledged(self, case: StreamCase) -> None:
        """Count the case's rewards once the broker has them: a reward lost in a crash is not counted."""
        for candidate in case.candidates:
            self._acked.put(candidate.profile_id, (self._acked.get(candidate.profile_id) or 0) + 1)

    def skips(self, profile_id: str, event_id: str, enough: int) -> bool:
        return (profile_id, event_id) in self._pairs or (self._acked.get(profile_id) or 0) >= enough

    def cases(
        self,
        trigger: EvalTrigger,
        load_state: Callable[[], UserState | None],
        board: Scoreboard | None,
        enough: int,
    ) -> list[StreamCase]:
        """The cases ``trigger`` asks for (:func:`lettingo.stream_eval.cases_for`) that this worker has not sent
        and whose candidates lack ``enough`` acknowledged rewards, a new candidate catching up on at most
        ``enough``; each remembered as sent."""
        found = cases_for(
            trigger,
            load_state,
            board,
            skip=lambda profile_id, event_id: self.skips(profile_id, event_id, enough),
            catch_up=enough,
        )
        for case in found:
            self.add(case)
        return found
