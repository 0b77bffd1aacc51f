"""What a deflated (PS3.5 A.5) or plain input may hold that the site's de-identification reads whole:
a deflated data set is held in memory, so a header that describes terabytes of pixels must not let a
few MB of deflated zeros inflate to GBs there; and the elements after the Pixel Data may not exceed
what the commons' verification gate reads (TRAILING_MAX), or the commons quarantines the site's output.
"""

from __future__ import annotations

import io
import random
import tracemalloc
import zlib
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import DeflatedExplicitVRLittleEndian

from radcommons.deid import DEIDENTIFIED, REJECTED, deidentify_file
from radcommons.dicom.deflated import WHOLE_MAX, WHOLE_RATIO_MAX, Inflated
from radcommons.dicom.elements import TRAILING_MAX
from radcommons.pipelines.examine import read_header as gate_header

from deflate_support import BOMB_BYTES, long_element, measured_deid, private_bomb_header, write_bomb
from deid_support import make_ct, write

#: a deid run's peak resident memory with the bomb below (held whole it takes more than BOMB_BYTES)
PEAK_LIMIT_MIB = 400


def _forged_bomb(path: Path) -> None:
    """A deflated CT whose header describes 65535 x 65535 x 1000 frames of 16 bits (8.6 TB), so that
    its Pixel Data of BOMB_BYTES deflated zeros (about 1 MB in the file) is within what it describes."""
    ds = make_ct(sop_uid="1.2.826.0.1.3680043.8.498.81", rows=64)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.Rows = ds.Columns = 65535
    ds.NumberOfFrames = 1000
    del ds.PixelData
    write_bomb(ds, path, long_element(0x7FE00010, b"OW", BOMB_BYTES), b"")


def test_a_forged_header_does_not_make_deid_hold_the_bomb(tmp_path: Path) -> None:
    """Read whole into memory, the data set may inflate to no more than WHOLE_RATIO_MAX times its
    file's size whatever its header describes: the bomb is refused with that bound, and the run
    stays small (before, the GiB of zeros was inflated, and copied twice, in memory)."""
    src = tmp_path / "src"
    src.mkdir()
    _forged_bomb(src / "forged.dcm")
    size = (src / "forged.dcm").stat().st_size
    assert size * WHOLE_RATIO_MAX < BOMB_BYTES // 4
    run, peak, [entry] = measured_deid(tmp_path)
    assert run.returncode == 1, run.stdout + run.stderr  # nothing de-identified
    assert peak < PEAK_LIMIT_MIB, f"deid's peak RSS was {peak:.0f} MiB"
    assert entry["outcome"] == "rejected", entry
    assert entry["reason"].startswith("deflated data set inflates beyond "), entry
    assert f"held whole in memory ({WHOLE_RATIO_MAX} times the file's {size} bytes" in entry["reason"], entry
    assert "Explicit VR Little Endian" in entry["reason"], entry  # what to do


def test_a_deflated_file_without_the_dicm_prefix_is_refused_uninflated(tmp_path: Path) -> None:
    """A file that starts with its File Meta naming Deflated Explicit VR Little Endian, with no
    preamble and "DICM" (PS3.10 7.1), went to pydicom's reader (force), which inflated its data set
    whole: the GiB of zeros was held, and accepted. It is refused with the reason, uninflated, as the
    commons' gate refuses it."""
    src = tmp_path / "src"
    src.mkdir()
    ds = make_ct(sop_uid="1.2.826.0.1.3680043.8.498.83", rows=64)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    del ds.PixelData
    write_bomb(ds, src / "bare.dcm", private_bomb_header(), b"", prefix=False)
    assert (src / "bare.dcm").read_bytes()[:2] == b"\x02\x00"  # (0002,0000) first
    assert gate_header(str(src / "bare.dcm")) == "not a DICOM Part 10 file (no DICM preamble)"
    run, peak, [entry] = measured_deid(tmp_path)
    assert run.returncode == 1, run.stdout + run.stderr  # nothing de-identified
    assert peak < PEAK_LIMIT_MIB, f"deid's peak RSS was {peak:.0f} MiB"
    assert entry["outcome"] == "rejected", entry
    assert entry["reason"].startswith("a deflated data set without the DICM prefix"), entry
    assert "Explicit VR Little Endian" in entry["reason"], entry  # what to do


def test_a_data_set_held_whole_inflates_to_no_more_than_whole_max(tmp_path: Path) -> None:
    """A deflated image of 600 MiB of pixels, as its header says, in a file of 7 MiB and more (so 100
    times its size allows it): held whole, pydicom's copy of it doubles it (400 MB took 855 MB), in
    each worker. The 2 GiB WHOLE_MAX let it in; 512 MiB refuses it, and the run stays below 1 GiB."""
    src = tmp_path / "src"
    src.mkdir()
    pixels = 600 << 20
    ds = make_ct(sop_uid="1.2.826.0.1.3680043.8.498.84", rows=64)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.Rows = ds.Columns = 512
    ds.NumberOfFrames = pixels // (512 * 512 * 2)
    ds.add_new(0x00291010, "OB", random.Random(84).randbytes(7 << 20))  # barely deflates
    del ds.PixelData
    write_bomb(ds, src / "large.dcm", long_element(0x7FE00010, b"OW", pixels), b"", zeros=pixels)
    size = (src / "large.dcm").stat().st_size
    assert WHOLE_MAX < pixels < WHOLE_RATIO_MAX * size
    run, peak, [entry] = measured_deid(tmp_path)
    assert run.returncode == 1, run.stdout + run.stderr  # nothing de-identified
    assert peak < 1024, f"deid's peak RSS was {peak:.0f} MiB"
    assert entry["outcome"] == "rejected", entry
    assert entry["reason"].startswith(f"deflated data set inflates beyond {-(-WHOLE_MAX // 1000000)} MB: "
                                      f"more than {WHOLE_MAX} bytes held whole in memory"), entry


def _with_trailing(length: int, *, deflated: bool) -> Dataset:
    """A CT with a private group after its Pixel Data (PS3.5 7.8.1) of ``length`` bytes in all."""
    ds = make_ct(sop_uid=f"1.2.826.0.1.3680043.8.498.82{length}{int(deflated)}", rows=64)
    if deflated:
        ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.add_new(0x7FE10010, "LO", "SITE PRIVATE")  # 8 + 12 bytes
    ds.add_new(0x7FE11001, "OB", bytes(length - 20 - 12))
    return ds


@pytest.mark.parametrize("deflated", [False, True], ids=["plain", "deflated"])
def test_deid_refuses_what_the_gate_refuses_after_the_pixel_data(tmp_path: Path, deflated: bool, context) -> None:
    """TRAILING_MAX bytes of elements after the Pixel Data pass both deid and the gate; one more
    KiB is refused by deid with the reason (it took up to 64 MiB, which the gate quarantined)."""
    for length, status in ((TRAILING_MAX, DEIDENTIFIED), (TRAILING_MAX + 1024, REJECTED)):
        source = write(_with_trailing(length, deflated=deflated), tmp_path / f"in-{length}.dcm")
        assert isinstance(gate_header(str(source)), Dataset) == (status == DEIDENTIFIED)
        outcome = deidentify_file(source, tmp_path / "out", context)
        assert outcome.status == status, outcome.reason
        if status == REJECTED:
            assert outcome.reason == (
                f"{length} bytes of elements after the Pixel Data (more than {TRAILING_MAX}, which the commons' "
                "verification gate refuses): remove them (digital signatures, private groups, padding) and run "
                "again"), outcome.reason
        else:
            assert isinstance(gate_header(str(tmp_path / "out" / outcome.output)), Dataset)


def test_an_element_read_whole_is_copied_once_and_held_once() -> None:
    """A large element read from the inflated stream (pixel data, read whole by deid) costs its bytes
    once besides the inflated buffer while read (a bytearray slice, then bytes of it, cost two copies),
    and once after (the buffer forgets what lies behind the position)."""
    length = 64 << 20
    compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    deflated = compressor.compress(bytes(length)) + compressor.flush()
    stream = Inflated(io.BytesIO(deflated), len(deflated), length)
    tracemalloc.start()
    try:
        data = stream.read(length)
        held, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(data) == length and not any(data[::4096])
    assert peak < 2.5 * length, f"{peak / length:.2f} x the element while it was read"
    assert held < 1.1 * length, f"{held / length:.2f} x the element held after it was read"
