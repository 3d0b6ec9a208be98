"""TFRecord files and ``tf.train.Example`` protos, read (and, for tests, written) without TensorFlow.

A TFRecord file is a sequence of records, each::

    uint64 length (little endian) | uint32 masked crc32c(length) | data[length] | uint32 masked crc32c(data)

with ``masked(c) = ((c >> 15) | (c << 17)) + 0xa282ead8`` (mod 2**32), as TensorFlow's
``record_writer`` writes them. A ``tf.train.Example`` is a protobuf message::

    Example  { Features features = 1; }
    Features { map<string, Feature> feature = 1; }   // entries: key = 1, value = 2
    Feature  { oneof kind { BytesList bytes_list = 1; FloatList float_list = 2; Int64List int64_list = 3; } }
    BytesList { repeated bytes value = 1; }  FloatList { repeated float value = 1 [packed]; }
    Int64List { repeated int64 value = 1 [packed]; }

decoded here with a small protobuf wire-format parser (varints and length-delimited fields).
The length CRC is always checked; the data CRC is checked with the ``crc32c`` package (C speed;
``pip install 'vpbench[bair]'``), since a pure-Python CRC over BAIR's 44k records of ~0.7 MB
would take hours.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from vpbench.errors import DataError

_MASK_DELTA = 0xA282EAD8
_POLY = 0x82F63B78  # Castagnoli, reflected
_TABLE = []
for _n in range(256):
    _c = _n
    for _ in range(8):
        _c = (_c >> 1) ^ _POLY if _c & 1 else _c >> 1
    _TABLE.append(_c)


def crc32c_py(data: bytes) -> int:
    """CRC-32C in pure Python (for short inputs: record lengths, test fixtures)."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _fast_crc():
    try:
        import crc32c

        return crc32c.crc32c
    except ImportError:
        return None


def masked_crc(data: bytes, crc=None) -> int:
    c = (crc or crc32c_py)(data)
    return (((c >> 15) | (c << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def read_records(path: Path, dataset: str = "tfrecord", check_data_crc: bool = True) -> Iterator[bytes]:
    """The records of ``path``; a truncated or corrupt file is a :class:`DataError` naming it."""
    fast = _fast_crc() if check_data_crc else None
    if check_data_crc and fast is None:
        raise DataError(f"{dataset} needs crc32c to check its TFRecords: pip install 'vpbench[bair]'")
    fix = "move it away and extract / download it again"
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        raise DataError(f"{dataset}: {path} is missing") from None
    with fh:
        index = 0
        while True:
            header = fh.read(12)
            if not header:
                return
            if len(header) < 12:
                raise DataError(f"{dataset}: {path} is truncated (record {index} header cut short); {fix}")
            length, length_crc = struct.unpack("<QI", header)
            if masked_crc(header[:8]) != length_crc:
                raise DataError(f"{dataset}: {path} is corrupt or not a TFRecord file (bad length checksum at record "
                                f"{index}); {fix}")
            data = fh.read(length)
            footer = fh.read(4)
            if len(data) < length or len(footer) < 4:
                raise DataError(f"{dataset}: {path} is truncated (record {index} cut short); {fix}")
            if fast is not None and masked_crc(data, fast) != struct.unpack("<I", footer)[0]:
                raise DataError(f"{dataset}: {path} is corrupt (bad data checksum at record {index}); {fix}")
            yield data
            index += 1


def write_records(path: Path, records: list[bytes]) -> None:
    """Write ``records`` as a TFRecord file (pure Python CRCs: for small files and tests)."""
    with open(path, "wb") as fh:
        for data in records:
            header = struct.pack("<Q", len(data))
            fh.write(header + struct.pack("<I", masked_crc(header)) + data + struct.pack("<I", masked_crc(data)))


# -- protobuf wire format ----------------------------------------------------------------------
def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(buf: memoryview) -> Iterator[tuple[int, int, Any]]:
    """``(field number, wire type, value)``: value is an int (varint, fixed) or a memoryview."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > len(buf):
                raise ValueError("truncated field")
            value, pos = buf[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = bytes(buf[pos : pos + 4]), pos + 4
        elif wire == 1:
            value, pos = bytes(buf[pos : pos + 8]), pos + 8
        else:
            raise ValueError(f"unsupported wire type {wire}")
        yield number, wire, value


def _feature(buf: memoryview) -> Any:
    for number, _, value in _fields(buf):
        if number == 1:  # BytesList
            return [bytes(v) for n, _, v in _fields(value) if n == 1]
        if number == 2:  # FloatList: packed (wire 2) or not (wire 5)
            out: list[float] = []
            for n, _wire, v in _fields(value):
                if n == 1:
                    out += np.frombuffer(bytes(v), "<f4").tolist()
            return out
        if number == 3:  # Int64List
            ints: list[int] = []
            for n, wire, v in _fields(value):
                if n != 1:
                    continue
                if wire == 0:
                    ints.append(v)
                else:
                    p = 0
                    while p < len(v):
                        x, p = _varint(v, p)
                        ints.append(x - (1 << 64) if x >= 1 << 63 else x)
            return ints
    return []


def parse_example(data: bytes) -> dict[str, Any]:
    """A ``tf.train.Example`` as ``{key: list of bytes | floats | ints}``."""
    out: dict[str, Any] = {}
    for number, _, features in _fields(memoryview(data)):
        if number != 1:
            continue
        for n, _, entry in _fields(features):
            if n != 1:
                continue
            key, value = "", None
            for m, _, v in _fields(entry):
                if m == 1:
                    key = bytes(v).decode("utf-8")
                elif m == 2:
                    value = _feature(v)
            out[key] = value if value is not None else []
    return out


def _enc_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _ld(number: int, payload: bytes) -> bytes:
    return _enc_varint(number << 3 | 2) + _enc_varint(len(payload)) + payload


def build_example(features: dict[str, Any]) -> bytes:
    """Serialize ``{key: bytes | list of bytes | list of floats | list of ints}`` as an Example."""
    entries = b""
    for key, value in features.items():
        if isinstance(value, bytes):
            value = [value]
        if value and isinstance(value[0], bytes):
            feature = _ld(1, b"".join(_ld(1, v) for v in value))
        elif value and isinstance(value[0], float):
            feature = _ld(2, _ld(1, np.asarray(value, "<f4").tobytes()))
        else:
            feature = _ld(3, _ld(1, b"".join(_enc_varint(int(v) & (1 << 64) - 1) for v in value)))
        entries += _ld(1, _ld(1, key.encode()) + _ld(2, feature))
    return _ld(1, entries)
