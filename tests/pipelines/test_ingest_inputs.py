"""``radcommons ingest`` on trees that change or hold more than files: every entry gets an outcome."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest

from radcommons.pipelines.examine import deid_gate
from radcommons.pipelines.ingest import IngestReport, ingest_tree
from radcommons.store.index import counts, make_engine, upgrade
from radcommons.store.objects import ObjectStore


def _tree(deid_tree: Path, tmp_path: Path) -> tuple[Path, Path]:
    tree = tmp_path / "tree"
    shutil.copytree(deid_tree, tree)
    return tree, sorted(tree.rglob("*.dcm"))[0]


def _ingest(tree: Path, tmp_path: Path, gate: Callable[[pydicom.Dataset], list],
            site_id: str = "SITE_A") -> tuple[IngestReport, ObjectStore, int]:
    """``tree`` ingested into the index and store of ``tmp_path`` (created on first use)."""
    url = f"sqlite:///{tmp_path / 'index.db'}"
    upgrade(url)
    engine = make_engine(url)
    store = ObjectStore(str(tmp_path / "objects"))
    try:
        report = ingest_tree(tree, engine=engine, store=store, project="Open-A1", site_id=site_id, workers=1,
                             gate=gate)
        return report, store, counts(engine)["instance"]
    finally:
        engine.dispose()


def _gate_touching(victim: Path, touch: Callable[[Path], None]) -> Callable[[pydicom.Dataset], list]:
    """The real gate, which also does ``touch`` to ``victim`` once its header has been read."""
    uid = pydicom.dcmread(victim, stop_before_pixels=True).SOPInstanceUID

    def gate(ds: pydicom.Dataset) -> list:
        if ds.SOPInstanceUID == uid:
            touch(victim)
        return deid_gate(ds)

    return gate


def test_a_file_deleted_after_its_header_was_read_is_stored_whole(deid_tree: Path, tmp_path: Path) -> None:
    tree, victim = _tree(deid_tree, tmp_path)
    content = victim.read_bytes()
    report, store, indexed = _ingest(tree, tmp_path, _gate_touching(victim, Path.unlink))
    assert not victim.exists()
    outcome = next(o for o in report.outcomes if o.path == str(victim))
    assert outcome.status == "indexed", outcome
    assert outcome.object_id == hashlib.sha256(content).hexdigest() and store.get_bytes(outcome.object_id) == content
    assert indexed == len(report.outcomes) and report.ok


def test_a_file_written_to_while_it_is_read_is_rejected_and_not_stored(deid_tree: Path, tmp_path: Path) -> None:
    tree, victim = _tree(deid_tree, tmp_path)

    def append(path: Path) -> None:
        with open(path, "ab") as out:
            out.write(b"\0" * 4096)

    report, store, indexed = _ingest(tree, tmp_path, _gate_touching(victim, append))
    outcome = next(o for o in report.outcomes if o.path == str(victim))
    assert outcome.status == "rejected" and "changed while it was read" in outcome.reason, outcome
    assert indexed == len(report.outcomes) - 1
    assert not store.exists(hashlib.sha256(victim.read_bytes()).hexdigest())
    assert not os.listdir(tmp_path / "objects" / "tmp")  # the staged copy is gone


def test_a_file_whose_reads_fail_after_its_header_is_rejected_and_the_run_goes_on(deid_tree: Path,
                                                                                  tmp_path: Path) -> None:
    """A read error while the bytes are copied (EIO from a failing disk, a share gone) used to end
    the whole run with a traceback. Here the open file's descriptor is made to refer to a folder
    once its header has been read, so every later read of it fails for real (EISDIR)."""
    tree, victim = _tree(deid_tree, tmp_path)
    folder = os.open(tmp_path, os.O_RDONLY)

    def break_reads(path: Path) -> None:
        for fd in os.listdir("/proc/self/fd"):
            try:
                if os.readlink(f"/proc/self/fd/{fd}") == str(path):
                    os.dup2(folder, int(fd))
            except OSError:
                continue

    try:
        report, store, indexed = _ingest(tree, tmp_path, _gate_touching(victim, break_reads))
    finally:
        os.close(folder)
    outcome = next(o for o in report.outcomes if o.path == str(victim))
    assert outcome.status == "rejected" and "unreadable" in outcome.reason and "nothing stored" in outcome.reason, outcome
    assert indexed == len(report.outcomes) - 1
    assert not os.listdir(tmp_path / "objects" / "tmp")  # no staged copy left


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_fifo_in_the_tree_is_rejected_not_read(deid_tree: Path, tmp_path: Path, run_cli, workers: str) -> None:
    """Reading a FIFO blocks until a writer comes: without the check the command hangs (and
    ``run_cli``'s timeout fails the test)."""
    tree, victim = _tree(deid_tree, tmp_path)
    fifo = victim.parent / "zz-pipe.dcm"
    os.mkfifo(fifo)
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    assert run_cli("db", "upgrade", "--url", url).returncode == 0
    result = run_cli("ingest", str(tree), "--project", "Open-A1", "--site", "SITE_A", "--workers", workers,
                     "--url", url, "--store", str(tmp_path / "cli-objects"), "--report", "report.json")
    assert result.returncode == 1, result.stderr  # a rejected file: the command says so
    assert "a FIFO (named pipe), not a regular file" in " ".join(result.stdout.split()), result.stdout
    assert "Traceback" not in result.stderr
    files = json.loads((tmp_path / "report.json").read_text())["files"]
    assert {f["path"]: f["status"] for f in files if f["status"] != "indexed"} == {str(fifo): "rejected"}
    assert len(files) == len(list(tree.rglob("*.dcm")))


def test_a_linked_folder_is_ingested_and_a_link_cycle_ends(deid_tree: Path, tmp_path: Path) -> None:
    """``os.walk`` alone skips links to folders: their files would be missing from the report."""
    tree = tmp_path / "tree"
    tree.mkdir()
    folders = sorted(p for p in deid_tree.iterdir() if p.is_dir())
    shutil.copytree(folders[0], tree / folders[0].name)
    os.symlink(folders[1], tree / "linked")
    os.symlink(tree, tree / folders[0].name / "back-to-the-top")
    report, _, indexed = _ingest(tree, tmp_path, deid_gate)
    expected = sum(1 for folder in folders[:2] for p in folder.rglob("*") if p.is_file())
    assert len(report.outcomes) == expected and indexed == expected, [o for o in report.outcomes if o.status != "indexed"]
    assert any(o.path.startswith(str(tree / "linked")) for o in report.outcomes)


def test_a_zip_archive_in_the_tree_is_rejected_with_what_to_do(deid_tree: Path, tmp_path: Path) -> None:
    tree, victim = _tree(deid_tree, tmp_path)
    with zipfile.ZipFile(tree / "more.zip", "w") as archive:
        archive.write(victim, victim.name)
    report, _, indexed = _ingest(tree, tmp_path, deid_gate)
    outcome = next(o for o in report.outcomes if o.path == str(tree / "more.zip"))
    assert outcome.status == "rejected" and "unzip it first" in outcome.reason, outcome
    assert indexed == len(report.outcomes) - 1


def test_availability_is_checked_before_anything_is_written(deid_tree: Path, tmp_path: Path, run_cli) -> None:
    """``--availability Sequestered`` was stored as written, and the access rule compared it to
    ``sequestered``: the project was readable by every researcher."""
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    assert run_cli("db", "upgrade", "--url", url).returncode == 0
    base = ["ingest", str(deid_tree), "--site", "SITE_A", "--workers", "1", "--url", url,
            "--store", str(tmp_path / "objects")]
    refused = run_cli(*base, "--project", "Seq-1", "--availability", "weird")
    assert refused.returncode != 0 and "unknown availability 'weird'" in refused.stdout + refused.stderr
    assert "Traceback" not in refused.stderr
    assert run_cli(*base, "--project", "Seq-1", "--availability", "Sequestered").returncode == 0
    listed = run_cli("admin", "project", "list", "--url", url)
    assert "Seq-1" in listed.stdout and "sequestered" in listed.stdout and "Sequestered" not in listed.stdout


def test_a_tree_already_in_another_project_is_rejected_and_leaves_no_project(deid_tree: Path, tmp_path: Path,
                                                                             run_cli) -> None:
    """A UID belongs to one project: ingesting the same tree into a second project ended in an
    IntegrityError traceback and left that project behind, empty."""
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    assert run_cli("db", "upgrade", "--url", url).returncode == 0
    base = ["ingest", str(deid_tree), "--site", "SITE_A", "--workers", "1", "--url", url,
            "--store", str(tmp_path / "objects")]
    assert run_cli(*base, "--project", "First-1").returncode == 0
    second = run_cli(*base, "--project", "Second-1", "--report", str(tmp_path / "second.json"))
    assert second.returncode == 1 and "Traceback" not in second.stderr, second.stderr
    files = json.loads((tmp_path / "second.json").read_text())["files"]
    assert files and all(f["status"] == "rejected" and "already in project First-1" in f["reason"] for f in files)
    listed = run_cli("admin", "project", "list", "--url", url).stdout
    assert "First-1" in listed and "Second-1" not in listed


def test_a_file_cut_inside_its_header_is_rejected(deid_tree: Path, tmp_path: Path) -> None:
    """pydicom reads a file that ends inside an element without a word (Series Instance UID "1.2."):
    such a file was quarantined for a missing attribute instead of rejected as truncated."""
    tree, victim = _tree(deid_tree, tmp_path)
    data = victim.read_bytes()
    victim.write_bytes(data[:data.index(b"\x20\x00\x0e\x00") + 12])
    report, _, indexed = _ingest(tree, tmp_path, deid_gate)
    outcome = next(o for o in report.outcomes if o.path == str(victim))
    assert outcome.status == "rejected" and "the file ends inside element (0020,000E)" in outcome.reason, outcome
    assert indexed == len(report.outcomes) - 1


def test_a_file_whose_pixel_data_was_cut_short_is_rejected_and_not_stored(deid_tree: Path, tmp_path: Path) -> None:
    """An interrupted copy leaves a header that reads well: the file was indexed as a success."""
    tree, victim = _tree(deid_tree, tmp_path)
    cut = victim.read_bytes()[:-1000]
    victim.write_bytes(cut)
    report, store, indexed = _ingest(tree, tmp_path, deid_gate)
    outcome = next(o for o in report.outcomes if o.path == str(victim))
    assert outcome.status == "rejected" and "Pixel Data needs 1000 more bytes" in outcome.reason, outcome
    assert "cut short" in outcome.reason and not store.exists(hashlib.sha256(cut).hexdigest())
    assert indexed == len(report.outcomes) - 1


def test_a_study_of_another_site_is_rejected(deid_tree: Path, tmp_path: Path) -> None:
    """The same tree ingested for a second site moved every study to that site's patients."""
    tree, _ = _tree(deid_tree, tmp_path)
    first, _, _ = _ingest(tree, tmp_path, deid_gate)
    assert first.ok
    second, _, indexed = _ingest(tree, tmp_path, deid_gate, site_id="SITE_B")
    assert {o.status for o in second.outcomes} == {"rejected"}, {o.status for o in second.outcomes}
    assert all("belongs to site SITE_A" in o.reason for o in second.outcomes)
    assert indexed == len(first.outcomes)


_KILLED_BEFORE_PUBLISHING = """
import os, sys
from radcommons.store.objects import ObjectStore

def killed(self, staged, **kwargs):
    os._exit(9)

ObjectStore.publish = killed
from radcommons.cli import main
sys.argv = ["radcommons", *sys.argv[1:]]
main()
"""


def test_what_a_killed_ingest_staged_is_removed_by_the_next(deid_tree: Path, tmp_path: Path, run_cli) -> None:
    """Staged copies of a killed ingest stayed in the store's tmp/ for good (GBs of a large load):
    nothing called clean_temp. Now the next ingest (or server start) removes them at once."""
    import subprocess
    import sys

    url, store = f"sqlite:///{tmp_path / 'k.db'}", tmp_path / "k-objects"
    assert run_cli("db", "upgrade", "--url", url).returncode == 0
    args = ["ingest", str(deid_tree), "--project", "Open-A1", "--site", "SITE_A", "--workers", "1", "--url", url,
            "--store", str(store)]
    killed = subprocess.run([sys.executable, "-c", _KILLED_BEFORE_PUBLISHING, *args], capture_output=True, text=True,
                            timeout=300)
    assert killed.returncode == 9, killed.stderr
    assert list((store / "tmp").glob("stage-*.partial"))
    again = run_cli(*args)
    assert again.returncode == 0, again.stderr
    assert not list((store / "tmp").glob("*.partial"))


_KILLED_BEFORE_DERIVING = """
import os, sys
from radcommons.pipelines.indexing import IndexWriter

def killed(self, conn):
    os._exit(9)

IndexWriter.finish = killed
from radcommons.cli import main
sys.argv = ["radcommons", *sys.argv[1:]]
main()
"""


def test_what_a_killed_ingest_indexed_is_derived_by_the_next(deid_tree: Path, tmp_path: Path, run_cli) -> None:
    """A killed ingest's committed batches were indexed without their derived fields and facet
    rows (written only at the run's end) until the same ingest ran again. Each batch now names its
    studies in ingest_pending, and the next ingest of anything (or the server's start) derives them."""
    import subprocess
    import sys

    from sqlalchemy import func, select

    from radcommons.store.index.schema import get_metadata, system_table

    url, store = f"sqlite:///{tmp_path / 'k.db'}", tmp_path / "k-objects"
    assert run_cli("db", "upgrade", "--url", url).returncode == 0
    common = ["--site", "SITE_A", "--workers", "1", "--url", url, "--store", str(store)]
    killed = subprocess.run([sys.executable, "-c", _KILLED_BEFORE_DERIVING, "ingest", str(deid_tree),
                             "--project", "Open-A1", *common], capture_output=True, text=True, timeout=300)
    assert killed.returncode == 9, killed.stderr
    tables = get_metadata().tables
    study, facts, pending = tables["imaging_study"], tables["series_facts"], system_table("ingest_pending")
    engine = make_engine(url)

    def state() -> tuple[int, int, int, int]:
        with engine.connect() as conn:
            return (conn.execute(select(func.count()).select_from(study)).scalar_one(),
                    conn.execute(select(func.count()).select_from(study).where(
                        study.c.study_modality.is_not(None), study.c.days_to_study.is_not(None))).scalar_one(),
                    conn.execute(select(func.count()).select_from(facts)).scalar_one(),
                    conn.execute(select(func.count()).select_from(pending)).scalar_one())

    studies, derived, fact_rows, named = state()
    assert studies > 0 and derived == 0 and fact_rows == 0 and named == studies
    empty = tmp_path / "nothing-new"
    empty.mkdir()
    again = run_cli("ingest", str(empty), "--project", "Open-A2", *common)
    assert again.returncode == 0, again.stderr
    studies, derived, fact_rows, named = state()
    assert derived == studies and fact_rows > 0 and named == 0
    engine.dispose()
