"""radcommons.durable.write_atomic: the old file or the new one, whole; private files stay private."""

from __future__ import annotations

import os
import stat

import pytest

from radcommons.durable import write_atomic


def test_write_atomic_replaces_whole_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "a" / "b" / "report.json"
    write_atomic(target, "first")
    write_atomic(target, b"second")
    assert target.read_bytes() == b"second"
    assert os.listdir(target.parent) == ["report.json"]


def test_private_files_are_owner_only(tmp_path):
    write_atomic(tmp_path / "private.json", "{}", private=True)
    write_atomic(tmp_path / "shared.json", "{}")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "private.json").stat().st_mode) == 0o600 & ~umask
    assert stat.S_IMODE((tmp_path / "shared.json").stat().st_mode) == 0o644 & ~umask


def test_a_failed_write_keeps_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "status.json"
    write_atomic(target, "old")

    def no_rename(*_args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", no_rename)
    with pytest.raises(OSError):
        write_atomic(target, "new")
    monkeypatch.undo()
    assert target.read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["status.json"]
