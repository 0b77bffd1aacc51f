"""A run stopped by a batch that could not be published still reports the batches published before
it. The publisher took finished batches off its queue into a list of the moment; a later batch's
:class:`OutputWriteError` lost that list (and what ``drain`` had gathered), so the report of a run
stopped on a full destination left out files already in it, and their patients went unrecorded."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from radcommons.deid import DEIDENTIFIED
from radcommons.deid.fileio import OutputWriteError
from radcommons.deid.outcome import FileOutcome
from radcommons.deid.tree import _Publisher, _Sources


def _batch(dst: Path, names: list[str]) -> tuple[list[FileOutcome], list[tuple[str, str]]]:
    """A batch as a worker hands it over: its outcomes, and its outputs written to temporaries."""
    outcomes, paths = [], []
    for name in names:
        temp = dst / f".{name}.dcm.partial"
        temp.write_bytes(name.encode() * 4096)
        outcomes.append(FileOutcome(f"src/{name}", DEIDENTIFIED, output=f"{name}.dcm"))
        paths.append((str(temp), str(dst / f"{name}.dcm")))
    return outcomes, paths


def test_the_batches_published_before_a_failed_one_are_handed_over(tmp_path: Path) -> None:
    dst, state = tmp_path / "dst", tmp_path / "state"
    dst.mkdir()
    state.mkdir()
    published = _batch(dst, [f"a{number}" for number in range(16)])
    refused = _batch(dst, ["b0"])
    os.unlink(refused[1][0][0])  # gone before it is published (a cleaner): the destination fails it
    handed: list[FileOutcome] = []
    with _Sources(state, dst) as sources, _Publisher(dst, sources, {}) as publisher:
        with pytest.raises(OutputWriteError):
            handed += publisher.submit(*published)
            handed += publisher.submit(*refused)
            handed += publisher.drain()
        handed += publisher.settle()
    assert sorted(path.name for path in dst.iterdir()) == sorted(f"a{number}.dcm" for number in range(16))
    assert sorted(outcome.output or "" for outcome in handed) == sorted(f"a{number}.dcm" for number in range(16))


def test_a_stopped_runs_report_keeps_published_files_when_the_registry_fails_too(tmp_path: Path) -> None:
    """The full disk that stops a run may refuse the registry's write as well: the report of the stopped run
    recorded the registry first, and its failure (swallowed, so as not to hide the stop) took the published
    files out of the report."""
    import json

    from radcommons.deid.engine import PatientRecord
    from radcommons.deid.registry import Registry
    from radcommons.deid.report import RunReport
    from radcommons.deid.tree import _stopped_run

    report = RunReport("src", "dst", "SITE", "default", "fingerprint")
    registry = Registry(tmp_path, "fingerprint")
    registry.close()  # its writes now fail, as on a full disk
    published = [FileOutcome(f"src/a{number}", DEIDENTIFIED, output=f"a{number}.dcm",
                             patient=PatientRecord("SITE", f"MRN{number}", f"P{number}", -10))
                 for number in range(3)]
    path = tmp_path / "report.json"
    _stopped_run(report, path, OutputWriteError(tmp_path / "dst" / "a3.dcm", OSError(28, "No space left on device")), published, registry, {}, None)
    written = json.loads(path.read_text())
    assert [f["input"] for f in written["files"]] == ["src/a0", "src/a1", "src/a2"]
    assert written["stopped"]["resumable"] is True
