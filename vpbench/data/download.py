"""Downloads that survive interruptions and never let a bad file take the real name.

A file is fetched into ``NAME.partial`` next to its destination; an interrupted transfer is
resumed with an HTTP ``Range`` request; the finished file's sha256 is checked and only then
is it renamed to ``NAME`` (``os.replace``, atomic). A file already present with the right
checksum is used as is (offline use). Offline or failing mirrors give one :class:`DataError`
naming the file, every URL tried, where to put the file by hand, and its sha256.

Where no official checksum is published (KTH's zips), the sha256 seen at the first download
is recorded in ``checksums.json`` beside the file (trust on first use) and checked after.
"""

from __future__ import annotations

import hashlib
import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

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
    size: int | None = None
    note: str = field(default="", compare=False)
    md5: str | None = None  # where the publisher gives only an MD5 (Fashion-MNIST): checked too


def sha256_file(path: Path, algorithm: str = "sha256") -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _recorded(directory: Path) -> dict[str, str]:
    path = directory / "checksums.json"
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except json.JSONDecodeError:
        return {}


def expected_sha256(remote: RemoteFile, directory: Path) -> str | None:
    return remote.sha256 or _recorded(directory).get(remote.name)


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
            f"{path} has sha256 {actual[:16]}..., expected {expected[:16]}...; the file is corrupt or "
            f"another version. Move it away and run `vpbench data download` again (or fetch {remote.urls[0]})"
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


def fetch(remote: RemoteFile, directory: Path, events: Events | None = None, timeout: float = 30.0) -> Path:
    """``directory / remote.name``, downloaded (resuming a partial file) and verified."""
    events = events or Events()
    target = directory / remote.name
    if target.is_file():
        verify(target, remote, directory)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    last_error = "no URL"
    for url in remote.urls:
        try:
            _transfer(url, partial, remote, events, timeout)
        except (urllib.error.URLError, OSError, TimeoutError, ConnectionError) as exc:
            last_error = f"{url}: {getattr(exc, 'reason', None) or exc}"
            continue
        actual = sha256_file(partial)
        expected = expected_sha256(remote, directory)
        if remote.md5 is not None and sha256_file(partial, "md5") != remote.md5:
            partial.unlink()
            raise DataError(f"{remote.name} from {url} does not have the published md5 {remote.md5[:16]}...; the "
                            "download was discarded (nothing else was touched). Try again later or another mirror")
        if expected is not None and actual != expected:
            partial.unlink()
            raise DataError(
                f"{remote.name} from {url} has sha256 {actual[:16]}..., expected {expected[:16]}...; "
                "the download was discarded (nothing else was touched). Try again later or another mirror"
            )
        os.replace(partial, target)
        if remote.sha256 is None:
            recorded = _recorded(directory)
            recorded[remote.name] = actual
            io.write_json(directory / "checksums.json", recorded)
        return target
    raise DataError(missing_message(remote, target, last_error))


def _transfer(url: str, partial: Path, remote: RemoteFile, events: Events, timeout: float) -> None:
    start = partial.stat().st_size if partial.exists() else 0
    headers = {"User-Agent": USER_AGENT}
    if start:
        headers["Range"] = f"bytes={start}-"
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        if start and response.status != 206:  # the server ignored the range: start over
            start = 0
        length = response.headers.get("Content-Length")
        total = start + int(length) if length is not None else (remote.size or 0)
        key = f"download:{remote.name}"
        events.task_start(key, f"downloading {remote.name}", total, start)
        with open(partial, "ab" if start else "wb") as fh:
            received = 0
            while chunk := response.read(CHUNK):
                fh.write(chunk)
                received += len(chunk)
                events.task_advance(key, len(chunk))
            fh.flush()
            os.fsync(fh.fileno())
        events.task_end(key)
        if length is not None and received < int(length):
            raise ConnectionError(f"transfer ended after {start + received} of {total} bytes")
