"""A source the operating system stops reading is 'unreadable: <its reason>', said by one helper
(radcommons.inputs.unreadable) wherever it is found: before the file is opened, under its header,
or part-way through the copy of its pixels on the streamed path, where it was recorded as a fault of
that path ('the streamed path failed: BadInput: unreadable: ...') to report to the developers."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from radcommons.deid.fileio import BadInput, read_header
from radcommons.inputs import stat_input, unreadable

from deid_support import make_ct, write

RADCOMMONS = str(Path(sys.executable).parent / "radcommons")


def _stat_error(path: Path) -> OSError:
    try:
        os.stat(path)
    except OSError as error:
        return error
    raise AssertionError(f"{path} can be statted")


def test_stat_input_and_the_header_reader_say_unreadable_alike(tmp_path: Path) -> None:
    """A link that leads to itself (ELOOP: root cannot read past it either) is unreadable, in the
    same words from the tree walk's check and from the de-identifier's header reader."""
    loop = tmp_path / "loop.dcm"
    loop.symlink_to(loop)
    error = _stat_error(loop)
    assert error.errno == errno.ELOOP
    assert stat_input(loop) == unreadable(error) == f"unreadable: {os.strerror(errno.ELOOP)}"
    with pytest.raises(BadInput) as raised:
        read_header(loop)
    assert str(raised.value) == unreadable(error)


def _can_mount_loop_images() -> bool:
    """Whether this machine lets a process mount an ext2 image of its own (root, unshare -m, loop devices)."""
    tools = all(shutil.which(tool) for tool in ("unshare", "mkfs.ext2", "debugfs"))
    return tools and os.path.exists("/dev/loop-control") and subprocess.run(
        ["unshare", "-m", "true"], capture_output=True).returncode == 0


def _image_failing_after_48_kib(root: Path, dicom: Path) -> Path:
    """An ext2 image (4 KiB blocks) holding ``dicom``, whose indirect block is made to point past the
    file system: its first 12 blocks (48 KiB: the header) read, anything after them is an I/O error."""
    image = root / "disk.img"
    with open(image, "wb") as out:
        out.truncate(8 << 20)
    for command in (["mkfs.ext2", "-q", "-F", "-b", "4096", str(image)],
                    ["debugfs", "-w", "-R", f"write {dicom} ct.dcm", str(image)],
                    ["debugfs", "-w", "-R", "set_inode_field ct.dcm block[IND] 99999", str(image)]):
        subprocess.run(command, check=True, capture_output=True)
    return image


@pytest.mark.skipif(not _can_mount_loop_images(), reason="needs root (unshare -m, a loop device) to mount an "
                    "image whose file fails part-way")
def test_a_source_failing_during_the_pixel_copy_is_unreadable_and_leaves_no_output(tmp_path: Path) -> None:
    """The header (first 16 KiB) reads; 512 x 512 pixels run past 48 KiB, where reading fails (EIO).
    The streamed path fails in its copy, the pydicom path tries again and fails there too: the
    report says 'unreadable: Input/output error' with no stream failure, and DST holds no file
    (neither an output nor a temporary)."""
    ds = make_ct(rows=512)
    for tag in [tag for tag in ds.keys() if tag.group & 0xFF00 == 0x6000]:
        del ds[tag]  # overlays go to the pydicom path: the streamed path must take this file
    made = write(ds, tmp_path / "ct.dcm")
    assert made.stat().st_size > 500_000
    image = _image_failing_after_48_kib(tmp_path, made)
    (tmp_path / "src").mkdir()
    assert subprocess.run([RADCOMMONS, "keygen", "site.key"], cwd=tmp_path, capture_output=True).returncode == 0
    script = (f'mount -o ro,loop {image.name} src || exit 99\n'
              '"$RC" deid src dst --site S1 --key-file site.key --workers 1 --report report.json')
    done = subprocess.run(["unshare", "-m", "sh", "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "RC": RADCOMMONS, "COLUMNS": "300"}, timeout=300)
    assert done.returncode != 99, done.stderr
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    (row,) = json.loads((tmp_path / "report.json").read_text())["files"]
    assert row["outcome"] == "rejected", row
    assert row["reason"] == f"unreadable: {os.strerror(errno.EIO)}", row
    assert "stream_failure" not in row, row  # the disk's doing, not RadCommons' to report
    assert row["why_pydicom"] == row["reason"], row  # the streamed path read the header, then failed
    left = [p for p in (tmp_path / "dst").rglob("*") if p.is_file()] if (tmp_path / "dst").exists() else []
    assert not left, left
