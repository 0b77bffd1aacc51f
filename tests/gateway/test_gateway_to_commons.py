"""The gateway end to end: dcmtk's storescu sends to ``radcommons gateway``, which de-identifies, waits for
the quiet period and uploads into a real ``radcommons serve``; the instances end up indexed there."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pydicom
import pytest
from sqlalchemy import select

from radcommons.deid import patient_pseudonym
from radcommons.store.index import make_engine
from radcommons.store.index.schema import node_tables

sys.path.insert(0, str(Path(__file__).parents[1] / "server"))
sys.path.insert(0, str(Path(__file__).parent))

from commons_fixtures import PROJECT, SITE, make_commons  # noqa: E402
from test_gateway import KEY, corpus, free_port, key_file, radiographs  # noqa: E402,F401


def _upload_token(commons, tmp_path: Path) -> Path:
    token_file = tmp_path / "upload.token"
    token_file.write_text(commons.tokens["uploader"] + "\n")
    token_file.chmod(0o600)
    return token_file


def _start_gateway(commons, key_file: Path, state: Path, token_file: Path) -> tuple[subprocess.Popen[str], int]:
    """``radcommons gateway`` sending to ``commons`` (quiet period 1 s), once it answers C-ECHO."""
    port = free_port()
    gateway = subprocess.Popen(
        [sys.executable, "-m", "radcommons", "gateway", "--ae-title", "RCGW", "--port", str(port),
         "--host", "127.0.0.1", "--site", SITE, "--project", PROJECT, "--key-file", str(key_file),
         "--state-dir", str(state), "--quiet-seconds", "1", "--server", commons.url,
         "--token-file", str(token_file)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        if subprocess.run(["echoscu", "-aec", "RCGW", "127.0.0.1", str(port)], capture_output=True).returncode == 0:
            return gateway, port
        assert gateway.poll() is None, gateway.stdout.read() if gateway.stdout else "gateway exited"
        time.sleep(0.3)
    raise AssertionError("the gateway did not answer C-ECHO within 60 s")


def _store(port: int, files: list[Path]) -> None:
    store = subprocess.run(["storescu", "-aec", "RCGW", "127.0.0.1", str(port), *map(str, files)],
                           capture_output=True, text=True, timeout=120)
    assert store.returncode == 0, store.stderr


def _receipts(gateway: subprocess.Popen[str], state: Path, count: int) -> list[Path]:
    """Wait (120 s at most) until the gateway has saved ``count`` receipts; they, oldest first."""
    deadline = time.time() + 120
    while time.time() < deadline:
        found = sorted((state / "receipts").glob("gateway-*.json"), key=lambda p: p.stat().st_mtime_ns)
        if len(found) >= count:
            return found
        assert gateway.poll() is None, gateway.stdout.read() if gateway.stdout else "gateway exited"
        time.sleep(0.5)
    raise AssertionError(f"fewer than {count} receipt(s) from the commons within 120 s")


def _stop(gateway: subprocess.Popen[str]) -> str:
    gateway.send_signal(signal.SIGINT)
    output, _ = gateway.communicate(timeout=30)
    return output


def test_gateway_uploads_into_a_running_commons(corpus: Path, key_file: Path, tmp_path: Path) -> None:
    (tmp_path / "commons").mkdir()
    commons = make_commons(tmp_path / "commons", f"sqlite:///{tmp_path / 'commons' / 'index.db'}")
    files = radiographs(corpus)
    state = tmp_path / "site-state"
    try:
        gateway, port = _start_gateway(commons, key_file, state, _upload_token(commons, tmp_path))
        try:
            _store(port, files)
            found = _receipts(gateway, state, 1)
        finally:
            _stop(gateway)
    finally:
        commons.stop()
    receipt = json.loads(found[0].read_text())["receipt"]
    assert receipt["status"] == "committed", receipt
    assert receipt["counts"]["instances"]["indexed"] == len(files), receipt["counts"]

    # The commons indexed every instance, under the site's pseudonyms, not the PACS's identifiers.
    mrns = {str(pydicom.dcmread(p, stop_before_pixels=True).PatientID) for p in files}
    pseudonyms = {patient_pseudonym(KEY, SITE, mrn) for mrn in mrns}
    originals = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in files}
    engine = make_engine(commons.db_url)
    try:
        tables = node_tables()
        with engine.connect() as conn:
            uids = list(conn.execute(select(tables["instance"].c.sop_instance_uid)
                                     .where(tables["instance"].c.project_id == PROJECT)).scalars())
            cases = set(conn.execute(select(tables["case"].c.submitter_id)
                                     .where(tables["case"].c.project_id == PROJECT)).scalars())
    finally:
        engine.dispose()
    assert len(uids) == len(set(uids)) == len(files)
    assert not set(uids) & originals  # UIDs were replaced at the gateway
    assert cases == pseudonyms


pytestmark = pytest.mark.skipif(subprocess.run(["which", "storescu"], capture_output=True).returncode != 0,
                                reason="dcmtk (storescu, echoscu) not installed")


def _one_study(corpus: Path, least: int) -> list[Path]:
    """The files of a study of the corpus with at least ``least`` instances (CT slices)."""
    for folder in sorted({p.parent for p in (corpus / "site_a").rglob("*.dcm") if "CDROM" not in p.parts}):
        files = sorted(folder.glob("*.dcm"))
        if len(files) >= least:
            return files
    raise AssertionError(f"no study of {least} instances in the corpus")


def test_instances_that_arrive_after_their_study_was_sent_join_it(corpus: Path, key_file: Path,
                                                                  tmp_path: Path) -> None:
    """A study's instances that came after a round had sent the study (a PACS retrying what failed, a
    series sent later) were declared alone, and the commons, which takes a study's manifest as the
    whole study, kept only them: the instances the PACS had been told were stored left the commons.
    The gateway now declares every instance of the study it sent or holds."""
    (tmp_path / "commons").mkdir()
    commons = make_commons(tmp_path / "commons", f"sqlite:///{tmp_path / 'commons' / 'index.db'}")
    files = _one_study(corpus, 4)
    first, late = files[: len(files) // 2], files[len(files) // 2:]
    state = tmp_path / "site-state"
    try:
        gateway, port = _start_gateway(commons, key_file, state, _upload_token(commons, tmp_path))
        try:
            _store(port, first)
            earlier = json.loads(_receipts(gateway, state, 1)[0].read_text())
            _store(port, late)
            receipt = json.loads(_receipts(gateway, state, 2)[-1].read_text())
        finally:
            log = _stop(gateway)
        study = receipt["receipt"]["studies"][0]
        with commons.http("admin") as http:
            versions = http.get(f"/studies/{study['study_uid']}/versions", params={"project": PROJECT}).json()
        answer = httpx.get(f"{commons.url}/dicomweb/studies/{study['study_uid']}/instances",
                           headers={"Authorization": f"Bearer {commons.tokens['admin']}"}, timeout=60)
    finally:
        commons.stop()
    held = len(list((state / "gateway" / "done").rglob("*.dcm")))  # what the gateway acknowledged and sent
    assert held > earlier["upload"]["files"] > 0, (held, earlier)
    assert answer.status_code == 200, answer.text
    assert len(answer.json()) == held, (len(answer.json()), held, versions, log)
    assert study["status"] == "new_version", receipt
    # the earlier instances were declared again, not sent again
    assert receipt["upload"]["files"] == held, receipt["upload"]
    assert receipt["upload"]["already_on_server"] == earlier["upload"]["files"], receipt["upload"]
    # receipts are private, as contribute's (they were 0644 in a 0755 folder)
    assert (state / "receipts").stat().st_mode & 0o077 == 0
    assert all(p.stat().st_mode & 0o077 == 0 for p in (state / "receipts").iterdir())
