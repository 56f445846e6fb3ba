"""The offline pipeline's task stages: ``evaluate``, ``pairs``, ``baselines`` and ``recommender build``.

Every stage reads the previous stage's JSONL (one line per user and history position) and writes one flushed
line per case; on a restart it skips the cases already in its output, so a crash loses at most the case in
progress. The files, their rows and their resume are in :mod:`lettingo.offline_files`.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Annotated, Literal

import typer
from tqdm import tqdm

from lettingo.cli.errors import UserError
from lettingo.data.split import UserGroup
from lettingo.offline_files import (
    EXPLORE,
    PROGRESS,
    REWARDS,
    CaseKey,
    ScoredCandidate,
    ScoredCase,
    progress_path,
)
from lettingo.offline_files import PAIRS as PAIRS_FILE
from lettingo.records import CandidateText
from lettingo.settings import Settings

log = logging.getLogger(__name__)

recommender_app = typer.Typer(help="The frozen embedding recommender (f_Rec).", no_args_is_help=True)

DatasetOption = Annotated[Path | None, typer.Option("--dataset", help="Dataset folder (default: LETTINGO_DATASET).")]
ReaderOption = Annotated[
    str | None,
    typer.Option(
        "--reader",
        help="f_Rec: a frozen embedding reader folder (default: build or reuse the cached one), or the paper's "
        "LLM judge as llm:GENERATOR_SPEC (llm:hf:/models/SmolLM2, llm:openai:http://host:8000/v1#model).",
    ),
]
GroupOption = Annotated[UserGroup, typer.Option(help="User group.")]


def _load_data(dataset_path: Path | None):
    from lettingo.data import DatasetFormatError, load_dataset, split_dataset

    path = dataset_path or Settings.load().dataset
    try:
        dataset = load_dataset(path)
    except (FileNotFoundError, DatasetFormatError) as e:
        raise UserError(f"cannot load dataset {path}: {e}") from e
    return dataset, split_dataset(dataset)


def _reader(dataset, split, reader_path: str | Path | None):
    from lettingo.generators import GeneratorError, GeneratorSpecError
    from lettingo.recommenders import (
        EmbeddingReader,
        ReaderChecksumError,
        TextEncoder,
        build_or_load_reader,
        is_judge_spec,
        load_judge,
    )

    if reader_path is not None and is_judge_spec(reader_path):
        try:
            return load_judge(reader_path, dataset)
        except (GeneratorError, GeneratorSpecError) as e:
            raise UserError(f"--reader {reader_path}: {e}") from e
    settings = Settings.load()
    encoder = TextEncoder(settings.cache_path)
    try:
        if reader_path is not None:
            return EmbeddingReader.load(Path(reader_path), dataset, encoder)
        return build_or_load_reader(dataset, split, settings.path("models"), encoder)[0]
    except (ReaderChecksumError, FileNotFoundError, ValueError) as e:
        raise UserError(str(e)) from e


# --- evaluate -------------------------------------------------------------------------------------------------
def evaluate(
    candidates: Annotated[Path, typer.Argument(help="Explore output: one JSON line per user and position.")],
    out: Annotated[Path, typer.Option("--out", help="Rewards JSONL (appended to; cases already there are skipped).")],
    dataset_path: DatasetOption = None,
    reader_path: ReaderOption = None,
    task: Annotated[
        Literal["ranking", "sentiment"], typer.Option(help="ranking (profile as history) or sentiment.")
    ] = "ranking",
    targets_per_user: Annotated[int, typer.Option(min=1, help="Held-out targets per user (the last ones).")] = 10,
    offset: Annotated[int, typer.Option(min=0, help="Skip this many final ratings (1: validation time).")] = 0,
    draws: Annotated[int, typer.Option(min=1, help="Negative draws per ranking target.")] = 5,
    with_recent: Annotated[bool, typer.Option(help="Ranking: give f_Rec the recent history h_u as well.")] = False,
    reward: Annotated[
        Literal["graded", "hit"], typer.Option(help="graded (p(true label) / reciprocal rank) or hit (0/1).")
    ] = "graded",
    seed: Annotated[int, typer.Option(help="Seed of the negative sampler.")] = 13,
) -> None:
    """Score every candidate profile through f_Rec on the user's held-out targets; write one rewards line per
    user and position."""
    from lettingo.evaluation import EvaluationConfig, TaskEvaluator
    from lettingo.recommenders import Task

    # Both files are read before the dataset and f_Rec load: a wrong file fails in a second, not after minutes.
    done = REWARDS.finished(out)
    cases = [case for case in EXPLORE.read(candidates) if case.case not in done]
    dataset, split = _load_data(dataset_path)
    config = EvaluationConfig(
        Task(task), targets_per_user, offset, draws, with_recent=with_recent, reward=reward, seed=seed
    )
    reader = _reader(dataset, split, reader_path)
    evaluator = TaskEvaluator(reader, dataset, split, config)
    reader.warm_items()
    started, n_profiles, n_cases = time.perf_counter(), 0, 0
    with REWARDS.append(out) as sink:
        for case in tqdm(cases, desc="evaluate", unit="case"):
            user_id = case.user_id
            if user_id not in dataset.ratings_by_user or not case.candidates or not evaluator.cases(user_id):
                log.warning("user %s: no candidates or no evaluable targets; skipped", user_id)
                continue
            scores = evaluator.score_profiles(user_id, [c.text for c in case.candidates])
            scored = [
                ScoredCandidate(
                    **c.model_dump(include=_CANDIDATE_FIELDS),
                    reward=s.reward,
                    correct_rate=s.correct_rate,
                    n_cases=s.n_cases,
                    n_unparsable=s.n_unparsable,
                )
                for c, s in zip(case.candidates, scores, strict=True)
            ]
            sink.write(
                ScoredCase(
                    **case.model_dump(exclude={"candidates"}),
                    task=config.task.value,
                    reader_version=reader.version,
                    evaluation=config.as_dict(),
                    candidates=scored,
                )
            )
            n_cases, n_profiles = n_cases + 1, n_profiles + len(scored)
    reader.encoder.save()
    elapsed = time.perf_counter() - started
    typer.echo(
        f"evaluated {n_profiles} profiles of {n_cases} cases in {elapsed:.1f}s "
        f"({n_profiles / max(elapsed, 1e-9):.1f} profiles/s); {len(done)} cases were already done -> {out}"
    )


_CANDIDATE_FIELDS = set(CandidateText.model_fields)


# --- pairs ----------------------------------------------------------------------------------------------------
def pairs(
    rewards: Annotated[Path, typer.Argument(help="Rewards JSONL from `lettingo evaluate`.")],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            help="Pairs JSONL: TRL prompt/chosen/rejected + provenance (appended to; the cases finished are kept "
            "in OUT.done and skipped).",
        ),
    ],
    max_pairs_per_user: Annotated[int, typer.Option(min=1)] = 4,
    min_gap: Annotated[float, typer.Option(min=0.0, help="Chosen reward must beat rejected by more than this.")] = 0.0,
    policy_version: Annotated[str | None, typer.Option(help="Default: the most common model_version.")] = None,
    dataset_path: DatasetOption = None,
) -> None:
    """Build (P+, P-) preference pairs per user from the rewards."""
    from lettingo.pairs import PairConfig, ScoredProfile, build_pairs

    config = PairConfig(max_pairs_per_user, min_gap)
    # A case with no pair leaves no line in ``out``, so the finished cases are kept beside it.
    progress = progress_path(out)
    done = PROGRESS.finished(progress)
    written = PAIRS_FILE.finished(out)
    cases = [case for case in REWARDS.read(rewards) if case.case not in done]
    prompt_builder = None
    n_pairs = 0
    with PAIRS_FILE.append(out) as sink, PROGRESS.append(progress) as progress_sink:
        for case in tqdm(cases, desc="pairs", unit="case"):
            prompt = case.prompt
            if not prompt:
                prompt_builder = prompt_builder or _PromptBuilder(dataset_path)
                prompt = prompt_builder(case)
            profiles = [
                ScoredProfile(c.profile_id, c.text, c.reward, c.generator, c.model_version) for c in case.candidates
            ]
            for pair in build_pairs(case.user_id, prompt, profiles, policy_version, config, case.reader_version):
                if pair.pair_id not in written:  # a crash between the two files repeats a case: no duplicates
                    sink.write(pair)
                    n_pairs += 1
            progress_sink.write(CaseKey(user_id=case.user_id, position=case.position))
    typer.echo(f"{n_pairs} pairs from {len(cases)} cases ({len(done)} already done) -> {out}")


class _PromptBuilder:
    """The generation prompt for H_u, rebuilt from the dataset when the explore output did not carry it."""

    def __init__(self, dataset_path: Path | None) -> None:
        from lettingo.data import LabelScheme

        self.dataset, self.split = _load_data(dataset_path)
        self.scheme = LabelScheme.for_scale(self.dataset.integer_scale)

    def __call__(self, case: ScoredCase) -> str:
        from lettingo.data.split import cases_for_user
        from lettingo.prompts.profile import profile_prompt

        ratings = self.dataset.ratings_by_user.get(case.user_id, [])
        cases = cases_for_user(ratings, self.split.cfg, range(case.offset, case.offset + 1))
        if not cases:
            raise UserError(f"user {case.user_id}: too few ratings to rebuild the generation prompt")
        return profile_prompt(cases[0].long_history, self.dataset.items, self.scheme).text


# --- baselines ------------------------------------------------------------------------------------------------
def baselines(
    dataset_path: Annotated[Path, typer.Argument(help="Dataset folder.")],
    candidates: Annotated[Path | None, typer.Option(help="Explore JSONL: adds the 'generator' baseline.")] = None,
    reader_path: ReaderOption = None,
    group: GroupOption = UserGroup.TEST,
    max_users: Annotated[int | None, typer.Option(min=1, help="Only the first N users of the group.")] = None,
    tasks: Annotated[str, typer.Option(help="Comma-separated tasks.")] = "ranking,sentiment",
    targets_per_user: Annotated[int, typer.Option(min=1)] = 3,
    draws: Annotated[int, typer.Option(min=1, help="Negative draws per ranking target.")] = 3,
    with_recent: Annotated[bool, typer.Option(help="Ranking: profile baselines also get h_u.")] = False,
    resamples: Annotated[int, typer.Option(min=100, help="Bootstrap resamples (users are resampled).")] = 1000,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the figures here.")] = None,
) -> None:
    """Each baseline's metrics on both tasks, with 95 % user-bootstrap intervals, on the same split and f_Rec."""
    from lettingo.baselines import paired_difference, run_baseline, standard_baselines
    from lettingo.evaluation import EvaluationConfig
    from lettingo.recommenders import Task

    dataset, split = _load_data(dataset_path)
    users = list(getattr(split, group))[:max_users]
    by_user = None
    if candidates is not None:
        by_user = {case.user_id: [c.text for c in case.candidates] for case in EXPLORE.read(candidates)}
    reader = _reader(dataset, split, reader_path)
    config = EvaluationConfig(targets_per_user=targets_per_user, draws=draws, with_recent=with_recent)
    figures: dict[str, dict] = {}
    for task in [Task(t.strip()) for t in tasks.split(",") if t.strip()]:
        systems = [
            run_baseline(b, task, reader, dataset, split, config, users) for b in standard_baselines(dataset, by_user)
        ]
        metric_names = ["hr@1", "hr@5", "ndcg@5"] if task is Task.RANKING else ["accuracy", "macro_f1", "weighted_f1"]
        typer.echo(
            f"\n{task.value} ({group}, {len(users)} users, {targets_per_user} targets"
            + (f" x {draws} draws" if task is Task.RANKING else "")
            + f", reader {reader.version})"
        )
        typer.echo(f"{'baseline':<14}{'cases':>7}  " + "".join(f"{m:<24}" for m in metric_names))
        for system in systems:
            estimates = system.metrics(resamples)
            typer.echo(
                f"{system.name:<14}{len(system.outcomes):>7}  " + "".join(f"{estimates[m]!s:<24}" for m in metric_names)
            )
            figures[f"{task.value}/{system.name}"] = {m: e.as_dict() for m, e in estimates.items()} | {
                "cases": len(system.outcomes)
            }
        first_metric = metric_names[0]
        for system in systems[1:]:
            diff = paired_difference(system, systems[0], first_metric, resamples)
            typer.echo(f"  {system.name} - {systems[0].name} ({first_metric}): {diff}")
            figures[f"{task.value}/{system.name}-minus-{systems[0].name}"] = {first_metric: diff.as_dict()}
    if (completer := getattr(reader, "completer", None)) is not None and getattr(completer, "queries", None):
        figures["judge"] = {
            "answers": reader.n_answers,
            "unparsable": reader.n_unparsable,
            "seconds_per_query": completer.seconds_per_query,
        }
        typer.echo(
            f"LLM judge: {reader.n_answers} answers, {reader.n_unparsable} unparsable, "
            f"{completer.seconds_per_query:.2f} s per query"
        )
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(
            json.dumps({"reader_version": reader.version, "config": config.as_dict(), "figures": figures}, indent=2)
        )


# --- recommender build ----------------------------------------------------------------------------------------
@recommender_app.command("build")
def build(
    dataset_path: DatasetOption = None,
    targets_per_user: Annotated[int, typer.Option(min=1)] = 3,
    draws: Annotated[int, typer.Option(min=1)] = 2,
    max_users: Annotated[int | None, typer.Option(min=1)] = None,
) -> None:
    """Train the embedding reader on the training users and freeze it (reused when already built)."""
    from lettingo.recommenders import ReaderTrainingConfig, TextEncoder, build_or_load_reader

    dataset, split = _load_data(dataset_path)
    settings = Settings.load()
    encoder = TextEncoder(settings.cache_path)
    config = ReaderTrainingConfig(targets_per_user=targets_per_user, draws=draws, max_users=max_users)
    reader, folder = build_or_load_reader(dataset, split, settings.path("models"), encoder, config)
    reader.warm_items()
    manifest = json.loads((folder / "manifest.json").read_text())
    for name, value in sorted(manifest.get("training_report", {}).items()):
        typer.echo(f"{name}: {value:.4f}")
    typer.echo(f"reader {reader.version} at {folder}")


# --- quality ----------------------------------------------------------------------------------------------------
def quality(
    candidates: Annotated[list[Path], typer.Argument(help="Explore output(s): one JSON line per user and position.")],
    dataset_path: DatasetOption = None,
    show: Annotated[int, typer.Option(min=0, help="Profiles printed per file (the first user's first ones).")] = 3,
) -> None:
    """Readability and truth of explored profiles against the history each was written from (figures, titles,
    well-formedness, distinctness, repeated 4-grams): one line per file and generator."""
    from lettingo.profile_quality import prompt_from_text, quality_report

    dataset, _ = _load_data(dataset_path)
    for path in candidates:
        by_generator: dict[str, list] = {}
        unread = 0
        for case in EXPLORE.read(path):
            prompt = prompt_from_text(case.prompt, case.user_id, dataset)
            if prompt is None:
                unread += 1
                continue
            for c in case.candidates:
                by_generator.setdefault(c.generator, []).append((prompt, [c.text]))
        for generator, samples in by_generator.items():
            report = quality_report(samples)
            typer.echo(f"- {path.name} {generator} ({report.profiles} profiles): {report.line()}")
            for _, (text,) in samples[:show]:
                typer.echo(f"    > {text}")
        if unread:
            typer.echo(f"  ({unread} lines of {path.name} skipped: their prompt does not render from the dataset)")


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate)
    app.command("pairs")(pairs)
    app.command("quality")(quality)
    app.command("baselines")(baselines)
    from lettingo.cli.compare_command import compare

    app.command("compare")(compare)
    app.add_typer(recommender_app, name="recommender")
