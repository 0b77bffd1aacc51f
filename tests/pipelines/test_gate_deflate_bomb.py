"""A Deflated Explicit VR Little Endian file (PS3.5 A.5: the data set after the File Meta is one deflate
stream) through ``radcommons ingest``: a few MB of deflated zeros inflate to a GiB (a decompression
bomb), which the verification gate inflated whole in memory, twice (pydicom's header read, then the
read past the Pixel Data). Such a file is now rejected once it inflates beyond what its header describes,
and the ingest process stays small; a deflated file as pydicom writes it is still indexed.
"""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import BinaryIO

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import DeflatedExplicitVRLittleEndian, generate_uid

from conftest import clean_env

#: the zeros each bomb inflates to
BOMB_BYTES = 1 << 30
#: the ingest process's peak resident memory must stay under this (a bomb inflated whole takes more
#: than BOMB_BYTES; an ordinary ingest of a few files takes about 150 MiB)
PEAK_LIMIT_MIB = 400

#: ``python -m radcommons ARGS`` in this process, then its peak resident memory (VmHWM, KiB) written to
#: the file named first. Not ru_maxrss: Linux carries the peak of the (large) test worker over a fork.
_MEASURED = """
import sys
from radcommons.cli import main
peak_file, sys.argv = sys.argv[1], ["radcommons", *sys.argv[2:]]
try:
    main()
finally:
    status = open("/proc/self/status").read()
    open(peak_file, "w").write(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))
"""


def _long_element(tag: int, vr: bytes, length: int) -> bytes:
    """The header of an explicit VR little endian element with a 4-byte length (PS3.5 7.1.2)."""
    return struct.pack("<HH2s2xL", tag >> 16, tag & 0xFFFF, vr, length)


def _deflated_copy(source: Path) -> Dataset:
    ds = pydicom.dcmread(source)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(prefix=None)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    return ds


def _write_zeros(out: BinaryIO, compressor: "zlib._Compress", count: int) -> None:
    """``count`` zero bytes (a multiple of 1 MiB) into the deflate stream of ``compressor``, a MiB
    compressed once and its blocks written again: each ends at a full flush, so it refers to no byte
    before it. The test never holds more than a MiB of them."""
    block = compressor.compress(bytes(1 << 20)) + compressor.flush(zlib.Z_FULL_FLUSH)
    for _ in range(count >> 20):
        out.write(block)


def _write_bomb(source: Path, target: Path, before: bytes, after: bytes) -> None:
    """``source`` deflated without its Pixel Data, then the elements ``before`` (ending with the
    header of an element of BOMB_BYTES), BOMB_BYTES zeros, then ``after``: one valid deflate stream."""
    ds = _deflated_copy(source)
    del ds.PixelData
    raw = io.BytesIO()
    ds.save_as(raw, enforce_file_format=False)
    meta_end = 144 + pydicom.dcmread(io.BytesIO(raw.getvalue())).file_meta.FileMetaInformationGroupLength
    body = zlib.decompress(raw.getvalue()[meta_end:], -zlib.MAX_WBITS)
    compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    with open(target, "wb") as out:
        out.write(raw.getvalue()[:meta_end])
        out.write(compressor.compress(body + before) + compressor.flush(zlib.Z_FULL_FLUSH))
        _write_zeros(out, compressor, BOMB_BYTES)
        out.write(compressor.compress(after) + compressor.flush())


def test_deflate_bomb_is_rejected_without_inflating_it(deid_tree: Path, tmp_path: Path, run_cli) -> None:
    source = next(p for p in sorted(deid_tree.rglob("*.dcm"))
                  if pydicom.dcmread(p, stop_before_pixels=True).Modality == "CT")
    pixels = pydicom.dcmread(source).PixelData
    pixel_element = _long_element(0x7FE00010, b"OW", len(pixels)) + pixels
    tree = tmp_path / "tree"
    tree.mkdir()
    _deflated_copy(source).save_as(tree / "deflated.dcm", enforce_file_format=False)
    whole = (tree / "deflated.dcm").read_bytes()
    (tree / "deflated-cut-short.dcm").write_bytes(whole[:-200])
    # Pixel Data of a GiB where the header describes Rows x Columns x 16 bits.
    _write_bomb(source, tree / "bomb-pixel-data.dcm", _long_element(0x7FE00010, b"OW", BOMB_BYTES), b"")
    # A private OB element of a GiB before a Pixel Data of the right size.
    creator = struct.pack("<HH2sH", 0x7FD1, 0x0010, b"LO", 14) + b"BOMB HOSPITAL "
    _write_bomb(source, tree / "bomb-private.dcm", creator + _long_element(0x7FD11000, b"OB", BOMB_BYTES),
                pixel_element)
    assert all(path.stat().st_size < 8 << 20 for path in tree.iterdir())

    url = f"sqlite:///{tmp_path / 'index.db'}"
    assert run_cli("db", "upgrade", "--url", url).returncode == 0
    peak_file = tmp_path / "peak"
    run = subprocess.run(
        [sys.executable, "-c", _MEASURED, str(peak_file), "ingest", str(tree), "--project", "Gate-D", "--site",
         "SITE_A", "--workers", "1", "--url", url, "--store", str(tmp_path / "objects"), "--report", "report.json"],
        cwd=tmp_path, env=clean_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert "Traceback" not in run.stderr, run.stderr
    peak_mib = int(peak_file.read_text()) / 1024
    assert peak_mib < PEAK_LIMIT_MIB, f"ingest's peak RSS was {peak_mib:.0f} MiB"
    files = {Path(f["path"]).stem: f for f in json.loads((tmp_path / "report.json").read_text())["files"]}
    assert files["deflated"]["status"] == "indexed", files["deflated"]
    cut = files["deflated-cut-short"]
    assert cut["status"] == "rejected" and "truncated" in cut["reason"], cut
    for name in ("bomb-pixel-data", "bomb-private"):
        entry = files[name]
        assert entry["status"] == "rejected", entry
        assert entry["reason"].startswith("deflated data set inflates beyond "), entry
    assert "bytes of pixels its header describes" in files["bomb-pixel-data"]["reason"]
    assert "before its Pixel Data" in files["bomb-private"]["reason"]
