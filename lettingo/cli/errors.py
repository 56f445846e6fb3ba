"""Errors that the CLI reports as one line, without a traceback.

``UserError`` is the name the command modules raise: :class:`lettingo.errors.LettingoError` itself, for a failure
with no more specific kind. ``lettingo.cli.main`` maps every ``LettingoError`` to its line and exit code.
"""

from lettingo.errors import LettingoError

UserError = LettingoError
