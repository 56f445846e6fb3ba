"""What one task-evaluation worker remembers of the (candidate, rated event) pairs it tested, as a pure,
bounded memory: which pairs it sent, so it rarely sends one twice, and how many rewards of each candidate the
broker acknowledged, so a candidate whose round has the rewards it needs is not tested again.

The scoreboard counts a reward once per (candidate, event) in any case; this memory only saves work. On a lagging
worker the scoreboard's own count trails far behind, and without the cap a full replay scored each candidate about
50 times instead of 10. A restarted worker starts from nothing and may test a pair again.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

from lettingo.stream_eval import EvalTrigger, StreamCase, cases_for

if TYPE_CHECKING:
    from lettingo.scoreboard import Scoreboard
    from lettingo.user_state import UserState

SENT_MAX = 200_000


class SentPairs:
    """(candidate, event) pairs this worker evaluated, and each candidate's acknowledged rewards; the oldest
    forgotten first, past ``max_size`` of each."""

    def __init__(self, max_size: int = SENT_MAX) -> None:
        self.max_size = max_size
        self._pairs: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._acked: OrderedDict[str, int] = OrderedDict()

    def add(self, case: StreamCase) -> None:
        for candidate in case.candidates:
            self._pairs[(candidate.profile_id, case.event_id)] = None
        while len(self._pairs) > self.max_size:
            self._pairs.popitem(last=False)

    def acknowledged(self, case: StreamCase) -> None:
        """Count the case's rewards once the broker has them: a reward lost in a crash is not counted."""
        for candidate in case.candidates:
            self._acked[candidate.profile_id] = self._acked.pop(candidate.profile_id, 0) + 1
        while len(self._acked) > self.max_size:
            self._acked.popitem(last=False)

    def skips(self, profile_id: str, event_id: str, enough: int) -> bool:
        return (profile_id, event_id) in self._pairs or self._acked.get(profile_id, 0) >= enough

    def cases(
        self, trigger: EvalTrigger, state: UserState | None, board: Scoreboard | None, enough: int
    ) -> list[StreamCase]:
        """The cases ``trigger`` asks for (:func:`lettingo.stream_eval.cases_for`) that this worker has not sent
        and whose candidates lack ``enough`` acknowledged rewards, a new candidate catching up on at most
        ``enough``; each remembered as sent."""
        found = cases_for(
            trigger,
            state,
            board,
            skip=lambda profile_id, event_id: self.skips(profile_id, event_id, enough),
            catch_up=enough,
        )
        for case in found:
            self.add(case)
        return found
