"""``vpbench gather OUT``: gather what the jobs of a ``compare`` / ``ablate`` / ladder submitted
with ``--executor`` finished into OUT, and say what is not done yet; nothing is submitted."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer


def gather(
    ctx: typer.Context,
    out: Annotated[str, typer.Argument(help="The --out folder of a command that ran with --executor local or slurm.")],
) -> None:
    """Run OUT's command again without submitting anything: its table and report are written
    when every job is done; otherwise the jobs table says what is pending, running or failed
    (rerun the command itself to resubmit what failed)."""
    from vpbench.errors import RunError

    path = Path(out) / "command.json"
    try:
        saved = json.loads(path.read_text())
        argv, cwd = [str(a) for a in saved["argv"]], str(saved["cwd"])
    except FileNotFoundError:
        raise RunError(f"{out} holds no command.json: it was not made by a command run with --executor local or "
                       "slurm (or by an older vpbench); rerun that command instead") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RunError(f"{path} is not a vpbench command record ({exc}); rerun the command that made {out}") from None
    group = ctx.parent.command
    command = group.get_command(ctx.parent, argv[0]) if argv else None
    if command is None or argv[0] == "gather":
        raise RunError(f"{path} names no vpbench command to gather ({' '.join(argv) or 'empty'})")
    here = os.getcwd()
    os.chdir(cwd)  # the command's relative paths (--out, --data-dir, runs/) mean what they meant then
    try:
        command.main(args=[*argv[1:], "--gather"], prog_name=f"vpbench {argv[0]}", standalone_mode=False)
    finally:
        os.chdir(here)


def register(app: typer.Typer) -> None:
    app.command("gather")(gather)
