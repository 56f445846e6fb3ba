"""The gate's task measure: HR@1 of the frozen f_Rec on validation users, from the profiles a policy writes.

``lettingo train --task-eval trainer.task_eval:validation_task`` uses it. Each validation user's profile is
written from H_u before the validation item; the validation item and the ratings just before it are the
targets (``offset=1``), so the test users' final items are never looked at.

The gate compares candidate and champion per user (``user_scorer``) on the same users, targets, negative draws
and sampling seeds, so its task check is a paired comparison with a confidence interval (``trainer.gate``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lettingo.data import load_dataset, split_dataset
from lettingo.data.labels import LabelScheme
from lettingo.evaluation import EvaluationConfig, TaskEvaluator
from lettingo.recommenders import TextEncoder, build_or_load_reader
from lettingo.recommenders.base import Task
from lettingo.settings import Settings
from trainer.gate import TaskEvaluation
from trainer.policy import adapter_base_model, is_adapter

SAMPLES_PER_USER = 2
TARGETS_PER_USER = 3
# Negative draws per target. Most of a user's paired noise is which profiles were sampled; going from 5 to 10 draws
# still cut the per-user s.d. of candidate - base by about 9 % (0.13 -> 0.12 on the 122 validation users), for
# reader time only (no generation).
DRAWS_PER_TARGET = 10


def validation_task(settings: Settings, seed: int = 13) -> TaskEvaluation:
    from lettingo.generators.hf import HFGenerator
    from lettingo.prompts.profile import profile_prompt

    dataset = load_dataset(settings.dataset)
    split = split_dataset(dataset)
    encoder = TextEncoder(settings.cache_path)
    reader = settings.reader_path
    if reader is not None:
        from lettingo.recommenders import EmbeddingReader

        frozen = EmbeddingReader.load(reader, dataset, encoder)
    else:
        frozen = build_or_load_reader(dataset, split, settings.path("models"), encoder)[0]
    config = EvaluationConfig(
        task=Task.RANKING,
        targets_per_user=TARGETS_PER_USER,
        offset=1,
        draws=DRAWS_PER_TARGET,
        reward="hit",
        seed=seed,
    )
    evaluator = TaskEvaluator(frozen, dataset, split, config)
    labels = LabelScheme.for_scale(dataset.integer_scale)
    users = [u for u in split.validation if evaluator.cases(u)][: settings.trainer.gate_users]

    def profile_writer(model_path: str, users: Sequence[str]) -> dict[str, list[str]]:
        path = Path(model_path)
        if is_adapter(path):
            generator = HFGenerator(adapter_base_model(path), adapter=str(path))
        else:
            generator = HFGenerator(str(path))
        try:
            # as the worker writes them: the user's latest LETTINGO_WORKER_HISTORY_MAX ratings of H_u
            history = settings.worker.history_max
            prompts = [
                profile_prompt(evaluator.cases(u)[0].long_history[-history:], dataset.items, labels) for u in users
            ]
            generated = generator.generate(prompts, n=SAMPLES_PER_USER, temperature=1.0, seed=seed)
        finally:
            generator.close()
        return {u: [g.text for g in samples] for u, samples in zip(users, generated, strict=True)}

    def user_scorer(profiles: dict[str, list[str]]) -> dict[str, float]:
        """HR@1 per user: the mean over the user's profiles, each over every target and negative draw."""
        out = {}
        for user, texts in profiles.items():
            rates = [s.correct_rate for s in evaluator.score_profiles(user, texts)]
            if rates:
                out[user] = sum(rates) / len(rates)
        return out

    def task_scorer(profiles: dict[str, list[str]]) -> float:
        rates = list(user_scorer(profiles).values())
        return sum(rates) / len(rates) if rates else 0.0

    return TaskEvaluation(users, profile_writer, task_scorer, user_scorer)
