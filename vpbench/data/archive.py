"""Unpacking downloaded zip and tar archives: each member lands atomically, files already
present (same size) are left alone, and a corrupt archive is one clear line."""

from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Callable

from vpbench import io
from vpbench.errors import DataError


def _target(target: Path, name: str, strip: int) -> Path | None:
    parts = PurePosixPath(name).parts[strip:]
    if not parts or any(p in ("..", "") or p.startswith("/") for p in parts):
        return None
    return target.joinpath(*parts)


def extract(archive: Path, target: Path, keep: Callable[[str], bool] = lambda name: True, strip: int = 0) -> list[Path]:
    """Extract the regular files of ``archive`` (zip or tar, any compression) whose member name
    passes ``keep`` into ``target``, dropping ``strip`` leading path parts. Returns the paths."""
    out: list[Path] = []
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                for member in zf.infolist():
                    dest = _target(target, member.filename, strip)
                    if member.is_dir() or dest is None or not keep(member.filename):
                        continue
                    out.append(dest)
                    if dest.is_file() and dest.stat().st_size == member.file_size:
                        continue
                    with io.atomic_path(dest) as tmp, zf.open(member) as src, open(tmp, "wb") as fh:
                        while chunk := src.read(1 << 20):
                            fh.write(chunk)
            return out
        with tarfile.open(archive) as tf:
            for member in tf:
                dest = _target(target, member.name, strip)
                if not member.isfile() or dest is None or not keep(member.name):
                    continue
                out.append(dest)
                if dest.is_file() and dest.stat().st_size == member.size:
                    continue
                src = tf.extractfile(member)
                assert src is not None
                with io.atomic_path(dest) as tmp, src, open(tmp, "wb") as fh:
                    while chunk := src.read(1 << 20):
                        fh.write(chunk)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        if isinstance(exc, OSError) and exc.filename and Path(exc.filename) != archive:
            raise
        raise DataError(f"{archive} is not a readable zip or tar archive (truncated? {exc}); move it away and download "
                        "it again") from None
    return out
