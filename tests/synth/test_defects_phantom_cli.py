"""Defects, phantom signal, package data, and the command line."""

from __future__ import annotations

import glob
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.errors import InvalidDicomError

from radcommons.errors import UserError
from radcommons.synth import phantom
from radcommons.synth.generate import generate
from radcommons.synth.reference import derive_demographics, demographics

REPO = Path(__file__).resolve().parents[2]
RADCOMMONS = Path(sys.executable).parent / "radcommons"


def test_defects_are_present_and_listed(defects_corpus) -> None:
    out, _ = defects_corpus
    listed = json.loads((out / "defects_manifest.json").read_text())["defects"]
    kinds = {d["kind"] for d in listed}
    assert kinds == {"truncated_dicom", "not_dicom", "zero_bytes", "dicomdir", "duplicate_instance", "bad_clinical_value"}
    for defect in listed:
        path = out / defect["path"]
        assert path.is_file(), defect
        if defect["kind"] == "zero_bytes":
            assert path.stat().st_size == 0
        elif defect["kind"] == "not_dicom":
            assert path.read_bytes()[:3] == b"\xff\xd8\xff"
        elif defect["kind"] == "duplicate_instance":
            assert path.read_bytes() == (out / defect["copy_of"]).read_bytes()
        elif defect["kind"] == "truncated_dicom":
            assert 0 < path.stat().st_size < (out / defect["copy_of"]).stat().st_size
        elif defect["kind"] == "dicomdir" and path.name == "DICOMDIR":
            assert dcmread(path).file_meta.MediaStorageSOPClassUID == "1.2.840.10008.1.3.10"
        elif defect["kind"] == "bad_clinical_value":
            assert defect["value"] in path.read_text()
    with pytest.raises(InvalidDicomError):
        dcmread(next(out / d["path"] for d in listed if d["kind"] == "not_dicom"))


def test_covid_lungs_are_denser_than_normal_lungs() -> None:
    z = np.arange(0.0, 300.0, 20.0)
    mask = phantom.lung_mask_ct(96, 96, 3.75, z)
    normal = phantom.chest_ct_hu(96, 96, 3.75, z, np.random.default_rng(1))
    covid = phantom.chest_ct_hu(96, 96, 3.75, z, np.random.default_rng(1),
                                phantom.covid_opacities(np.random.default_rng(2)))
    assert covid[mask].mean() > normal[mask].mean() + 30
    assert -560 <= np.percentile(covid[mask], 99.5) <= -250
    assert -900 < np.median(normal[mask]) < -780
    xr_normal = phantom.chest_radiograph(256, 210, 1.6, "PA", np.random.default_rng(3))
    xr_covid = phantom.chest_radiograph(256, 210, 1.6, "PA", np.random.default_rng(3),
                                        phantom.covid_opacities(np.random.default_rng(2)))
    assert phantom.lung_zone_mean(xr_covid) > phantom.lung_zone_mean(xr_normal) + 50


def test_shipped_demographics_match_the_midrc_export() -> None:
    sources = sorted(glob.glob(str(REPO.parent / "shared/ref/representativeness/midrc_data_download-*.tsv")))
    if not sources:
        pytest.skip("shared/ref reference data not available")
    shipped = json.loads((REPO / "src/radcommons/synth/data/demographics.json").read_text())
    assert derive_demographics(Path(s) for s in sources)["marginals"] == shipped["marginals"]
    assert set(demographics()["sex"].values) == {"Female", "Male", "Not Reported"}


def test_bad_arguments_raise_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError):
        generate(tmp_path / "x", 0, 1, 1, small=True)
    with pytest.raises(UserError):
        generate(tmp_path / "x", 1, 0, 1, small=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError):
        generate(tmp_path / "file", 1, 1, 1, small=True)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    with pytest.raises(UserError):
        generate(tmp_path / "full", 1, 1, 1, small=True, force=True)
    # --force deleted every file of OUT once it held a synth_manifest.json, the user's too.
    (tmp_path / "full" / "synth_manifest.json").write_text("{}")
    with pytest.raises(UserError, match="not the manifest of a `radcommons synth` output"):
        generate(tmp_path / "full", 1, 1, 1, small=True, force=True)
    earlier = tmp_path / "earlier"
    generate(earlier, 1, 1, 1, small=True)
    (earlier / "thesis.tex").write_text("precious")
    with pytest.raises(UserError, match="1 entry that synth did not write: thesis.tex"):
        generate(earlier, 1, 1, 2, small=True, force=True)
    assert (earlier / "thesis.tex").read_text() == "precious"
    (earlier / "thesis.tex").unlink()
    generate(earlier, 1, 1, 2, small=True, force=True)  # its own output alone is replaced


def test_cli_end_to_end_and_rejections(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run = subprocess.run([str(RADCOMMONS), "synth", str(out), "--sites", "2", "--patients", "2", "--seed", "4",
                          "--small", "--phi", "--defects"], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    assert (out / "synth_manifest.json").is_file() and (out / "phi_manifest.json").is_file()
    again = subprocess.run([str(RADCOMMONS), "synth", str(out), "--small"], capture_output=True, text=True, check=False)
    assert again.returncode == 2 and "not empty" in again.stderr and "Traceback" not in again.stderr
    forced = subprocess.run([str(RADCOMMONS), "synth", str(out), "--small", "--sites", "1", "--patients", "1", "--force"],
                            capture_output=True, text=True, check=False)
    assert forced.returncode == 0, forced.stderr
    assert not (out / "phi_manifest.json").exists()
    zero = subprocess.run([str(RADCOMMONS), "synth", str(tmp_path / "z"), "--sites", "0"],
                          capture_output=True, text=True, check=False)
    assert zero.returncode == 2 and "--sites" in zero.stderr and "Traceback" not in zero.stderr
    as_file = subprocess.run([str(RADCOMMONS), "synth", str(out / "synth_manifest.json")],
                             capture_output=True, text=True, check=False)
    assert as_file.returncode == 2 and "not a folder" in as_file.stderr


def test_relative_output_folder_with_defects(tmp_path: Path) -> None:
    """A relative OUT (the way people type it) works with --defects too."""
    run = subprocess.run(
        [str(RADCOMMONS), "synth", "rel", "--sites", "1", "--patients", "1", "--seed", "2", "--small", "--defects"],
        capture_output=True, text=True, check=False, cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    assert (tmp_path / "rel" / "defects_manifest.json").is_file()


_KILLED_WHILE_WRITING_CLINICAL = """
import os, sys
from radcommons.synth import clinical

def killed(*args, **kwargs):
    os._exit(9)

clinical.write_clinical = killed  # after the first site's images
from radcommons.cli import main
sys.argv = ["radcommons", "synth", *sys.argv[1:]]
main()
"""


def test_a_killed_synth_is_replaced_by_force(tmp_path: Path) -> None:
    """A killed run left images but no manifest (it was written last): the rerun was refused with
    and without --force ('holds no synth_manifest.json'), and only deleting OUT by hand helped."""
    out = tmp_path / "out"
    args = [str(out), "--sites", "2", "--patients", "1", "--seed", "3", "--small"]
    killed = subprocess.run([sys.executable, "-c", _KILLED_WHILE_WRITING_CLINICAL, *args], capture_output=True,
                            text=True, timeout=300)
    assert killed.returncode == 9, killed.stderr
    assert list(out.rglob("*.dcm"))
    forced = subprocess.run([str(RADCOMMONS), "synth", *args, "--force"], capture_output=True, text=True)
    assert forced.returncode == 0, forced.stderr
    whole = subprocess.run([str(RADCOMMONS), "synth", str(tmp_path / "whole"), *args[1:]], capture_output=True,
                           text=True)
    assert whole.returncode == 0, whole.stderr
    assert sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file()) == sorted(
        p.relative_to(tmp_path / "whole") for p in (tmp_path / "whole").rglob("*") if p.is_file())
