"""``radcommons export`` end to end on a small ingested commons (see conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pyarrow.parquet as pq
import pydicom
import pytest
from export_support import OPEN, SEQUESTERED, Commons, radcommons
from ct_support import DCM2NIIX, dcm2niix

from radcommons.errors import UserError
from radcommons.pipelines.export import export_cohort, export_scope
from radcommons.store.index import make_engine
from radcommons.store.objects import ObjectStore

SPLIT = {"train": 0.5, "val": 0.25, "test": 0.25}


def _export(commons: Commons, dest: Path, format: str, **kwargs: object):  # type: ignore[no-untyped-def]
    engine = make_engine(commons.db_url)
    try:
        return export_cohort(engine, ObjectStore(commons.store_url), commons.cohort_id, dest, format=format,
                             scope=export_scope(engine, as_admin=True), weights=SPLIT, stratify=("sex",), seed=1,
                             **kwargs)  # type: ignore[arg-type]
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def dicom_export(commons: Commons, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    dest = tmp_path_factory.mktemp("dicom") / "out"
    return dest, _export(commons, dest, "dicom")


def test_dicom_tree_manifest_and_labels(dicom_export) -> None:  # type: ignore[no-untyped-def]
    dest, report = dicom_export
    assert not report.failures and report.rows
    manifest = json.loads((dest / "manifest.json").read_text())
    assert len(manifest) == len(report.rows) == len(list(dest.rglob("*.dcm")))
    for entry in manifest:
        path = dest / entry["file"]
        assert path.stat().st_size == entry["size"]
        assert entry["sha256"] == entry["object_id"]
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert ds.SOPInstanceUID == entry["sop_instance_uid"] and ds.SeriesInstanceUID == entry["series_uid"]
        assert Path(entry["file"]).parts[0] == OPEN  # case/study/series tree under the project
    assert (dest / "manifest.csv").read_text().splitlines()[0].startswith("file,object_id,sha256,size")


def test_label_table_columns_and_patient_level_splits(dicom_export) -> None:  # type: ignore[no-untyped-def]
    dest, report = dicom_export
    table = pq.read_table(dest / "labels.parquet").to_pylist()
    assert len(table) == len(report.rows)
    columns = set(table[0])
    for column in ("file", "split", "case_submitter_id", "age_at_index", "sex", "race", "ethnicity",
                   "covid19_positive", "days_from_study_to_pos_covid_test", "days_from_study_to_neg_covid_test",
                   "loinc_code", "loinc_long_common_name", "study_uid", "series_uid", "modality",
                   "sop_instance_uid"):
        assert column in columns, column
    split_of: dict[str, set[str]] = {}
    for row in table:
        split_of.setdefault(row["case_submitter_id"], set()).add(row["split"])
        assert row["split"] in SPLIT
    assert all(len(s) == 1 for s in split_of.values())  # never one patient in two splits
    assert (dest / "labels.csv").read_text().splitlines()[0].startswith("file,split,")


def test_sequestered_members_are_not_exported(dicom_export, commons: Commons) -> None:  # type: ignore[no-untyped-def]
    dest, report = dicom_export
    assert {row["project_id"] for row in report.rows} == {OPEN}
    assert commons.sequestered_patient not in {row["case_submitter_id"] for row in report.rows}
    assert not (dest / SEQUESTERED).exists()
    assert sum(report.excluded.values()) > 0
    readme = (dest / "README.md").read_text()
    assert "excluded" in readme and SEQUESTERED in readme
    assert commons.cohort_id in readme and "Caveats" in readme and "shifted" in readme
    assert "| train |" in readme and "### covid19_positive" in readme and "### age_bin" in readme


def test_rerun_rewrites_nothing(dicom_export, commons: Commons) -> None:  # type: ignore[no-untyped-def]
    dest, _ = dicom_export
    before = {p: p.stat().st_mtime_ns for p in dest.rglob("*.dcm")}
    again = _export(commons, dest, "dicom")
    assert again.written == 0 and again.kept == len(before)
    assert {p: p.stat().st_mtime_ns for p in dest.rglob("*.dcm")} == before


def test_a_killed_exports_half_copies_go_and_one_export_runs_at_a_time(dicom_export, commons: Commons,
                                                                       held_elsewhere) -> None:  # type: ignore[no-untyped-def]
    """A killed export left its half-written copies (.NAME.dcm.<hex>.partial) in DEST for good; two
    exports into one DEST at once are now one after the other (the second is refused)."""
    dest, _ = dicom_export
    victim = sorted(dest.rglob("*.dcm"))[0]
    half = victim.parent / f".{victim.name}.0123456789abcdef0123456789abcdef.partial"
    half.write_bytes(victim.read_bytes()[:1000])
    victim.unlink()
    with held_elsewhere(dest):  # an export still running, as far as DEST can tell
        with pytest.raises(UserError, match="in use by another export"):
            _export(commons, dest, "dicom")
        assert half.exists()  # not removed under a running export's feet
    resumed = _export(commons, dest, "dicom")
    assert resumed.written == 1 and not list(dest.rglob("*.partial")) and victim.exists()


def test_a_folder_of_other_files_or_of_another_export_is_refused(dicom_export, commons: Commons,
                                                                  tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """An export wrote into any folder: it overwrote a README.md and labels.csv that were not its
    own, and a second export with other options kept the first one's files beside its own (the
    datasheet then described options the files did not have)."""
    dest, _ = dicom_export
    before = {p: p.stat().st_mtime_ns for p in dest.rglob("*") if p.is_file()}
    with pytest.raises(UserError, match=r"holds an export made with other settings \(bits, format\)"):
        _export(commons, dest, "png")
    with pytest.raises(UserError, match=r"other settings \(seed\)"):
        engine = make_engine(commons.db_url)
        try:
            export_cohort(engine, ObjectStore(commons.store_url), commons.cohort_id, dest, format="dicom",
                          scope=export_scope(engine, as_admin=True), weights=SPLIT, stratify=("sex",), seed=2)
        finally:
            engine.dispose()
    assert {p: p.stat().st_mtime_ns for p in dest.rglob("*") if p.is_file()} == before  # nothing written
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "README.md").write_text("my notes")
    with pytest.raises(UserError, match="holds no RadCommons export") as refused:
        _export(commons, notes, "dicom")
    assert "new or empty folder" in refused.value.hint
    assert [p.name for p in notes.iterdir()] == ["README.md"] and (notes / "README.md").read_text() == "my notes"
    for empty in ("", "."):
        with pytest.raises(UserError, match="empty or the current folder"):
            _export(commons, Path(empty), "dicom")


@pytest.mark.skipif(not DCM2NIIX.exists(), reason="dcm2niix binary not installed")
def test_nifti_matches_dcm2niix_on_every_ct_series(commons: Commons, tmp_path: Path) -> None:
    dest = tmp_path / "nifti"
    report = _export(commons, dest, "nifti")
    assert not report.failures
    volumes = [row for row in report.rows if row["modality"] == "CT"]
    assert volumes
    for row in volumes:
        ours = nib.load(dest / row["file"])
        sidecar = json.loads((dest / row["file"].replace(".nii.gz", ".json")).read_text())
        assert sidecar["Modality"] == "CT" and "ConvolutionKernel" in sidecar and "ImageOrientationPatientDICOM" in sidecar
        source = tmp_path / "src" / row["series_uid"]
        source.mkdir(parents=True)
        for path in commons.deid.rglob("*.dcm"):
            if pydicom.dcmread(path, stop_before_pixels=True).SeriesInstanceUID == row["series_uid"]:
                (source / path.name).symlink_to(path)
        (reference_path,) = [p for p in dcm2niix(source, tmp_path / "d2n" / row["series_uid"]) if "_" not in p.name]
        reference = nib.load(reference_path)
        assert ours.shape == reference.shape
        assert np.allclose(ours.affine, reference.affine, atol=1e-3)
        assert ours.get_data_dtype() == np.int16
        assert np.array_equal(np.asarray(ours.dataobj), reference.get_fdata())
    before = {p: p.stat().st_mtime_ns for p in dest.rglob("*.nii.gz")}
    assert _export(commons, dest, "nifti").written == 0
    assert {p: p.stat().st_mtime_ns for p in dest.rglob("*.nii.gz")} == before


def test_png_of_radiographs(commons: Commons, tmp_path: Path) -> None:
    dest = tmp_path / "png"
    report = _export(commons, dest, "png", bits=16, size=128)
    assert not report.failures
    cr = [row for row in report.rows if row["modality"] in ("CR", "DX")]
    assert cr and all(row["bits"] == 16 for row in cr)
    assert any(row["inverted"] for row in cr)  # the synthetic CRs are MONOCHROME1
    from PIL import Image

    for row in cr:
        image = np.asarray(Image.open(dest / row["file"]))
        assert max(image.shape) == 128 and row["window_source"] in ("window", "voi_lut", "percentile")
    before = {p: p.stat().st_mtime_ns for p in dest.rglob("*.png")}
    assert _export(commons, dest, "png", bits=16, size=128).written == 0
    assert {p: p.stat().st_mtime_ns for p in dest.rglob("*.png")} == before


def test_bad_input_is_a_user_error(commons: Commons, tmp_path: Path) -> None:
    engine = make_engine(commons.db_url)
    store = ObjectStore(commons.store_url)
    scope = export_scope(engine, as_admin=True)
    try:
        with pytest.raises(UserError, match="no cohort"):
            export_cohort(engine, store, "rc-cohort-000000000000", tmp_path / "x", format="dicom", scope=scope)
        (tmp_path / "file").write_text("")
        with pytest.raises(UserError, match="not a folder"):
            export_cohort(engine, store, commons.cohort_id, tmp_path / "file", format="dicom", scope=scope)
        with pytest.raises(UserError, match="unsupported format"):
            export_cohort(engine, store, commons.cohort_id, tmp_path / "y", format="jpeg", scope=scope)
        with pytest.raises(UserError, match="--bits must be 8 or 16"):
            export_cohort(engine, store, commons.cohort_id, tmp_path / "z", format="png", bits=12, scope=scope)
        assert not (tmp_path / "y").exists() and not (tmp_path / "z").exists()  # refused before it was made
    finally:
        engine.dispose()


def test_cli(commons: Commons, tmp_path: Path) -> None:
    env = {"RADCOMMONS_DATABASE_URL": commons.db_url, "RADCOMMONS_OBJECT_STORE_URL": commons.store_url}
    done = radcommons("export", commons.cohort_id, str(tmp_path / "out"), "--format", "png", "--split",
                      "train=0.8,test=0.2", "--stratify", "covid19_positive,sex", "--workers", "2", "--as-admin", cwd=tmp_path,
                      env=env)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "labels.parquet").exists()
    bad = radcommons("export", "rc-cohort-nope", str(tmp_path / "o2"), "--as-admin", cwd=tmp_path, env=env)
    assert bad.returncode == 2 and "no cohort" in bad.stderr and "Traceback" not in bad.stderr
    bad = radcommons("export", commons.cohort_id, str(tmp_path / "o3"), "--format", "tiff", cwd=tmp_path, env=env)
    assert bad.returncode == 2 and "unsupported format" in bad.stderr
