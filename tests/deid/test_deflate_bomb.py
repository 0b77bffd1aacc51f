"""A Deflated Explicit VR Little Endian file (PS3.5 A.5: the data set after the File Meta is one deflate
stream) through ``radcommons deid``: a few MB of deflated zeros inflate to a GiB (a decompression bomb),
which the site's de-identification read whole in memory with pydicom (the header, then the whole file),
and so did ``contribute`` and the DIMSE gateway, which de-identify through the same reader. Such a file
is now rejected once it inflates beyond what its header describes, with the bound in the reason, and the
process stays small; a deflated file as pydicom writes it is still de-identified as it was.
"""

from __future__ import annotations

from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import DeflatedExplicitVRLittleEndian

from radcommons.deid.fileio import BadInput, read_full, read_header

from deflate_support import BOMB_BYTES, long_element, measured_deid, private_bomb_header, write_bomb
from deid_support import PATIENT_ID, make_ct

#: the deid process's peak resident memory must stay under this (a bomb inflated whole takes more than
#: BOMB_BYTES; an ordinary deid of a few files takes about 150 MiB)
PEAK_LIMIT_MIB = 400


def _deflated_ct(sop_uid: str, *, trailing: bool = False) -> Dataset:
    ds = make_ct(sop_uid=sop_uid, rows=64)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    if trailing:  # a private group after the Pixel Data (PS3.5 7.8.1)
        ds.add_new(0x7FE10010, "LO", "SITE PRIVATE")
        ds.add_new(0x7FE11001, "LO", "note by DOE^JOHN")
    return ds


def _write_tree(src: Path) -> None:
    src.mkdir()
    _deflated_ct("1.2.826.0.1.3680043.8.498.71", trailing=True).save_as(src / "deflated.dcm", enforce_file_format=True)
    whole = (src / "deflated.dcm").read_bytes()
    (src / "deflated-cut-short.dcm").write_bytes(whole[:-200])
    # Pixel Data of a GiB where the header describes 64 x 64 x 16 bits.
    ds = _deflated_ct("1.2.826.0.1.3680043.8.498.72")
    del ds.PixelData
    write_bomb(ds, src / "bomb-pixel-data.dcm", long_element(0x7FE00010, b"OW", BOMB_BYTES), b"")
    # A private OB element of a GiB before a Pixel Data of the right size.
    ds = _deflated_ct("1.2.826.0.1.3680043.8.498.73")
    pixels = ds.PixelData
    del ds.PixelData
    write_bomb(ds, src / "bomb-private.dcm", private_bomb_header(),
               long_element(0x7FE00010, b"OW", len(pixels)) + pixels)
    assert all(path.stat().st_size < 8 << 20 for path in src.iterdir())


def test_deflate_bomb_is_rejected_by_deid_without_inflating_it(tmp_path: Path) -> None:
    _write_tree(tmp_path / "src")
    run, peak, report = measured_deid(tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert peak < PEAK_LIMIT_MIB, f"deid's peak RSS was {peak:.0f} MiB"
    files = {Path(f["input"]).stem: f for f in report}
    good = files["deflated"]
    assert good["outcome"] == "deidentified", good
    output = pydicom.dcmread(tmp_path / "dst" / good["output"])
    assert output.file_meta.TransferSyntaxUID == DeflatedExplicitVRLittleEndian
    assert output.PixelData == pydicom.dcmread(tmp_path / "src" / "deflated.dcm").PixelData
    assert PATIENT_ID not in str(output) and "DOE" not in str(output)
    cut = files["deflated-cut-short"]
    assert cut["outcome"] == "rejected" and cut["reason"].startswith("truncated"), cut
    for name in ("bomb-pixel-data", "bomb-private"):
        entry = files[name]
        assert entry["outcome"] == "rejected", entry
        assert entry["reason"].startswith("deflated data set inflates beyond "), entry
        assert "Explicit VR Little Endian" in entry["reason"], entry  # what to do
    assert "bytes of pixels its header describes" in files["bomb-pixel-data"]["reason"]
    assert "before its Pixel Data" in files["bomb-private"]["reason"]


def test_deflated_file_reads_as_pydicom_reads_it(tmp_path: Path) -> None:
    """The header and the whole data set read a chunk at a time are the ones pydicom's reader gives
    (the elements after the Pixel Data included), so a deflated input is de-identified as before."""
    path = tmp_path / "deflated.dcm"
    _deflated_ct("1.2.826.0.1.3680043.8.498.74", trailing=True).save_as(path, enforce_file_format=True)
    reference = pydicom.dcmread(path)
    full = read_full(path)
    assert full == reference
    assert full.file_meta == reference.file_meta and full.preamble == reference.preamble
    assert full.original_encoding == reference.original_encoding
    assert full.original_character_set == reference.original_character_set
    header = read_header(path)  # a deflated file is read whole, once: read_full hands that on
    assert not header.streamable
    assert header.dataset == reference
    assert read_full(path, header) is header.dataset
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(path.read_bytes()[:-200])
    try:
        read_full(cut)
    except BadInput as error:
        assert str(error).startswith("truncated: the deflated data set ends early"), error
    else:
        raise AssertionError("a deflated file cut short was read")
