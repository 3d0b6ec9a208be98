"""Downloads that survive interruptions and never let a bad file take the real name.

A file is fetched into ``NAME.partial`` next to its destination; an interrupted transfer is
resumed with an HTTP ``Range`` request; the finished file's sha256 is checked and only then
is it renamed to ``NAME`` (``os.replace``, atomic). A file already present with the right
checksum is used as is (offline use). Offline or failing mirrors give one :class:`DataError`
naming the file, every URL tried, where to put the file by hand, and its sha256.

Where no official checksum is published (KTH's zips), the sha256 seen at the first download
is recorded in ``checksums.json`` beside the file (trust on first use) and checked after. A
response that is clearly not the file (an HTML page, a size other than ``RemoteFile.size``) is
discarded before anything is recorded, and a checksum recorded for a file fetched over plain
``http://`` is announced as unverified. ``RemoteFile.size``, when known, is enforced while
streaming. A complete ``NAME.partial`` left by an interrupted run is checked as a finished file
(and started over if it fails). Two processes fetching one file take turns on a lock
(``.NAME.lock``, ``fcntl.flock``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from vpbench import io
from vpbench.errors import DataError
from vpbench.events import Events

CHUNK = 1 << 20
USER_AGENT = "vpbench-downloader/1"


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset: its name under the dataset directory, mirrors and checksum."""

    name: str
    urls: tuple[str, ...]
    sha256: str | None = None
    size: int | None = None  # exact bytes, when known: enforced while streaming and before recording
    note: str = field(default="", compare=False)
    md5: str | None = None  # where the publisher gives only an MD5 (Fashion-MNIST): checked too


def sha256_file(path: Path, algorithm: str = "sha256") -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


CHECKSUMS = "checksums.json"


class _Rejected(Exception):
    """The response is clearly not the file (the message says why); it is discarded."""


def _recorded(directory: Path) -> dict[str, str]:
    """The checksums recorded in ``directory``; a corrupt file is an error, never read as empty."""
    path = directory / CHECKSUMS
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        data = exc
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        why = f" ({' '.join(str(data).split())})" if isinstance(data, Exception) else ""
        raise DataError(f"{path} is not a JSON object of file name -> sha256{why}; it holds the checksums recorded at "
                        "the first download of the files beside it: repair it, or delete it to trust those files "
                        "again at their next download")
    return data


def _record(directory: Path, name: str, digest: str) -> None:
    """Add ``name``'s sha256 to ``checksums.json``, keeping the other files' records."""
    with _locked(directory / f".{CHECKSUMS}.lock"):
        recorded = _recorded(directory)
        recorded[name] = digest
        io.write_json(directory / CHECKSUMS, recorded)


def expected_sha256(remote: RemoteFile, directory: Path) -> str | None:
    return remote.sha256 or _recorded(directory).get(remote.name)


def _origin(remote: RemoteFile, directory: Path) -> str:
    """Where the expected sha256 comes from, and how to accept another file when it is only recorded."""
    if remote.sha256:
        return " (published)"
    return (f" (recorded in {directory / CHECKSUMS} at the first download; none is published: if the new file is the "
            f"right one, delete the \"{remote.name}\" entry there to accept it)")


def verify(path: Path, remote: RemoteFile, directory: Path) -> None:
    """Raise :class:`DataError` when ``path`` does not have the expected sha256."""
    if remote.md5 is not None:
        actual_md5 = sha256_file(path, "md5")
        if actual_md5 != remote.md5:
            raise DataError(
                f"{path} has md5 {actual_md5[:16]}..., expected {remote.md5[:16]}... (published); the file is corrupt or "
                f"another version. Move it away and run `vpbench data download` again (or fetch {remote.urls[0]})"
            )
    expected = expected_sha256(remote, directory)
    if expected is None:
        return
    actual = _cached_sha256(path)
    if actual != expected:
        raise DataError(
            f"{path} has sha256 {actual[:16]}..., expected {expected[:16]}...{_origin(remote, directory)}; the file is "
            f"corrupt or another version. Move it away and run `vpbench data download` again (or fetch {remote.urls[0]})"
        )


def _cached_sha256(path: Path) -> str:
    """sha256 of ``path``, remembered in a stamp keyed by size and mtime (big files hash once)."""
    stat = path.stat()
    stamp = path.with_name(f".{path.name}.sha256")
    key = f"{stat.st_size}:{stat.st_mtime_ns}"
    if stamp.is_file():
        saved_key, _, digest = stamp.read_text().strip().partition(" ")
        if saved_key == key and len(digest) == 64:
            return digest
    digest = sha256_file(path)
    try:
        io.write_text(stamp, f"{key} {digest}\n")
    except OSError:
        pass
    return digest


def missing_message(remote: RemoteFile, target: Path, reason: str = "") -> str:
    checksum = f" (sha256 {remote.sha256})" if remote.sha256 else ""
    why = f" ({reason})" if reason else ""
    return (f"cannot download {remote.name}{why}. Offline? Fetch {remote.urls[0]} yourself and put it at "
            f"{target}{checksum}")


@contextlib.contextmanager
def _locked(path: Path, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created, and removed on release) for the block,
    waiting for another holder (``on_wait`` is called first). A file unlinked by its releasing
    holder between our open and our flock is opened again."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if on_wait is not None:
                    on_wait()
                    on_wait = None
                fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                try:
                    yield
                finally:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)  # unlinked while still held: a waiting opener retries
                return
        finally:
            os.close(fd)


def fetch(remote: RemoteFile, directory: Path, events: Events | None = None, timeout: float = 30.0) -> Path:
    """``directory / remote.name``, downloaded (resuming a partial file) and verified."""
    events = events or Events()
    target = directory / remote.name
    if target.is_file():
        verify(target, remote, directory)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    lock = target.with_name(f".{target.name}.lock")
    with _locked(lock, lambda: events.message(f"another process is downloading {target}; waiting for it")):
        if target.is_file():  # the other process finished it
            verify(target, remote, directory)
            return target
        return _fetch(remote, directory, target, events, timeout)


def _fetch(remote: RemoteFile, directory: Path, target: Path, events: Events, timeout: float) -> Path:
    partial = target.with_name(target.name + ".partial")
    expected = expected_sha256(remote, directory)
    last_error, rejected = "no URL", ""
    for url in remote.urls:
        try:
            content_type = _transfer(url, partial, remote, expected, events, timeout)
            _check_response(partial, remote, content_type)
            if remote.md5 is not None and sha256_file(partial, "md5") != remote.md5:
                raise _Rejected(f"does not have the published md5 {remote.md5[:16]}...")
            actual = sha256_file(partial)
            if expected is not None and actual != expected:
                raise _Rejected(f"has sha256 {actual[:16]}..., expected {expected[:16]}...{_origin(remote, directory)}")
        except _Rejected as exc:
            partial.unlink(missing_ok=True)
            rejected = f"{remote.name} from {url} {exc}; the download was discarded (nothing else was touched)"
            continue
        except (urllib.error.URLError, OSError, TimeoutError, ConnectionError) as exc:
            last_error = f"{url}: {getattr(exc, 'reason', None) or exc}"
            continue
        os.replace(partial, target)
        if expected is None:
            _record(directory, remote.name, actual)
            if url.lower().startswith("http://"):
                events.message(f"{remote.name} came over plain http ({url}) and has no published checksum: its sha256 "
                               f"{actual} was recorded in {directory / CHECKSUMS} unverified (trust on first use); "
                               "compare it with a copy from elsewhere if you can")
        return target
    if rejected:
        raise DataError(f"{rejected}. Try again later or another mirror, or fetch {remote.urls[0]} yourself and put it "
                        f"at {target}")
    raise DataError(missing_message(remote, target, last_error))


HTML_START = re.compile(rb"\s*(<!doctype\s+html|<html|<head|<body)", re.IGNORECASE)


def _check_response(partial: Path, remote: RemoteFile, content_type: str) -> None:
    """Raise :class:`_Rejected` when the downloaded ``partial`` is clearly not the file."""
    size = partial.stat().st_size
    if remote.size is not None and size != remote.size:
        raise _Rejected(f"is {size} bytes, not {remote.size}")
    if remote.name.lower().endswith((".html", ".htm")):
        return
    with open(partial, "rb") as fh:
        head = fh.read(1024).removeprefix(b"\xef\xbb\xbf")
    if content_type.split(";")[0].strip().lower() in ("text/html", "application/xhtml+xml") or HTML_START.match(head):
        raise _Rejected(f"is a web page ({content_type or 'HTML'}), not the file: a quota, login or error page?")


def _finished(partial: Path, remote: RemoteFile, expected: str | None, total: int | None) -> bool:
    """Whether a ``partial`` the server has nothing more for is the whole file: its size matches
    every size known and its checksum the expected one; with neither known, it cannot tell."""
    size = partial.stat().st_size
    sizes = [s for s in (total, remote.size) if s is not None]
    if any(s != size for s in sizes):
        return False
    if expected is not None and sha256_file(partial) != expected:
        return False
    if remote.md5 is not None and sha256_file(partial, "md5") != remote.md5:
        return False
    return bool(sizes or expected or remote.md5)


def _transfer(url: str, partial: Path, remote: RemoteFile, expected: str | None, events: Events, timeout: float) -> str:
    """Download (or resume) ``url`` into ``partial``; the response's content type."""
    start = partial.stat().st_size if partial.exists() else 0
    if start and remote.size is not None and start >= remote.size:  # complete (killed before the rename?) or too long
        if _finished(partial, remote, expected, None):
            return ""
        partial.unlink()
        start = 0
    headers = {"User-Agent": USER_AGENT}
    if start:
        headers["Range"] = f"bytes={start}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code != 416 or not start:
            raise
        # nothing after byte `start`: the partial is complete, or longer than the remote file
        match = re.fullmatch(r"\s*bytes\s+\*/(\d+)\s*", exc.headers.get("Content-Range", "") or "")
        if _finished(partial, remote, expected, int(match.group(1)) if match else None):
            return ""
        partial.unlink()
        return _transfer(url, partial, remote, expected, events, timeout)
    with response:
        if start and response.status != 206:  # the server ignored the range: start over
            start = 0
        length = response.headers.get("Content-Length")
        total = start + int(length) if length is not None else (remote.size or 0)
        if remote.size is not None and total > remote.size:
            raise _Rejected(f"announces {total} bytes, but the file has {remote.size}")
        key = f"download:{remote.name}"
        events.task_start(key, f"downloading {remote.name}", total, start)
        received = 0
        try:
            with open(partial, "ab" if start else "wb") as fh:
                while chunk := response.read(CHUNK):
                    if remote.size is not None and start + received + len(chunk) > remote.size:
                        raise _Rejected(f"kept sending past the {remote.size} bytes the file has; stopped")
                    fh.write(chunk)
                    received += len(chunk)
                    events.task_advance(key, len(chunk))
                fh.flush()
                os.fsync(fh.fileno())
        finally:
            events.task_end(key)
        if length is not None and received < int(length):
            raise ConnectionError(f"transfer ended after {start + received} of {total} bytes")
        return response.headers.get("Content-Type", "") or ""
