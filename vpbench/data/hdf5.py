"""HDF5 files through h5py: opening with one-line errors, and hickle files read without hickle.

hickle (https://github.com/telegraphic/hickle) writes plain HDF5. Its layouts, read from its
source:

- versions 2 and 3 (PredNet's ``X_*.hkl`` / ``sources_*.hkl`` were written so): the object is
  ``/data_0``; a numpy array is a dataset (attribute ``type = ['ndarray']``), a list of strings
  is one dataset of fixed-length byte strings (``create_listlike_dataset``), and a list of
  mixed items is a group whose members are ``data_0``, ``data_1``, ...;
- versions 4 and 5: the object is ``/data``; an array is a dataset; a list of strings is a group
  whose members ``data0``, ``data1``, ... are ``(1, n)`` datasets of single bytes (``S1``).

:func:`read_hickle` reads these layouts (arrays and lists of strings, all PredNet's files
hold), so no hickle dependency is needed; anything else is a :class:`DataError`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from vpbench.data.arrays import require
from vpbench.errors import DataError


def open_h5(path: Path, dataset: str, extra: str = "hdf5", fix: str = "") -> Any:
    """``h5py.File(path, "r")``, or one line naming the file when it is missing or not HDF5."""
    h5py = require("h5py", dataset, extra)
    if not path.is_file():
        raise DataError(f"{dataset}: {path} is missing; {fix}")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise DataError(f"{dataset}: {path} is not a readable HDF5 file (truncated or corrupt? {exc}); "
                        f"move it away and fetch it again. {fix}".strip()) from None


def read_dataset(h5: Any, key: str, dataset: str, path: Path) -> np.ndarray:
    """``h5[key][()]`` with one-line errors for a missing key or a truncated file."""
    if key not in h5:
        raise DataError(f"{dataset}: {path} has no '{key}' (it holds {', '.join(sorted(h5.keys())) or 'nothing'}); "
                        "is it the right file?")
    try:
        return h5[key][()]
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"{dataset}: cannot read '{key}' from {path} (truncated or corrupt? {exc}); "
                        "move it away and fetch it again") from None


def _index(name: str) -> int:
    match = re.search(r"(\d+)$", name)
    return int(match.group(1)) if match else -1


def _as_strings(values: np.ndarray) -> list[str]:
    out = []
    for v in np.asarray(values).reshape(-1):
        out.append(v.decode("utf-8") if isinstance(v, bytes) else str(v))
    return out


def _read_node(node: Any, path: Path, dataset: str) -> Any:
    import h5py

    if isinstance(node, h5py.Dataset):
        try:
            value = node[()]
        except (OSError, ValueError) as exc:
            raise DataError(f"{dataset}: cannot read {path} (truncated or corrupt? {exc}); move it away and fetch "
                            "it again") from None
        array = np.asarray(value)
        if array.dtype.kind == "S" and array.dtype.itemsize == 1 and array.ndim == 2 and array.shape[0] == 1:
            return b"".join(array.reshape(-1).tolist()).decode("utf-8")  # hickle 4/5: one string
        if array.dtype.kind in "SUO":
            return _as_strings(array)
        return array
    items = sorted(node.keys(), key=_index)
    if not items or any(_index(k) < 0 for k in items):
        raise DataError(f"{dataset}: {path} holds a hickle group vpbench cannot read (members "
                        f"{', '.join(items[:5]) or 'none'}); expected an array or a list of strings")
    values = [_read_node(node[k], path, dataset) for k in items]
    flat: list[Any] = []
    for v in values:
        flat.extend(v if isinstance(v, list) else [v])
    return flat


def read_hickle(path: Path, dataset: str, fix: str = "") -> Any:
    """The array or list of strings stored in the hickle file ``path`` (any version 2-5)."""
    with open_h5(path, dataset, fix=fix) as h5:
        for key in ("data_0", "data"):
            if key in h5:
                return _read_node(h5[key], path, dataset)
        raise DataError(f"{dataset}: {path} is HDF5 but not a hickle file (no /data_0 or /data; it holds "
                        f"{', '.join(sorted(h5.keys())) or 'nothing'})")


def hickle_array_info(path: Path, dataset: str, fix: str = "") -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of the array in a hickle file, without reading it."""
    import h5py

    with open_h5(path, dataset, fix=fix) as h5:
        for key in ("data_0", "data"):
            if key in h5 and isinstance(h5[key], h5py.Dataset):
                return tuple(h5[key].shape), h5[key].dtype
        raise DataError(f"{dataset}: {path} is HDF5 but not a hickle file holding an array (no /data_0 or /data "
                        f"dataset; it holds {', '.join(sorted(h5.keys())) or 'nothing'})")


def read_hickle_rows(path: Path, dataset: str, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` of the array in a hickle file (for building caches in chunks)."""
    import h5py

    with open_h5(path, dataset) as h5:
        node = h5["data_0"] if "data_0" in h5 else h5["data"]
        if not isinstance(node, h5py.Dataset):
            raise DataError(f"{dataset}: {path} holds no hickle array")
        try:
            return node[start:stop]
        except (OSError, ValueError) as exc:
            raise DataError(f"{dataset}: cannot read {path} (truncated or corrupt? {exc}); move it away and fetch "
                            "it again") from None
