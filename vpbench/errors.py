"""Errors that reach the user as one clear line.

Every error the harness raises on purpose derives from :class:`VPBenchError`; the CLI prints
its message on one line (no traceback) and exits with status 2. Messages say what is wrong
and what to do about it.
"""

from __future__ import annotations

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


class MetricUnavailable(VPBenchError):
    """A metric cannot be computed here (e.g. missing weights offline): reported as n/a."""


class TrainingError(VPBenchError):
    """Training cannot continue (for example a non-finite loss)."""


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
