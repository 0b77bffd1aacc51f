"""Downloads: parallel, laid out by case/study/series, verified, resumed after an interruption, skipping
complete files; an expired or revoked token stops with a clear message; the same from the command line."""

from __future__ import annotations

import hashlib
import http.server
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from research_support import OPEN, RESTRICTED, ResearchCommons

import radcommons
from radcommons.client import AuthenticationError
from radcommons.errors import UserError
from radcommons.client.download import FileEntry, download_entries
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
    seen: list[str] = []

    def stop_in_the_third(entry: FileEntry, nbytes: int) -> None:
        if entry.object_id not in seen:
            seen.append(entry.object_id)
        if len(seen) == 3:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C during the third file

    with radcommons.Client(research_commons.url, research_commons.server.tokens["granted"]) as c:
        with pytest.raises(KeyboardInterrupt):
            c.download(cohort["identifier"], dest, workers=1, progress=stop_in_the_third)
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


def test_a_stopped_transfer_closes_its_stream_at_once(tmp_path: Path) -> None:
    """The response stream of an interrupted transfer is closed before the error leaves the
    download, not later by the garbage collector (which once ran that close inside httpx's
    connection pool, on a thread holding the pool's lock: a download hung for good)."""
    data = b"x" * 4096
    entry = FileEntry(hashlib.sha256(data).hexdigest(), len(data), "case", "study", "series", "sop", "")
    closed: list[bool] = []

    def opener(source: str, offset: int) -> tuple[int, Any]:
        def chunks() -> Any:
            try:
                yield from (data[i:i + 1024] for i in range(offset, len(data), 1024))
            finally:
                closed.append(True)
        return offset, chunks()

    def interrupt(entry: FileEntry, nbytes: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        download_entries([entry], tmp_path, opener, workers=1, progress=interrupt)
    assert closed == [True]
    report = download_entries([entry], tmp_path, opener, workers=1)
    assert report.ok and report.resumed == 1 and closed == [True, True]


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


def test_a_commons_gone_away_stops_the_download_with_what_to_do(research_commons: ResearchCommons,
                                                                 cohort: dict[str, Any], tmp_path: Path) -> None:
    """Each remaining file retried its own connection, one after another: a server killed
    mid-download left the command silent for many minutes."""
    with radcommons.Client(research_commons.url, research_commons.server.tokens["granted"]) as c:
        entries = c.entries(cohort["identifier"])
    assert len(entries) > 3
    with socket.socket() as probe:  # a port where nothing listens: the commons is gone
        probe.bind(("127.0.0.1", 0))
        gone = f"http://127.0.0.1:{probe.getsockname()[1]}"
    started = time.monotonic()
    with radcommons.Client(gone, "token", retries=3, backoff=0.1) as c:
        with pytest.raises(UserError, match="3 files in a row could not be fetched") as error:
            c.download(entries, tmp_path / "data", workers=2)
    assert time.monotonic() - started < 30, "it went through every file"
    assert "run the same download again" in error.value.hint


class _StallingProxy(http.server.ThreadingHTTPServer):
    """A loopback HTTP proxy in front of the commons that passes the first ``whole`` object transfers
    through and sends every later one only up to its last byte, then holds the connection open until
    ``release`` is set: a download through it is, deterministically, stuck with files half-written."""

    daemon_threads = True

    def __init__(self, upstream: str, whole: int) -> None:
        self.upstream = upstream
        self.whole = whole
        self.objects_started = 0
        self.lock = threading.Lock()
        self.release = threading.Event()
        super().__init__(("127.0.0.1", 0), _StallingHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def stalls(self, path: str) -> bool:
        if "/objects/" not in path:
            return False
        with self.lock:
            self.objects_started += 1
            return self.objects_started > self.whole


class _StallingHandler(http.server.BaseHTTPRequestHandler):
    server: _StallingProxy

    def _forward(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        stall = self.server.stalls(self.path)
        with httpx.Client(base_url=self.server.upstream, timeout=30) as upstream, \
                upstream.stream(self.command, self.path, headers=headers, content=body) as response:
            self.send_response(response.status_code)
            for key, value in response.headers.items():
                if key.lower() not in ("connection", "transfer-encoding", "keep-alive"):
                    self.send_header(key, value)
            self.end_headers()
            data = response.read()
            try:
                self.wfile.write(data[:-1] if stall else data)
                self.wfile.flush()
                if stall:
                    self.server.release.wait(120)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client was killed

    do_GET = do_POST = do_HEAD = _forward

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_download_killed_with_sigkill_resumes(research_commons: ResearchCommons, cohort: dict[str, Any],
                                              tmp_path: Path) -> None:
    """`radcommons download` in a subprocess, SIGKILLed mid-file, then run again: complete and verified."""
    token_file = research_commons.token_file("granted", tmp_path / "token")
    dest = tmp_path / "killed"
    expected = {oid: size for project in (OPEN, RESTRICTED)
                for oid, size in zip(research_commons.object_ids[project],
                                     (i.path.stat().st_size for i in research_commons.instances[project]))}
    proxy = _StallingProxy(research_commons.url, whole=2)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    env = {**os.environ, "COLUMNS": "200"}

    def command(server: str) -> list[str]:
        return [sys.executable, "-m", "radcommons", "download", str(dest), "--cohort", cohort["identifier"],
                "--server", server, "--token-file", str(token_file), "--workers", "2"]

    originals = {i.sop_uid: i.path for project in (OPEN, RESTRICTED) for i in research_commons.instances[project]}
    try:
        # Two files pass whole, then both workers hang one byte short of the end of theirs: SIGKILL then.
        process = subprocess.Popen(command(proxy.url), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            parts = [p for p in dest.rglob("*.part") if p.stat().st_size > 0] if dest.exists() else []
            if len(parts) == 2 and len(list(dest.rglob("*.dcm"))) == 2:
                break
            time.sleep(0.02)
        assert process.poll() is None, process.communicate()[1]
        # Meanwhile a second download into the same folder is refused: two at once wrote into each
        # other's .part files, and files of twice their size were renamed into place.
        second = subprocess.run(command(research_commons.url), capture_output=True, text=True, timeout=120, env=env)
        assert second.returncode == 2 and "in use by another download" in second.stderr, second.stderr
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        proxy.release.set()
        proxy.shutdown()
        proxy.server_close()
    finals, parts = sorted(dest.rglob("*.dcm")), sorted(dest.rglob("*.part"))
    assert parts and 0 < len(finals) < len(expected)
    for path in finals:  # nothing half-written under a final name
        assert expected.get(hashlib.sha256(path.read_bytes()).hexdigest()) == path.stat().st_size, path
    for part in parts:  # a prefix of the file, which the rerun continues
        assert originals[part.name.removesuffix(".dcm.part")].read_bytes().startswith(part.read_bytes()), part
    again = subprocess.run(command(research_commons.url), capture_output=True, text=True, timeout=120, env=env)
    assert again.returncode == 0, again.stderr
    resumed = int(re.search(r"(\d+) resumed", again.stdout).group(1))  # type: ignore[union-attr]
    assert resumed >= 1 and f"{len(finals)} already complete" in again.stdout, again.stdout
    _check_tree(dest, research_commons)
    assert {hashlib.sha256(p.read_bytes()).hexdigest(): p.stat().st_size for p in dest.rglob("*.dcm")} == expected


def test_download_command(research_commons: ResearchCommons, cohort: dict[str, Any], tmp_path: Path) -> None:
    token_file = research_commons.token_file("granted", tmp_path / "token")
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
