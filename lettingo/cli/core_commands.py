"""Registers the core's own subcommands (the offline pipeline, the nano model) on the root app."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    # Each pipeline module owns its commands; importing here keeps `lettingo --help` fast enough and the
    # registration in one place.
    from lettingo.cli import pipeline_commands

    pipeline_commands.register(app)  # evaluate, pairs, baselines, recommender build

    from lettingo.cli.explore_command import explore
    from lettingo.cli.nano_commands import app as nano_app

    app.add_typer(nano_app, name="nano")  # nano build, nano sample
    app.command("explore")(explore)
    return None
