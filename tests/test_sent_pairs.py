"""A task-evaluation worker's memory of the pairs it tested (lettingo.sent_pairs): no pair sent twice while
remembered, no candidate tested once its round has its rewards, bounded in bytes with the oldest forgotten first."""

from __future__ import annotations

from collections import Counter
from functools import partial

from hypothesis import given
from hypothesis import strategies as st

from lettingo.byte_lru import ENTRY_OVERHEAD, size_of
from lettingo.data import Rating
from lettingo.sent_pairs import SentPairs
from lettingo.stream_eval import EvalTrigger, OpenCandidate, StreamCase
from lettingo.user_state import UserState
from tests.task_eval_helpers import board_with, state_with_ratings

CANDIDATES = ("p", "q", "r")


def trigger(state: UserState, pick: int | str) -> EvalTrigger:
    if isinstance(pick, str):  # a newly opened candidate
        return EvalTrigger(user_id="u", profile_id=pick)
    e = state.events[pick]
    return EvalTrigger(user_id="u", event_id=e.event_id, seq=e.seq, item_id=e.item_id, rating=e.rating, ts=e.ts)


def load(state: UserState, loads: Counter[str]) -> UserState:
    loads["state"] += 1
    return state


picks = st.lists(st.one_of(st.integers(0, 11), st.sampled_from(CANDIDATES)), max_size=40)


@given(picks, st.integers(1, 4), st.lists(st.booleans(), max_size=40))
def test_no_pair_is_sent_twice_and_no_candidate_past_the_rewards_its_round_needs(
    order: list[int | str], enough: int, acks: list[bool]
) -> None:
    state, board, sent = state_with_ratings(12), board_with("2@e2", *CANDIDATES), SentPairs()
    seen: set[tuple[str, str]] = set()
    acked = dict.fromkeys(CANDIDATES, 0)
    for n, pick in enumerate(order):
        loads = Counter[str]()
        cases = sent.cases(trigger(state, pick), partial(load, state, loads), board, enough)
        if isinstance(pick, int):  # a rated event reads the user's state only for a case (most have none to test)
            assert bool(loads) == bool(cases)
        for case in cases:
            for c in case.candidates:
                assert (c.profile_id, case.event_id) not in seen
                assert acked[c.profile_id] < enough
                seen.add((c.profile_id, case.event_id))
        if n < len(acks) and acks[n]:  # the broker acknowledged the rewards of these cases (as a batch)
            for case in cases:
                sent.acknowledged(case)
                for c in case.candidates:
                    acked[c.profile_id] += 1
        if isinstance(pick, str):  # a catch-up tests at most what the round still needs
            assert len(cases) <= enough


def case(event: str, *pids: str) -> StreamCase:
    candidates = tuple(OpenCandidate(pid, pid) for pid in pids)
    return StreamCase("u", candidates, (), Rating("u", "i", 4.0, 0), 0.0, event)


pairs = st.lists(st.tuples(st.integers(0, 30), st.sampled_from(CANDIDATES)), unique=True, max_size=60)


@given(pairs, st.integers(1, 8))
def test_the_memory_is_bounded_in_bytes_and_forgets_the_oldest_pairs_first(
    sent_pairs: list[tuple[int, str]], size: int
) -> None:
    entry = ENTRY_OVERHEAD + size_of(("p", "e10")) + size_of(None)  # the largest pair of this test
    sent = SentPairs(max_bytes=2 * size * entry)  # half for the pairs: room for at least ``size`` of them
    for event, pid in sent_pairs:
        sent.add(case(f"e{event}", pid))
        assert sent.memory_usage()[1] <= sent.max_bytes
    remembered = [sent.skips(pid, f"e{event}", enough=1) for event, pid in sent_pairs]
    kept = sum(remembered)
    assert kept >= min(size, len(sent_pairs))
    assert remembered == [i >= len(sent_pairs) - kept for i in range(len(sent_pairs))]  # the newest, one by one
    for n in range(4 * size + 5):
        sent.acknowledged(case("x", f"c{n}"))
    assert not sent.skips("c0", "y", enough=1) and sent.skips(f"c{4 * size + 4}", "y", enough=1)


def test_the_worker_stops_testing_a_candidate_once_its_needed_rewards_are_acknowledged() -> None:
    state, board, sent = state_with_ratings(8), board_with("3@e3", "p", "q"), SentPairs()
    e4, e5, e6, e7 = (trigger(state, n) for n in range(3, 7))
    [case4] = sent.cases(e4, lambda: state, board, 2)
    assert (
        sent.cases(e4, lambda: state, board, 2) == []
    )  # sent, not acknowledged yet: not sent twice, not counted either
    [case5] = sent.cases(e5, lambda: state, board, 2)
    sent.acknowledged(case4)
    [case6] = sent.cases(e6, lambda: state, board, 2)
    assert [c.profile_id for c in case6.candidates] == ["p", "q"]  # one acknowledged reward each: not enough
    sent.acknowledged(case5)
    assert sent.cases(e7, lambda: state, board, 2) == []  # both have the 2 their round needs
    # a restarted worker counts from nothing: it may test them again
    assert [c.event_id for c in SentPairs().cases(e7, lambda: state, board, 2)] == ["e7"]


def test_a_new_candidate_catches_up_on_at_most_the_rewards_its_round_needs_and_never_on_a_sent_pair() -> None:
    state, board, sent = state_with_ratings(8), board_with("3@e3", "p"), SentPairs()
    opened = EvalTrigger(user_id="u", profile_id="p")
    [live] = sent.cases(
        trigger(state, 3), lambda: state, board, 2
    )  # e4 arrived live before the candidate's own trigger
    assert live.event_id == "e4"
    assert [c.event_id for c in sent.cases(opened, lambda: state, board, 2)] == ["e5", "e6"]
    assert [c.event_id for c in sent.cases(opened, lambda: state, board, 2)] == [
        "e7",
        "e8",
    ]  # a replay: the unsent ones
    assert sent.cases(opened, lambda: state, board, 2) == []
