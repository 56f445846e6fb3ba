"""The ``lettingo`` command.

Core subcommands are defined in this package; those of ``streams`` and ``trainer`` are plugged in through
the ``lettingo.commands`` entry-point group, so the core never imports them by name.

Errors are mapped to what the user sees in one place, :func:`run_guarded`: a usage error or a
:class:`~lettingo.errors.LettingoError` is one line on stderr with its exit code; anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from importlib.metadata import entry_points, version
from typing import Annotated, Any, NoReturn

import typer

from lettingo.errors import LettingoError
from lettingo.logsafe import configure_safe_logging
from lettingo.settings import Settings, env_items, installed_settings, settings_table

app = typer.Typer(
    name="lettingo",
    help="Streaming LLM user profiles aligned by the downstream recommender (LettinGo).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"lettingo {version('lettingo')}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log at DEBUG level.")] = False,
    _version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # escaped lines (JSON with LETTINGO_LOG_FORMAT=json), Kafka client floods limited
    configure_safe_logging(json_lines=Settings.load().log_format == "json")


@app.command("settings")
def show_settings(
    markdown: bool = typer.Option(False, "--markdown", help="Print the README's settings table instead."),
) -> None:
    """Print the settings in force (from LETTINGO_* variables and .env), secrets masked."""
    cls = installed_settings()  # the core's, or the stream layer's when it is installed (its commands are loaded)
    if markdown:
        typer.echo(settings_table(cls), nl=False)
        return
    for name, value in env_items(cls.load()):
        typer.echo(f"{name}={'' if value is None else value}")


def _register_plugins() -> None:
    for ep in sorted(entry_points(group="lettingo.commands"), key=lambda e: e.name):
        obj = ep.load()
        if isinstance(obj, typer.Typer):
            app.add_typer(obj, name=ep.name)
        else:
            app.command(ep.name)(obj)


def _register_core() -> None:
    from lettingo.cli import core_commands

    core_commands.register(app)


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def run_guarded(call: Callable[[], Any]) -> NoReturn:
    """Run ``call`` (the parsed command) and exit: a returned int is the exit code, a known failure one line."""
    try:
        code = call()
    except LettingoError as e:
        typer.echo(f"lettingo: error: {_one_line(str(e))}", err=True)
        sys.exit(e.exit_code)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("aborted", err=True)
        sys.exit(130)
    except typer.TyperException as e:  # typer's public base of its usage errors (bad option, missing argument)
        ctx: typer.Context | None = getattr(e, "ctx", None)
        if ctx is not None and e.format_message() == ctx.get_help():  # no_args_is_help: the help, on stdout
            typer.echo(e.format_message())
            sys.exit(0)
        where = ctx.command_path if ctx is not None else "lettingo"
        hint = f" (see '{where} --help')" if ctx is not None else ""
        typer.echo(f"{where}: error: {_one_line(e.format_message())}{hint}", err=True)
        sys.exit(e.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


def main(argv: list[str] | None = None) -> NoReturn:
    """Entry point: usage errors and known failures print one line, never a traceback."""
    _register_core()
    _register_plugins()
    command = typer.main.get_command(app)
    # Without standalone mode, errors come back here to be printed as one line, and an Exit as its code.
    run_guarded(lambda: command.main(args=argv, prog_name="lettingo", standalone_mode=False))


if __name__ == "__main__":
    main()
