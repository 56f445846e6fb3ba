"""Registers the core's own subcommands (the offline pipeline, the nano model) on the root app."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    # Each pipeline module owns its commands; importing here keeps `lettingo --help` fast enough and the
    # registration in one place.
    from lettingo.cli import pipeline_commands

    pipeline_commands.register(app)  # evaluate, pairs, baselines, recommender build
    return None
