"""``radcommons db ...`` through a real process, as an operator runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from radcommons.cli import main
from radcommons.store.index import head_revision


def radcommons(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("RADCOMMONS_DATABASE_URL", None)
    return subprocess.run([sys.executable, "-m", "radcommons", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_upgrade_current_counts(db_url: str, tmp_path: Path) -> None:
    done = radcommons("db", "upgrade", "--url", db_url, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert head_revision() in done.stdout
    done = radcommons("db", "counts", "--url", db_url, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "imaging_study" in done.stdout and "instance" in done.stdout


def test_default_url_comes_from_settings(tmp_path: Path) -> None:
    # the default sqlite:///var/radcommons.db is relative to the working directory; its folder is created
    done = radcommons("db", "upgrade", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "var" / "radcommons.db").is_file()


def test_unmigrated_and_unreachable_databases_are_explained(tmp_path: Path) -> None:
    done = radcommons("db", "counts", "--url", f"sqlite:///{tmp_path / 'empty.db'}", cwd=tmp_path)
    assert done.returncode == 2 and "radcommons db upgrade" in done.stderr and "Traceback" not in done.stderr
    done = radcommons("db", "upgrade", "--url", "postgresql://u:secret@127.0.0.1:1/x", cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "secret" not in done.stderr and "****" in done.stderr


def test_a_sqlite_path_that_is_no_index_is_explained_and_none_is_created(tmp_path: Path) -> None:
    """A mistyped path got an empty file created; a file that is no database, a damaged one and a
    folder ended in "internal error: DatabaseError" or the hint to check that a server runs."""
    missing = tmp_path / "typo.db"
    done = radcommons("db", "counts", "--url", f"sqlite:///{missing}", cwd=tmp_path)
    assert done.returncode == 2 and "radcommons db upgrade" in done.stderr and not missing.exists()
    (tmp_path / "notes.db").write_text("not a database\n")
    (tmp_path / "folder.db").mkdir()
    for name in ("notes.db", "folder.db"):
        done = radcommons("db", "counts", "--url", f"sqlite:///{tmp_path / name}", cwd=tmp_path)
        assert done.returncode == 2 and "must be a SQLite index file" in done.stderr, done.stderr
        assert "internal error" not in done.stderr and "server runs" not in done.stderr


def test_revisions_this_version_does_not_know_are_explained(db_url: str, tmp_path: Path) -> None:
    """An unknown target, and an index migrated by a newer version: "db current" called it
    "behind" and sent the user to "db upgrade", which then crashed on Alembic's CommandError."""
    assert radcommons("db", "upgrade", "--url", db_url, cwd=tmp_path).returncode == 0
    done = radcommons("db", "upgrade", "--url", db_url, "--revision", "nosuch", cwd=tmp_path)
    assert done.returncode == 2 and "Can't locate revision identified by 'nosuch'" in done.stderr, done.stderr
    assert "internal error" not in done.stderr
    engine = sa.create_engine(db_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    current = radcommons("db", "current", "--url", db_url, cwd=tmp_path)
    assert "unknown to this version" in current.stdout and "behind" not in current.stdout, current.stdout
    done = radcommons("db", "upgrade", "--url", db_url, cwd=tmp_path)
    assert done.returncode == 2 and "'9999'" in done.stderr and "internal error" not in done.stderr, done.stderr


def test_current_and_downgrade_in_process(
    db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def run(*args: str) -> int:
        monkeypatch.setattr(sys, "argv", ["radcommons", *args])
        with pytest.raises(SystemExit) as exit_:
            main()
            raise SystemExit(0)
        return int(exit_.value.code or 0)

    assert run("db", "current", "--url", db_url) == 0
    assert "none" in capsys.readouterr().out
    assert run("db", "upgrade", "--url", db_url) == 0
    assert run("db", "current", "--url", db_url) == 0
    assert "up to date" in capsys.readouterr().out
    assert run("db", "downgrade", "base", "--url", db_url) == 0
    assert "base" in capsys.readouterr().out
