"""Atomic writes: failures never leave partial files or damage the previous version."""

from __future__ import annotations

import errno

import pytest

from vpbench import io


def test_failed_write_keeps_the_old_file_and_leaves_no_partial(tmp_path):
    target = tmp_path / "results.csv"
    io.write_text(target, "old\n")
    with pytest.raises(OSError):
        with io.atomic_path(target) as tmp:
            tmp.write_text("half of the new")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv"]


def test_full_disk_during_torch_save(tmp_path, monkeypatch):
    import torch

    target = tmp_path / "last.pt"
    io.torch_save({"step": 1}, target)

    def disk_full(obj, f, *a, **k):
        with open(f, "wb") as fh:
            fh.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError, match="No space"):
        io.torch_save({"step": 2}, target)
    monkeypatch.undo()
    assert torch.load(target, weights_only=True)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_write_json_and_bytes_replace(tmp_path):
    io.write_json(tmp_path / "a.json", {"x": 1})
    io.write_json(tmp_path / "a.json", {"x": 2})
    assert (tmp_path / "a.json").read_text().strip().endswith("}") and '"x": 2' in (tmp_path / "a.json").read_text()
