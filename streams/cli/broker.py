"""`lettingo broker start|stop|status|acls`: the local development broker, plaintext or secured."""

from __future__ import annotations

import typer

from lettingo.cli.errors import UserError
from streams.kafka import broker
from streams.settings import StreamSettings

app = typer.Typer(
    help="Run the local single-node Kafka broker (KRaft) from the Maven Central jars.", no_args_is_help=True
)

SecureOption = typer.Option(
    False,
    "--secure",
    help="The secured broker (as LETTINGO_BROKER_SECURE): SASL_SSL with SCRAM-SHA-512, mutual TLS from a CA made "
    "here, ACLs; under <home>/kafka-secure.",
)


def _settings(secure: bool) -> StreamSettings:
    settings = StreamSettings.load()
    return settings.replace(broker={"secure": True}) if secure else settings


@app.command()
def start(
    timeout: float = typer.Option(90.0, min=1, help="Seconds to wait for the broker to answer."),
    secure: bool = SecureOption,
    user: list[str] = typer.Option(
        None,
        "--user",
        help="With --secure: one more SCRAM user to make when the storage is first formatted (repeatable), with no "
        "ACLs; its settings go to clients/<user>.env.",
    ),
) -> None:
    """Start the broker in the background (fetching jars and formatting storage on first use)."""
    if user and not secure and not StreamSettings.load().broker.secure:
        raise UserError("--user makes SCRAM users of the secured broker: add --secure")
    try:
        typer.echo(broker.start(_settings(secure), timeout_s=timeout, users=tuple(user or ())))
    except broker.BrokerError as e:
        raise UserError(str(e)) from e


@app.command()
def stop(secure: bool = SecureOption) -> None:
    """Stop the broker this machine started."""
    typer.echo(broker.stop(_settings(secure)))


@app.command()
def status(secure: bool = SecureOption) -> None:
    """Say whether the broker runs and answers; exit 1 when it does not."""
    ok, line = broker.status(_settings(secure))
    typer.echo(line)
    raise typer.Exit(0 if ok else 1)


@app.command("acls")
def acls(
    component: list[str] = typer.Option(
        None, "--component", "-c", help="worker, replay, trainer, topics or forget [all of them]."
    ),
    principal: str = typer.Option(None, help="Principal to grant them to [User:lettingo-<component>]."),
    trainer_group: str = typer.Option("lettingo-trainer", help="The trainer's consumer group (`train --group-id`)."),
) -> None:
    """Print the ACLs each component needs for the settings in force (topic prefix, app id): what to grant on a
    cluster that checks ACLs. The secured local broker grants them to its users when it starts."""
    from streams.kafka.acls import COMPONENTS, component_acls

    settings = StreamSettings.load()
    for name in component or list(COMPONENTS):
        if name not in COMPONENTS:
            raise UserError(f"--component {name!r}: one of {', '.join(COMPONENTS)}")
        typer.echo(f"# {name}: {COMPONENTS[name]}")
        for acl in component_acls(name, settings, principal=principal, trainer_group=trainer_group):
            typer.echo(acl.describe())
