"""Preference pairs: P+ x P- per user, capped, deduplicated, never a profile against itself."""

from __future__ import annotations

from lettingo.pairs import PairConfig, ScoredProfile, build_pairs
from lettingo.records import PreferencePair


def _profiles(*rewards: float) -> list[ScoredProfile]:
    return [ScoredProfile(f"p{n}", f"profile text {n}", r, "nano", "v3") for n, r in enumerate(rewards)]


def test_binary_rewards_give_exactly_p_plus_times_p_minus() -> None:
    pairs = build_pairs("u1", "PROMPT", _profiles(1, 0, 1, 0, 0), config=PairConfig(max_pairs_per_user=100))
    assert len(pairs) == 2 * 3
    assert {(p.chosen_profile_id, p.rejected_profile_id) for p in pairs} == {
        (c, r) for c in ("p0", "p2") for r in ("p1", "p3", "p4")
    }
    for p in pairs:
        assert p.chosen_reward > p.rejected_reward
        assert p.prompt == "PROMPT" and p.policy_version == "v3" and p.user_id == "u1"
        assert p.chosen == f"profile text {p.chosen_profile_id[1:]}"
        assert isinstance(p, PreferencePair)  # the record the trainer reads


def test_widest_gaps_first_and_capped() -> None:
    pairs = build_pairs("u1", "P", _profiles(0.9, 0.1, 0.5, 0.3), config=PairConfig(max_pairs_per_user=2))
    assert [(p.chosen_profile_id, p.rejected_profile_id) for p in pairs] == [("p0", "p1"), ("p0", "p3")]


def test_min_gap_drops_near_ties_and_equal_rewards_make_no_pair() -> None:
    assert build_pairs("u1", "P", _profiles(0.5, 0.5, 0.5)) == []
    pairs = build_pairs("u1", "P", _profiles(0.52, 0.5, 0.1), config=PairConfig(10, min_gap=0.05))
    assert {(p.chosen_profile_id, p.rejected_profile_id) for p in pairs} == {("p0", "p2"), ("p1", "p2")}


def test_identical_texts_are_merged_so_no_self_pairs_and_no_duplicates() -> None:
    same = [
        ScoredProfile("a", "Likes Heat.", 1.0),
        ScoredProfile("b", "Likes Heat.", 0.0),  # same text, other reward: merged (0.5), not paired with itself
        ScoredProfile("c", "  Likes Heat.  ", 1.0),
        ScoredProfile("d", "Likes comedies.", 0.0),
        ScoredProfile("e", "   ", 1.0),  # empty profiles are never chosen or rejected
    ]
    pairs = build_pairs("u1", "P", same, config=PairConfig(10))
    assert len(pairs) == 1
    (pair,) = pairs
    assert pair.chosen == "Likes Heat." and pair.rejected == "Likes comedies."
    assert pair.chosen_reward == 2 / 3
    assert all(p.chosen != p.rejected for p in pairs)


def test_pair_ids_are_stable_and_carry_provenance() -> None:
    a = build_pairs("u1", "P", _profiles(1, 0), reader_version="embedding-abc")
    b = build_pairs("u1", "P", _profiles(1, 0), reader_version="embedding-abc")
    assert a[0].pair_id == b[0].pair_id
    assert a[0].reader_version == "embedding-abc"
    assert a[0].chosen_generator == "nano"
    assert build_pairs("u1", "P", _profiles(1, 0), policy_version="v9")[0].pair_id != a[0].pair_id
