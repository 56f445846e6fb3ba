"""What the task-evaluation tests build: a user's state with rated events, and a scoreboard with open candidates."""

from __future__ import annotations

from lettingo.data import LabelScheme
from lettingo.records import Interaction, ProfileCandidate
from lettingo.scoreboard import Scoreboard
from lettingo.user_state import UserState, apply_interaction


def state_with_ratings(n: int) -> UserState:
    """User ``u`` after rating items ``i1``..``in`` (events ``e1``..``en``, seq 1..n), every event kept."""
    state = UserState(user_id="u")
    for k in range(1, n + 1):
        event = Interaction(event_id=f"e{k}", user_id="u", item_id=f"i{k}", kind="rating", rating=4.0, ts=k)
        apply_interaction(state, event, None, LabelScheme(), keep_events=50, seen_max=100)
    return state


def board_with(history_ref: str, *pids: str) -> Scoreboard:
    """User ``u``'s scoreboard with a candidate open for each of ``pids``, its prompt over ``history_ref``."""
    board = Scoreboard()
    for pid in pids:
        candidate = ProfileCandidate(
            profile_id=pid, user_id="u", text=pid, generator="g", model_version="v", history_ref=history_ref
        )
        board.add_candidate(candidate, prompt="P")
    return board
