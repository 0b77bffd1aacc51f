"""radcommons keygen / deid: the tree, the report, the registry, paths, resume, workers."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from radcommons.deid import DeidContext, Registry, deidentify_tree, key_fingerprint, load_profile
from radcommons.errors import UserError

from deid_support import KEY, PATIENT_ID, make_ct, write

RADCOMMONS = [str(Path(sys.executable).parent / "radcommons")]


def _corpus(root: Path) -> Path:
    for i in range(3):
        write(make_ct(sop_uid=f"1.2.826.0.1.3680043.8.498.9{i}"), root / f"DOE_JOHN/IM{i}.dcm")
    write(make_ct(patient_id="OTHER-1", patient_name="ROE^JANE", study_uid="1.2.3.77", series_uid="1.2.3.78",
                  sop_uid="1.2.3.79"), root / "ROE/IM1.dcm")
    (root / "notes.txt").write_text("not dicom")
    (root / "empty.dcm").write_bytes(b"")
    return root


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_tree_report_registry(tmp_path):
    src = _corpus(tmp_path / "src")
    ctx = DeidContext(KEY, "SITE_A", load_profile("default"), review_pixels=False)
    report = deidentify_tree(src, tmp_path / "dst", ctx, state_dir=tmp_path / "state", workers=1)
    counts = report.counts()
    assert (counts["deidentified"], counts["withheld"], counts["rejected"], counts["total"]) == (4, 0, 2, 6)
    data = json.loads(report.path.read_text())
    assert {f["input"] for f in data["files"]} == set(_files(src))  # nothing silently dropped
    assert report.path.parent == tmp_path / "state" / "reports"
    assert stat.S_IMODE(report.path.stat().st_mode) == 0o600
    # the registry maps pseudonyms back to MRNs: it was created readable by every user (0644)
    assert stat.S_IMODE((tmp_path / "state" / "registry.sqlite").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700
    for entry in data["files"]:
        if entry["outcome"] == "deidentified":
            assert (tmp_path / "dst" / entry["output"]).exists()
            assert "DOE" not in entry["output"] and "IM" not in entry["output"]
    with Registry(tmp_path / "state", key_fingerprint(KEY)) as registry:
        assert registry.counts() == {"patients": 2, "studies": 2}
        pseudonym = next(f["pseudonym"] for f in data["files"] if f["input"].startswith("DOE"))
        assert registry.patient_by_pseudonym(pseudonym).patient_id == PATIENT_ID
    with pytest.raises(UserError, match="another key"):
        Registry(tmp_path / "state", key_fingerprint(bytes(32)))


def test_parallel_equals_inline_and_is_deterministic(tmp_path, monkeypatch):
    src = _corpus(tmp_path / "src")
    ctx = DeidContext(KEY, "SITE_A", load_profile("default"), review_pixels=False)
    deidentify_tree(src, tmp_path / "one", ctx, state_dir=tmp_path / "s1", workers=1)
    import radcommons.deid.tree as tree
    import radcommons.parallel as parallel

    # several batches, and the pool from the start, so worker processes really do the work
    monkeypatch.setattr(tree, "BATCH_SIZE", 2)
    monkeypatch.setattr(parallel, "CALLER_WORKS", False)
    deidentify_tree(src, tmp_path / "two", ctx, state_dir=tmp_path / "s2", workers=2)
    assert _files(tmp_path / "one") == _files(tmp_path / "two")


def test_resume_after_interruption(tmp_path):
    src = _corpus(tmp_path / "src")
    ctx = DeidContext(KEY, "SITE_A", load_profile("default"), review_pixels=False)
    first = deidentify_tree(src, tmp_path / "dst", ctx, state_dir=tmp_path / "state", workers=1)
    complete = _files(tmp_path / "dst")
    # simulate a kill: one output missing, one half-written temp file left behind
    victim = tmp_path / "dst" / next(o.output for o in first.outcomes if o.output)
    victim.unlink()
    (victim.parent / f".{victim.name}.999.partial").write_bytes(b"half")
    second = deidentify_tree(src, tmp_path / "dst", ctx, state_dir=tmp_path / "state", workers=1)
    assert _files(tmp_path / "dst") == complete  # no duplicate, no partial, same bytes
    assert second.counts()["already_present"] == 3


def test_a_rerun_with_other_settings_writes_every_output_again(tmp_path):
    """An output already there was kept whatever wrote it: a run that kept the patient's name
    (an override) followed by one with the default profile left the name in DST."""
    src = _corpus(tmp_path / "src")
    overrides = tmp_path / "keep-name.yaml"
    overrides.write_text('"(0010,0010)": K\n')
    keeping = DeidContext(KEY, "SITE_A", load_profile("default", overrides), review_pixels=False)
    deidentify_tree(src, tmp_path / "dst", keeping, state_dir=tmp_path / "state", workers=1)
    assert any(b"DOE^JOHN" in data for data in _files(tmp_path / "dst").values())
    default = DeidContext(KEY, "SITE_A", load_profile("default"), review_pixels=False)
    again = deidentify_tree(src, tmp_path / "dst", default, state_dir=tmp_path / "state", workers=1)
    assert again.outputs_removed == 4 and again.counts()["already_present"] == 0
    assert not any(b"DOE^JOHN" in data for data in _files(tmp_path / "dst").values())
    deidentify_tree(src, tmp_path / "fresh", default, state_dir=tmp_path / "fresh-state", workers=1)
    assert _files(tmp_path / "dst") == _files(tmp_path / "fresh")
    resumed = deidentify_tree(src, tmp_path / "dst", default, state_dir=tmp_path / "state", workers=1)
    assert resumed.outputs_removed == 0 and resumed.counts()["already_present"] == 4  # same settings: kept


def test_a_killed_run_with_other_settings_leaves_no_output_the_next_run_keeps(tmp_path, monkeypatch):
    """The settings of a destination were recorded when a run ended: a run with an override that
    kept the patient's name, killed, left its outputs under the earlier run's record, and the next
    run with the default profile kept them as its own (names in DST)."""
    import radcommons.deid.tree as tree
    from radcommons.deid.fileio import PendingWrites

    src = _corpus(tmp_path / "src")
    default = DeidContext(KEY, "SITE_A", load_profile("default"), review_pixels=False)
    deidentify_tree(src, tmp_path / "dst", default, state_dir=tmp_path / "state", workers=1)
    overrides = tmp_path / "keep-name.yaml"
    overrides.write_text('"(0010,0010)": K\n')
    keeping = DeidContext(KEY, "SITE_A", load_profile("default", overrides), review_pixels=False)
    commit = PendingWrites.commit
    batches = []

    def killed_after_one_batch(self):
        if len(self):
            batches.append(len(self))
        if len(batches) > 1:
            raise KeyboardInterrupt("killed")
        return commit(self)

    monkeypatch.setattr(tree, "BATCH_SIZE", 1)
    monkeypatch.setattr(PendingWrites, "commit", killed_after_one_batch)
    with pytest.raises(KeyboardInterrupt):
        deidentify_tree(src, tmp_path / "dst", keeping, state_dir=tmp_path / "state", workers=1)
    monkeypatch.undo()
    assert any(b"DOE^JOHN" in data for name, data in _files(tmp_path / "dst").items()
               if name.endswith(".dcm"))  # the killed run's output
    again = deidentify_tree(src, tmp_path / "dst", default, state_dir=tmp_path / "state", workers=1)
    assert again.outputs_removed >= 1
    assert not any(b"DOE^JOHN" in data for data in _files(tmp_path / "dst").values())
    # a first run that was killed is resumed, not redone: its outputs have the settings on record
    monkeypatch.setattr(tree, "BATCH_SIZE", 1)
    monkeypatch.setattr(PendingWrites, "commit", killed_after_one_batch)
    batches.clear()
    with pytest.raises(KeyboardInterrupt):
        deidentify_tree(src, tmp_path / "first", default, state_dir=tmp_path / "state", workers=1)
    monkeypatch.undo()
    resumed = deidentify_tree(src, tmp_path / "first", default, state_dir=tmp_path / "state", workers=1)
    assert resumed.outputs_removed == 0 and resumed.counts()["already_present"] >= 1
    assert _files(tmp_path / "first") == _files(tmp_path / "dst")


def test_a_zero_filled_file_is_rejected_without_parsing_it(tmp_path):
    """pydicom (force=True) reads zeros as empty elements, 8 bytes at a time: a 30 MB zero-filled
    file took 11 s and a large one looked like a hang. Now the zeros where a preamble and its DICM
    prefix should be are enough to say no."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "zeros.dcm").write_bytes(bytes(4 * 1024 * 1024))
    ctx = DeidContext(KEY, "SITE_A", load_profile("default"), review_pixels=False)
    report = deidentify_tree(src, tmp_path / "dst", ctx, state_dir=tmp_path / "state", workers=1)
    [outcome] = report.outcomes
    assert outcome.status == "rejected" and "starts with zero bytes" in outcome.reason, outcome


def test_dangerous_paths_refused(tmp_path):
    src = _corpus(tmp_path / "src")
    ctx = DeidContext(KEY, "SITE_A", load_profile("default"), review_pixels=False)
    with pytest.raises(UserError, match="state directory"):
        deidentify_tree(src, tmp_path / "dst", ctx, state_dir=tmp_path / "dst" / "state")
    with pytest.raises(UserError, match="report"):
        deidentify_tree(src, tmp_path / "dst", ctx, state_dir=tmp_path / "s", report_path=tmp_path / "dst/r.json")
    with pytest.raises(UserError, match="inside the source"):
        deidentify_tree(src, src / "out", ctx, state_dir=tmp_path / "s")
    with pytest.raises(UserError, match="does not exist"):
        deidentify_tree(tmp_path / "nope", tmp_path / "dst", ctx, state_dir=tmp_path / "s")


def test_links_to_the_destination_and_state_are_not_followed(tmp_path):
    """A link in the source to the run's own destination or state directory (an export folder
    that links to where its outputs went) is not entered: the outputs are not de-identified a
    second time into new files, and the registry (original identifiers) is not read as input."""
    src = _corpus(tmp_path / "src")
    ctx = DeidContext(KEY, "SITE_A", load_profile("default"), review_pixels=False)
    deidentify_tree(src, tmp_path / "dst", ctx, state_dir=tmp_path / "state", workers=1)
    first = _files(tmp_path / "dst")
    os.symlink(tmp_path / "dst", src / "outputs")
    os.symlink(tmp_path / "state", src / "ROE" / "state")
    os.symlink(tmp_path, src / "ROE" / "everything")  # reaches both from above
    second = deidentify_tree(src, tmp_path / "dst", ctx, state_dir=tmp_path / "state", workers=1)
    inputs = {outcome.input for outcome in second.outcomes}
    assert not [name for name in inputs if name.startswith(("outputs/", "ROE/state/", "ROE/everything/dst",
                                                             "ROE/everything/state"))], sorted(inputs)
    assert _files(tmp_path / "dst") == first


def _run(args, cwd):
    return subprocess.run(RADCOMMONS + args, cwd=cwd, capture_output=True, text=True, timeout=600)


def test_cli_keygen_and_deid(tmp_path):
    src = tmp_path / "src"
    write(make_ct(), src / "ct1.dcm")
    copy = make_ct()
    copy.SeriesDescription = "same SOP Instance UID, other content"
    write(copy, src / "ct2.dcm")
    (src / "junk.bin").write_bytes(b"junk")
    run = _run(["keygen", "site.key"], tmp_path)
    assert run.returncode == 0, run.stderr
    again = _run(["keygen", "site.key"], tmp_path)
    assert again.returncode == 2 and "refusing to overwrite" in again.stderr
    run = _run(["deid", "src", "dst", "--site", "S1", "--key-file", "site.key", "--workers", "1"], tmp_path)
    assert run.returncode == 0, run.stderr
    assert "de-identified" in run.stdout
    reports = list((tmp_path / "var/deid-state/S1/reports").glob("*.json"))
    assert len(reports) == 1
    data = json.loads(reports[0].read_text())
    assert {f["input"]: f["outcome"] for f in data["files"]} == {
        "ct1.dcm": "deidentified", "ct2.dcm": "withheld", "junk.bin": "rejected"}
    assert "duplicate SOP Instance UID" in data["files"][1]["reason"]
    bad = _run(["deid", "src", "dst", "--site", "S1", "--key-file", "missing.key"], tmp_path)
    assert bad.returncode == 2 and "key file" in bad.stderr and "Traceback" not in bad.stderr
    bad = _run(["deid", "src", "dst", "--site", "S1", "--key-file", "site.key", "--state-dir", "dst/x"], tmp_path)
    assert bad.returncode == 2 and "inside the destination" in bad.stderr
    bad = _run(["deid", "nowhere", "dst", "--site", "S1", "--key-file", "site.key"], tmp_path)
    assert bad.returncode == 2 and "does not exist" in bad.stderr
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("not DICOM")
    nothing = _run(["deid", "junk", "dst2", "--site", "S1", "--key-file", "site.key", "--workers", "1"], tmp_path)
    assert nothing.returncode == 1 and "none of the 1 file(s) under junk was de-identified" in nothing.stderr  # was 0
    assert not any("DOE" in p.name for p in (tmp_path / "dst").rglob("*"))
    assert os.listdir(tmp_path / "dst")


def test_a_destination_in_use_by_another_run_is_refused_and_reports_keep_their_names(tmp_path, held_elsewhere):
    """Two runs into one destination at once removed each other's unfinished files as a killed run's
    leftovers, and reported them 'rejected: write failed' (a contribution sent incomplete studies);
    two runs in one second wrote one report."""
    _corpus(tmp_path / "src")
    assert _run(["keygen", "site.key"], tmp_path).returncode == 0
    args = ["deid", "src", "dst", "--site", "S1", "--key-file", "site.key", "--workers", "1"]
    assert _run(args, tmp_path).returncode == 0
    outputs = _files(tmp_path / "dst")
    with held_elsewhere(tmp_path / "dst"):  # another run, as far as the destination can tell
        refused = _run(args, tmp_path)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert "in use by another run de-identifying into it" in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr and _files(tmp_path / "dst") == outputs
    again = _run(args, tmp_path)  # the holder is gone, and its lock with it
    assert again.returncode == 0, again.stderr
    assert len(list((tmp_path / "var/deid-state/S1/reports").glob("deid-*.json"))) == 2


def test_special_files_in_the_tree_are_reported_not_read(tmp_path):
    """A FIFO would block a reader until some process writes to it: without the check the run hangs
    (the subprocess timeout fails the test), with it the FIFO is rejected and the rest done."""
    src = tmp_path / "src"
    write(make_ct(), src / "ct1.dcm")
    os.mkfifo(src / "pipe.dcm")
    os.symlink(src / "ct1.dcm", src / "link.dcm")  # a link to a file is read as the file
    write(make_ct(patient_id="LINKED-1", study_uid="1.2.3.87", series_uid="1.2.3.88", sop_uid="1.2.3.89"),
          tmp_path / "elsewhere" / "ct9.dcm")
    os.symlink(tmp_path / "elsewhere", src / "linked")  # a linked folder is read, not skipped
    os.symlink(".", src / "linked" / "again")  # a link cycle ends
    assert _run(["keygen", "site.key"], tmp_path).returncode == 0
    args = ["deid", "src", "dst", "--site", "S1", "--key-file", "site.key"]
    for workers in ("1", "2"):
        run = subprocess.run(RADCOMMONS + [*args, "--workers", workers, "--state-dir", f"state{workers}"],
                             cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        report = json.loads(next((tmp_path / f"state{workers}/reports").glob("*.json")).read_text())
        outcomes = {f["input"]: (f["outcome"], f.get("reason", "")) for f in report["files"]}
        assert outcomes["pipe.dcm"][0] == "rejected" and "FIFO" in outcomes["pipe.dcm"][1]
        assert outcomes["ct1.dcm"][0] == "deidentified" and outcomes["linked/ct9.dcm"][0] == "deidentified"
        assert set(outcomes) == {"ct1.dcm", "link.dcm", "pipe.dcm", "linked/ct9.dcm"}


@pytest.mark.slow
def test_synth_defects_corpus_every_file_reported(tmp_path):
    help_text = subprocess.run(RADCOMMONS + ["synth", "--help"], capture_output=True, text=True).stdout
    if "--defects" not in help_text:
        pytest.skip("radcommons synth --defects is not available yet")
    run = subprocess.run(
        RADCOMMONS + ["synth", str(tmp_path / "syn"), "--sites", "1", "--patients", "2", "--seed", "5", "--small", "--defects"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stderr
    assert _run(["keygen", "k.key"], tmp_path).returncode == 0
    run = _run(["deid", "syn", "out", "--site", "S1", "--key-file", "k.key", "--report", "r.json",
                "--workers", "1"], tmp_path)
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr
    data = json.loads((tmp_path / "r.json").read_text())
    assert {f["input"] for f in data["files"]} == set(_files(tmp_path / "syn"))
    for entry in data["files"]:
        if entry["outcome"] != "deidentified":
            assert entry["reason"], entry
    outcomes = {f["outcome"] for f in data["files"]}
    assert "rejected" in outcomes and "deidentified" in outcomes
