"""Command-line options generated from a dataclass's fields, so a configuration is declared once.

A field is an option when its ``metadata`` has ``"cli"`` (True: ``--field-name``; a string: that option name); its
help is ``metadata["help"]`` (the convention of TRL's and transformers' argument dataclasses), its type and default
the field's own. The decorated command receives one built instance instead of the separate values; a value the
dataclass rejects in ``__post_init__`` (a ``ValueError``) is a usage error naming the option.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import MISSING, Field, fields
from typing import Annotated, Any, TypeVar, get_type_hints

import typer

F = TypeVar("F", bound=Callable[..., Any])


def option_name(f: Field[Any]) -> str:
    cli = f.metadata["cli"]
    return cli if isinstance(cli, str) else "--" + f.name.replace("_", "-")


def cli_fields(cls: type) -> list[Field[Any]]:
    """The fields of ``cls`` that are command-line options, in declaration order."""
    return [f for f in fields(cls) if f.metadata.get("cli")]


def options_from_dataclass(cls: type, param: str = "config") -> Callable[[F], F]:
    """Replace the command's ``param`` (typed ``cls``) by one typer option per ``cli`` field of ``cls``."""
    hints = get_type_hints(cls)
    chosen = cli_fields(cls)

    def decorate(command: F) -> F:
        signature = inspect.signature(command, eval_str=True)
        if param not in signature.parameters:
            raise TypeError(f"{command.__name__} has no parameter {param!r} to fill from {cls.__name__}")
        generated = []
        for f in chosen:
            if f.default is MISSING:
                raise TypeError(f"{cls.__name__}.{f.name}: a command-line field needs a default")
            option = typer.Option(option_name(f), help=f.metadata["help"])
            generated.append(
                inspect.Parameter(
                    f.name,
                    inspect.Parameter.KEYWORD_ONLY,
                    default=f.default,
                    annotation=Annotated[hints[f.name], option],
                )
            )
        kept = [p for p in signature.parameters.values() if p.name != param]
        clash = {p.name for p in kept} & {p.name for p in generated}
        if clash:
            raise TypeError(f"{command.__name__}: parameters {sorted(clash)} are also fields of {cls.__name__}")

        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            values = {f.name: kwargs.pop(f.name) for f in chosen if f.name in kwargs}
            try:
                config = cls(**values)
            except ValueError as e:
                raise typer.BadParameter(str(e)) from e
            return command(*args, **{param: config}, **kwargs)

        parameters = kept + generated
        wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in parameters} | {"return": signature.return_annotation}
        del wrapper.__wrapped__  # typer reads the signature above, not the wrapped command's
        return wrapper  # type: ignore[return-value]

    return decorate
