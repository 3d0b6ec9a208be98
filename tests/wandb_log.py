"""A reader of W&B's offline run log (``run-*.wandb``), for the tests: wandb (0.31 here) writes it from
its Go core and ships no Python reader for it any more.

The format: LevelDB's published log format with W&B's file header and checksum, as files written by
wandb 0.31 show:

- a 7-byte file header: ``b":W&B"``, a 2-byte little-endian magic ``0xBEE1`` and a 1-byte version (0);
- then a LevelDB-style log: the file is cut into 32 KiB blocks counted from its first byte (the file
  header takes the start of block 0); each physical record is a 7-byte header (a 4-byte little-endian
  checksum of the type byte and the data, a 2-byte little-endian data length, a 1-byte type: FULL=1,
  FIRST=2, MIDDLE=3, LAST=4) and its data; a record never crosses a block's end, and fewer than 7 bytes
  left at a block's end are zeros. Unlike LevelDB's own log (a masked CRC-32C), the checksum is the
  plain, unmasked CRC-32 of zlib (IEEE polynomial): so in every file wandb 0.31 writes;
- a logical record (one FULL, or FIRST MIDDLE* LAST) is a serialized ``wandb_internal_pb2.Record``.

Every CRC is checked; any damage (a bad CRC, a record running past its block or the file, non-zero
padding, a broken FIRST/MIDDLE/LAST chain, a payload that is no ``Record``) raises :class:`CorruptLog`;
a file cut exactly between two logical records cannot be told from a shorter log.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Any, Iterator

FILE_HEADER = b":W&B" + struct.pack("<HB", 0xBEE1, 0)
BLOCK = 32 * 1024
HEADER = 7  # checksum (4), length (2), type (1)
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


class CorruptLog(ValueError):
    """The file is not a well-formed W&B run log."""


def checksum(data: bytes) -> int:
    """A record's checksum: CRC-32 (zlib's) of its type byte and data, not masked."""
    return zlib.crc32(data) & 0xFFFFFFFF


def logical_records(data: bytes) -> Iterator[bytes]:
    """The payloads of a run log's logical records, each CRC-checked."""
    if data[:len(FILE_HEADER)] != FILE_HEADER:
        raise CorruptLog(f"not a W&B run log: the file starts {data[:len(FILE_HEADER)]!r}, not {FILE_HEADER!r}")
    pos, pending = len(FILE_HEADER), None  # pending: the parts of a FIRST ... LAST record so far
    while pos < len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # a block's tail: zeros
            if any(data[pos:pos + left]):
                raise CorruptLog(f"non-zero padding at byte {pos}")
            pos += left
            continue
        if len(data) - pos < HEADER:
            raise CorruptLog(f"the file ends inside a record header at byte {pos}")
        stored, length, kind = struct.unpack_from("<IHB", data, pos)
        start, end = pos + HEADER, pos + HEADER + length
        if length > left - HEADER or end > len(data):
            raise CorruptLog(f"the record at byte {pos} ({length} bytes) runs past its block or the file")
        if checksum(data[pos + 6:end]) != stored:
            raise CorruptLog(f"CRC mismatch in the record at byte {pos}")
        part, pos = data[start:end], end
        if kind == FULL:
            if pending is not None:
                raise CorruptLog(f"a FULL record at byte {start - HEADER} inside a FIRST ... LAST record")
            yield part
        elif kind == FIRST:
            if pending is not None:
                raise CorruptLog(f"a FIRST record at byte {start - HEADER} inside a FIRST ... LAST record")
            pending = [part]
        elif kind in (MIDDLE, LAST):
            if pending is None:
                raise CorruptLog(f"a {'MIDDLE' if kind == MIDDLE else 'LAST'} record at byte {start - HEADER} without its FIRST")
            pending.append(part)
            if kind == LAST:
                yield b"".join(pending)
                pending = None
        else:
            raise CorruptLog(f"record type {kind} at byte {start - HEADER}")
    if pending is not None:
        raise CorruptLog("the file ends inside a FIRST ... LAST record")


def read_records(path: Path | str) -> list[Any]:
    """The ``wandb_internal_pb2.Record`` messages of a run log, in order."""
    from google.protobuf.message import DecodeError
    from wandb.proto import wandb_internal_pb2

    records = []
    for payload in logical_records(Path(path).read_bytes()):
        record = wandb_internal_pb2.Record()
        try:
            record.ParseFromString(payload)
        except DecodeError as exc:
            raise CorruptLog(f"record {len(records)} is no wandb Record: {exc}") from None
        records.append(record)
    return records


def _key(item: Any) -> str | tuple[str, ...]:
    """An item's key: its name, or the path of names of a value nested in a logged dict."""
    if item.key:
        return item.key
    return item.nested_key[0] if len(item.nested_key) == 1 else tuple(item.nested_key)


def _apply(out: dict, update: Any, remove: Any = ()) -> dict:
    out.update({_key(item): json.loads(item.value_json) for item in update})
    for item in remove:
        out.pop(_key(item), None)
    return out


def _kind(record: Any) -> str | None:
    return record.WhichOneof("record_type")


def history(records: list[Any]) -> list[dict]:
    """The logged history rows (each with its ``_step``), in order; a value in a logged dict (a
    media file's ``path``, ...) is keyed by its path, ``("examples/clip.png", "path")``."""
    return [_apply({}, r.history.item) for r in records if _kind(r) == "history"]


def summary(records: list[Any]) -> dict:
    """The run's summary: every summary record's updates and removals, in order."""
    out: dict = {}
    for r in records:
        if _kind(r) == "summary":
            _apply(out, r.summary.update, r.summary.remove)
    return out


def config(records: list[Any]) -> dict:
    """The run's config: the run record's, then every config record's updates and removals, in order."""
    out: dict = {}
    for r in records:
        if _kind(r) == "run":
            _apply(out, r.run.config.update, r.run.config.remove)
        elif _kind(r) == "config":
            _apply(out, r.config.update, r.config.remove)
    return out
