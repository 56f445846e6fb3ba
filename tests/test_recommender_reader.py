"""The embedding reader on real ml-latest-small data: frozen with a checksum, profile content matters on ranking,
and the evaluate -> pairs stages resume after a crash. One small reader is trained for the whole module."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from lettingo.baselines import paired_difference, run_baseline, standard_baselines
from lettingo.cli.main import main
from lettingo.data import load_dataset, split_dataset
from lettingo.evaluation import EvaluationConfig, TaskEvaluator
from lettingo.recommenders import (
    EmbeddingReader,
    RankingQuery,
    ReaderChecksumError,
    ReaderTrainingConfig,
    SentimentQuery,
    Task,
    TextEncoder,
    train_reader,
)
from lettingo.recommenders.history_text import genre_profile, titles_profile


@pytest.fixture(scope="module")
def cache_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Item embeddings are content-addressed, so reusing them across runs is safe and saves a minute.
    cache = getattr(request.config, "cache", None)  # absent under -p no:cacheprovider
    return Path(cache.mkdir("lettingo-embeddings")) if cache else tmp_path_factory.mktemp("embeddings")


@pytest.fixture(scope="module")
def trained(dataset_path: Path, cache_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    ds = load_dataset(dataset_path)
    split = split_dataset(ds)
    encoder = TextEncoder(cache_dir)
    config = ReaderTrainingConfig(targets_per_user=2, draws=1, max_users=120, styles=("titles", "genres"))
    reader, report = train_reader(ds, split, encoder, config)
    folder = tmp_path_factory.mktemp("reader")
    reader.save(folder, {"training_report": report})
    encoder.save()
    yield ds, split, encoder, reader, folder
    encoder.save()  # the items the tests embedded, for the next run


def test_frozen_reader_reloads_and_scores_the_same(trained) -> None:
    ds, split, encoder, reader, folder = trained
    loaded = EmbeddingReader.load(folder, ds, encoder)
    assert loaded.version == reader.version and loaded.version.startswith("embedding-")
    case = split.cases(ds, "test")[0]
    profile = titles_profile(case.long_history, ds.items)
    queries = [
        RankingQuery(profile, None, ("1", "2", "3", case.target.item_id)),
        RankingQuery("", case.recent, ("1", "50")),
    ]
    batched = loaded.score_batch(Task.RANKING, queries)
    assert np.allclose(batched[0], reader.score_batch(Task.RANKING, queries)[0])
    assert np.allclose(batched[1], loaded.score_one(Task.RANKING, queries[1]))
    probabilities = loaded.score_one("sentiment", SentimentQuery(profile, case.recent, case.target.item_id))
    assert probabilities.shape == (3,) and probabilities.sum() == pytest.approx(1.0)


def test_a_modified_reader_is_refused(trained, tmp_path: Path, dataset_path: Path) -> None:
    ds, _, encoder, _, folder = trained
    tampered = tmp_path / "tampered"
    shutil.copytree(folder, tampered)
    data = bytearray((tampered / "reader.npz").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tampered / "reader.npz").write_bytes(bytes(data))
    with pytest.raises(ReaderChecksumError, match="refusing to load"):
        EmbeddingReader.load(tampered, ds, encoder)
    (tmp_path / "none.jsonl").touch()  # an explore output without cases: evaluate goes on to load the reader
    with pytest.raises(SystemExit) as exit_info:  # the CLI reports it as one line, exit status 1
        main(
            [
                "evaluate",
                str(tmp_path / "none.jsonl"),
                "--out",
                str(tmp_path / "r.jsonl"),
                "--reader",
                str(tampered),
                "--dataset",
                str(dataset_path),
            ]
        )
    assert exit_info.value.code == 1


def test_titles_profiles_beat_genre_only_profiles_on_ranking(trained) -> None:
    ds, split, _, reader, _ = trained
    config = EvaluationConfig(Task.RANKING, targets_per_user=3, draws=2)
    evaluator = TaskEvaluator(reader, ds, split, config)
    hits: dict[str, list[float]] = {"titles": [], "genres": []}
    users: list[str] = []
    for user in split.test[:80]:
        cases = evaluator.cases(user)
        profiles = [titles_profile(cases[0].long_history, ds.items), genre_profile(cases[0].long_history, ds.items)]
        titles, genres = evaluator.outcomes(user, profiles, cases)
        hits["titles"] += [float(o.rank == 0) for o in titles]
        hits["genres"] += [float(o.rank == 0) for o in genres]
        users += [user] * len(titles)
    hr_titles, hr_genres = np.mean(hits["titles"]), np.mean(hits["genres"])
    print(f"HR@1 titles {hr_titles:.3f} genres {hr_genres:.3f} over {len(users)} rankings")
    assert hr_titles > 0.12  # chance is 0.10
    assert hr_titles - hr_genres > 0.03


def test_baselines_run_on_both_tasks(trained) -> None:
    ds, split, _, reader, _ = trained
    config = EvaluationConfig(targets_per_user=2, draws=1)
    users = list(split.test[:15])
    for task in (Task.SENTIMENT, Task.RANKING):
        systems = [run_baseline(b, task, reader, ds, split, config, users) for b in standard_baselines(ds, {})]
        assert [s.name for s in systems] == ["recent_only", "raw_history", "fixed_format", "generator"]
        recent, raw, fixed, generator = systems
        assert len(recent.outcomes) == len(raw.outcomes) == len(fixed.outcomes) == 2 * len(users)
        assert generator.outcomes == []  # no candidates given
        metrics = fixed.metrics(n_resamples=100)
        names = {"accuracy", "macro_f1", "weighted_f1"} if task is Task.SENTIMENT else {"hr@1", "hr@5", "ndcg@5"}
        assert set(metrics) == names
        assert all(0 <= m.low <= m.value <= m.high <= 1 for m in metrics.values())
        first = "accuracy" if task is Task.SENTIMENT else "hr@1"
        assert -1 <= paired_difference(fixed, recent, first, 100).value <= 1


def _candidates_file(path: Path, ds, split, users: list[str]) -> None:
    """An explore-style JSONL: three candidates per user, two informative styles and a poor one."""
    first_case = {c.user_id: c for c in split.cases(ds, "test")}
    with path.open("w") as f:
        for user in users:
            h = first_case[user].long_history
            texts = {"t": titles_profile(h, ds.items), "g": genre_profile(h, ds.items), "x": "Watches films."}
            candidates = [
                {"profile_id": f"{user}-{k}", "text": text, "generator": k, "model_version": "v0", "seed": n}
                for n, (k, text) in enumerate(texts.items())
            ]
            f.write(json.dumps({"user_id": user, "candidates": candidates}) + "\n")


def test_evaluate_then_pairs_resume_after_a_crash(
    trained, tmp_path: Path, dataset_path: Path, cache_dir: Path, monkeypatch
) -> None:
    ds, split, _, _, folder = trained
    home = tmp_path / "home"
    home.mkdir()
    (home / "cache").symlink_to(cache_dir, target_is_directory=True)
    monkeypatch.setenv("LETTINGO_HOME", str(home))
    users = list(split.test[:4])
    candidates, rewards, pairs = tmp_path / "cand.jsonl", tmp_path / "rewards.jsonl", tmp_path / "pairs.jsonl"
    _candidates_file(candidates, ds, split, users)
    args = ["--reader", str(folder), "--dataset", str(dataset_path), "--targets-per-user", "2", "--draws", "2"]
    with pytest.raises(SystemExit) as done:
        main(["evaluate", str(candidates), "--out", str(rewards), *args])
    assert done.value.code in (0, None)
    complete = rewards.read_text().splitlines()
    assert [json.loads(line)["user_id"] for line in complete] == users
    # a crash mid-write: two users done, the third torn
    rewards.write_text("\n".join(complete[:2]) + "\n" + complete[2][:40])
    with pytest.raises(SystemExit):
        main(["evaluate", str(candidates), "--out", str(rewards), *args])
    resumed = [json.loads(line) for line in rewards.read_text().splitlines()]
    assert [r["user_id"] for r in resumed] == users
    assert resumed == [json.loads(line) for line in complete]  # same rewards as the run without the crash
    line = resumed[0]
    assert {c["profile_id"] for c in line["candidates"]} == {f"{users[0]}-t", f"{users[0]}-g", f"{users[0]}-x"}
    assert all(c["n_cases"] == 4 and 0 <= c["reward"] <= 1 for c in line["candidates"])

    for _ in range(2):  # the second run finds every user done and adds nothing
        with pytest.raises(SystemExit):
            main(["pairs", str(rewards), "--out", str(pairs), "--dataset", str(dataset_path)])
    written = [json.loads(x) for x in pairs.read_text().splitlines()]
    assert len({p["pair_id"] for p in written}) == len(written) > 0
    for p in written:
        assert p["chosen_reward"] > p["rejected_reward"] and p["prompt"].rstrip().endswith("Profile:")
        assert p["reader_version"] == line["reader_version"]


def test_score_batch_matches_score_one_on_the_frozen_reader(
    frozen_reader: Path, dataset_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The vectorised batch path gives the scores of the one-query path (the features the scorers were trained
    on), on both tasks, with every channel, uneven profiles, h_u and candidate lists, across several blocks."""
    import random

    from lettingo.recommenders import reader as reader_module
    from lettingo.recommenders.features import feature_columns
    from lettingo.recommenders.history_text import raw_history_text

    ds = load_dataset(dataset_path)
    split = split_dataset(ds)
    reader = EmbeddingReader.load(frozen_reader, ds, TextEncoder(frozen_reader.parents[1] / "cache"))
    monkeypatch.setattr(reader_module, "BLOCK_QUERIES", 16)  # several blocks, the last one short
    rng = random.Random(7)
    catalogue = sorted(ds.items)
    writers = [titles_profile, genre_profile, raw_history_text, lambda h, items: "", lambda h, items: "  "]
    ranking: list[RankingQuery] = []
    sentiment: list[SentimentQuery] = []
    for n, case in enumerate(split.cases(ds, "test")[:30]):
        profile = writers[n % len(writers)](case.long_history, ds.items)
        recent = case.recent[: rng.randint(1, len(case.recent))] if n % 3 == 0 else case.recent
        for draw in range(2):  # draws of one case share profile and h_u, as in the task evaluation
            others = tuple(rng.sample(catalogue, rng.choice([9, 9, 3, 0])))
            ranking.append(
                RankingQuery(profile, None if (n + draw) % 4 == 0 else recent, (*others, case.target.item_id))
            )
        sentiment.append(SentimentQuery(profile, recent, case.target.item_id))
    assert {reader_module.channels_of(q) for q in ranking} == {"profile+recent", "profile", "recent", "none"}

    for task, queries in ((Task.RANKING, ranking), (Task.SENTIMENT, sentiment)):
        batched = reader.score_batch(task, queries)
        for query, scores in zip(queries, batched, strict=True):
            single = reader.score_one(task, query)
            assert scores.shape == single.shape
            np.testing.assert_allclose(scores, single, rtol=1e-5, atol=1e-5)
        x, n_items, channels = reader.batch_features(task, queries)  # and the features themselves
        for n, query in enumerate(queries):
            name, expected = reader.features(task, query)
            assert channels[n] == name
            np.testing.assert_allclose(x[n, : n_items[n]][:, feature_columns(task.value, name)], expected, atol=1e-5)
    assert reader.score_batch(Task.RANKING, []) == []
