"""Errors that reach the user as one clear line.

Every error the harness raises on purpose derives from :class:`VPBenchError`; the CLI prints
its message on one line (no traceback) and exits with status 2. Messages say what is wrong
and what to do about it.
"""

from __future__ import annotations

import reprlib
from typing import Any, Callable


class VPBenchError(Exception):
    """Base class of every error vpbench reports to the user as one line."""


class ConfigError(VPBenchError):
    """A bad configuration key, type or value."""


class RegistryError(VPBenchError):
    """An unknown, duplicate or malformed model / dataset / metric."""


class PluginError(VPBenchError):
    """A plugin failed to import, register, or behaved against its contract."""


class DataError(VPBenchError):
    """Missing, corrupt or mismatching data."""


class RunError(VPBenchError):
    """A run directory that cannot be used as asked (e.g. would overwrite trained work)."""


class TrainingStopped(RunError):
    """Training wrote a checkpoint and stopped because a signal asked it to (``signum``)."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum


class MetricUnavailable(VPBenchError):
    """A metric cannot be computed here (e.g. missing weights offline): reported as n/a."""


class TrainingError(VPBenchError):
    """Training cannot continue (for example a non-finite loss)."""


class _ShortRepr(reprlib.Repr):
    """A repr that visits only the first few items of the first few levels (a huge value is never rendered whole)."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel, self.maxdict, self.maxlist, self.maxtuple, self.maxset = 3, 4, 6, 6, 6
        self.maxstring, self.maxlong, self.maxother = 60, 40, 60

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 128:  # str() of a huge int is slow, and refused past 4300 digits
            return f"<an integer of about {int(x.bit_length() * 0.30103)} digits>"
        return super().repr_int(x, level)


_SHORT = _ShortRepr()


def short(value: Any, limit: int = 100) -> str:
    """``repr(value)`` cut to at most ``limit`` characters, for echoing a user's value in a one-line error."""
    text = _SHORT.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def one_line(exc: BaseException) -> str:
    """``TypeName: message`` squeezed onto one line (for reporting foreign exceptions)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def disk_error(exc: OSError) -> str:
    """The one line for a file that cannot be read or written (a full disk, permissions)."""
    where = f" ({exc.filename})" if exc.filename else ""
    return (f"cannot read or write a file{where}: {exc.strerror or exc}; finished files are intact (every write is "
            "atomic); fix the cause and rerun (add --resume for a training run)")


def blamed(error: Callable[[Exception], VPBenchError], fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``, turning what it raises into ``error(exc)`` (one line naming the
    culprit); vpbench's own errors and file errors (a full disk) pass as they are."""
    try:
        return fn(*args, **kwargs)
    except (VPBenchError, OSError):
        raise
    except Exception as exc:
        raise error(exc) from exc
