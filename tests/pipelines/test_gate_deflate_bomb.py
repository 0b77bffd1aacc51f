"""A Deflated Explicit VR Little Endian file (PS3.5 A.5: the data set after the File Meta is one deflate
stream) through ``radcommons ingest``: a few MB of deflated zeros inflate to a GiB (a decompression
bomb), which the verification gate inflated whole in memory, twice (pydicom's header read, then the
read past the Pixel Data). Such a file is now rejected once it inflates beyond what its header describes,
and the ingest process stays small; a deflated file as pydicom writes it is still indexed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import DeflatedExplicitVRLittleEndian, generate_uid

from deflate_support import BOMB_BYTES, MEASURED, long_element, peak_mib, private_bomb_header, write_bomb

#: the ingest process's peak resident memory must stay under this (a bomb inflated whole takes more
#: than BOMB_BYTES; an ordinary ingest of a few files takes about 150 MiB)
PEAK_LIMIT_MIB = 400


@pytest.fixture
def clean_env(request: pytest.FixtureRequest) -> Callable[..., dict[str, str]]:
    """``clean_env`` of tests/conftest.py. Not ``from conftest import clean_env``: with other folders'
    tests in the run, ``conftest`` is whichever folder's conftest.py pytest imported last (pytest
    registers each under its path)."""
    return request.config.pluginmanager.get_plugin(str(Path(__file__).parents[1] / "conftest.py")).clean_env


def _deflated_copy(source: Path) -> Dataset:
    ds = pydicom.dcmread(source)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(prefix=None)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    return ds


def _write_bomb(source: Path, target: Path, before: bytes, after: bytes) -> None:
    """``source`` deflated without its Pixel Data, then a bomb (:func:`deflate_support.write_bomb`)."""
    ds = _deflated_copy(source)
    del ds.PixelData
    write_bomb(ds, target, before, after)


def test_deflate_bomb_is_rejected_without_inflating_it(deid_tree: Path, tmp_path: Path, run_cli,
                                                      clean_env: Callable[..., dict[str, str]]) -> None:
    source = next(p for p in sorted(deid_tree.rglob("*.dcm"))
                  if pydicom.dcmread(p, stop_before_pixels=True).Modality == "CT")
    pixels = pydicom.dcmread(source).PixelData
    pixel_element = long_element(0x7FE00010, b"OW", len(pixels)) + pixels
    tree = tmp_path / "tree"
    tree.mkdir()
    _deflated_copy(source).save_as(tree / "deflated.dcm", enforce_file_format=False)
    whole = (tree / "deflated.dcm").read_bytes()
    (tree / "deflated-cut-short.dcm").write_bytes(whole[:-200])
    # Pixel Data of a GiB where the header describes Rows x Columns x 16 bits.
    _write_bomb(source, tree / "bomb-pixel-data.dcm", long_element(0x7FE00010, b"OW", BOMB_BYTES), b"")
    # A private OB element of a GiB before a Pixel Data of the right size.
    _write_bomb(source, tree / "bomb-private.dcm", private_bomb_header(), pixel_element)
    assert all(path.stat().st_size < 8 << 20 for path in tree.iterdir())

    url = f"sqlite:///{tmp_path / 'index.db'}"
    assert run_cli("db", "upgrade", "--url", url).returncode == 0
    peak_file = tmp_path / "peak"
    run = subprocess.run(
        [sys.executable, "-c", MEASURED, str(peak_file), "ingest", str(tree), "--project", "Gate-D", "--site",
         "SITE_A", "--workers", "1", "--url", url, "--store", str(tmp_path / "objects"), "--report", "report.json"],
        cwd=tmp_path, env=clean_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert "Traceback" not in run.stderr, run.stderr
    peak = peak_mib(peak_file)
    assert peak < PEAK_LIMIT_MIB, f"ingest's peak RSS was {peak:.0f} MiB"
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
