"""Unpacking downloaded zip and tar archives: each member lands atomically, and every failure is
one clear line that says whether the archive or the disk is at fault.

- A file already there is checked against its member, never trusted by its size alone: a zip
  member by its CRC-32 (the present file is read, not rewritten), a tar member (tar keeps no
  checksum) byte by byte. A file that differs is extracted again.
- Output is bounded: zipfile and tarfile never write more than a member's declared size, and the
  declared sizes must fit the free space before anything is written (zip: all kept members at
  once; tar, whose sizes are known only member by member: each member).
- Reading or decompressing errors mean a bad archive (move it away, download it again); a
  compressed tar is read to its end, so that gzip and xz check their CRC. Errors writing the
  output (a full disk) say so and that the archive is intact.
"""

from __future__ import annotations

import lzma
import shutil
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import IO, Any, Callable, TypeVar

from vpbench import io
from vpbench.errors import DataError, one_line

CHUNK = 1 << 20
T = TypeVar("T")
# what reading or decompressing a broken archive raises (gzip and bz2 raise OSError without a filename)
READ_ERRORS = (tarfile.TarError, zipfile.BadZipFile, lzma.LZMAError, zlib.error, EOFError, OSError)


class _Unreadable(Exception):
    """Reading the archive failed (wraps the original error)."""


class _WriteFailed(Exception):
    """Writing the output failed (wraps the original OSError)."""

    def __init__(self, exc: OSError, dest: Path) -> None:
        super().__init__(exc)
        self.exc, self.dest = exc, dest


def _target(target: Path, name: str, strip: int, flat: bool) -> Path | None:
    parts = PurePosixPath(name).parts[strip:]
    if not parts or any(p in ("..", "") or p.startswith("/") for p in parts):
        return None
    return target / parts[-1] if flat else target.joinpath(*parts)


def _read(src: IO[bytes], n: int = CHUNK) -> bytes:
    try:
        return src.read(n)
    except READ_ERRORS as exc:
        raise _Unreadable(exc) from exc


def _size(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def _free(path: Path) -> int:
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def _check_space(archive: Path, target: Path, need: int, what: str) -> None:
    free = _free(target)
    if need > free:
        raise DataError(f"cannot unpack {archive} into {target}: {what} need {_size(need)} but only {_size(free)} is "
                        "free there; the archive is intact (keep it); free some space and rerun")


def _check_place(archive: Path, target: Path, dest: Path, name: str) -> None:
    """One line when ``dest`` cannot be a file: a folder on its path is a file, or it is a folder."""
    for parent in dest.parents:
        if parent == target or target not in parent.parents:
            break
        if parent.exists() and not parent.is_dir():
            raise DataError(f"cannot unpack member {name!r} of {archive}: {parent} is a file, not a folder (an earlier "
                            "member of the archive, or a file already there); move that file away and rerun, or unpack "
                            "the archive by hand")
    if dest.is_dir():
        raise DataError(f"cannot unpack member {name!r} of {archive}: {dest} is a folder (an earlier member of the "
                        "archive, or a folder already there); move it away and rerun, or unpack the archive by hand")


def _crc32(path: Path) -> int:
    crc = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            crc = zlib.crc32(chunk, crc)
    return crc


def _same_bytes(path: Path, src: IO[bytes]) -> bool:
    with open(path, "rb") as fh:
        while True:
            chunk = _read(src)
            if chunk != fh.read(len(chunk)):
                return False
            if not chunk:
                return True


def _write(src: IO[bytes], dest: Path) -> None:
    with io.atomic_path(dest) as tmp, open(tmp, "wb") as fh:
        while chunk := _read(src):
            fh.write(chunk)


def _drain(fh: IO[bytes]) -> None:
    while fh.read(CHUNK):
        pass


def _reading(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)``, a call that reads the archive: its errors mean a bad archive."""
    try:
        return fn(*args)
    except READ_ERRORS as exc:
        raise _Unreadable(exc) from exc


def _writing(dest: Path, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)``, a call that touches the output: its ``OSError`` is the disk's fault."""
    try:
        return fn(*args)
    except OSError as exc:
        raise _WriteFailed(exc, dest) from exc


def _present(dest: Path, size: int) -> bool:
    return dest.is_file() and dest.stat().st_size == size


def extract(archive: Path, target: Path, keep: Callable[[str], bool] = lambda name: True, strip: int = 0,
            flat: bool = False) -> list[Path]:
    """Extract the regular files of ``archive`` (zip or tar, any compression) whose member name
    passes ``keep`` into ``target``, dropping ``strip`` leading path parts (``flat``: every file
    straight into ``target``, folders dropped). Returns the paths."""
    out: list[Path] = []
    try:
        if _reading(zipfile.is_zipfile, archive):
            with _reading(zipfile.ZipFile, archive) as zf:
                members = {}
                for member in zf.infolist():
                    dest = _target(target, member.filename, strip, flat)
                    if not member.is_dir() and dest is not None and dest not in members and keep(member.filename):
                        members[dest] = member  # a duplicate name: the first member is kept
                need = sum(m.file_size for d, m in members.items() if not _writing(d, _present, d, m.file_size))
                _writing(target, _check_space, archive, target, need, "its files")
                for dest, member in members.items():
                    out.append(dest)
                    _writing(dest, _check_place, archive, target, dest, member.filename)
                    if _writing(dest, _present, dest, member.file_size) and _writing(dest, _crc32, dest) == member.CRC:
                        continue
                    with _reading(zf.open, member) as src:
                        _writing(dest, _write, src, dest)
            return out
        with _reading(tarfile.open, archive) as tf:
            members, seen = iter(tf), set()
            while (member := _reading(next, members, None)) is not None:
                dest = _target(target, member.name, strip, flat)
                if not member.isfile() or dest is None or dest in seen or not keep(member.name):
                    continue  # a duplicate name: the first member is kept
                seen.add(dest)
                out.append(dest)
                _writing(dest, _check_place, archive, target, dest, member.name)
                if _writing(dest, _present, dest, member.size):
                    with _reading(tf.extractfile, member) as src:
                        if _writing(dest, _same_bytes, dest, src):
                            continue
                else:
                    _writing(target, _check_space, archive, target, member.size, f"its member {member.name!r} alone")
                with _reading(tf.extractfile, member) as src:
                    _writing(dest, _write, src, dest)
            _reading(_drain, tf.fileobj)  # tarfile stops at the end marker: read on, so gzip / xz check their CRC
    except _WriteFailed as failed:
        exc = failed.exc
        raise DataError(f"cannot write {exc.filename or failed.dest} while unpacking {archive}: {exc.strerror or exc}; "
                        "the archive is intact (keep it) and every file written is complete; free some space (or fix "
                        "the cause) and rerun") from None
    except _Unreadable as unreadable:
        cause = unreadable.__cause__
        if isinstance(cause, OSError) and cause.filename is not None and cause.errno is not None:
            raise cause from None  # the archive cannot be opened (missing, no permission): the CLI names it
        raise DataError(f"{archive} is not a readable zip or tar archive (truncated or corrupt? "
                        f"{one_line(cause)}); move it away and download it again (files unpacked from it are checked "
                        "and replaced then)") from None
    return out
