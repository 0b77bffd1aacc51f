"""Deflate bombs (PS3.5 A.5: a Deflated Explicit VR Little Endian data set of a few MB that inflates to
a GiB of zeros) written without holding them in memory, and a CLI run measured for its peak memory:
shared by the commons' gate test (tests/pipelines) and the site's deid test (tests/deid)."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import BinaryIO

from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset

#: the zeros each bomb inflates to
BOMB_BYTES = 1 << 30

#: ``python -c MEASURED PEAK_FILE ARGS`` runs ``radcommons ARGS`` in this process, then writes its peak
#: resident memory (VmHWM, KiB) to PEAK_FILE. Not ru_maxrss: Linux carries the peak of the (large)
#: test worker over a fork.
MEASURED = """
import sys
from radcommons.cli import main
peak_file, sys.argv = sys.argv[1], ["radcommons", *sys.argv[2:]]
try:
    main()
finally:
    status = open("/proc/self/status").read()
    open(peak_file, "w").write(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))
"""


def peak_mib(peak_file: Path) -> float:
    """The peak resident memory a :data:`MEASURED` run wrote, in MiB."""
    return int(peak_file.read_text()) / 1024


def measured_deid(root: Path) -> tuple[subprocess.CompletedProcess[str], float, list[dict]]:
    """``radcommons keygen`` then ``radcommons deid src dst`` in ``root`` (one worker, ``--report
    report.json``) run as :data:`MEASURED`: the run (no traceback), its peak resident memory in MiB,
    and the report's files."""
    keygen = subprocess.run([str(Path(sys.executable).parent / "radcommons"), "keygen", "site.key"], cwd=root,
                            capture_output=True, text=True, timeout=120)
    assert keygen.returncode == 0, keygen.stderr
    peak_file = root / "peak"
    run = subprocess.run(
        [sys.executable, "-c", MEASURED, str(peak_file), "deid", "src", "dst", "--site", "S1", "--key-file",
         "site.key", "--workers", "1", "--report", "report.json"],
        cwd=root, capture_output=True, text=True, timeout=600)
    assert "Traceback" not in run.stderr + run.stdout, run.stderr
    return run, peak_mib(peak_file), json.loads((root / "report.json").read_text())["files"]


def long_element(tag: int, vr: bytes, length: int) -> bytes:
    """The header of an explicit VR little endian element with a 4-byte length (PS3.5 7.1.2)."""
    return struct.pack("<HH2s2xL", tag >> 16, tag & 0xFFFF, vr, length)


def private_bomb_header() -> bytes:
    """A private creator and the header of a private OB element of BOMB_BYTES (group 7FD1, before
    the Pixel Data)."""
    creator = struct.pack("<HH2sH", 0x7FD1, 0x0010, b"LO", 14) + b"BOMB HOSPITAL "
    return creator + long_element(0x7FD11000, b"OB", BOMB_BYTES)


def _write_zeros(out: BinaryIO, compressor: "zlib._Compress", count: int) -> None:
    """``count`` zero bytes (a multiple of 1 MiB) into the deflate stream of ``compressor``, a MiB
    compressed once and its blocks written again: each ends at a full flush, so it refers to no byte
    before it. Never more than a MiB of them is held."""
    block = compressor.compress(bytes(1 << 20)) + compressor.flush(zlib.Z_FULL_FLUSH)
    for _ in range(count >> 20):
        out.write(block)


def write_bomb(ds: Dataset, target: Path, before: bytes, after: bytes, *, prefix: bool = True,
               zeros: int = BOMB_BYTES) -> None:
    """``ds`` (its Transfer Syntax Deflated Explicit VR Little Endian, no Pixel Data) deflated, then
    the elements ``before`` (ending with the header of an element of ``zeros`` bytes, a multiple of
    1 MiB), those zeros, then ``after``: one valid deflate stream. ``prefix=False``: the file starts
    with its File Meta, without the 128-byte preamble and "DICM" (PS3.10 7.1)."""
    raw = io.BytesIO()
    ds.save_as(raw, enforce_file_format=False)
    raw.seek(128 + 4)
    read_dataset(raw, False, True, stop_when=lambda tag, vr, length: tag.group != 2)  # the File Meta
    meta_end = raw.tell()
    body = zlib.decompress(raw.getvalue()[meta_end:], -zlib.MAX_WBITS)
    compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    with open(target, "wb") as out:
        out.write(raw.getvalue()[0 if prefix else 128 + 4:meta_end])
        out.write(compressor.compress(body + before) + compressor.flush(zlib.Z_FULL_FLUSH))
        _write_zeros(out, compressor, zeros)
        out.write(compressor.compress(after) + compressor.flush())
