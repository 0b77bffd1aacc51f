"""A run stopped half-way (Ctrl-C here; a full destination in test_output_disk_full) writes its report
all the same: the files it finished, that it stopped and why, and that the same command resumes it.
It wrote none, and the outcomes of the files already published were known nowhere."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from radcommons.deid import DeidContext, load_profile
from radcommons.deid.tree import BATCH_SIZE, deidentify_tree

from deid_support import KEY, planted_ct, write

FILES = BATCH_SIZE * 12  #: the progress callback is called on the way (after 4 batches published, 9 written)


def _context() -> DeidContext:
    return DeidContext(key=KEY, site="SITE_A", profile=load_profile("default"), review_pixels=False)


def test_an_interrupted_run_reports_what_it_finished_and_resumes(tmp_path: Path) -> None:
    src, dst, state, report_path = tmp_path / "src", tmp_path / "dst", tmp_path / "state", tmp_path / "run.json"
    for number in range(FILES):
        write(planted_ct(number, "1.2.826.0.1.3680043.8.498.95", ("DOE^JOHN", "MRN0048151623", "ACC1")),
              src / f"IM{number:03}.dcm")
    handed: list = []

    def progress(done: int, total: int) -> None:
        if 0 < done < total:
            raise KeyboardInterrupt  # as Ctrl-C arrives in the main thread

    with pytest.raises(KeyboardInterrupt):
        deidentify_tree(src, dst, _context(), state_dir=state, workers=1, report_path=report_path,
                        progress=progress, stopped=handed.append)
    partial = json.loads(report_path.read_text())
    assert partial["stopped"]["reason"] == "interrupted (Ctrl-C)"
    assert partial["stopped"]["resumable"] is True and "run the same command again" in partial["stopped"]["hint"]
    outputs = {entry["output"] for entry in partial["files"]}
    assert {entry["outcome"] for entry in partial["files"]} == {"deidentified"}
    assert outputs == {p.relative_to(dst).as_posix() for p in dst.rglob("*.dcm")}  # what is there, no more
    assert BATCH_SIZE * 4 <= len(outputs) < FILES
    assert [report.path for report in handed] == [report_path]

    report = deidentify_tree(src, dst, _context(), state_dir=state, workers=1, report_path=report_path)
    complete = json.loads(report_path.read_text())
    assert "stopped" not in complete and not report.stopped
    assert complete["counts"]["deidentified"] == FILES
    assert complete["counts"]["already_present"] == len(outputs)  # the rerun resumed
