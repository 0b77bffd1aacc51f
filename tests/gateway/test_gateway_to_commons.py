"""The gateway end to end: dcmtk's storescu sends to ``radcommons gateway``, which de-identifies, waits for
the quiet period and uploads into a real ``radcommons serve``; the instances end up indexed there.

The tests share one commons (``sqlite_commons``: starting one took seconds a test); each de-identifies
with a key of its own, so that its studies have UIDs, and its patients pseudonyms, no other test's have."""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pydicom
import pytest
from sqlalchemy import select

from radcommons.client import file_sha256
from radcommons.deid import patient_pseudonym
from radcommons.pipelines.gateway import spooled_files
from radcommons.store.index import make_engine
from radcommons.store.index.schema import node_tables

sys.path.insert(0, str(Path(__file__).parents[1] / "server"))
sys.path.insert(0, str(Path(__file__).parent))

from commons_fixtures import PROJECT, SITE, Commons, sqlite_commons  # noqa: E402,F401  (the fixture)
from test_gateway import corpus, corrected, free_port, radiographs, store  # noqa: E402,F401


@pytest.fixture
def key(request: pytest.FixtureRequest) -> bytes:
    """The site's de-identification key, the test's own."""
    return hashlib.sha256(request.node.nodeid.encode()).digest()


@pytest.fixture
def key_file(key: bytes, tmp_path: Path) -> Path:
    path = tmp_path / "deid.key"
    path.write_text(key.hex() + "\n")
    path.chmod(0o600)
    return path


def _upload_token(commons, tmp_path: Path) -> Path:
    token_file = tmp_path / "upload.token"
    token_file.write_text(commons.tokens["uploader"] + "\n")
    token_file.chmod(0o600)
    return token_file


def _start_gateway(commons, key_file: Path, state: Path, token_file: Path,
                   quiet: float = 1.0) -> tuple[subprocess.Popen[str], int]:
    """``radcommons gateway`` sending to ``commons`` (quiet period ``quiet`` s, the spool checked every 0.5 s
    rather than 2 s), once it answers C-ECHO."""
    port = free_port()
    gateway = subprocess.Popen(
        [sys.executable, "-m", "radcommons", "gateway", "--ae-title", "RCGW", "--port", str(port),
         "--host", "127.0.0.1", "--site", SITE, "--project", PROJECT, "--key-file", str(key_file),
         "--state-dir", str(state), "--quiet-seconds", str(quiet), "--check-seconds", "0.5", "--server", commons.url,
         "--token-file", str(token_file)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        if subprocess.run(["echoscu", "-aec", "RCGW", "127.0.0.1", str(port)], capture_output=True).returncode == 0:
            return gateway, port
        assert gateway.poll() is None, gateway.stdout.read() if gateway.stdout else "gateway exited"
        time.sleep(0.1)
    raise AssertionError("the gateway did not answer C-ECHO within 60 s")


def _receipts(gateway: subprocess.Popen[str], state: Path, count: int) -> list[Path]:
    """Wait (120 s at most) until the gateway has saved ``count`` receipts; they, oldest first."""
    deadline = time.time() + 120
    while time.time() < deadline:
        found = sorted((state / "receipts").glob("gateway-*.json"), key=lambda p: p.stat().st_mtime_ns)
        if len(found) >= count:
            return found
        assert gateway.poll() is None, gateway.stdout.read() if gateway.stdout else "gateway exited"
        time.sleep(0.1)
    raise AssertionError(f"fewer than {count} receipt(s) from the commons within 120 s")


def _spool_emptied(gateway: subprocess.Popen[str], state: Path) -> None:
    """Wait (60 s at most) until every study the gateway received has left its spool for ``done/``."""
    deadline = time.time() + 60
    while spooled_files(state / "gateway"):
        assert time.time() < deadline, f"studies still in the spool after 60 s: {spooled_files(state / 'gateway')}"
        assert gateway.poll() is None, gateway.stdout.read() if gateway.stdout else "gateway exited"
        time.sleep(0.1)


def _stop(gateway: subprocess.Popen[str]) -> str:
    gateway.send_signal(signal.SIGINT)
    output, _ = gateway.communicate(timeout=30)
    return output


def test_gateway_uploads_into_a_running_commons(corpus: Path, key: bytes, key_file: Path, tmp_path: Path,
                                                sqlite_commons: Commons) -> None:
    commons = sqlite_commons
    files = radiographs(corpus)
    state = tmp_path / "site-state"
    gateway, port = _start_gateway(commons, key_file, state, _upload_token(commons, tmp_path))
    try:
        store(port, files)
        # a loaded machine may take more than the quiet period between two instances of a study:
        # its later ones then go with the next round
        receipts: list[dict] = []
        while sum(r["counts"]["instances"]["indexed"] for r in receipts) < len(files):
            receipts = [json.loads(path.read_text())["receipt"]
                        for path in _receipts(gateway, state, len(receipts) + 1)]
    finally:
        _stop(gateway)
    assert all(receipt["status"] == "committed" for receipt in receipts), receipts
    assert sum(r["counts"]["instances"]["indexed"] for r in receipts) == len(files), receipts

    # The commons indexed every instance, under the site's pseudonyms, not the PACS's identifiers.
    mrns = {str(pydicom.dcmread(p, stop_before_pixels=True).PatientID) for p in files}
    pseudonyms = {patient_pseudonym(key, SITE, mrn) for mrn in mrns}
    originals = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in files}
    sent = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID)
            for p in (state / "gateway" / "done").rglob("*.dcm")}
    engine = make_engine(commons.db_url)
    try:
        tables = node_tables()
        with engine.connect() as conn:
            uids = list(conn.execute(select(tables["instance"].c.sop_instance_uid)
                                     .where(tables["instance"].c.project_id == PROJECT,
                                            tables["instance"].c.sop_instance_uid.in_(sent))).scalars())
            cases = set(conn.execute(select(tables["case"].c.submitter_id)
                                     .where(tables["case"].c.project_id == PROJECT)).scalars())
    finally:
        engine.dispose()
    assert len(uids) == len(set(uids)) == len(sent) == len(files)
    assert not sent & originals  # UIDs were replaced at the gateway
    assert pseudonyms <= cases and not cases & mrns  # (the commons is shared: other tests' cases too)


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
                                                                  tmp_path: Path, sqlite_commons: Commons) -> None:
    """A study's instances that came after a round had sent the study (a PACS retrying what failed, a
    series sent later) were declared alone, and the commons, which takes a study's manifest as the
    whole study, kept only them: the instances the PACS had been told were stored left the commons.
    The gateway now declares every instance of the study the commons holds with those it received."""
    commons = sqlite_commons
    files = _one_study(corpus, 4)
    first, late = files[: len(files) // 2], files[len(files) // 2:]
    state = tmp_path / "site-state"
    gateway, port = _start_gateway(commons, key_file, state, _upload_token(commons, tmp_path))
    try:
        store(port, first)
        earlier = json.loads(_receipts(gateway, state, 1)[0].read_text())
        store(port, late)
        receipt = json.loads(_receipts(gateway, state, 2)[-1].read_text())
    finally:
        log = _stop(gateway)
    study = receipt["receipt"]["studies"][0]
    with commons.http("admin") as http:
        versions = http.get(f"/studies/{study['study_uid']}/versions", params={"project": PROJECT}).json()
    answer = httpx.get(f"{commons.url}/dicomweb/studies/{study['study_uid']}/instances",
                       headers={"Authorization": f"Bearer {commons.tokens['admin']}"}, timeout=60)
    held = len(list((state / "gateway" / "done").rglob("*.dcm")))  # what the gateway acknowledged and sent
    assert held > earlier["upload"]["files"] > 0, (held, earlier)
    assert answer.status_code == 200, answer.text
    assert len(answer.json()) == held, (len(answer.json()), held, versions, log)
    assert study["status"] == "new_version", receipt
    # the earlier instances were declared again (the commons' latest version), not sent again
    assert receipt["upload"]["files"] == receipt["upload"]["sent"] == held - earlier["upload"]["files"], receipt
    # receipts are private, as contribute's (they were 0644 in a 0755 folder)
    assert (state / "receipts").stat().st_mode & 0o077 == 0
    assert all(p.stat().st_mode & 0o077 == 0 for p in (state / "receipts").iterdir())


def _contribute(commons, corpus: Path, files: list[Path], key_file: Path, state: Path, token_file: Path,
                tmp_path: Path) -> dict:
    """``radcommons contribute`` sends ``files`` (an export of part of a study) with the site's clinical
    data, as a data manager would; its receipt."""
    export = tmp_path / "export"
    export.mkdir()
    for path in files:
        shutil.copy(path, export / path.name)
    clinical = [arg for path in sorted((corpus / "site_a" / "clinical").iterdir()) if "correction" not in path.name
                for arg in ("--clinical", str(path))]
    done = subprocess.run([sys.executable, "-m", "radcommons", "contribute", str(export), *clinical, "--site", SITE,
                           "--project", PROJECT, "--key-file", str(key_file), "--state-dir", str(state),
                           "--server", commons.url, "--token-file", str(token_file)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(next((state / "receipts").glob("receipt-*.json")).read_text())["receipt"]


def _versions(commons, study_uid: str) -> list[dict]:
    with commons.http("admin") as http:
        answer = http.get(f"/studies/{study_uid}/versions", params={"project": PROJECT})
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_the_gateway_completes_a_study_first_sent_by_contribute(corpus: Path, key_file: Path,
                                                                tmp_path: Path, sqlite_commons: Commons) -> None:
    """A study sent by ``radcommons contribute`` (same site, same key: the same de-identified UIDs)
    whose PACS then pushes to the gateway an instance missing from the export, with one already
    sent: the gateway knew only what it had received and declared those two as the whole study,
    and the commons made a version of two instances, dropping every other one contribute had sent.
    The gateway now declares the instances the commons holds of the study with the ones it received:
    the new version holds them all, the missing one is added and the one already there is neither
    sent nor stored again."""
    commons = sqlite_commons
    files = _one_study(corpus, 4)
    exported, missing = files[:-1], files[-1]
    state = tmp_path / "site-state"  # contribute and the gateway share the site's state directory
    token_file = _upload_token(commons, tmp_path)
    contributed = _contribute(commons, corpus, exported, key_file, state, token_file, tmp_path)
    study_uid = contributed["studies"][0]["study_uid"]
    assert contributed["counts"]["instances"]["indexed"] == len(exported), contributed["counts"]
    # the two instances come in one association, one right after the other: one round sends both
    gateway, port = _start_gateway(commons, key_file, state, token_file, quiet=2.0)
    try:
        store(port, [exported[0], missing])
        receipt = json.loads(_receipts(gateway, state, 1)[0].read_text())
        # a gateway stuck on the study would keep it in the spool, and fail (send_failed) on each try
        _spool_emptied(gateway, state)
    finally:
        log = _stop(gateway)
    versions = _versions(commons, study_uid)
    answer = httpx.get(f"{commons.url}/dicomweb/studies/{study_uid}/instances",
                       headers={"Authorization": f"Bearer {commons.tokens['admin']}"}, timeout=60)
    assert "send_failed" not in log, log
    study = receipt["receipt"]["studies"][0]
    assert study["study_uid"] == study_uid and study["status"] == "new_version", receipt
    assert (study["indexed"], study["unchanged"]) == (1, len(exported)), study
    # the bytes of the instance contribute had sent were not sent again
    assert (receipt["upload"]["sent"], receipt["upload"]["already_on_server"]) == (1, 1), receipt["upload"]
    assert [(v["version"], v["change"], len(v["instances"])) for v in versions] == [
        (1, "created", len(exported)), (2, "resubmitted", len(files))], versions
    assert set(versions[0]["instances"][i]["object_id"] for i in range(len(exported))) <= {
        i["object_id"] for i in versions[1]["instances"]}  # every instance of version 1 is there unchanged
    assert answer.status_code == 200 and len(answer.json()) == len(files), answer.text



def test_the_latest_copy_of_a_resent_instance_wins_in_the_spool_and_after_the_upload(
        corpus: Path, key_file: Path, tmp_path: Path, sqlite_commons: Commons) -> None:
    """A PACS that sent an instance again (corrected, same UIDs) before its study left the spool saw
    its correction acknowledged and dropped: the spool kept the first copy (the de-identifier's
    first-write-wins rule, meant for two files of one export with one SOP Instance UID), and the
    commons got the uncorrected one. The latest copy now replaces it (temporary file, rename), the
    gateway says so, and a copy sent after the study was uploaded starts a new upload: a new version."""
    commons = sqlite_commons
    source = radiographs(corpus)[0]
    copies = [corrected(source, tmp_path / f"copy{n}.dcm", n) for n in (1, 2, 3)]
    state = tmp_path / "site-state"
    # quiet long enough for the second copy (another storescu) to replace the first in the spool
    gateway, port = _start_gateway(commons, key_file, state, _upload_token(commons, tmp_path), quiet=3.0)
    try:
        spooled = []
        for copy in copies[:2]:
            store(port, [copy])
            [path] = spooled_files(state / "gateway")
            spooled.append(file_sha256(path))
        assert not list((state / "gateway" / "spool").rglob("*.partial"))
        first = json.loads(_receipts(gateway, state, 1)[0].read_text())["receipt"]
        versions = _versions(commons, first["studies"][0]["study_uid"])
        store(port, [copies[2]])  # after the upload
        second = json.loads(_receipts(gateway, state, 2)[-1].read_text())["receipt"]
        resent = _versions(commons, first["studies"][0]["study_uid"])
    finally:
        log = _stop(gateway)
    assert spooled[0] != spooled[1], "the corrected copy was dropped"
    assert [i["object_id"] for i in versions[-1]["instances"]] == [spooled[1]], versions
    [done] = list((state / "gateway" / "done").rglob("*.dcm"))
    assert second["studies"][0]["status"] == "new_version", second
    assert [(v["version"], v["change"]) for v in resent] == [(1, "created"), (2, "resubmitted")], resent
    assert [i["object_id"] for i in resent[-1]["instances"]] == [file_sha256(done)] != [spooled[1]], resent
    # said on the console and in the event log: the copy in the spool, then the one sent, was replaced
    replaced = [line for line in log.splitlines() if line.startswith("replaced:")]
    assert len(replaced) == 2 and all("content=changed" in line for line in replaced), log
    events = [json.loads(line) for line in (state / "gateway" / "events.jsonl").read_text().splitlines()]
    arrivals = [(e["event"], e.get("previous_copy")) for e in events if e["event"] in ("stored", "replaced")]
    assert arrivals == [("stored", None), ("replaced", "spool"), ("replaced", "sent")], arrivals
