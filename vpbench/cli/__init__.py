"""The ``vpbench`` command line: thin Typer commands, one module each.

Errors raised on purpose (:class:`~vpbench.errors.VPBenchError`) print as one red line and
exit with status 2; anything unexpected prints one line naming the exception (set
``VPBENCH_DEBUG=1`` for the full traceback) and exits with status 1.
"""

from __future__ import annotations

import os
import sys
import traceback

import typer
from rich.text import Text
from typer.core import TyperGroup

from vpbench.cli.common import console, err_console
from vpbench.errors import VPBenchError, disk_error, one_line


def _is_click_control(exc: BaseException) -> bool:
    """Exit / Abort / usage errors of (Typer's own or the real) click: let click handle them."""
    return isinstance(exc, (typer.Exit, typer.Abort)) or hasattr(exc, "exit_code")


def _error(text: str) -> None:
    """One red line; the message is printed as it is (no Rich markup: ``[rgb]`` stays)."""
    if os.environ.get("VPBENCH_DEBUG"):  # the traceback of every error, the plugin's own cause included
        traceback.print_exc()
    err_console().print(Text.assemble(("error:", "bold red"), " ", text), highlight=False, soft_wrap=True)


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that flushing what is left at exit cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no real file descriptor (captured in-process)
        pass


class VPBenchGroup(TyperGroup):
    def invoke(self, ctx):
        from vpbench.cli import common

        common.INVOKED[:] = [*getattr(ctx, "_protected_args", []), *ctx.args]  # the command line, for `vpbench gather`
        try:
            return super().invoke(ctx)
        except VPBenchError as exc:
            _error(str(exc))
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err_console().print("[bold red]interrupted[/]")
            raise typer.Exit(130) from None
        except BrokenPipeError:  # the reader of our output went away (`| head`): stop quietly, as Unix tools do
            _silence_stdout()
            raise typer.Exit(141) from None
        except OSError as exc:  # e.g. a full disk: files are written atomically, so nothing is half-written
            _error(disk_error(exc))
            raise typer.Exit(1) from None
        except Exception as exc:
            if _is_click_control(exc):
                raise
            _error(f"unexpected {one_line(exc)} (set VPBENCH_DEBUG=1 for the traceback)")
            raise typer.Exit(1) from None


app = typer.Typer(
    cls=VPBenchGroup,
    name="vpbench",
    help="Benchmark video prediction models: train, evaluate, compare, ablate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    """``vpbench --version``: vpbench's version, then one line per distribution of loaded
    plugins with its version and the plugins (entry points) it provides."""
    if not value:
        return
    from vpbench.plugins import get_harness
    from vpbench.version import __version__

    dists: dict[tuple[str, str], list[str]] = {}
    for r in get_harness().records:
        if not r.name.startswith("builtin:"):
            dists.setdefault((r.distribution, r.version), []).append(r.name + (" (failed)" if r.error else ""))
    console().print(f"vpbench {__version__}", highlight=False)
    if dists:
        console().print("plugins, by distribution:", highlight=False)
    for (dist, version), names in sorted(dists.items()):
        console().print(Text(f"  {dist} {version}: {', '.join(sorted(names))}"), highlight=False)
    raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print vpbench's version and the loaded plugins' versions, then exit."),
) -> None:
    pass


def _register_builtin_commands() -> None:
    from vpbench.cli import (
        ablate,
        check,
        compare,
        data,
        eval_cmd,
        gather_cmd,
        import_cmd,
        new_plugin,
        plugins_cmd,
        predict,
        profile_cmd,
        report_cmd,
        run,
        site_cmd,
    )

    for module in (run, eval_cmd, predict, compare, ablate, gather_cmd, profile_cmd, plugins_cmd, check, new_plugin, report_cmd,
                   data, import_cmd, site_cmd):
        module.register(app)


_register_builtin_commands()


def main() -> None:
    """Console-script entry point: add plugin commands, then run the app."""
    from vpbench.plugins import get_harness
    from vpbench.provenance import pin_revision

    pin_revision()  # reports made at the end of a long command name the code it started with
    try:
        harness = get_harness()
        harness.register_commands(app)
        harness.freeze()
    except VPBenchError as exc:  # pragma: no cover - loading never raises VPBenchError today
        _error(str(exc))
        sys.exit(2)
    app(prog_name="vpbench")


__all__ = ["app", "console", "main"]
