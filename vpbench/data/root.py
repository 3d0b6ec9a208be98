"""Where datasets live: ``--data-dir``, else ``$VPBENCH_DATA``, else a default.

The default is ``datasets/`` of a source checkout (data files there are git-ignored) and
``~/.cache/vpbench/data`` for an installed copy.
"""

from __future__ import annotations

import os
from pathlib import Path


def data_root(explicit: str | Path | None = None) -> Path:
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("VPBENCH_DATA")
    if env:
        return Path(env).expanduser()
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file() and (checkout / "datasets").is_dir():
        return checkout / "datasets"
    return Path.home() / ".cache" / "vpbench" / "data"
