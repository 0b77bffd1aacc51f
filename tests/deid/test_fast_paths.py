"""The fast paths of the engine give the same result as the plain pydicom ones.

* elements the engine keeps stay raw and :func:`write_header` copies their bytes: the file
  equals ``pydicom.dcmwrite`` of the same dataset, byte for byte;
* identifiers and text cleaners are cached per distinct set of identifier values: a
  cache hit never lets another patient's values through;
* outputs of a batch appear under their final names only after the batch is synced
  (:class:`PendingWrites`), so a crash inside a batch leaves no ``.dcm`` behind.
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
from pydicom.dataelem import RawDataElement
from pydicom.filewriter import dcmwrite
from pydicom.uid import ImplicitVRLittleEndian

from radcommons.deid import DEIDENTIFIED, WITHHELD, DeidContext, deidentify_dataset, deidentify_file, load_profile
from radcommons.deid.fileio import PendingWrites, new_file_meta, read_header, write_header
from radcommons.deid.identifiers import collect_identifiers
from radcommons.deid.tree import deidentify_tree

from deid_support import KEY, make_ct, samples_dir, write

RADCOMMONS = str(Path(sys.executable).parent / "radcommons")


def _implicit_ct(path: Path) -> Path:
    ds = make_ct()
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, implicit_vr=True, little_endian=True, enforce_file_format=True)
    return path


def _sources(tmp_path: Path) -> list[Path]:
    paths = [write(make_ct(), tmp_path / "explicit.dcm"), _implicit_ct(tmp_path / "implicit.dcm")]
    paths += [samples_dir() / name for name in ("ctbrain1.dcm", "ctbrain2.dcm") if (samples_dir() / name).exists()]
    return paths


def test_write_header_equals_dcmwrite(tmp_path, context):
    for source in _sources(tmp_path):
        encoded = []
        for _ in range(2):
            header = read_header(source)
            ds = header.dataset
            assert deidentify_dataset(ds, context, pixels_cleaned=False).ok
            ds.file_meta = new_file_meta(ds, header.transfer_syntax)
            ds.preamble = b"\x00" * 128
            encoded.append(ds)
        ours, reference = io.BytesIO(), io.BytesIO()
        write_header(ours, encoded[0], encoded[0].original_encoding[0], encoded[0].original_encoding[1])
        dcmwrite(reference, encoded[1], enforce_file_format=True)
        assert ours.getvalue() == reference.getvalue(), source.name


def test_untouched_elements_stay_raw(tmp_path, context):
    header = read_header(write(make_ct(), tmp_path / "ct.dcm"))
    ds = header.dataset
    deidentify_dataset(ds, context, pixels_cleaned=False)
    raw = {keyword for keyword in ("Rows", "Columns", "BitsAllocated", "PixelSpacing", "KVP")
           if keyword in ds and isinstance(ds.get_item(keyword), pydicom.dataelem.RawDataElement)}
    assert raw == {"Rows", "Columns", "BitsAllocated", "PixelSpacing", "KVP"} & set(ds.dir())


def test_identifier_cache_never_mixes_patients(tmp_path):
    first = read_header(write(make_ct(patient_name="DOE^JOHN"), tmp_path / "a.dcm")).dataset
    same = read_header(write(make_ct(patient_name="DOE^JOHN", sop_uid="1.2.3.4.99"), tmp_path / "b.dcm")).dataset
    other = read_header(write(make_ct(patient_name="ROE^RICHARD"), tmp_path / "c.dcm")).dataset
    ids_first, ids_same, ids_other = (collect_identifiers(d) for d in (first, same, other))
    assert ids_first is ids_same  # one collection for a whole series
    assert "RICHARD" in ids_other.words and "RICHARD" not in ids_first.words
    # end to end: the second patient's name typed into a descriptor is still removed
    ds = make_ct(patient_name="ROE^RICHARD")
    ds.StudyDescription = "CT CHEST for RICHARD ROE"
    ctx = DeidContext(KEY, "SITE_A", load_profile("default"), review_pixels=False)
    outcome = deidentify_file(write(ds, tmp_path / "d.dcm"), tmp_path / "out", ctx)
    assert outcome.status == DEIDENTIFIED
    text = (tmp_path / "out" / outcome.output).read_bytes()
    assert b"RICHARD" not in text and b"ROE" not in text


def test_batch_outputs_appear_only_after_commit(tmp_path, ct_file, context):
    pending = PendingWrites()
    outcome = deidentify_file(ct_file, tmp_path / "out", context, pending=pending)
    target = tmp_path / "out" / outcome.output
    assert outcome.status == DEIDENTIFIED and not target.exists() and len(pending) == 1
    assert [p.name for p in target.parent.iterdir() if p.name.endswith(".partial")]
    pending.commit()
    assert target.exists()
    assert not [p for p in target.parent.iterdir() if p.name.endswith(".partial")]
    assert pydicom.dcmread(target).PatientIdentityRemoved == "YES"


def test_crash_inside_a_batch_leaves_no_output(tmp_path, monkeypatch):
    src = tmp_path / "src"
    for index in range(3):
        write(make_ct(sop_uid=f"1.2.826.0.1.3680043.8.498.77.{index}"), src / f"IM{index}.dcm")
    ctx = DeidContext(KEY, "SITE_A", load_profile("default"), review_pixels=False)
    reference = deidentify_tree(src, tmp_path / "ref", ctx, state_dir=tmp_path / "s0", workers=1)

    def killed(self):
        raise KeyboardInterrupt("killed before the batch was synced")

    monkeypatch.setattr(PendingWrites, "commit", killed)
    with pytest.raises(KeyboardInterrupt):
        deidentify_tree(src, tmp_path / "dst", ctx, state_dir=tmp_path / "s1", workers=1)
    assert not list((tmp_path / "dst").rglob("*.dcm"))
    monkeypatch.undo()
    deidentify_tree(src, tmp_path / "dst", ctx, state_dir=tmp_path / "s1", workers=1)
    outputs = sorted(p.relative_to(tmp_path / "dst") for p in (tmp_path / "dst").rglob("*") if p.is_file())
    assert outputs == sorted(Path(o.output) for o in reference.outcomes)
    for relative in outputs:
        assert (tmp_path / "dst" / relative).read_bytes() == (tmp_path / "ref" / relative).read_bytes()


def test_recognizable_visual_features(tmp_path, context):
    ds = make_ct()
    ds.RecognizableVisualFeatures = "YES"
    outcome = deidentify_file(write(ds, tmp_path / "yes.dcm"), tmp_path / "out", context)
    assert outcome.status == WITHHELD and "(0028,0302)" in outcome.reason
    ds = make_ct(sop_uid="1.2.826.0.1.3680043.8.498.77.9")
    ds.RecognizableVisualFeatures = "NO"
    outcome = deidentify_file(write(ds, tmp_path / "no.dcm"), tmp_path / "out", context)
    assert outcome.status == DEIDENTIFIED
    out = pydicom.dcmread(tmp_path / "out" / outcome.output)
    assert out.RecognizableVisualFeatures == "NO"  # kept as received; 113102 not claimed
    assert "113102" not in {item.CodeValue for item in out.DeidentificationMethodCodeSequence}


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _synth_phi(out: Path) -> Path:
    run = subprocess.run(
        [RADCOMMONS, "synth", str(out), "--sites", "1", "--patients", "3", "--seed", "11", "--small", "--phi"],
        capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stderr
    return out


#: Rows and columns of a reference sample's uncompressed image that the test keeps: the top
#: banner, with the patient's name and ID burned in. OCR of the whole 1024x768 ultrasound
#: frames, in both runs of both profiles, was most of this test's time, and the pixels are no
#: part of the shortcuts compared: both runs clean them alike (the banner's text keeps them
#: cleaned), the shortcuts are in the header, which is copied whole.
SAMPLE_BANNER = (64, 512)


def _copy_sample(sample: Path, target: Path) -> None:
    """``sample`` as an input of the test: an uncompressed image cut to :data:`SAMPLE_BANNER` (pydicom
    writes the samples back byte for byte, so only Rows, Columns and Pixel Data change), others as
    they are."""
    ds = pydicom.dcmread(sample)
    if ds.file_meta.TransferSyntaxUID.is_compressed or "PixelData" not in ds:
        target.write_bytes(sample.read_bytes())
        return
    banner = ds.pixel_array[: SAMPLE_BANNER[0], : SAMPLE_BANNER[1]]
    ds.PixelData = banner.tobytes()
    ds.Rows, ds.Columns = banner.shape[:2]
    ds.save_as(target, enforce_file_format=False)


@pytest.fixture(scope="module")
def phi_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A --phi synth corpus (markers in every identifier, nested and private) and the reference
    samples: made once, only read by the tests."""
    src = tmp_path_factory.mktemp("fast-paths") / "src"
    _synth_phi(src / "synth")
    (src / "samples").mkdir()
    for sample in sorted(samples_dir().glob("*.dcm")):
        _copy_sample(sample, src / "samples" / sample.name)
    return src


@pytest.mark.parametrize("profile", ["default", "basic"])
def test_fast_paths_equal_reference_path_byte_for_byte(tmp_path, phi_source, profile):
    """The shortcuts (kept text judged undecoded, strings and sequences packed with struct)
    write exactly what the plain pydicom path writes, over a --phi synth corpus (markers in
    every identifier, nested and private) and the reference samples."""
    src = phi_source
    trees = {}
    for fast in (True, False):
        context = DeidContext(key=KEY, site="SITE_A", profile=load_profile(profile), fast_paths=fast)
        dst = tmp_path / f"out-{fast}"
        report = deidentify_tree(src, dst, context, state_dir=tmp_path / f"state-{fast}", workers=1)
        assert report.counts()["deidentified"] >= 10
        trees[fast] = _tree_bytes(dst)
    assert trees[True].keys() == trees[False].keys()
    assert len(trees[True]) >= 10
    for name, data in trees[False].items():
        assert trees[True][name] == data, name


def test_fast_path_leaves_clean_kept_text_raw(tmp_path, context):
    """Kept text without identifiers is judged on its raw bytes and never decoded;
    text carrying the patient's name is decoded and scrubbed (the test above shows the
    bytes equal the reference path's either way)."""
    ds = make_ct()
    ds.SeriesDescription = "AXIAL 1.25mm"  # unlisted text: safety net only
    ds.StudyDescription = f"CT CHEST for {ds.PatientName.family_name}"  # kept, cleaned
    header = read_header(write(ds, tmp_path / "ct.dcm"))
    assert deidentify_dataset(header.dataset, context, pixels_cleaned=False).ok
    assert isinstance(header.dataset.get_item(0x0008103E), RawDataElement)
    assert not isinstance(header.dataset.get_item(0x00081030), RawDataElement)
    assert ds.PatientName.family_name not in str(header.dataset.StudyDescription)
    reference = read_header(write(ds, tmp_path / "ct2.dcm"))
    slow = DeidContext(key=KEY, site=context.site, profile=context.profile, fast_paths=False)
    assert deidentify_dataset(reference.dataset, slow, pixels_cleaned=False).ok
    assert not isinstance(reference.dataset.get_item(0x0008103E), RawDataElement)
