"""``lettingo train`` and ``lettingo models ...``, plugged into ``lettingo`` by ``lettingo.commands`` entry points:

train = "trainer.cli:train"
models = "trainer.cli:models_app"
"""

# Typer declares options as argument defaults by design.

from __future__ import annotations

import importlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import typer

from lettingo.cli.dataclass_options import options_from_dataclass
from lettingo.cli.errors import UserError
from lettingo.logsafe import configure_safe_logging
from lettingo.records import ModelVersion
from lettingo.registry import DEFAULT_MODEL_NAME, ModelRegistry
from lettingo.registry.base_models import is_ref
from streams.settings import StreamSettings
from trainer.config import DPORoundConfig
from trainer.gate import TaskEvaluation
from trainer.plots import CURVE_FILE

log = logging.getLogger(__name__)

RegistryOption = typer.Option(
    None, "--registry", help="Registry root: a folder or fsspec URL [LETTINGO_HOME/registry]."
)
NameOption = typer.Option(DEFAULT_MODEL_NAME, "--name", help="Model name in the registry and on model-versions.")


def _registry(root: str | None, name: str) -> ModelRegistry:
    settings = StreamSettings.load()
    return ModelRegistry(root or settings.path("registry"), name, cache_dir=settings.path("model-cache"))


def _publisher(settings: StreamSettings) -> Any:
    from trainer.kafka_io import KafkaUnavailableError, publish_model_version_sync

    def publish(record: ModelVersion) -> None:
        try:
            publish_model_version_sync(settings, record)
        except KafkaUnavailableError as e:
            raise KafkaUnavailableError(f"{e} (the registry is updated; use --no-publish to skip the topic)") from e
        typer.echo(f"published {record.name} v{record.version} ({record.status}) to model-versions")

    return publish


def _load_task_evaluation(spec: str | None) -> TaskEvaluation | None:
    if not spec:
        return None
    module_name, _, attribute = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError, ValueError) as e:
        raise UserError(f"--task-eval {spec!r}: cannot load it ({e}); expected MODULE:FACTORY") from e
    task = factory(StreamSettings.load())
    if not isinstance(task, TaskEvaluation):
        raise UserError(f"--task-eval {spec!r} returned {type(task).__name__}, not trainer.gate.TaskEvaluation")
    return task


@options_from_dataclass(DPORoundConfig)
def train(
    pairs: list[Path] = typer.Option(None, "--pairs", help="JSONL file(s) of PreferencePair; default: the topic."),
    watch: bool = typer.Option(False, "--watch", help="Keep consuming the topic and train a round per batch."),
    registry_root: str = RegistryOption,
    name: str = NameOption,
    base_model: str = typer.Option(None, "--base-model", help="Model to start from while there is no champion."),
    max_pairs: int = typer.Option(2000, help="Largest batch read from the topic."),
    wait: float = typer.Option(30.0, help="Seconds to wait for pairs on the topic."),
    group_id: str = typer.Option("lettingo-trainer", help="Consumer group on preference-pairs."),
    task_eval: str = typer.Option(None, "--task-eval", help="MODULE:FACTORY returning a trainer.gate.TaskEvaluation."),
    publish: bool = typer.Option(
        None, "--publish/--no-publish", help="Send a new champion to model-versions [default: when reading the topic]."
    ),
    *,
    config: DPORoundConfig,  # built from its fields' options (kind, beta, loss type, --lr, ...)
) -> None:
    """Train a DPO round on preference pairs, gate it against the champion, publish it to the registry."""
    # --watch keeps consumers open: a broker outage would log every reconnect (issue 14)
    configure_safe_logging(json_lines=StreamSettings.load().log_format == "json")
    if pairs and watch:
        raise UserError("--watch reads the topic; it cannot be combined with --pairs")
    for path in pairs or []:
        if not path.is_file():
            raise UserError(f"--pairs {path}: no such file")
    settings = StreamSettings.load()
    registry = _registry(registry_root, name)
    if base_model is None and registry.champion() is None:
        # Checked now, not when the first pairs arrive: `--watch` would otherwise crash on every batch.
        raise UserError(f"model {registry.name!r} has no champion yet: name a base model to start from (--base-model)")
    if base_model is not None and not is_ref(base_model) and "://" not in base_model and not Path(base_model).exists():
        raise UserError(f"--base-model {base_model}: no such model folder or file")
    task = _load_task_evaluation(task_eval)
    from_topic = not pairs
    on_champion = _publisher(settings) if (publish if publish is not None else from_topic) else None
    round_args = {
        "registry": registry,
        "config": config,
        "base_model": base_model,
        "task": task,
        "on_champion": on_champion,
        "settings": settings,
    }
    if not from_topic:
        _train_from_files(pairs, **round_args)
        return
    if watch:
        from trainer import metrics

        metrics.serve(settings.trainer.metrics_port, settings.web.bind)
    while True:
        trained = _train_from_topic(max_pairs=max_pairs, wait=wait, group_id=group_id, **round_args)
        if not watch:
            if not trained:
                typer.echo("no round: not enough pairs on the topic yet (they stay stored for the next round)")
            return


def _run(pairs: list[Any], report: Any, lineage: dict[str, Any], settings: StreamSettings, **round_args: Any) -> bool:
    from trainer import metrics
    from trainer.pipeline import NotEnoughPairsError, run_round

    typer.echo(report.summary())
    started = time.monotonic()
    try:
        outcome = run_round(
            pairs, report, work_dir=settings.path("trainer-work"), lineage=lineage, show_progress=True, **round_args
        )
    except NotEnoughPairsError as e:
        metrics.ROUNDS.labels(outcome="skipped").inc()
        typer.echo(f"no round: {e}")
        return False
    except Exception:  # a LettingoError reaches the user as one line (lettingo.cli.main), anything else as a bug
        metrics.ROUNDS.labels(outcome="failed").inc()
        raise
    manifest = outcome.manifest
    registry: ModelRegistry = round_args["registry"]
    record_round(registry, manifest.version, outcome.result.train_pairs, time.monotonic() - started)
    typer.echo(outcome.gate.summary())
    typer.echo(
        f"{registry.name} v{manifest.version}: {registry.status(manifest.version)} "
        f"({outcome.result.train_pairs} pairs, {outcome.result.train_seconds:.1f} s)"
    )
    typer.echo(f"manifest: {registry.uri(manifest.version)}/manifest.json; curve: {CURVE_FILE} beside it")
    return True


def record_round(registry: ModelRegistry, version: int, pairs: int, seconds: float) -> None:
    from trainer import metrics

    champion = registry.status(version) == "champion"
    metrics.ROUNDS.labels(outcome="champion" if champion else "refused").inc()
    metrics.PAIRS_TRAINED.inc(pairs)
    metrics.ROUND_SECONDS.observe(seconds)
    if champion:
        metrics.LAST_SUCCESS.set_to_current_time()
        metrics.CHAMPION_VERSION.set(version)


def _train_from_files(files: list[Path], **round_args: Any) -> None:
    from trainer.data import PairReport, read_pairs_jsonl

    report = PairReport()
    pairs = [pair for path in files for pair in read_pairs_jsonl(path, report)]
    _run(pairs, report, {}, **round_args)


def _train_from_topic(max_pairs: int, wait: float, group_id: str, **round_args: Any) -> bool:
    """Consume a batch (stored before its offsets are committed), then train on every pending batch."""
    from trainer.batches import BatchStore
    from trainer.data import PairReport, read_pairs_jsonl
    from trainer.kafka_io import consume_pair_batch_sync, read_erasures_sync

    settings: StreamSettings = round_args["settings"]
    # Pending batches belong to this group's offsets on this topic: another prefix or group never picks them up.
    store = BatchStore(
        settings.path("trainer-batches", f"{settings.topics.prefix}{group_id}", round_args["registry"].name)
    )
    consumed = consume_pair_batch_sync(settings, store, group_id, max_pairs, wait)  # a ServiceError: one line
    if consumed:
        from trainer import metrics

        metrics.PAIRS_CONSUMED.labels(fate="accepted").inc(len(consumed.pairs))
        for reason, n in consumed.report.rejected.items():
            metrics.PAIRS_CONSUMED.labels(fate=reason).inc(n)
    batches = store.pending_batches()
    if not batches:
        return False
    report = consumed.report if consumed else PairReport()
    pairs = []
    for batch in batches:
        if consumed and batch.path == consumed.stored.path:
            pairs.extend(consumed.pairs)
        else:  # stored by an earlier run that ended before its round
            pairs.extend(read_pairs_jsonl(batch.path, report))
            report.sources.append(batch.lineage)
    # A user forgotten after their pairs were stored (an earlier run's pending batch) never enters the round.
    erased = read_erasures_sync(settings)
    pairs = [p for p in pairs if not (p.user_id in erased and p.ts <= erased[p.user_id])]
    trained = _run(pairs, report, {"batches": [b.path.name for b in batches]}, **round_args)
    if trained:
        for batch in batches:
            store.mark_done(batch)
    else:
        time.sleep(1.0)
    return trained


models_app = typer.Typer(
    help="Model versions in the registry: list, show, verify, promote, roll back.", no_args_is_help=True
)


@models_app.command("list")
def list_versions(registry_root: str = RegistryOption, name: str = NameOption) -> None:
    """Every version with its status, parent, gate verdict and key metrics."""
    registry = _registry(registry_root, name)
    versions = registry.versions()
    if not versions:
        typer.echo(f"no versions of {name!r} under {registry.root}")
        return
    typer.echo(f"{'version':>7}  {'status':<11} {'kind':<4} {'parent':>6}  {'created':<19} {'gate':<7} pairs  loss")
    for version in versions:
        m = registry.manifest(version)
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(m.created_ts))
        gate = "passed" if m.gate.get("passed") else "refused" if m.gate else "-"
        loss = m.metrics.get("train_loss")
        typer.echo(
            f"{version:>7}  {registry.status(version):<11} {m.kind:<4} {m.parent or '-':>6}  {created:<19} "
            f"{gate:<7} {m.data_lineage.get('train_pairs', '-'):>5}  {'-' if loss is None else f'{loss:.4f}'}"
        )


@models_app.command("show")
def show_version(
    version: int = typer.Argument(None, help="Version number [the champion]."),
    registry_root: str = RegistryOption,
    name: str = NameOption,
) -> None:
    """The manifest of a version (the champion by default), with its live status."""
    registry = _registry(registry_root, name)
    version = version if version is not None else registry.champion()
    if version is None:
        raise UserError(f"model {name!r} has no champion; name a version")
    manifest = registry.manifest(version)
    shown = {**manifest.model_dump(mode="json"), "live_status": registry.status(version), "uri": registry.uri(version)}
    typer.echo(json.dumps(shown, indent=2))


@models_app.command("verify")
def verify_version(version: int, registry_root: str = RegistryOption, name: str = NameOption) -> None:
    """Re-hash every file of a version against its manifest."""
    manifest = _registry(registry_root, name).verify(version)
    typer.echo(f"{name} v{version}: {len(manifest.files)} files verified")


@models_app.command("promote")
def promote(
    version: int,
    force: bool = typer.Option(False, help="Promote even a version the gate refused."),
    publish: bool = typer.Option(True, "--publish/--no-publish", help="Send the new champion to model-versions."),
    registry_root: str = RegistryOption,
    name: str = NameOption,
) -> None:
    """Make a version the champion (after verifying its files)."""
    registry = _registry(registry_root, name)
    registry.promote(version, force=force)
    typer.echo(f"{name} v{version} is the champion")
    if publish:
        _publisher(StreamSettings.load())(registry.model_version_record(version))


@models_app.command("rollback")
def rollback(
    publish: bool = typer.Option(True, "--publish/--no-publish", help="Send the restored champion to model-versions."),
    registry_root: str = RegistryOption,
    name: str = NameOption,
) -> None:
    """Take the champion back: it is marked rolled_back and the previous champion returns."""
    registry = _registry(registry_root, name)
    previous = registry.champion()
    if previous is None:
        raise UserError(f"model {name!r} has no champion to roll back")
    restored = registry.rollback()
    typer.echo(f"{name} v{previous} rolled back; champion: {'none' if restored is None else f'v{restored}'}")
    if publish:
        # With no champion left, the rolled-back record itself tells workers to drop the version.
        _publisher(StreamSettings.load())(registry.model_version_record(restored if restored is not None else previous))


def _register_base_model_commands() -> None:
    from trainer import base_cli

    base_cli.register(models_app)  # models import, models bases


_register_base_model_commands()
