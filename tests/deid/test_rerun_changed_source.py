"""A rerun into the same destination keeps an output only while its source is unchanged.

A corrected file keeps its SOP Instance UID, so its output has the same name: the rerun found that
name in the destination, kept the old output ("already_present") and a contribution sent the old
file (the receipt said "unchanged"). Through the real ``radcommons deid`` command."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pydicom
import pytest
from deid_support import KEY, make_ct, write


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "deid.key"
    path.write_text(KEY.hex() + "\n")
    path.chmod(0o600)
    return path


def deid(src: Path, dst: Path, state: Path, key_file: Path, workers: str) -> dict[str, dict]:
    """Run ``radcommons deid``; the report's outcomes by input."""
    done = subprocess.run([sys.executable, "-m", "radcommons", "deid", str(src), str(dst), "--site", "SITE_A",
                           "--key-file", str(key_file), "--state-dir", str(state), "--workers", workers],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    newest = max((state / "reports").glob("deid-*.json"), key=lambda p: p.stat().st_mtime_ns)
    return {o["input"]: o for o in json.loads(newest.read_text())["files"]}


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_changed_source_is_deidentified_again_and_the_others_are_kept(tmp_path: Path, key_file: Path,
                                                                        workers: str) -> None:
    src, dst, state = tmp_path / "src", tmp_path / "dst", tmp_path / "state"
    for n in range(3):
        write(make_ct(sop_uid=f"1.2.826.0.1.3680043.8.498.77.{n}"), src / "DOE_JOHN" / f"IM{n}.dcm")
    first = deid(src, dst, state, key_file, workers)
    outputs = {name: dst / o["output"] for name, o in first.items()}
    before = {name: (path.stat().st_ino, path.read_bytes()) for name, path in outputs.items()}

    corrected = make_ct(sop_uid="1.2.826.0.1.3680043.8.498.77.1")
    corrected.SeriesDescription = "CORRECTED CHEST"
    write(corrected, src / "DOE_JOHN" / "IM1.dcm")
    second = deid(src, dst, state, key_file, workers)

    assert second["DOE_JOHN/IM1.dcm"]["output"] == first["DOE_JOHN/IM1.dcm"]["output"]  # same name
    assert "already_present" not in second["DOE_JOHN/IM1.dcm"], second
    assert pydicom.dcmread(outputs["DOE_JOHN/IM1.dcm"]).SeriesDescription == "CORRECTED CHEST"
    for name in ("DOE_JOHN/IM0.dcm", "DOE_JOHN/IM2.dcm"):  # a rerun still resumes: the rest is kept as it was
        assert second[name].get("already_present") is True, second[name]
        assert (outputs[name].stat().st_ino, outputs[name].read_bytes()) == before[name]
    assert not list(dst.rglob("*.partial"))
    assert (state / "deid-sources.sqlite").stat().st_mode & 0o077 == 0  # it names the source files

    # Nothing changed: everything kept, nothing written.
    third = deid(src, dst, state, key_file, workers)
    assert all(o.get("already_present") is True for o in third.values()), third


def test_a_changed_archive_is_deidentified_again(tmp_path: Path, key_file: Path) -> None:
    src, dst, state = tmp_path / "src", tmp_path / "dst", tmp_path / "state"
    src.mkdir()
    one = write(make_ct(), tmp_path / "one.dcm")
    with zipfile.ZipFile(src / "export.zip", "w") as archive:
        archive.write(one, "IM1.dcm")
    first = deid(src, dst, state, key_file, "1")
    corrected = make_ct()
    corrected.SeriesDescription = "CORRECTED CHEST"
    write(corrected, one)
    with zipfile.ZipFile(src / "export.zip", "w") as archive:
        archive.write(one, "IM1.dcm")
    second = deid(src, dst, state, key_file, "1")
    assert "already_present" not in second["export.zip/IM1.dcm"], second
    assert pydicom.dcmread(dst / first["export.zip/IM1.dcm"]["output"]).SeriesDescription == "CORRECTED CHEST"


def test_two_inputs_of_one_instance_still_keep_the_first(tmp_path: Path, key_file: Path) -> None:
    """An output written in this run is never replaced by a later input of the same SOP Instance UID."""
    src, dst, state = tmp_path / "src", tmp_path / "dst", tmp_path / "state"
    write(make_ct(), src / "a" / "IM1.dcm")
    other = make_ct()
    other.SeriesDescription = "THE SECOND COPY"
    write(other, src / "b" / "IM1.dcm")
    for _ in range(2):
        outcomes = deid(src, dst, state, key_file, "1")
        kept = [o for o in outcomes.values() if o.get("output")]
        assert len(kept) == 1 and kept[0]["input"] == "a/IM1.dcm", outcomes
        assert pydicom.dcmread(dst / kept[0]["output"]).SeriesDescription != "THE SECOND COPY"
