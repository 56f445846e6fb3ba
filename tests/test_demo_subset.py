from lettingo.data import load_dataset, split_dataset
from streams.demo.run import held_out, subset
from tests.conftest import DATASET


def test_subset_keeps_the_groups_and_each_users_latest_ratings():
    full = load_dataset(DATASET)
    split = split_dataset(full)
    small, small_split = subset(full, split, users=60, max_ratings=120)

    for group in ("train", "validation", "test"):
        members = getattr(small_split, group)
        assert members and set(members) <= set(getattr(split, group))
    assert set(small.ratings_by_user) == {*small_split.train, *small_split.validation, *small_split.test}
    for user, ratings in small.ratings_by_user.items():
        assert ratings == full.ratings_by_user[user][-120:]
    assert any(len(full.ratings_by_user[u]) > 120 for u in small.ratings_by_user)  # the cap did cut someone
    # the held-out ratings are each user's latest, so the cap never drops them
    assert held_out(small, small_split) == held_out(full, small_split)


def test_held_out_covers_the_reports_and_the_gates_targets():
    from trainer.task_eval import TARGETS_PER_USER

    full = load_dataset(DATASET)
    small, split = subset(full, split_dataset(full), users=60)
    hold = held_out(small, split)
    for users, latest in ((split.test, 2), (split.validation, 1 + TARGETS_PER_USER)):
        for user in users:
            ratings = small.ratings_by_user[user]
            assert {(r.user_id, r.item_id, r.ts) for r in ratings[-latest:]} <= hold
            assert (ratings[-latest - 1].user_id, ratings[-latest - 1].item_id, ratings[-latest - 1].ts) not in hold
    assert all(user in {*split.test, *split.validation} for user, _, _ in hold)
