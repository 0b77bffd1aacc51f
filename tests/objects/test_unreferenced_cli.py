"""``radcommons objects unreferenced``: the objects the index does not name, past a grace period,
listed and (``--delete``) removed, run as a real subprocess on an ingested commons."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

STRAY = b"stored, never recorded" * 50
STRAY_DIGEST = hashlib.sha256(STRAY).hexdigest()


def _age(store: Path, digest: str, hours: float) -> None:
    """Make an object look written ``hours`` ago (what a crash long ago would have left)."""
    path = store / "sha256" / digest[:2] / digest[2:4] / digest
    then = time.time() - hours * 3600
    os.utime(path, (then, then))


def test_lists_and_deletes_only_what_nothing_names(run_cli, db_url: str, deid_tree: Path, tmp_path: Path) -> None:
    store, where = tmp_path / "objects", ("--store", str(tmp_path / "objects"), "--url", db_url)
    assert run_cli("db", "upgrade", "--url", db_url).returncode == 0
    ingest = run_cli("ingest", str(deid_tree), "--project", "Orphans", "--site", "SITE_A", "--workers", "1", *where)
    assert ingest.returncode == 0, ingest.stderr
    ingested = run_cli("objects", "ls", "--store", str(store)).stdout.split("\n")
    ingested = [line.split()[0] for line in ingested if line]
    assert len(ingested) == 30
    (tmp_path / "stray.bin").write_bytes(STRAY)
    assert run_cli("objects", "put", "stray.bin", "--store", str(store)).returncode == 0
    for digest in [*ingested, STRAY_DIGEST]:
        _age(store, digest, 48)

    young = run_cli("objects", "unreferenced", *where)  # default: older than 24 h
    assert young.returncode == 0, young.stderr
    assert [line.split()[:2] for line in young.stdout.splitlines()] == [[STRAY_DIGEST, str(len(STRAY))]]
    assert young.stdout.split()[2].startswith("48.")
    assert "1 unreferenced object(s) older than 24 h" in young.stderr and f"{len(STRAY)} bytes" in young.stderr

    _age(store, STRAY_DIGEST, 1)  # within the grace period: perhaps an upload about to record it
    assert run_cli("objects", "unreferenced", *where).stdout == ""
    listed = run_cli("objects", "unreferenced", "--older-than", "0", *where)
    assert [line.split()[0] for line in listed.stdout.splitlines()] == [STRAY_DIGEST]
    assert (store / "sha256" / STRAY_DIGEST[:2] / STRAY_DIGEST[2:4] / STRAY_DIGEST).exists()  # listing removes nothing

    deleted = run_cli("objects", "unreferenced", "--older-than", "0", "--delete", *where)
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout.splitlines()[-1] == f"deleted  {STRAY_DIGEST}"
    assert "deleted 1 object(s)" in deleted.stderr
    remaining = run_cli("objects", "ls", "--store", str(store)).stdout.split("\n")
    assert [line.split()[0] for line in remaining if line] == ingested
    verify = run_cli("objects", "verify", "--store", str(store))
    assert verify.returncode == 0 and "checked 30 object(s)" in verify.stderr, verify.stderr
    assert run_cli("objects", "unreferenced", "--older-than", "0", *where).stdout == ""


def test_missing_index_or_store_is_a_clear_message(run_cli, db_url: str, tmp_path: Path) -> None:
    missing_store = run_cli("objects", "unreferenced", "--store", str(tmp_path / "nowhere"), "--url", db_url)
    assert missing_store.returncode == 2 and "no object store at" in missing_store.stderr, missing_store.stderr
    (tmp_path / "stray.bin").write_bytes(STRAY)
    assert run_cli("objects", "put", "stray.bin", "--store", "objects").returncode == 0
    no_index = run_cli("objects", "unreferenced", "--store", "objects", "--url", db_url)  # never migrated
    assert no_index.returncode == 2 and "no index at" in no_index.stderr, no_index.stderr
    for answer in (missing_store, no_index):
        assert "Traceback" not in answer.stderr
