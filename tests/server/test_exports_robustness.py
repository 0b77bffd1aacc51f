"""Server-made exports and their download (``radcommons download --format``) when things go wrong.

Found by a robustness sweep of the researcher's "find and take a cohort" journey; each test
says what the researcher saw before. A real server (``radcommons serve``) over a commons of its
own (the tests change availabilities and accounts), the command line as a subprocess.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "research"))

from commons_fixtures import Commons  # noqa: E402
from serve_support import free_port  # noqa: E402
from research_support import OPEN, ResearchCommons, serving  # noqa: E402
from test_export_api import _export  # noqa: E402

import radcommons  # noqa: E402
from radcommons.client.errors import CommonsError  # noqa: E402
from radcommons.store.objects import ObjectStore  # noqa: E402

Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def commons(deid_tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ResearchCommons]:
    root = tmp_path_factory.mktemp("export-robustness")
    with serving(root, f"sqlite:///{root / 'index.db'}", deid_tree) as built:
        yield built


@pytest.fixture(scope="module")
def cohort(commons: ResearchCommons) -> str:
    """The researcher's frozen cohort of every case it may read (the open project)."""
    with _client(commons) as client:
        return str(client.save_cohort("open cases", "case", None, freeze=True)["identifier"])


def _client(commons: ResearchCommons, user: str = "researcher") -> radcommons.Client:
    return radcommons.Client(commons.url, commons.server.tokens[user])


def _download(run_cli: Cli, commons: ResearchCommons, dest: Path, cohort: str, *options: str,
              user: str = "researcher") -> subprocess.CompletedProcess[str]:
    """``radcommons download DEST --cohort ID OPTIONS``, waiting while another export of the user runs."""
    token = commons.token_file(user, dest.parent / f"{user}.token")
    deadline = time.monotonic() + 120
    while True:
        done = run_cli("download", str(dest), "--cohort", cohort, *options, "--server", commons.url,
                       "--token-file", str(token))
        if "is still running" not in done.stdout + done.stderr or time.monotonic() > deadline:
            return done
        time.sleep(0.5)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_download_format_never_touches_a_folder_of_other_files(run_cli: Cli, commons: ResearchCommons,
                                                                cohort: str, tmp_path: Path) -> None:
    """Before: the export's README.md and labels.csv replaced the user's own, with exit 0."""
    dest = tmp_path / "myproject"
    dest.mkdir()
    (dest / "README.md").write_text("my own project notes - precious\n")
    (dest / "labels.csv").write_text("id,mylabel\n")
    before = _files(dest)
    done = _download(run_cli, commons, dest, cohort, "--format", "png")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "not empty and holds no RadCommons export" in done.stderr and "new or empty folder" in done.stderr
    assert "Traceback" not in done.stderr
    assert _files(dest) == before


def test_download_format_never_mixes_two_exports(run_cli: Cli, commons: ResearchCommons, cohort: str,
                                                 tmp_path: Path) -> None:
    """Before: a nifti export downloaded into the folder of a png one left 67 PNGs beside the
    volumes, under a label table and README of the nifti export only, with exit 0."""
    dest = tmp_path / "srv-png"
    first = _download(run_cli, commons, dest, cohort, "--format", "png")
    assert first.returncode == 0, first.stdout + first.stderr
    before = _files(dest)
    assert any(name.endswith(".png") for name in before)
    other = _download(run_cli, commons, dest, cohort, "--format", "nifti")
    assert other.returncode == 2, other.stdout + other.stderr
    assert "holds an export made with other settings (bits, format)" in other.stderr
    assert _files(dest) == before
    again = _download(run_cli, commons, dest, cohort, "--format", "png")  # the same export: resumed
    assert again.returncode == 0, again.stdout + again.stderr
    after = _files(dest)
    # README.md says when its export was made, to the minute: one made a minute later is fetched anew
    fetched = int(after["README.md"] != before["README.md"])
    assert f"{fetched} downloaded, 0 resumed, {len(before) - 1 - fetched} already complete" in again.stdout
    assert _without_created(after) == _without_created(before)


def _without_created(files: dict[str, bytes]) -> dict[str, bytes]:
    readme = re.sub(rb"\n- created: [^\n]*", b"", files["README.md"])
    return {**files, "README.md": readme}


def _env(commons: ResearchCommons) -> dict[str, str]:
    return {"RADCOMMONS_DATABASE_URL": commons.server.db_url,
            "RADCOMMONS_OBJECT_STORE_URL": str(commons.server.store_dir)}


def test_an_export_is_withdrawn_once_its_data_may_no_longer_be_read(run_cli: Cli, commons: ResearchCommons,
                                                                   cohort: str, tmp_path: Path) -> None:
    """Before: after the project was sequestered the researcher still downloaded every file of it
    from an export made earlier (72 files, 41 of the sequestered project)."""
    status = _export(commons, "researcher", cohort, tmp_path / "first", format="dicom")
    assert status["state"] == "done" and status["holds"] == [OPEN]
    folder = commons.server.root / "state" / "exports" / status["id"] / "files"
    assert folder.is_dir()
    changed = run_cli("admin", "project", "add", OPEN, "--availability", "sequestered", env=_env(commons))
    assert changed.returncode == 0, changed.stderr
    try:
        base = f"{commons.url}/api/v1/exports/{status['id']}"
        file = httpx.get(f"{base}/files/labels.csv", headers=commons.headers("researcher"))
        assert file.status_code == 410, file.text
        assert OPEN in file.json()["error"]["message"] and "new export" in file.json()["error"]["hint"]
        now = httpx.get(base, headers=commons.headers("researcher")).json()
        assert now["state"] == "withdrawn" and now["files"] == [] and "no longer read" in now["message"]
        assert not folder.exists()  # the files are gone from the server's disk too
    finally:
        restored = run_cli("admin", "project", "add", OPEN, "--availability", "open", env=_env(commons))
        assert restored.returncode == 0, restored.stderr


def test_an_export_is_deleted_by_its_owner_only(commons: ResearchCommons, cohort: str, tmp_path: Path) -> None:
    """Before: there was no way to delete an export; its files stayed on the server for ever."""
    status = _export(commons, "researcher", cohort, tmp_path / "dest", format="dicom")
    folder = commons.server.root / "state" / "exports" / status["id"]
    url = f"{commons.url}/api/v1/exports/{status['id']}"
    assert httpx.delete(url, headers=commons.headers("granted")).status_code == 404  # not theirs
    with _client(commons) as client:
        assert client.delete_export(status["id"]) == {"id": status["id"], "deleted": True}
    assert not folder.exists()
    assert httpx.get(url, headers=commons.headers("researcher")).status_code == 404


def test_finished_exports_expire(commons: ResearchCommons, cohort: str, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A server with RADCOMMONS_EXPORT_RETENTION_HOURS removes an export's files once it is older;
    waiting for an export that expired meanwhile stops with that (it polled for an hour)."""
    monkeypatch.setenv("RADCOMMONS_EXPORT_RETENTION_HOURS", "0.0005")  # 1.8 s
    other = Commons(tmp_path, commons.server.db_url, commons.server.store_dir, tokens=commons.server.tokens)
    other.start()
    try:
        with radcommons.Client(other.url, other.tokens["researcher"]) as client:
            export_id = client.start_export(cohort, "dicom")["id"]
            deadline = time.monotonic() + 120  # done, then expired 1.8 s later: however slow the machine
            while (expired := client.export_status(export_id))["state"] != "expired" and time.monotonic() < deadline:
                time.sleep(0.2)
            with pytest.raises(CommonsError, match="is expired") as waited:
                client.wait_export(export_id, interval=0.1)
        assert waited.value.code == "export_expired"
        assert expired["state"] == "expired" and expired["files"] == [] and "retention" in expired["message"]
        assert expired["finished_at"]  # it was done first
        assert not (tmp_path / "state" / "exports" / export_id / "files").exists()
    finally:
        other.stop()


def test_an_incomplete_export_is_not_handed_out_as_a_success(run_cli: Cli, commons: ResearchCommons, cohort: str,
                                                             tmp_path: Path) -> None:
    """Before: with a stored file damaged, `radcommons download --format` printed '1 series failed
    (see README.md)' and exited 0, and README.md quoted the commons' file path and the hash it found."""
    store = ObjectStore(str(commons.server.store_dir))
    digest = commons.object_ids[OPEN][0]
    path = Path(store.url_for(digest).removeprefix("file://"))
    whole = path.read_bytes()
    path.chmod(0o644)
    path.write_bytes(whole[:200] + bytes([whole[200] ^ 0xFF]) + whole[201:])
    try:
        done = _download(run_cli, commons, tmp_path / "dest", cohort, "--format", "dicom")
    finally:
        path.write_bytes(whole)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "incomplete" in output and "failed series" in output and "damaged" in output
    readme = (tmp_path / "dest" / "README.md").read_text()
    assert "damaged" in readme and str(commons.server.store_dir) not in readme and "file://" not in readme


def test_export_options_without_format_or_a_bad_stratify_are_refused_cleanly(
        run_cli: Cli, commons: ResearchCommons, cohort: str, tmp_path: Path) -> None:
    """Before: --bits and --seed without --format were ignored (exit 0), and a refused --stratify of
    `radcommons export` left an empty DEST behind."""
    done = _download(run_cli, commons, tmp_path / "dl", cohort, "--bits", "16", "--seed", "4")
    assert done.returncode == 2 and "--bits, --seed only apply to an export" in done.stderr, done.stderr
    assert not (tmp_path / "dl").exists()
    done = run_cli("export", cohort, str(tmp_path / "x"), "--for", "researcher", "--split", "train=0.8,test=0.2",
                   "--stratify", "nosuch", env=_env(commons))
    assert done.returncode == 2 and "cannot stratify on 'nosuch'" in done.stderr, done.stderr
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(("options", "field"), [(("--format", "jpeg"), "body.format"),
                                                (("--format", "png", "--split", "train=x"), "bad split 'train=x'")])
def test_validation_messages_name_the_field_once(run_cli: Cli, commons: ResearchCommons, cohort: str,
                                                 tmp_path: Path, options: tuple[str, ...], field: str) -> None:
    """Before: 'invalid request: body.format: body.format: Input should be ...'."""
    done = _download(run_cli, commons, tmp_path / "dl", cohort, *options)
    assert done.returncode == 2, done.stdout + done.stderr
    first = done.stderr.splitlines()[0]
    assert first.count(field) == 1, first


def _serve_on_tmpfs(commons: ResearchCommons, state: Path, size: str) -> tuple[subprocess.Popen[bytes], str]:
    """``radcommons serve`` with its state folder on a tmpfs of ``size`` of its own (a mount namespace)."""
    port = free_port()
    log = open(state.parent / "server.log", "ab")
    process = subprocess.Popen(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", 'mount -t tmpfs -o size=$1 tmpfs "$0" && '
         'shift && exec "$@"', str(state), size, sys.executable, "-m", "radcommons", "serve", "--port", str(port),
         "--state-dir", str(state), "--log-level", "warning"],
        env={**os.environ, **_env(commons)}, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, (state.parent / "server.log").read_text()
        try:
            if httpx.get(url + "/api/v1/health", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise AssertionError("the server did not start")


def _fill(folder: Path, leave: int = 0) -> Path:
    """Fill the file system of ``folder`` up, then give back ``leave`` bytes."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as error:
        assert error.errno == errno.ENOSPC, error
    finally:
        os.close(fd)
    if leave:
        os.truncate(filler, max(filler.stat().st_size - leave, 0))
    return filler


def _wait(http: httpx.Client, export_id: str) -> dict[str, Any]:
    for _ in range(600):
        status = http.get(f"/exports/{export_id}").json()
        if status["state"] not in ("queued", "running"):
            return status
        time.sleep(0.1)
    raise AssertionError(f"export {export_id} still {status['state']}")


def test_a_full_disk_fails_the_export_and_locks_nobody_out(commons: ResearchCommons, cohort: str,
                                                           tmp_path: Path) -> None:
    """Before: on a full disk the export thread died writing its final status: the export stayed
    'running' for ever, its files stayed, and every later export of the user was refused (409
    'still running') until the server restarted, space freed or not."""
    if shutil.which("unshare") is None or subprocess.run(
            ["unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True).returncode != 0:
        pytest.skip("no unshare --user --mount here (a tmpfs of the server's own is how a full disk is made)")
    state = tmp_path / "state"
    state.mkdir()
    process, url = _serve_on_tmpfs(commons, state, "1m")
    inside = Path(f"/proc/{process.pid}/root") / state.relative_to("/")  # the server's tmpfs, seen from here
    try:
        with httpx.Client(base_url=url + "/api/v1", headers=commons.headers("researcher"), timeout=60) as http:
            http.get("/exports/rc-export-0000000000000000")  # the server makes its exports folder
            filler = _fill(inside)
            for _ in range(2):  # not even the status fits: refused, and refused again (not 409)
                refused = http.post("/exports", json={"cohort": cohort, "format": "dicom"})
                assert refused.status_code == 503, refused.text
                assert "No space left on device" in refused.json()["error"]["message"]
            filler.unlink()
            _fill(inside, leave=2 * 4096)  # the status fits; the export's files do not
            started = http.post("/exports", json={"cohort": cohort, "format": "dicom"})
            assert started.status_code == 202, started.text
            failed = _wait(http, started.json()["id"])
            assert failed["state"] == "failed" and "No space left on device" in failed["message"], failed
            assert str(state) not in failed["message"]
            assert not (inside / "exports" / failed["id"] / "files").exists()
            filler.unlink()
            again = http.post("/exports", json={"cohort": cohort, "format": "dicom"})
            assert again.status_code == 202, again.text
            assert _wait(http, again.json()["id"])["state"] == "done"
    finally:
        process.terminate()
        process.wait(20)
