"""`lettingo broker start|stop|status`: the local development broker."""

from __future__ import annotations

import typer

from lettingo.cli.errors import UserError
from lettingo.settings import get_settings
from streams.kafka import broker

app = typer.Typer(
    help="Run the local single-node Kafka broker (KRaft) from the Maven Central jars.", no_args_is_help=True
)


@app.command()
def start(timeout: float = typer.Option(90.0, min=1, help="Seconds to wait for the broker to answer.")) -> None:
    """Start the broker in the background (fetching jars and formatting storage on first use)."""
    try:
        typer.echo(broker.start(get_settings(), timeout_s=timeout))
    except broker.BrokerError as e:
        raise UserError(str(e)) from e


@app.command()
def stop() -> None:
    """Stop the broker this machine started."""
    typer.echo(broker.stop(get_settings()))


@app.command()
def status() -> None:
    """Say whether the broker runs and answers; exit 1 when it does not."""
    ok, line = broker.status(get_settings())
    typer.echo(line)
    raise typer.Exit(0 if ok else 1)
