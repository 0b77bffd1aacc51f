"""A destination that cannot take the outputs (full, read-only) stops ``radcommons deid`` with one
message naming it, instead of reporting every input after it as corrupt."""

from __future__ import annotations

import errno
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

from radcommons.deid.fileio import OutputWriteError

from deid_support import make_ct, write

RADCOMMONS = str(Path(sys.executable).parent / "radcommons")
FILES = 48  #: three batches of radcommons.deid.tree.BATCH_SIZE
RESUMES = "then run the same command again: finished files are kept and the run resumes"


def _own_mount_namespace() -> bool:
    """Whether this machine lets a process mount a small file system of its own (unshare -m: root)."""
    return (shutil.which("unshare") is not None
            and subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode == 0)


def _corpus(root: Path) -> None:
    """``FILES`` CT images of 32 KiB of pixels each (about 1.6 MB of outputs)."""
    for i in range(FILES):
        write(make_ct(sop_uid=f"1.2.826.0.1.3680043.8.498.7{i}", rows=128), root / f"IM{i:03}.dcm")


def _in_namespace(script: str, cwd: Path, dst: Path) -> None:
    """Run the shell ``script`` in a mount namespace of its own ($DST, $RC: radcommons)."""
    env = {**os.environ, "DST": str(dst), "RC": RADCOMMONS, "COLUMNS": "300"}
    done = subprocess.run(["unshare", "-m", "sh", "-c", script], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr


def _complete_outputs(root: Path) -> int:
    """How many outputs are under ``root``; fails on a temporary or a half-written one."""
    names = [p for p in root.rglob("*") if p.is_file()]
    assert all(p.suffix == ".dcm" and not p.name.startswith(".") for p in names), names
    for path in names:
        ds = pydicom.dcmread(path)
        assert len(ds.PixelData) == 128 * 128 * 2 and ds.PatientIdentityRemoved == "YES", path
    return len(names)


@pytest.mark.skipif(not _own_mount_namespace(), reason="needs unshare -m (root) to mount a small tmpfs as DST")
def test_a_full_destination_stops_the_run_with_one_message_and_a_rerun_completes_it(tmp_path: Path) -> None:
    """DST on a 1 MiB tmpfs, 1.6 MB of outputs: every file after the disk filled was reported
    'rejected: corrupt: OSError: [Errno 28] No space left on device', and the run went on to the
    end. It now stops with one message naming DST, exit 2; what it finished is kept, whole, and
    reported (the report says it stopped); after more room, the same command completes the job,
    with no file rejected."""
    _corpus(tmp_path / "src")
    assert subprocess.run([RADCOMMONS, "keygen", "site.key"], cwd=tmp_path).returncode == 0
    dst = tmp_path / "dst"
    dst.mkdir()
    deid = '"$RC" deid src "$DST" --site S1 --key-file site.key --workers 1'
    _in_namespace(
        'mount -t tmpfs -o size=1m tmpfs "$DST" || exit 1\n'
        f'{deid} >run1.out 2>run1.err; echo $? >run1.rc\n'
        'cp -a "$DST" full\n'
        'mount -o remount,size=16m "$DST" || exit 1\n'  # room made
        f'{deid} >run2.out 2>run2.err; echo $? >run2.rc\n'
        'cp -a "$DST" done\n', tmp_path, dst)
    first = (tmp_path / "run1.out").read_text() + (tmp_path / "run1.err").read_text()
    assert (tmp_path / "run1.rc").read_text().strip() == "2", first
    assert f"error: cannot write the de-identified output to {dst}: No space left on device" in first, first
    assert f"hint: free space on the disk of {dst}, {RESUMES}" in first, first
    assert "corrupt" not in first and "rejected" not in first and "Traceback" not in first, first
    kept = _complete_outputs(tmp_path / "full")
    assert 0 < kept < FILES  # a batch was published before the disk filled, whole
    second = (tmp_path / "run2.out").read_text() + (tmp_path / "run2.err").read_text()
    assert (tmp_path / "run2.rc").read_text().strip() == "0", second
    assert _complete_outputs(tmp_path / "done") == FILES
    # the stopped run wrote its report too: the files it finished, why it stopped, that it resumes
    stopped, report = sorted((tmp_path / "var/deid-state/S1/reports").glob("deid-*.json"))
    partial = json.loads(stopped.read_text())
    assert f"the run stopped after {len(partial['files'])} file(s); report of those" in first, first
    assert str(stopped.relative_to(tmp_path)) in first, first
    assert partial["stopped"]["resumable"] is True, partial["stopped"]
    assert partial["stopped"]["reason"].startswith(f"cannot write the de-identified output to {dst}: No space "
                                                   "left on device"), partial["stopped"]
    outputs = {entry["output"] for entry in partial["files"] if entry["outcome"] == "deidentified"}
    assert outputs == {p.relative_to(tmp_path / "full").as_posix() for p in (tmp_path / "full").rglob("*.dcm")}
    assert partial["counts"]["total"] == len(partial["files"]) == kept
    complete = json.loads(report.read_text())
    assert "stopped" not in complete
    outcomes = [entry["outcome"] for entry in complete["files"]]
    assert outcomes == ["deidentified"] * FILES, outcomes


def test_a_read_only_destination_stops_the_run_naming_it(tmp_path: Path) -> None:
    """A destination this user may not write to (a read-only mount for root, a folder without
    write permission otherwise): one message naming it and what to do, not 48 rejected files."""
    _corpus(tmp_path / "src")
    assert subprocess.run([RADCOMMONS, "keygen", "site.key"], cwd=tmp_path).returncode == 0
    dst = tmp_path / "dst"
    dst.mkdir()
    deid = '"$RC" deid src "$DST" --site S1 --key-file site.key --workers 2 >run.out 2>run.err; echo $? >run.rc'
    if os.geteuid() == 0:
        if not _own_mount_namespace():
            pytest.skip("root, without unshare -m to mount DST read-only (root writes to any folder)")
        _in_namespace(f'mount --bind "$DST" "$DST" && mount -o remount,bind,ro "$DST" || exit 1\n{deid}\n',
                      tmp_path, dst)
        said = "is on a read-only file system: make it writable or give another destination"
    else:
        dst.chmod(0o555)
        try:
            subprocess.run(["sh", "-c", deid], cwd=tmp_path, env={**os.environ, "DST": str(dst), "RC": RADCOMMONS,
                                                                  "COLUMNS": "300"}, timeout=600)
        finally:
            dst.chmod(0o755)
        said = "writable by this user (or give another destination)"
    output = (tmp_path / "run.out").read_text() + (tmp_path / "run.err").read_text()
    assert (tmp_path / "run.rc").read_text().strip() == "2", output
    assert f"error: cannot write the de-identified output to {dst}: " in output, output
    assert f"{dst} {said}, {RESUMES}" in output, output
    assert "corrupt" not in output and "rejected" not in output and "Traceback" not in output, output
    assert not list(dst.rglob("*"))


def test_the_failure_crosses_from_a_worker_process_whole() -> None:
    """Raised in a worker process (``--workers``), the error is pickled to the caller: it must come
    back with its destination, reason and hint, not as a TypeError of its reconstruction."""
    error = OutputWriteError("/out/1.2/3.4/5.6.dcm", OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))).within("/out")
    back = pickle.loads(pickle.dumps(error))
    assert (back.message, back.hint, back.reason) == (error.message, error.hint, "No space left on device")
    assert back.hint == f"free space on the disk of /out, {RESUMES}"
