"""The paper's LLM judge as f_Rec (issue 19, item 5), on SmolLM2-135M-Instruct: both tasks through the same
TaskEvaluator as the embedding reader, selectable as ``--reader llm:SPEC`` on the command line and as
``LETTINGO_READER_PATH=llm:SPEC`` in the worker, whose rewards then name the judge."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lettingo import records
from lettingo.cli.main import _register_core, _register_plugins, app
from lettingo.data import load_dataset, split_dataset
from lettingo.evaluation import EvaluationConfig, TaskEvaluator
from lettingo.recommenders import Task, load_judge
from lettingo.recommenders.completers import judge_generator_spec
from lettingo.recommenders.history_text import fixed_format_profile
from tests.conftest import DATASET, delete_test_topics
from tests.streams_harness import catalogue_settings, produce, running_worker, topic_records, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.pretrained]


def test_a_judge_spec_survives_a_settings_path() -> None:
    spec = str(Path("llm:openai:http://127.0.0.1:8000/v1#model"))  # what a Path-typed setting makes of it
    assert judge_generator_spec(spec) == "openai:http://127.0.0.1:8000/v1#model"


def test_the_judge_answers_both_tasks_through_the_task_evaluator(smollm2: Path) -> None:
    dataset = load_dataset(DATASET)
    split = split_dataset(dataset)
    judge = load_judge(f"llm:hf:{smollm2}", dataset)
    users = list(split.test[:4])
    for task in (Task.SENTIMENT, Task.RANKING):
        evaluator = TaskEvaluator(judge, dataset, split, EvaluationConfig(task=task, targets_per_user=1, draws=1))
        for user in users:
            profile = fixed_format_profile(evaluator.cases(user)[0].long_history, dataset.items)
            [score] = evaluator.score_profiles(user, [profile])
            assert score.n_cases == 1 and 0.0 <= score.correct_rate <= 1.0
    assert judge.n_answers == 8
    assert judge.n_unparsable <= 4  # SmolLM2 answers "like" and echoes "1. <the first candidate>" most of the time
    assert judge.completer.queries == 8 and judge.completer.seconds_per_query > 0


def test_the_command_line_takes_an_llm_reader(smollm2: Path) -> None:
    _register_core()
    _register_plugins()
    args = ["--reader", f"llm:hf:{smollm2}", "--max-users", "2", "--tasks", "sentiment", "--targets-per-user", "1"]
    result = CliRunner().invoke(app, ["baselines", str(DATASET), *args])
    assert result.exit_code == 0, result.output
    assert "recent_only" in result.output and "fixed_format" in result.output
    assert "LLM judge: 6 answers" in result.output and "s per query" in result.output


@pytest.mark.kafka
def test_a_worker_rewards_candidates_with_the_judge(smollm2: Path, kafka_bootstrap: str, tmp_path: Path) -> None:
    dataset = load_dataset(DATASET)
    user = "1"
    ratings = dataset.ratings_by_user[user][:6]
    items = {r.item_id for r in ratings} | set(list(dataset.items)[:40])  # negatives come from the catalogue
    catalogue = [
        records.Item(
            item_id=i,
            title=dataset.items[i].title,
            attributes=list(dataset.items[i].attributes),
            year=dataset.items[i].year,
        )
        for i in sorted(items)
    ]
    settings = catalogue_settings(kafka_bootstrap, tmp_path, catalogue)
    try:
        with running_worker(
            settings,
            f"llm:hf:{smollm2}",
            worker_cold_start_after=3,
            explore_rate=1.0,
            explore_k=1,
            eval_draws=1,
            pairs_min_rewards=1,
            drift_min_new_events=50,
        ):
            events = [
                records.Interaction(
                    event_id=f"e{n}", user_id=user, item_id=r.item_id, kind="rating", rating=r.rating, ts=float(r.ts)
                )
                for n, r in enumerate(ratings)
            ]
            asyncio.run(produce(settings, [("interactions", user, e.to_bytes()) for e in events]))

            def rewards() -> list[records.Reward]:
                return [records.Reward.from_bytes(r.value) for r in topic_records(settings, "rewards") if r.value]

            found = wait_for("rewards from the judge", rewards, 300)
            assert all(r.model_version.startswith("llm_judge:") for r in found)
            assert all(r.target in {x.item_id for x in ratings[3:]} for r in found)
    finally:
        delete_test_topics(settings)
