"""``radcommons objects unreferenced``: the objects the index does not name, past a grace period,
listed and (``--delete``) removed, on an ingested commons. The listing and the deletion each run
once as a real subprocess (exit codes, stdout and stderr as an operator sees them); the other
calls go through the same Typer app in process."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from typer.testing import CliRunner

from radcommons.cli import app
from radcommons.store.objects import ObjectStore

STRAY = b"stored, never recorded" * 50
STRAY_DIGEST = hashlib.sha256(STRAY).hexdigest()


def _age(store: Path, digest: str, hours: float) -> None:
    """Make an object look written ``hours`` ago (what a crash long ago would have left)."""
    path = store / "sha256" / digest[:2] / digest[2:4] / digest
    then = time.time() - hours * 3600
    os.utime(path, (then, then))


def test_lists_and_deletes_only_what_nothing_names(run_cli, migrated_url: str, deid_tree: Path,
                                                   tmp_path: Path) -> None:
    store, where = tmp_path / "objects", ("--store", str(tmp_path / "objects"), "--url", migrated_url)
    ingest = run_cli("ingest", str(deid_tree), "--project", "Orphans", "--site", "SITE_A", "--workers", "1", *where)
    assert ingest.returncode == 0, ingest.stderr
    objects = ObjectStore(str(store))
    ingested = [item.digest for item in objects.iter_objects()]
    assert len(ingested) == 30
    objects.put_bytes(STRAY)
    for digest in [*ingested, STRAY_DIGEST]:
        _age(store, digest, 48)
    runner = CliRunner()

    def in_process(*args: str):
        return runner.invoke(app, ["objects", "unreferenced", *args, *where])

    young = run_cli("objects", "unreferenced", *where)  # default: older than 24 h
    assert young.returncode == 0, young.stderr
    assert [line.split()[:2] for line in young.stdout.splitlines()] == [[STRAY_DIGEST, str(len(STRAY))]]
    assert young.stdout.split()[2].startswith("48.")
    assert "1 unreferenced object(s) older than 24 h" in young.stderr and f"{len(STRAY)} bytes" in young.stderr

    _age(store, STRAY_DIGEST, 1)  # within the grace period: perhaps an upload about to record it
    assert in_process().stdout == ""
    listed = in_process("--older-than", "0")
    assert [line.split()[0] for line in listed.stdout.splitlines()] == [STRAY_DIGEST]
    assert (store / "sha256" / STRAY_DIGEST[:2] / STRAY_DIGEST[2:4] / STRAY_DIGEST).exists()  # listing removes nothing

    deleted = run_cli("objects", "unreferenced", "--older-than", "0", "--delete", *where)
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout.splitlines()[-1] == f"deleted  {STRAY_DIGEST}"
    assert "deleted 1 object(s)" in deleted.stderr
    assert [item.digest for item in objects.iter_objects()] == ingested
    verify = runner.invoke(app, ["objects", "verify", "--store", str(store)])
    assert verify.exit_code == 0 and "checked 30 object(s)" in verify.output, verify.output
    assert in_process("--older-than", "0").stdout == ""


def test_a_missing_store_is_a_clear_message(run_cli, tmp_path: Path) -> None:
    """Checked before the index is opened: once, whatever the database."""
    missing = run_cli("objects", "unreferenced", "--store", str(tmp_path / "nowhere"), "--url",
                      f"sqlite:///{tmp_path / 'index.db'}")
    assert missing.returncode == 2 and "no object store at" in missing.stderr, missing.stderr
    assert "Traceback" not in missing.stderr


def test_a_missing_index_is_a_clear_message(run_cli, db_url: str, tmp_path: Path) -> None:
    ObjectStore(str(tmp_path / "objects")).put_bytes(STRAY)
    no_index = run_cli("objects", "unreferenced", "--store", "objects", "--url", db_url)  # never migrated
    assert no_index.returncode == 2 and "no index at" in no_index.stderr, no_index.stderr
    assert "Traceback" not in no_index.stderr
