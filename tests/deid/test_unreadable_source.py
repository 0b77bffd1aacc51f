"""A source file the operating system will not let be read (permission denied; an I/O error of its disk
reads the same) is reported as unreadable, with the system's reason: it was 'corrupt: PermissionError',
which sent the site looking for damage in a file nobody could open, and counted as a fault of the
streamed path to report to the developers."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from deid_support import deid_run, make_ct, write


def _reads_any_file() -> bool:
    """Whether this process reads a file of mode 000 (root, with its capability to override permissions)."""
    with tempfile.NamedTemporaryFile() as probe:
        Path(probe.name).chmod(0)
        try:
            open(probe.name, "rb").close()
        except PermissionError:
            return False
    return True


@pytest.mark.skipif(_reads_any_file(), reason="root reads a file of mode 000: run as another user (or "
                    "without CAP_DAC_OVERRIDE) to test it")
def test_a_file_without_read_permission_is_unreadable_not_corrupt(tmp_path: Path) -> None:
    def inputs(src: Path) -> None:
        write(make_ct(sop_uid="1.2.826.0.1.3680043.8.498.91"), src / "readable.dcm")
        write(make_ct(sop_uid="1.2.826.0.1.3680043.8.498.92"), src / "locked.dcm").chmod(0)

    try:
        _, rows = deid_run(tmp_path, inputs)
    finally:
        (tmp_path / "src" / "locked.dcm").chmod(0o644)  # so that pytest can remove it
    assert rows["readable"]["outcome"] == "deidentified", rows["readable"]
    locked = rows["locked"]
    assert locked["outcome"] == "rejected", locked
    assert locked["reason"] == "unreadable: Permission denied", locked
    assert "stream_failure" not in locked, locked  # not a fault of RadCommons to report
