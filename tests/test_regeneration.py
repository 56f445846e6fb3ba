"""Regenerating a serving profile as pure decisions (lettingo.regeneration): ids, staleness, the exploration
draw, what a request needs generated, the generation calls, explored candidates, bounded versions and retries."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from lettingo.data import Item, LabelScheme, Rating
from lettingo.explore import candidate_id, normalize_profile
from lettingo.generators import make_generator
from lettingo.generators.hf import HFGenerator
from lettingo.history_ref import HistoryRef
from lettingo.prompts.profile import history_entries, profile_prompt_from_entries
from lettingo.records import ProfileRequest, RequestReason
from lettingo.regeneration import (
    MAX_PROFILE_VERSIONS,
    Plan,
    ProfileHistory,
    exploration_draw,
    explored_tokens,
    explores,
    generate,
    is_stale,
    kept_history,
    plan,
    profile_id,
    regenerate,
    retry,
)
from lettingo.settings import Settings
from lettingo.user_state import HistoryEvent, UserState


def request(count: int | None, user: str = "u1") -> ProfileRequest:
    ref = None if count is None else HistoryRef.of(count, f"e{count}")
    return ProfileRequest(user_id=user, reason=RequestReason.DRIFT, ts=float(count or 0), history_ref=ref)


def serve(req: ProfileRequest, serving: ProfileHistory | None, samples=None) -> ProfileHistory | None:
    done = regenerate(
        req,
        serving,
        text=f"text {req.history_ref}",
        samples=samples,
        policy_version="v1",
        generator="g",
        prompt="p",
        seed=0,
    )
    return None if done is None else done.history


def test_ids_and_draws_are_the_ones_the_stream_made_before() -> None:
    # Pinned: ids already on the profiles topic and draws already taken must not change.
    assert profile_id("u1", HistoryRef(12, "e12"), "v1") == "f62dfbcfccf17060"
    assert profile_id("u1", None, "v1") == "76f61b9ef8dc1385"
    assert exploration_draw("u1", HistoryRef(12, "e12")) == 0.221


counts = st.lists(st.integers(min_value=0, max_value=200), min_size=1, max_size=60)


@given(counts)
def test_versions_stay_bounded_ordered_and_end_with_the_serving_profile(sequence: list[int]) -> None:
    serving = None
    for count in sequence:
        serving = serve(request(count), serving) or serving
    assert serving is not None
    versions = [v.version for v in serving.versions]
    assert len(versions) <= MAX_PROFILE_VERSIONS
    assert versions == list(range(versions[0], versions[0] + len(versions)))
    assert versions[-1] == serving.current.version and serving.versions[-1].profile_id == serving.current.profile_id
    refs = [v.history_ref for v in serving.versions]
    assert all(a is not None and b is not None and a < b for a, b in pairwise(refs))
    # Only a newer history was served: the version count is the number of new maxima in the sequence.
    maxima = sum(1 for i, c in enumerate(sequence) if all(c > d for d in sequence[:i]))
    assert serving.current.version == maxima


@given(st.integers(0, 500), st.integers(0, 500), st.integers(0, 500))
def test_staleness_is_monotone(served: int, asked: int, later: int) -> None:
    serving = serve(request(served), None)
    if is_stale(HistoryRef(asked, "x"), serving):
        # an older request is stale too, and so is the same one against a newer serving profile
        assert is_stale(HistoryRef(min(asked, later), "y"), serving)
        assert is_stale(HistoryRef(asked, "x"), serve(request(max(served, later) + 1), serving))
    assert is_stale(HistoryRef(asked, "x"), serving) == (asked <= served)


def test_a_served_request_is_stale_on_replay_and_unnamed_histories_never_are() -> None:
    first = serve(request(5), None)
    assert first is not None and serve(request(5), first) is None and serve(request(4), first) is None
    assert not is_stale(None, first)  # no history named: the user's latest, always regenerated
    unnamed = serve(request(None), None)
    assert unnamed is not None and unnamed.history_ref is None
    assert not is_stale(HistoryRef(1, "e1"), unnamed)


@given(st.text(min_size=1, max_size=20), st.integers(0, 10**6), st.floats(0, 1), st.floats(0, 1))
def test_the_exploration_draw_is_deterministic_and_monotone_in_the_rate(
    user: str, count: int, a: float, b: float
) -> None:
    ref = HistoryRef.of(count, "e")
    low, high = min(a, b), max(a, b)
    assert explores(user, ref, low, 3) <= explores(user, ref, high, 3)
    assert not explores(user, ref, 1.0, 0) and not explores(user, ref, 0.0, 3) and explores(user, ref, 1.0, 3)
    assert exploration_draw(user, ref) == exploration_draw(user, ref)


def test_the_exploration_rate_is_the_share_of_requests_that_explore() -> None:
    drawn = sum(explores(f"u{n}", HistoryRef(n % 50 + 1, f"e{n}"), 0.3, 2) for n in range(20_000))
    assert abs(drawn / 20_000 - 0.3) < 0.02


def test_explored_candidates_are_deduplicated_and_named_as_lettingo_explore_names_them() -> None:
    req = request(7)
    samples = [("Likes drama.", "x"), ("  likes  DRAMA", "y"), ("", "x"), ("Likes comedies.", "x"), ("text 7@e7", "x")]
    done = regenerate(
        req, None, text="Text 7@e7.", samples=samples, policy_version="v1", generator="g", prompt="the prompt", seed=0
    )
    assert done is not None
    ids = [c.profile_id for c in done.candidates]
    assert ids[0] == done.profile.profile_id  # the served profile competes in its own round
    assert [c.text for c in done.candidates] == ["Text 7@e7.", "Likes drama.", "Likes comedies."]
    assert ids[1:] == [
        candidate_id("u1", req.history_ref, normalize_profile(t)) for t in ("Likes drama.", "Likes comedies.")
    ]
    assert all(c.history_ref == req.history_ref and c.prompt == "the prompt" for c in done.candidates)
    quiet = regenerate(req, None, text="t", samples=None, policy_version="v1", generator="g", prompt="p", seed=0)
    assert quiet is not None and quiet.candidates == []


def test_a_request_needs_nothing_when_stale_else_its_profile_and_candidates_at_the_draw() -> None:
    serving = serve(request(5), None)
    assert plan(request(5), serving, 1.0, 3) is None  # already served
    assert plan(request(4), serving, 1.0, 3) is None  # older than what is served
    assert plan(request(6), serving, 1.0, 3) is not None
    assert plan(request(None), serving, 0.0, 3) is not None  # no history named: the user's latest
    assert plan(request(5), None, 0.0, 3) is not None  # nothing served yet
    # request(12)'s draw is pinned at 0.221 (test_ids_and_draws_are_the_ones_the_stream_made_before)
    assert plan(request(12), serving, 0.23, 3) == Plan(explore=True)
    assert plan(request(12), serving, 0.22, 3) == Plan(explore=False)
    assert plan(request(12), serving, 1.0, 0) == Plan(explore=False)  # K = 0: nothing to explore


@given(st.integers(0, 50), st.one_of(st.none(), st.integers(0, 50)), st.floats(0, 1), st.integers(0, 5))
def test_a_request_is_planned_unless_served_and_explores_only_at_a_positive_rate_and_k(
    served: int, asked: int | None, rate: float, k: int
) -> None:
    needed = plan(request(asked), serve(request(served), None), rate, k)
    if asked is not None and asked <= served:
        assert needed is None
        return
    assert needed is not None
    if k == 0 or rate == 0.0:
        assert not needed.explore
    if k > 0 and rate == 1.0:
        assert needed.explore


def test_a_prompt_without_its_own_history_describes_the_most_recent_kept_events_the_request_covers() -> None:
    # seq 1-3 have left the kept window; 4-10 are kept
    kept = [HistoryEvent(seq=n, event_id=f"e{n}", item_id=f"i{n}", kind="rating", ts=n) for n in range(4, 11)]
    state = UserState(user_id="u", events=kept, count=10)

    def seqs(upto: int | None, history_max: int) -> list[int]:
        ref = None if upto is None else HistoryRef.of(upto, f"e{upto}")
        return [e.seq for e in kept_history(state, ref, history_max)]

    assert seqs(8, 3) == [6, 7, 8]
    assert seqs(8, 70) == [4, 5, 6, 7, 8]  # what the window still holds of the request's history
    assert seqs(None, 3) == [8, 9, 10]  # no history named: the user's latest
    assert seqs(3, 70) == []  # all of it has left the window
    assert seqs(12, 2) == [9, 10]


ITEMS = {f"i{n}": Item(f"i{n}", f"Film {n}", ("Drama",) if n % 2 else ("Comedy",), 1990 + n) for n in range(12)}
WRITERS = make_generator("writer:mix")


def prompt(user: int):
    ratings = [Rating(f"u{user}", f"i{(user + n) % 12}", float(1 + (user * n) % 5), n) for n in range(user % 6 + 1)]
    return profile_prompt_from_entries(history_entries(ratings, ITEMS, LabelScheme()), f"u{user}")


@given(st.lists(st.tuples(st.integers(0, 40), st.booleans()), min_size=1, max_size=8))
def test_a_generated_profile_does_not_depend_on_the_batch_it_was_generated_in(batch: list[tuple[int, bool]]) -> None:
    s = Settings()
    prompts, explore = [prompt(u) for u, _ in batch], [e for _, e in batch]
    together = generate(WRITERS, WRITERS, prompts, explore, s)
    alone = [generate(WRITERS, WRITERS, [p], [e], s)[0] for p, e in zip(prompts, explore, strict=True)]
    assert together == alone
    for generated, explored in zip(together, explore, strict=True):
        assert generated.profile.strip()
        assert (generated.samples is None) == (not explored)
        assert generated.samples is None or len(generated.samples) == s.explore.k


def test_explored_tokens_count_each_sample_by_the_tokenizer_of_the_generator_that_wrote_it(nano_model: Path) -> None:
    nano, writer = HFGenerator(str(nano_model), device="cpu"), make_generator("writer:titles")
    by_nano, by_writer = 'Likes "Heat (1995)" and dark, slow-burning dramas.', "Dislikes musicals, likes westerns."
    assert nano.count_tokens(by_nano) != writer.count_tokens(by_nano)
    assert nano.count_tokens(by_writer) != writer.count_tokens(by_writer)
    samples = [(by_nano, nano.name), (by_writer, writer.name)]
    expected = nano.count_tokens(by_nano) + writer.count_tokens(by_writer)
    assert explored_tokens(samples, nano, writer) == expected  # the policy wrote one, the explorer the other
    assert explored_tokens(samples, writer, nano) == expected
    assert explored_tokens(None, nano, writer) == explored_tokens([], nano, writer) == 0


@given(st.integers(1, 10))
def test_a_failing_request_is_tried_max_attempts_times_then_dead_lettered(max_attempts: int) -> None:
    first = request(3)
    tries, current = 1, first
    while (again := retry(current, max_attempts)) is not None:
        assert again.attempt == current.attempt + 1
        assert again.model_copy(update={"attempt": 0}) == first  # only the attempt changes: same ids on success
        tries, current = tries + 1, again
    assert tries == max_attempts
