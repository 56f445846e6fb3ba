"""The project's error model: every failure a user can act on is a :class:`LettingoError`.

``lettingo`` prints such an error as one line (``lettingo: error: ...``) and exits with the class's ``exit_code``;
any other exception is a bug and keeps its traceback. The codes follow BSD's sysexits.h, so a script (or a
supervisor) can tell "fix the input" from "fix the configuration" from "retry when the broker is back":

=================  ====  ===========================================================================
class              code  meaning
=================  ====  ===========================================================================
LettingoError         1  anything else the user can fix (a bad path, a missing option combination)
InputError           65  a dataset, file or record that is malformed or of the wrong kind (EX_DATAERR)
ModelError           66  a model, reader or registry version that is missing, corrupt or refused (EX_NOINPUT)
ServiceError         69  the broker or another service is unreachable or refused us (EX_UNAVAILABLE)
ConfigError          78  a setting or spec that is invalid or inconsistent (EX_CONFIG)
=================  ====  ===========================================================================

The subclasses that were ``ValueError`` or ``RuntimeError`` before keep those bases, so code that catches the
built-in kinds keeps working.
"""

from __future__ import annotations

__all__ = ["ConfigError", "InputError", "LettingoError", "ModelError", "ServiceError"]


class LettingoError(Exception):
    """A failure the user can act on; its message says what is wrong and, where it helps, what to do."""

    exit_code: int = 1


class InputError(LettingoError, ValueError):
    """Input data is malformed or of the wrong kind: a dataset, a JSONL file, a record on a topic."""

    exit_code = 65


class ModelError(LettingoError, RuntimeError):
    """A model, reader or registry version is missing, corrupt, or failed to load or serve."""

    exit_code = 66


class ServiceError(LettingoError, RuntimeError):
    """The Kafka broker (or another service) could not be reached, started, or refused this client."""

    exit_code = 69


class ConfigError(LettingoError, ValueError):
    """A setting, a generator spec or a set-up folder is invalid or inconsistent."""

    exit_code = 78
