"""Zip archives in an export: each member de-identified like a file, hostile archives refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from radcommons.deid import DeidContext, deidentify_tree, load_profile
from radcommons.deid import archives

from deid_support import KEY, make_ct, write

RADCOMMONS = [str(Path(sys.executable).parent / "radcommons")]


def _export(root: Path) -> Path:
    for i in range(3):
        write(make_ct(sop_uid=f"1.2.826.0.1.3680043.8.498.7{i}"), root / "DOE_JOHN" / f"IM{i}.dcm")
    write(make_ct(patient_id="OTHER-1", patient_name="ROE^JANE", study_uid="1.2.3.67", series_uid="1.2.3.68",
                  sop_uid="1.2.3.69"), root / "ROE" / "IM1.dcm")
    return root


def _zip(folder: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            archive.write(path, path.relative_to(folder).as_posix())
    return target


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _report(state: Path) -> dict[str, tuple[str, str]]:
    data = json.loads(next((state / "reports").glob("*.json")).read_text())
    return {f["input"]: (f["outcome"], f.get("reason", "")) for f in data["files"]}


def test_a_zipped_export_gives_the_same_outputs_as_the_folder(tmp_path: Path) -> None:
    export = _export(tmp_path / "export")
    _zip(export, tmp_path / "zipped" / "batch 1" / "EXPORT.ZIP")
    assert subprocess.run(RADCOMMONS + ["keygen", "site.key"], cwd=tmp_path).returncode == 0
    for src in ("export", "zipped"):
        run = subprocess.run(RADCOMMONS + ["deid", src, f"out-{src}", "--site", "S", "--key-file", "site.key",
                                           "--state-dir", f"state-{src}", "--workers", "2"],
                             cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr
    assert _tree(tmp_path / "out-zipped") == _tree(tmp_path / "out-export")  # byte for byte
    outcomes = _report(tmp_path / "state-zipped")
    assert set(outcomes) == {f"batch 1/EXPORT.ZIP/{name}" for name in _tree(export)}
    assert {status for status, _ in outcomes.values()} == {"deidentified"}
    assert not any((tmp_path / "state-zipped" / "tmp").iterdir())  # no copy of a member is left


def test_hostile_and_damaged_archives_are_refused_with_a_reason(tmp_path: Path, monkeypatch) -> None:
    one = write(make_ct(), tmp_path / "one.dcm")
    src = tmp_path / "src"
    src.mkdir()
    with zipfile.ZipFile(src / "hostile.zip", "w") as archive:
        archive.write(one, "../../escape.dcm")  # a name that climbs out: never used as a path
        archive.writestr("nested.zip", b"PK\x05\x06" + bytes(18))
        link = zipfile.ZipInfo("link.dcm")
        link.external_attr = 0o120777 << 16
        archive.writestr(link, "/etc/passwd")
        archive.writestr("bomb.dcm", bytes(4 << 20), compress_type=zipfile.ZIP_DEFLATED)
        archive.writestr("empty-folder/", b"")
    (src / "broken.zip").write_bytes(b"PK\x03\x04 cut short")
    monkeypatch.setattr(archives, "MAX_MEMBER_BYTES", 1 << 20)
    context = DeidContext(KEY, "S", load_profile("default"), review_pixels=False)
    deidentify_tree(src, tmp_path / "dst", context, state_dir=tmp_path / "state", workers=1)
    outcomes = _report(tmp_path / "state")
    assert outcomes["hostile.zip/../../escape.dcm"][0] == "deidentified"
    for label, reason in {
        "hostile.zip/nested.zip": "a zip archive inside the zip archive",
        "hostile.zip/link.dcm": "a symbolic link inside the archive",
        "hostile.zip/bomb.dcm": "larger than 1 MiB when decompressed",
        "broken.zip": "a zip archive that cannot be read",
    }.items():
        assert outcomes[label][0] == "rejected" and reason in outcomes[label][1], outcomes[label]
    assert len(outcomes) == 5  # a folder in an archive is not an input
    assert not (tmp_path.parent / "escape.dcm").exists() and not (tmp_path / "escape.dcm").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dst", "one.dcm", "src", "state"]
    assert not any((tmp_path / "state" / "tmp").iterdir())


def test_a_killed_runs_copies_of_members_are_removed(tmp_path: Path) -> None:
    """A copy of a member holds identifiers: what a killed run left is removed by the next."""
    stale = tmp_path / "state" / "tmp" / "run-999999999-dead"
    stale.mkdir(parents=True)
    (stale / "member-1").write_bytes(b"PHI")
    src = _export(tmp_path / "src")
    context = DeidContext(KEY, "S", load_profile("default"), review_pixels=False)
    deidentify_tree(src, tmp_path / "dst", context, state_dir=tmp_path / "state", workers=1)
    assert not stale.exists()


def test_the_scratch_folder_is_private_and_removed(tmp_path: Path) -> None:
    with archives.run_scratch(tmp_path / "tmp") as scratch:
        assert os.stat(scratch).st_mode & 0o777 == 0o700 and os.stat(tmp_path / "tmp").st_mode & 0o777 == 0o700
    assert not scratch.exists()


def test_an_archive_is_opened_once_for_all_its_members(tmp_path: Path, monkeypatch) -> None:
    """Reading the central directory again for every member made an archive of n members cost n
    squared (3,000 members: 37.7 s against 0.6 s, bench note in bench/RESULTS.md)."""
    opened: list[str] = []

    class CountingZipFile(zipfile.ZipFile):
        def __init__(self, file, *args, **kwargs):
            opened.append(str(file))
            super().__init__(file, *args, **kwargs)

    path = tmp_path / "many.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for n in range(50):
            archive.writestr(f"IM{n}.dcm", f"member {n}")
    writer = zipfile.ZipFile
    monkeypatch.setattr(archives.zipfile, "ZipFile", CountingZipFile)
    with archives.run_scratch(tmp_path / "tmp") as scratch:
        for n in range(50):
            with archives.extracted_member(path, f"IM{n}.dcm", scratch) as copy:
                assert copy.read_text() == f"member {n}"
        assert len(opened) == 1
        with writer(path, "a") as archive:  # changed on disk: opened again, the new member found
            archive.writestr("IM50.dcm", "member 50")
        with archives.extracted_member(path, "IM50.dcm", scratch) as copy:
            assert copy.read_text() == "member 50"
    assert len(opened) == 2 and not archives._OPEN  # closed at the end of the run
