"""Errors that the CLI reports as one line, without a traceback."""


class UserError(Exception):
    """Something the user can fix: a bad path, a broker that is not running, a corrupted model."""
