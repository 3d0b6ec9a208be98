"""An exclusive lock on a run directory, so two processes never write into one run.

The lock is a file beside the directory (``.<name>.lock``: beside it, so ``--fresh`` moving the
run aside cannot move the lock with it) held with ``fcntl.flock`` for as long as the command
runs. It records the holder (pid, host, start time, command). The kernel releases a flock when
its process dies, however it dies; the holder removes the file when it is done, so a lock file
that names a holder while the lock is free is stale, and the next command says so before
taking it over. A holder on another host (a
shared file system, where flock may be local to each host) cannot be checked from here: the
command refuses and names the file to delete once that process is gone.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import json
import os
import socket
import stat
import sys
from pathlib import Path
from typing import Callable, Iterator

from vpbench.errors import RunError


def lock_path(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    return run_dir.parent / f".{run_dir.name}.lock"


def _holder(text: str) -> dict:
    try:
        data = json.loads(text)
        return data if isinstance(data, dict) else {}
    except ValueError:
        return {}


def _describe(holder: dict) -> str:
    return (f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, since {holder.get('since', '?')}: "
            f"`{holder.get('command', '?')}`")


def _open(path: Path) -> int:
    """The lock file, created (``O_EXCL``) or opened, never through a symbolic link and only if it is a
    plain file with no other name (a lock file is truncated and written: it must not stand for another)."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        except FileExistsError:
            try:
                fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK)
            except FileNotFoundError:
                continue  # released (unlinked) in between: create it
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise RunError(f"{path} is a symbolic link, not a vpbench lock file; delete the link and rerun") from None
                raise
        info = os.fstat(fd)
        if stat.S_ISREG(info.st_mode) and info.st_nlink <= 1:  # 0: its holder unlinked it just now
            return fd
        os.close(fd)
        raise RunError(f"{path} is not a plain vpbench lock file (a hard link or a special file); delete it and rerun")


def _open_locked(path: Path) -> tuple[int, bool]:
    """``(fd, held)``: the lock file opened (created if needed) and, if free, locked. A file
    unlinked by its releasing holder between our open and our flock is retried."""
    while True:
        fd = _open(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return fd, False
        try:
            same = os.fstat(fd).st_ino == os.lstat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd, True
        os.close(fd)


@contextlib.contextmanager
def locked(run_dir: Path, message: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold the lock of ``run_dir`` for the block, or raise a one-line :class:`RunError`
    naming the holder. The lock file exists while the lock is held (or when its holder died)."""
    path = lock_path(run_dir)
    made_parent = not path.parent.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, held = _open_locked(path)
    try:
        if not held:
            holder = _holder(os.pread(fd, 65536, 0).decode(errors="replace"))
            raise RunError(f"{run_dir} is in use by another vpbench process ({_describe(holder)}); wait for it to "
                           "finish or stop it (it writes a checkpoint on SIGTERM), then rerun")
        previous = _holder(os.pread(fd, 65536, 0).decode(errors="replace"))
        host = socket.gethostname()
        if previous:
            if previous.get("host") != host:
                raise RunError(f"{run_dir} is locked by a vpbench process on another host ({_describe(previous)}); "
                               f"if that process is gone, delete {path} and rerun")
            if message is not None:
                message(f"{run_dir}: a previous vpbench process ({_describe(previous)}) ended without releasing "
                        "its lock (killed?); taking it over")
        record = {"pid": os.getpid(), "host": host, "since": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                  "command": " ".join(["vpbench", *sys.argv[1:]])}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        os.fsync(fd)
        try:
            yield
        finally:
            os.unlink(path)  # released: unlinked while still held, so a waiting opener retries
            if made_parent:
                with contextlib.suppress(OSError):
                    path.parent.rmdir()  # only if empty: a command that wrote nothing leaves nothing
    finally:
        os.close(fd)
