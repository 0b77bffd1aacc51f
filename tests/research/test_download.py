"""Downloads: parallel, laid out by case/study/series, verified, resumed after an interruption, skipping
complete files; an expired or revoked token stops with a clear message; the same from the command line."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from research_support import OPEN, RESTRICTED, ResearchCommons

import radcommons
from radcommons.client import AuthenticationError
from radcommons.client.download import FileEntry
from radcommons.store.index import make_engine
from radcommons.store.index.accounts import create_token, list_tokens, revoke_token


@pytest.fixture(scope="module")
def cohort(research_commons: ResearchCommons) -> dict[str, Any]:
    with radcommons.Client(research_commons.url, research_commons.server.tokens["granted"]) as c:
        return c.save_cohort("download me", "case", None, freeze=True)


def _check_tree(dest: Path, commons: ResearchCommons) -> None:
    files = sorted(dest.rglob("*.dcm"))
    expected = set(commons.object_ids[OPEN]) | set(commons.object_ids[RESTRICTED])
    assert {hashlib.sha256(p.read_bytes()).hexdigest() for p in files} == expected
    assert not list(dest.rglob("*.part"))
    sop = commons.instances[OPEN][0]
    found = [p for p in files if p.name == f"{sop.sop_uid}.dcm"]
    assert found and found[0].parent.parent.name == sop.study_uid
    assert found[0].parent.parent.parent.name == sop.patient_id


def test_download_interrupt_and_resume(research_commons: ResearchCommons, cohort: dict[str, Any],
                                       tmp_path: Path) -> None:
    dest = tmp_path / "data"
    seen: list[int] = []

    def stop_after_three(entry: FileEntry, nbytes: int) -> None:
        seen.append(nbytes)
        if len(seen) == 3:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C mid-transfer

    with radcommons.Client(research_commons.url, research_commons.server.tokens["granted"]) as c:
        with pytest.raises(KeyboardInterrupt):
            c.download(cohort["identifier"], dest, workers=1, progress=stop_after_three)
        partial = list(dest.rglob("*.dcm"))
        interrupted = list(dest.rglob("*.part"))  # the transfer that was stopped mid-file
        assert 0 < len(partial) < cohort["instance_count"] and len(interrupted) == 1
        # A half-written file (a killed process) and a corrupted complete one.
        half = partial[0]
        data = half.read_bytes()
        half.unlink()
        half.with_name(half.name + ".part").write_bytes(data[: len(data) // 2])
        if len(partial) > 1:
            partial[1].write_bytes(b"\0" * partial[1].stat().st_size)
        report = c.download(cohort["identifier"], dest, workers=4)
        assert report.ok and report.resumed == 2
        assert report.skipped == len(partial) - min(len(partial), 2)
        _check_tree(dest, research_commons)
        again = c.download(cohort["identifier"], dest, workers=4)
        assert again.skipped == cohort["instance_count"] and again.downloaded == again.resumed == 0


def test_revoked_token_stops_with_a_clear_error(research_commons: ResearchCommons, cohort: dict[str, Any],
                                                 tmp_path: Path) -> None:
    engine = make_engine(research_commons.server.db_url)
    try:
        token, info = create_token(engine, "granted", expires_days=1)
        with radcommons.Client(research_commons.url, token) as c:
            entries = c.entries(cohort["identifier"])
            revoke_token(engine, info.id)
            with pytest.raises(AuthenticationError) as error:
                c.download(entries, tmp_path / "data", workers=2)
        assert error.value.code == "token_revoked"
        assert "run the same download again" in error.value.hint
    finally:
        assert any(t.id == info.id and t.state == "revoked" for t in list_tokens(engine, "granted"))
        engine.dispose()


def test_download_command(research_commons: ResearchCommons, cohort: dict[str, Any], tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(research_commons.server.tokens["granted"])
    token_file.chmod(0o600)
    dest = tmp_path / "cli"
    command = [sys.executable, "-m", "radcommons", "download", str(dest), "--cohort", cohort["identifier"],
               "--server", research_commons.url, "--token-file", str(token_file), "--workers", "3"]
    env = {**os.environ, "COLUMNS": "200"}
    first = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert first.returncode == 0, first.stderr
    _check_tree(dest, research_commons)
    second = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert second.returncode == 0 and f"{cohort['instance_count']} already complete" in second.stdout
    # A manifest file works the same.
    manifest = tmp_path / "manifest.json"
    with radcommons.Client(research_commons.url, research_commons.server.tokens["granted"]) as c:
        import json

        manifest.write_text(json.dumps(c.cohort_manifest(cohort["identifier"])))
    by_file = command[:5] + ["--manifest", str(manifest)] + command[7:]
    assert subprocess.run(by_file, capture_output=True, text=True, timeout=120, env=env).returncode == 0
    bad = subprocess.run(command[:-4] + ["--token-file", str(tmp_path / "missing")], capture_output=True,
                         text=True, timeout=120, env=env)
    assert bad.returncode == 2 and "token" in bad.stderr.lower()
