"""The ``lettingo`` command.

Core subcommands are defined in this package; those of ``streams`` and ``trainer`` are plugged in through
the ``lettingo.commands`` entry-point group, so the core never imports them by name.
"""

from __future__ import annotations

import logging
import sys
from importlib.metadata import entry_points

import typer

try:  # typer >= 0.26 vendors its own click; older ones use the click package
    from typer._click import exceptions as click_exc
    from typer._click.utils import echo
except ImportError:  # pragma: no cover
    from click import echo
    from click import exceptions as click_exc

from lettingo.cli.errors import UserError
from lettingo.logsafe import configure_safe_logging
from lettingo.settings import get_settings

app = typer.Typer(
    name="lettingo",
    help="Streaming LLM user profiles aligned by the downstream recommender (LettinGo).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    add_completion=False,
)


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log at DEBUG level.")) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    configure_safe_logging()  # escaped lines (JSON with LETTINGO_LOG_FORMAT=json), Kafka client floods limited


@app.command("settings")
def show_settings() -> None:
    """Print the settings in force (from LETTINGO_* variables and .env), secrets masked."""
    for name, value in get_settings().model_dump().items():
        typer.echo(f"LETTINGO_{name.upper()}={'' if value is None else value}")


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


def main(argv: list[str] | None = None) -> None:
    """Entry point: usage errors and known failures print one line, never a traceback."""
    _register_core()
    _register_plugins()
    command = typer.main.get_command(app)
    try:
        # Without standalone mode, an Exit raised by a command comes back as its code.
        code = command.main(args=argv, prog_name="lettingo", standalone_mode=False)
    except click_exc.NoArgsIsHelpError as e:
        echo(e.ctx.get_help() if e.ctx else str(e))
        sys.exit(0)
    except click_exc.UsageError as e:
        where = e.ctx.command_path if e.ctx else "lettingo"
        echo(f"{where}: error: {e.format_message()} (see '{where} --help')", err=True)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        echo("aborted", err=True)
        sys.exit(130)
    except UserError as e:
        echo(f"lettingo: error: {e}", err=True)
        sys.exit(1)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
