"""The fork server of :mod:`serve_support` (it starts the servers and commands of many tests):
a server's exit status is its own, and no server outlives the fork server."""

from __future__ import annotations

import os
from pathlib import Path

import psutil
import pytest
from serve_support import _ForkServer, free_port, start_server

SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # about processes, not databases


def _server_env(db_url: str, root: Path) -> dict[str, str]:
    return {**os.environ, "RADCOMMONS_DATABASE_URL": db_url, "RADCOMMONS_OBJECT_STORE_URL": str(root / "objects")}


@SQLITE_ONLY
def test_a_running_server_is_not_taken_for_an_earlier_child_that_had_its_pid(migrated_url: str,
                                                                            tmp_path: Path) -> None:
    # PIDs wrap in a long run: an exit status filed under the pid would be an earlier child's.
    forker = _ForkServer()
    try:
        process = start_server(tmp_path, free_port(), _server_env(migrated_url, tmp_path), via=forker)
        (forker._exits / str(process.pid)).write_text("0")  # what that earlier child left
        assert process.poll() is None
        process.terminate()
        assert process.wait(30) is not None
    finally:
        forker.close()


@SQLITE_ONLY
def test_the_servers_still_running_end_with_the_fork_server(migrated_url: str, tmp_path: Path) -> None:
    forker = _ForkServer()
    try:
        process = start_server(tmp_path, free_port(), _server_env(migrated_url, tmp_path), via=forker)
        exits = forker._exits
    finally:
        forker.close()  # what happens when the test process ends: its pipe to the fork server closes
    assert not psutil.pid_exists(process.pid), "the server outlived its fork server (orphaned on its port)"
    assert not exits.exists()  # deleted once the fork server, which writes there, had exited
