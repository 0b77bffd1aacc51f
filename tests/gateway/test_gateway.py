"""The DIMSE gateway with dcmtk's echoscu/storescu as the real peers: de-identify on arrival, durable spool,
completion after the quiet period, the contribute uploader, restart safety."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pydicom
import pytest

from radcommons.client import CommonsClient, ConnectionFailedError, file_sha256
from radcommons.deid import DeidContext, patient_pseudonym
from radcommons.pipelines import gateway as gateway_module
from radcommons.pipelines.gateway import Gateway, GatewayConfig, Peer, commons_sender, spooled_files
from radcommons.synth.generate import generate
from serve_support import free_port

sys.path.insert(0, str(Path(__file__).parents[1] / "server"))
sys.path.insert(0, str(Path(__file__).parents[1] / "deid"))
from commons_fixtures import PROJECT, SITE, Commons, sqlite_commons  # noqa: E402,F401  (the fixture)
from deid_support import pixel_digest, write_multiframe  # noqa: E402

KEY = bytes(range(32))
pytestmark = pytest.mark.skipif(shutil.which("storescu") is None, reason="dcmtk (storescu, echoscu) not installed")


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gateway") / "synth"
    generate(out, 1, 2, 3, small=True)
    return out


@pytest.fixture(scope="session")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("secrets") / "deid.key"
    path.write_text(KEY.hex() + "\n")
    path.chmod(0o600)  # as keygen makes it: a readable key file is warned about on every start
    return path


def radiographs(corpus: Path) -> list[Path]:
    """CR/DX files (no burned-in text review needed: keeps the test fast)."""
    found = []
    for path in sorted((corpus / "site_a").rglob("*.dcm")):
        if "CDROM" in path.parts:
            continue
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        if ds.Modality in ("CR", "DX"):
            found.append(path)
    return found


def store(port: int, files: list[Path]) -> None:
    """storescu sends ``files`` to the gateway on ``port`` (called RCGW); each must be acknowledged."""
    done = subprocess.run(["storescu", "-aec", "RCGW", "127.0.0.1", str(port), *map(str, files)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def corrected(source: Path, dest: Path, value: int) -> Path:
    """A copy of ``source`` with other pixels and the same UIDs: what a PACS sends after a correction."""
    ds = pydicom.dcmread(source)
    pixels = bytearray(ds.PixelData)
    pixels[:64] = bytes([value]) * 64
    ds.PixelData = bytes(pixels)
    ds.save_as(dest)
    return dest


def start_gateway(port: int, key_file: Path, state: Path, quiet: float = 1.0, *options: str) -> subprocess.Popen[str]:
    """``radcommons gateway`` on ``port``, once it takes connections: found by a bare TCP connection, as a
    health check makes one (test_echo_store_spool_and_restart counts on it: it must not delay a stop)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "radcommons", "gateway", "--ae-title", "RCGW", "--port", str(port), "--site", "SITE_A",
         "--project", "P", "--key-file", str(key_file), "--state-dir", str(state), "--quiet-seconds", str(quiet),
         "--host", "127.0.0.1", *options],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return process
        if process.poll() is not None:
            raise AssertionError(process.stdout.read() if process.stdout else "gateway exited")
        time.sleep(0.2)
    process.kill()
    raise AssertionError("the gateway did not start listening")


def local_config(state: Path, **options: object) -> GatewayConfig:
    """A gateway run in the test's process (no command line to start: faster) on a free port of 127.0.0.1."""
    context = DeidContext(key=KEY, site="SITE_A", review_pixels=False)
    return GatewayConfig("RCGW", free_port(), context, state, host="127.0.0.1", **options)  # type: ignore[arg-type]


def test_echo_store_spool_and_restart(corpus: Path, key_file: Path, tmp_path: Path) -> None:
    port = free_port()
    state = tmp_path / "state"
    files = radiographs(corpus)
    gateway = start_gateway(port, key_file, state)
    try:
        echo = subprocess.run(["echoscu", "-aec", "RCGW", "127.0.0.1", str(port)], capture_output=True, text=True)
        assert echo.returncode == 0, echo.stderr
        # Addressed to another AE title: rejected (any called AE title used to be taken).
        stray = subprocess.run(["echoscu", "-aec", "NOTTHEGATEWAY", "127.0.0.1", str(port)], capture_output=True,
                               text=True)
        assert stray.returncode != 0 and "Called AE Title Not Recognized" in stray.stdout + stray.stderr, stray
        store = subprocess.run(["storescu", "-aec", "RCGW", "127.0.0.1", str(port), *map(str, files)],
                               capture_output=True, text=True, timeout=120)
        assert store.returncode == 0, store.stderr
        # Every acknowledged instance is already on disk, de-identified.
        spooled = spooled_files(state / "gateway")
        assert len(spooled) == len(files)
        # A second gateway on the same spool is refused: the two moved and sent each other's files.
        second = subprocess.run(
            [sys.executable, "-m", "radcommons", "gateway", "--ae-title", "RCGW2", "--port", str(free_port()),
             "--site", "SITE_A", "--project", "P", "--key-file", str(key_file), "--state-dir", str(state),
             "--host", "127.0.0.1"], capture_output=True, text=True, timeout=60)
        assert second.returncode == 2, second.stdout + second.stderr
        assert "in use by another gateway" in second.stderr and "Traceback" not in second.stderr, second.stderr
    finally:
        gateway.send_signal(signal.SIGKILL)  # a crash, not a clean stop
        gateway.wait(30)
    mrns = {str(pydicom.dcmread(p, stop_before_pixels=True).PatientID) for p in files}
    pseudonyms = {patient_pseudonym(KEY, "SITE_A", mrn) for mrn in mrns}
    for path in spooled:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert ds.PatientIdentityRemoved == "YES" and ds.PatientID in pseudonyms
        assert path.relative_to(state / "gateway" / "spool").parts[0] == ds.StudyInstanceUID
    assert not list((state / "gateway" / "spool").rglob("*.partial"))
    for private in (state / "gateway" / "events.jsonl", state / "registry.sqlite"):  # were 0644
        assert private.stat().st_mode & 0o077 == 0, private
    assert state.stat().st_mode & 0o077 == 0
    # Restarted, the gateway finds the spool as it was and declares the studies complete.
    gateway = start_gateway(port, key_file, state)
    try:
        deadline = time.time() + 30
        log = state / "gateway" / "events.jsonl"
        while time.time() < deadline and '"complete"' not in log.read_text():
            time.sleep(0.1)
        assert '"complete"' in log.read_text()
        assert len(spooled_files(state / "gateway")) == len(files)
    finally:
        began = time.monotonic()
        gateway.send_signal(signal.SIGTERM)  # a service manager's stop
        output, _ = gateway.communicate(timeout=30)
    assert gateway.returncode == 0 and "stopped" in output, output
    # start_gateway's port probe (a connection that never associated, as a health check's) held the
    # stop for the whole grace period (10 s) and was logged as an aborted association of no AE title
    assert time.monotonic() - began < 5 and "aborted" not in output, output


def test_only_the_allowed_peers_may_store(corpus: Path, key_file: Path, tmp_path: Path) -> None:
    """Any peer that reached the port and called the AE title could store, and what it stored left
    under the site's name. With --allow, others are refused (0124H) and nothing of theirs is kept."""
    port, state = free_port(), tmp_path / "state"
    files = radiographs(corpus)[:2]
    gateway = start_gateway(port, key_file, state, 60.0, "--allow", "PACS1@127.0.0.0/8", "--allow", "10.9.9.9")
    try:
        stranger = subprocess.run(["storescu", "-aet", "STRANGER", "-aec", "RCGW", "127.0.0.1", str(port),
                                   *map(str, files)], capture_output=True, text=True, timeout=120)
        assert stranger.returncode != 0, stranger  # storescu fails on the refusal
        assert spooled_files(state / "gateway") == []
        assert '"refused"' in (state / "gateway" / "events.jsonl").read_text()
        allowed = subprocess.run(["storescu", "-aet", "PACS1", "-aec", "RCGW", "127.0.0.1", str(port),
                                  *map(str, files)], capture_output=True, text=True, timeout=120)
        assert allowed.returncode == 0, allowed.stderr
        assert len(spooled_files(state / "gateway")) == len(files)
    finally:
        gateway.send_signal(signal.SIGINT)
        gateway.wait(30)
    bad = subprocess.run([sys.executable, "-m", "radcommons", "gateway", "--site", "SITE_A", "--project", "P",
                          "--key-file", str(key_file), "--state-dir", str(tmp_path / "s2"), "--allow", "PACS1@nowhere"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "not an IP address" in bad.stderr and "Traceback" not in bad.stderr, bad.stderr


def test_an_instance_of_a_sop_class_the_gateway_does_not_store_is_named_in_its_log(corpus: Path, key_file: Path,
                                                                                tmp_path: Path) -> None:
    """A PACS sending an instance of a SOP class the gateway does not store failed on its own side
    ('No Acceptable Presentation Contexts') while the gateway's console and event log said nothing: the
    administrator looking at the gateway saw no trace of it. The gateway now names the SOP classes
    it did not accept, with the calling peer."""
    odd = pydicom.dcmread(radiographs(corpus)[0])
    # Ultrasound Image Storage (retired in 1996): dcmtk still sends it, pynetdicom does not list it
    odd.SOPClassUID = odd.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.6"
    odd.save_as(tmp_path / "odd.dcm")
    port, state = free_port(), tmp_path / "state"
    gateway = start_gateway(port, key_file, state, 60.0)
    try:
        sent = subprocess.run(["storescu", "-R", "-aet", "PACS1", "-aec", "RCGW", "127.0.0.1", str(port),
                               str(tmp_path / "odd.dcm")], capture_output=True, text=True, timeout=120)
    finally:
        gateway.send_signal(signal.SIGINT)
        output, _ = gateway.communicate(timeout=30)
    assert sent.returncode != 0 and "No Acceptable Presentation Contexts" in sent.stdout + sent.stderr, sent
    events = [json.loads(line) for line in (state / "gateway" / "events.jsonl").read_text().splitlines()]
    [refused] = [e for e in events if e["event"] == "not_accepted"]
    assert refused["calling_ae"] == "PACS1" and refused["offered"] == [
        "1.2.840.10008.5.1.4.1.1.6 (Ultrasound Image Storage)"], refused
    assert "not_accepted:" in output and "does not store" in output, output
    assert spooled_files(state / "gateway") == []


def test_a_stop_does_not_wait_for_an_association_the_pacs_keeps_open(tmp_path: Path) -> None:
    """A PACS that keeps its association open between studies (many do) held a stopping gateway
    for pynetdicom's network timeout: 'stopped' was said, the process went on for 60 s more
    (a service manager's stop timeout, a restart, both waited). Such an association is now aborted
    after a grace period (the command's: STOP_GRACE, 10 s; 1 s here), and said in the event log.
    (A bare connection, a port probe, is not waited for: test_echo_store_spool_and_restart.)"""
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    events: list[tuple[str, dict]] = []
    state = tmp_path / "state"
    config = local_config(state)
    gateway = Gateway(config, on_event=lambda name, fields: events.append((name, fields)))
    gateway.start()
    peer = AE(ae_title="PACS1")
    peer.add_requested_context(Verification)
    assoc = peer.associate("127.0.0.1", config.port, ae_title="RCGW")
    try:
        assert assoc.is_established and assoc.send_c_echo().Status == 0
        began = time.monotonic()
        gateway.stop(grace=1.0)
        took = time.monotonic() - began
    finally:
        assoc.abort()
    assert 1.0 <= took < 5, took  # the grace period, not pynetdicom's 60 s
    assert [fields["calling_ae"] for name, fields in events if name == "aborted"] == ["PACS1"], events
    assert '"event": "aborted"' in (state / "gateway" / "events.jsonl").read_text()


def _acceptor_threads() -> list[threading.Thread]:
    """pynetdicom's running acceptor associations (each a thread) in this process."""
    from pynetdicom.association import Association

    return [t for t in threading.enumerate() if isinstance(t, Association) and t.is_acceptor and t.is_alive()]


def test_a_connection_that_never_asks_for_an_association_is_closed_after_the_associate_wait(tmp_path: Path) -> None:
    """A bare TCP connection that never sends an A-ASSOCIATE-RQ (a load balancer's health check) kept a
    thread of the gateway for pynetdicom's ACSE timeout, 30 s: one every few seconds piled them up. The
    gateway now closes it after its associate wait (ASSOCIATE_WAIT, 10 s; 1 s here), says nothing of it,
    and a peer that connects afterwards associates as before."""
    events: list[tuple[str, dict]] = []
    config = local_config(tmp_path / "state", associate_seconds=1.0)
    gateway = Gateway(config, on_event=lambda name, fields: events.append((name, fields)))
    gateway.start()
    try:
        with socket.create_connection(("127.0.0.1", config.port), timeout=10) as bare:
            began = time.monotonic()
            try:
                closed = bare.recv(1) == b""  # the end of the stream: the gateway closed it
            except ConnectionResetError:
                closed = True
            took = time.monotonic() - began
        deadline = time.monotonic() + 5
        while _acceptor_threads() and time.monotonic() < deadline:
            time.sleep(0.05)
        left = _acceptor_threads()
        echo = subprocess.run(["echoscu", "-aec", "RCGW", "127.0.0.1", str(config.port)], capture_output=True,
                              text=True, timeout=30)
    finally:
        gateway.stop()
    assert closed and 0.9 <= took < 5, (closed, took)  # the wait, not pynetdicom's 30 s
    assert left == [], left  # its thread ended with it
    assert echo.returncode == 0, echo.stdout + echo.stderr
    assert [name for name, _ in events] == ["listening"], events


def test_a_refused_peers_instances_go_at_each_refusal(corpus: Path, tmp_path: Path) -> None:
    """A peer not on the allow list was refused each C-STORE (0124H), but the gateway kept each
    refused instance's received file (identified, as the peer sent it) on its list of files being
    received until the association ended: a stranger sending a whole study over one association
    piled them up. The received file now goes at the refusal: when the next instance is refused, the
    gateway holds that one only."""
    source = radiographs(corpus)[0]
    state = tmp_path / "state"
    receiving = state / "gateway" / "receiving"
    held: list[tuple[list[str], int]] = []

    def on_event(name: str, fields: dict) -> None:
        if name == "refused":  # in the C-STORE handler, before its answer: this instance's file only
            held.append(([p.name for p in receiving.iterdir()], len(gateway_module._receiving)))

    config = local_config(state, allowed=(Peer.parse("PACS1"),))
    gateway = Gateway(config, on_event=on_event)
    gateway.start()
    try:
        stranger = subprocess.run(["storescu", "-v", "--repeat", "3", "--no-halt", "-aet", "STRANGER", "-aec", "RCGW",
                                   "127.0.0.1", str(config.port), str(source)], capture_output=True, text=True,
                                  timeout=120)
    finally:
        gateway.stop()
    assert (stranger.stdout + stranger.stderr).count("Received Store Response") == 3, stranger  # each answered
    assert len(held) == 3 and all(len(names) == 1 and tracked <= 1 for names, tracked in held), held
    assert len({names[0] for names, _ in held}) == 3, held  # each refusal saw its own instance's file
    assert list(receiving.iterdir()) == [] and spooled_files(state / "gateway") == []


def test_a_store_request_without_a_data_set_is_answered_cannot_understand(corpus: Path, tmp_path: Path) -> None:
    """A C-STORE-RQ whose Command Data Set Type says it carries no data set (0101H) reaches the
    handler with no received file (pynetdicom opens none). It was answered 0110H and logged as
    'chunked receiving is off'; it is now answered C000H (PS3.4 Table B.2-1: cannot understand) and
    logged as what it is. The association goes on: the peer's next instance is stored."""
    from pynetdicom import AE
    from pynetdicom.dimse_primitives import C_STORE

    source = radiographs(corpus)[0]
    sop_class = str(pydicom.dcmread(source, stop_before_pixels=True).SOPClassUID)
    state = tmp_path / "state"
    config = local_config(state)
    gateway = Gateway(config)
    gateway.start()
    peer = AE(ae_title="PACS1")
    peer.add_requested_context(sop_class, "1.2.840.10008.1.2.1")
    assoc = peer.associate("127.0.0.1", config.port, ae_title="RCGW")
    try:
        request = C_STORE()
        request.MessageID, request.Priority = 1, 2
        request.AffectedSOPClassUID, request.AffectedSOPInstanceUID = sop_class, "1.2.826.0.1.3680043.8.498.77"
        request.DataSet = None  # pynetdicom then sends Command Data Set Type 0101H
        context = next(cx for cx in assoc.accepted_contexts if cx.abstract_syntax == sop_class)
        # as pynetdicom's own send_c_store does: its reactor thread would take the answer otherwise
        assoc._reactor_checkpoint.clear()
        while not assoc._is_paused:
            time.sleep(0.001)
        assoc.dimse.send_msg(request, context.context_id)
        _, answer = assoc.dimse.get_msg(block=True)
        assoc._reactor_checkpoint.set()
        stored = assoc.send_c_store(source)
    finally:
        assoc.release()
        gateway.stop()
    assert answer is not None and answer.Status == 0xC000, answer
    assert stored.Status == 0 and len(spooled_files(state / "gateway")) == 1
    events = [json.loads(line) for line in (state / "gateway" / "events.jsonl").read_text().splitlines()]
    [rejected] = [e for e in events if e["event"] == "rejected"]
    assert rejected["sop_instance_uid"] == "1.2.826.0.1.3680043.8.498.77", rejected
    assert "carried no data set" in rejected["reason"] and rejected["calling_ae"] == "PACS1", rejected


def test_complete_studies_are_sent_with_the_contribute_uploader(corpus: Path, tmp_path: Path,
                                                                sqlite_commons: Commons) -> None:
    state = tmp_path / "state"
    client = sqlite_commons.client(backoff=0.001)
    sender = commons_sender(client, state, server=sqlite_commons.url, project=PROJECT, site=SITE)
    # a key of this test's own: the commons is shared, and a UID belongs to one project
    context = DeidContext(key=bytes(reversed(KEY)), site=SITE, review_pixels=False)
    config = GatewayConfig("RCGW", free_port(), context, state, host="127.0.0.1", quiet_seconds=60,
                           check_seconds=3600)
    gateway = Gateway(config, sender)
    gateway.start()
    try:
        files = radiographs(corpus)
        store = subprocess.run(["storescu", "-aec", "RCGW", "127.0.0.1", str(config.port), *map(str, files)],
                               capture_output=True, text=True, timeout=120)
        assert store.returncode == 0, store.stderr
        assert gateway.flush() is None  # still within the quiet period
        delivery = gateway.flush(now=time.time() + 61)
    finally:
        gateway.stop()
    assert delivery is not None and delivery.receipt.status == "committed"
    assert delivery.stats.sent == len(files) and delivery.receipt.counts["instances"]["indexed"] == len(files)
    assert spooled_files(state / "gateway") == []
    assert len(list((state / "gateway" / "done").rglob("*.dcm"))) == len(files)
    assert list((state / "receipts").glob("gateway-*.json"))
    assert os.path.exists(state / "registry.sqlite")


@pytest.mark.parametrize("moment", ["before the upload", "after the upload"])
def test_a_copy_sent_again_while_its_study_is_uploading_is_sent_by_the_next_round(
        corpus: Path, tmp_path: Path, sqlite_commons: Commons, moment: str) -> None:
    """A corrected copy that replaced a spooled instance while its round was under way: packaged,
    the earlier copy's bytes were read again for the upload, the commons refused them (they did
    not hash to the digest) and the round failed; uploaded, the correction was moved to done/
    with the files the round sent, as if it had been sent, and no round was left to send it. A
    round now sends a snapshot of each file, and a correction stays in the spool for the next
    round, which sends it (a new version of the study)."""
    state = tmp_path / "state"
    upload = commons_sender(sqlite_commons.client(backoff=0.001), state, server=sqlite_commons.url,
                            project=PROJECT, site=SITE)
    # a key of each case's own: the commons is shared, and a UID belongs to one project
    context = DeidContext(key=hashlib.sha256(moment.encode()).digest(), site=SITE, review_pixels=False)
    config = GatewayConfig("RCGW", free_port(), context, state, host="127.0.0.1", quiet_seconds=60,
                           check_seconds=3600)
    first, correction = (corrected(radiographs(corpus)[0], tmp_path / f"copy{n}.dcm", n) for n in (1, 2))
    pending = [correction]

    def send(packages):  # the PACS sends its correction while the round sends the first copy
        if pending and moment == "before the upload":
            store(config.port, [pending.pop()])
        delivery = upload(packages)
        if pending:
            store(config.port, [pending.pop()])
        return delivery

    gateway = Gateway(config, send)
    gateway.start()
    try:
        store(config.port, [first])
        sent = gateway.flush(now=time.time() + 61)
        waiting = spooled_files(state / "gateway")
        again = gateway.flush(now=time.time() + 61)
    finally:
        gateway.stop()
    assert sent is not None and again is not None
    [done] = list((state / "gateway" / "done").rglob("*.dcm"))
    assert [p.relative_to(state / "gateway" / "spool") for p in waiting] == [done.relative_to(state / "gateway" / "done")]
    assert spooled_files(state / "gateway") == []
    [study] = again.receipt.data["studies"]
    assert study["status"] == "new_version", study
    versions = sqlite_commons.client().study_versions(study["study_uid"], PROJECT)
    assert [[i["object_id"] for i in v["instances"]] for v in versions][-1] == [file_sha256(done)], versions
    assert len({i["object_id"] for v in versions for i in v["instances"]}) == 2, versions


def test_a_study_versioned_by_another_sender_after_the_round_read_it_is_sent_again_by_the_next_round(
        corpus: Path, tmp_path: Path, sqlite_commons: Commons) -> None:
    """A round reads the study's latest version at the commons to declare the instances it does not
    replace; another sender (here a second gateway with the site's key, as ``radcommons contribute``
    would be) committed a new version of the study before the round's commit, and the round's
    version, built on the one it had read, lacked the instance the other had added: the commons
    dropped it. The round now declares the version it read; the commons leaves the study as it is
    (``changed_since_read``, with the reason), the study stays in the spool, and the next round
    reads the new version and makes one holding everything."""
    folder = next(f for f in sorted({p.parent for p in (corpus / "site_a").rglob("*.dcm") if "CDROM" not in p.parts})
                  if len(list(f.glob("*.dcm"))) >= 3)
    first, ours, theirs = sorted(folder.glob("*.dcm"))[:3]
    # a key of this test's own (the commons is shared), the same at both senders: the same UIDs
    context = DeidContext(key=hashlib.sha256(b"changed since read").digest(), site=SITE, review_pixels=False)

    def gateway_at(state: Path, client: CommonsClient) -> Gateway:
        sender = commons_sender(client, state, server=sqlite_commons.url, project=PROJECT, site=SITE)
        return Gateway(GatewayConfig("RCGW", free_port(), context, state, host="127.0.0.1", quiet_seconds=60,
                                     check_seconds=3600), sender)

    other = gateway_at(tmp_path / "other", sqlite_commons.client(backoff=0.001))
    race: list[str] = []

    class Racing(CommonsClient):
        def study_versions(self, study_uid: str, project: str) -> list[dict]:
            versions = super().study_versions(study_uid, project)
            if race:  # the other sender commits a version of the study right after this read
                race.pop()
                assert other.flush(now=time.time() + 61) is not None
            return versions

    gateway = gateway_at(tmp_path / "state", Racing(sqlite_commons.url, sqlite_commons.tokens["uploader"],
                                                    backoff=0.001))
    spool = tmp_path / "state" / "gateway"
    gateway.start()
    other.start()
    try:
        store(gateway.config.port, [first])
        created = gateway.flush(now=time.time() + 61)
        store(gateway.config.port, [ours])
        store(other.config.port, [theirs])
        race.append("armed")
        raced = gateway.flush(now=time.time() + 61)
        waiting = spooled_files(spool)
        done_then = [p.name for p in (spool / "done").rglob("*.dcm")]
        after_race = sqlite_commons.client().study_versions(raced.receipt.studies[0]["study_uid"], PROJECT)
        again = gateway.flush(now=time.time() + 61)
    finally:
        gateway.stop()
        other.stop()
    assert created is not None and raced is not None and not race
    # what the other sender added is in the study's latest version (the round's version lacked it)
    [theirs_done] = (tmp_path / "other" / "gateway" / "done").rglob("*.dcm")
    assert file_sha256(theirs_done) in {i["object_id"] for i in after_race[-1]["instances"]}, after_race
    assert again is not None
    [study] = created.receipt.studies
    assert (study["status"], study["version"]) == ("accepted", 1), study
    # refused for that study, with the reason; the instance the PACS was told was stored waits
    [refused] = raced.receipt.studies
    assert refused["status"] == "changed_since_read" and refused["version"] == 2, refused
    assert "changed at the commons (version 2) after this sender read version 1" in refused["reason"], refused
    theirs_sent = [p.name for p in (tmp_path / "other" / "gateway" / "done").rglob("*.dcm")]
    assert len(waiting) == len(done_then) == len(theirs_sent) == 1, (waiting, done_then, theirs_sent)
    assert waiting[0].name not in done_then + theirs_sent, (waiting, raced.receipt.data)
    events = [json.loads(line) for line in (spool / "events.jsonl").read_text().splitlines()]
    assert [e["reason"] for e in events if e["event"] == "changed_since_read"] == [refused["reason"]], events
    # the next round read version 2 and made version 3, holding every instance
    [resent] = again.receipt.studies
    assert (resent["status"], resent["version"]) == ("new_version", 3), resent
    assert spooled_files(spool) == [] and not list((spool / "spool").rglob("*.partial"))
    versions = sqlite_commons.client().study_versions(study["study_uid"], PROJECT)
    assert [(v["version"], len(v["instances"])) for v in versions] == [(1, 1), (2, 2), (3, 3)], versions
    sent = {file_sha256(p) for p in (spool / "done").rglob("*.dcm")} | {
        file_sha256(p) for p in (tmp_path / "other" / "gateway" / "done").rglob("*.dcm")}
    assert {i["object_id"] for i in versions[-1]["instances"]} == sent


def test_a_study_the_commons_keeps_refusing_waits_longer_each_time_and_the_others_still_go(
        corpus: Path, tmp_path: Path, sqlite_commons: Commons) -> None:
    """A study the commons answered ``changed_since_read`` stayed in the spool and was sent again,
    whole, by the very next round, every check interval, for as long as something else kept
    making new versions of it, with nothing said but one event per round. The study now waits
    longer after each consecutive refusal (none after the first, then twice the check interval,
    doubled each time, 5 minutes at most), the spool's other studies go meanwhile, and from the
    fourth refusal on the gateway says what to check. Here a second gateway with the site's key
    makes a new version of the study (a corrected copy of its own instance) right after every
    read of this gateway's rounds."""
    folder = next(f for f in sorted({p.parent for p in (corpus / "site_a").rglob("*.dcm") if "CDROM" not in p.parts})
                  if len(list(f.glob("*.dcm"))) >= 3)
    first, ours, theirs = sorted(folder.glob("*.dcm"))[:3]
    elsewhere = next(p for p in radiographs(corpus)
                     if pydicom.dcmread(p, stop_before_pixels=True).StudyInstanceUID
                     != pydicom.dcmread(ours, stop_before_pixels=True).StudyInstanceUID)
    context = DeidContext(key=hashlib.sha256(b"keeps changing").digest(), site=SITE, review_pixels=False)
    check = 20.0  # the loop's own rounds find nothing complete: the quiet period is an hour

    def gateway_at(state: Path, client: CommonsClient) -> Gateway:
        sender = commons_sender(client, state, server=sqlite_commons.url, project=PROJECT, site=SITE)
        return Gateway(GatewayConfig("RCGW", free_port(), context, state, host="127.0.0.1", quiet_seconds=3600,
                                     check_seconds=check), sender)

    other = gateway_at(tmp_path / "other", sqlite_commons.client(backoff=0.001))
    changing: list[str] = []  # the study the other sender versions after each read of it
    made: list[Path] = []

    class Racing(CommonsClient):
        def study_versions(self, study_uid: str, project: str) -> list[dict]:
            versions = super().study_versions(study_uid, project)
            if study_uid in changing:  # an instance more (a replaced one would not be the site's any more,
                added = pydicom.dcmread(theirs)  # and the commons refuses the round: see the report)
                added.SOPInstanceUID = added.file_meta.MediaStorageSOPInstanceUID = f"{added.SOPInstanceUID}.{len(made)}"
                made.append(tmp_path / f"added{len(made)}.dcm")
                added.save_as(made[-1])
                store(other.config.port, [made[-1]])
                assert other.flush(now=time.time() + 3601) is not None
            return versions

    gateway = gateway_at(tmp_path / "state", Racing(sqlite_commons.url, sqlite_commons.tokens["uploader"],
                                                    backoff=0.001))
    spool = tmp_path / "state" / "gateway"
    rounds = []
    gateway.start()
    other.start()
    try:
        store(gateway.config.port, [first])
        [study_uid] = [p.name for p in (spool / "spool").iterdir()]
        assert gateway.flush(now=time.time() + 3601) is not None  # version 1: the commons holds the study
        store(gateway.config.port, [ours])
        changing.append(study_uid)
        clock = time.time() + 3601
        rounds.append(gateway.flush(now=clock))  # refused: the next round tries again
        rounds.append(gateway.flush(now=clock))  # refused again: it waits 2 x 20 s
        store(gateway.config.port, [elsewhere])
        clock = time.time() + 3601
        rounds.append(gateway.flush(now=clock))  # within the wait: only the other study goes
        for wait in (41, 81, 161, 301):  # each refused again, after its wait
            clock += wait + 5
            assert gateway.flush(now=clock - 10) is None  # not yet: still waiting
            rounds.append(gateway.flush(now=clock))
        changing.clear()  # the other sender is stopped
        clock += 301 + 5
        rounds.append(gateway.flush(now=clock))
    finally:
        gateway.stop()
        other.stop()
    assert None not in rounds, (rounds, (spool / "events.jsonl").read_text())
    statuses = [[(s["study_uid"] == study_uid, s["status"]) for s in r.receipt.studies] for r in rounds]
    assert statuses == [[(True, "changed_since_read")]] * 2 + [[(False, "accepted")]] + [
        [(True, "changed_since_read")]] * 4 + [[(True, "new_version")]], statuses
    events = [json.loads(line) for line in (spool / "events.jsonl").read_text().splitlines()]
    refused = [(e["refusals"], e["next_try"].split(",")[0]) for e in events if e["event"] == "changed_since_read"]
    assert refused == [(1, "the next round"), (2, "in 40 s"), (3, "in 80 s"), (4, "in 160 s"), (5, "in 300 s"),
                       (6, "in 300 s")], refused
    warned = [e for e in events if e["event"] == "study_keeps_changing"]
    assert [e["refusals"] for e in warned] == [4, 5, 6] and all(e["study"] == study_uid for e in warned), warned
    assert "another sender" in warned[0]["check"] and "4 times in a row" in warned[0]["reason"], warned[0]
    assert spooled_files(spool) == []
    versions = sqlite_commons.client().study_versions(study_uid, PROJECT)
    # what the gateway received and what the other sender added, all in the study's last version
    assert [(v["version"], len(v["instances"])) for v in versions][-1] == (len(made) + 2, len(made) + 2), versions
    assert {file_sha256(p) for p in (spool / "done" / study_uid).rglob("*.dcm")} < {
        i["object_id"] for i in versions[-1]["instances"]}


def _in_own_mount_namespace() -> bool:
    """Whether this machine lets a process mount a small file system of its own (unshare, nsenter)."""
    return (shutil.which("nsenter") is not None and shutil.which("unshare") is not None
            and subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode == 0)


@pytest.mark.skipif(not _in_own_mount_namespace(), reason="needs unshare -m and nsenter (root) for a small tmpfs")
def test_a_full_disk_is_said_in_one_line_and_does_not_end_the_sending(corpus: Path, key_file: Path,
                                                                      tmp_path: Path) -> None:
    """The gateway's state on a disk that fills up (a 2 MB tmpfs, filled, the event log too). An
    instance that could not be spooled was answered A700, but the event said pydicom's traceback;
    and the event log, once it could not grow, made each store fail with a traceback instead of
    the answer, and ended the thread that sends studies: no study left the spool any more, until a
    restart, with nothing said. Each now says in one line what failed and what to check, on the
    console when the log cannot take it, and the gateway goes on trying to send."""
    state, port = tmp_path / "state", free_port()
    state.mkdir()
    files = radiographs(corpus)
    gateway = subprocess.Popen(
        ["unshare", "-m", "sh", "-c", 'mount -t tmpfs -o size=2m tmpfs "$0" && exec "$@"', str(state),
         sys.executable, "-m", "radcommons", "gateway", "--ae-title", "RCGW", "--port", str(port), "--host",
         "127.0.0.1", "--site", "SITE_A", "--project", "P", "--key-file", str(key_file), "--state-dir", str(state),
         "--quiet-seconds", "1", "--check-seconds", "0.5", "--server", f"http://127.0.0.1:{free_port()}",
         "--token-file", str(key_file)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(gateway.stdout.readline, "")), daemon=True)
    reader.start()

    def until(*texts: str, count: int = 1) -> None:
        deadline = time.time() + 60
        while sum(all(text in line for text in texts) for line in list(lines)) < count:
            assert time.time() < deadline and gateway.poll() is None, f"no {count} {texts!r} within 60 s: {lines}"
            time.sleep(0.05)

    def inside(script: str) -> None:  # in the gateway's mount namespace, where the tmpfs is
        subprocess.run(["nsenter", "-t", str(gateway.pid), "-m", sys.executable, "-c", script, str(state)],
                       check=True, timeout=60)

    try:
        until("listening as")
        store(port, files[:1])
        # the disk fills up (something else of the machine), and the event log cannot grow either
        inside("import sys, pathlib\nroot = pathlib.Path(sys.argv[1])\n"
               "try:\n    open(root / 'filler', 'wb').write(bytes(4 << 20))\nexcept OSError:\n    pass\n"
               "try:\n    with open(root / 'gateway' / 'events.jsonl', 'a') as log:\n        while True:\n"
               "            log.write('{\"event\": \"padding\"}\\n'); log.flush()\nexcept OSError:\n    pass\n")
        refused = subprocess.run(["storescu", "-v", "-aec", "RCGW", "127.0.0.1", str(port), str(files[1])],
                                 capture_output=True, text=True, timeout=120)
        until("spool_failed")
        # the sending thread goes on once the log cannot grow: rounds, each said (the commons is away too)
        until("send_failed:", "not_logged=", count=2)
    finally:
        gateway.send_signal(signal.SIGINT)
        gateway.wait(30)
        reader.join(30)
    output = "".join(lines)
    assert refused.returncode != 0 and "Refused: OutOfResources" in refused.stdout + refused.stderr, refused
    [failed] = [line for line in output.splitlines() if line.startswith("spool_failed:")]
    assert "reason=No space left on device" in failed and "check=free space on the disk of" in failed, output
    assert "not_logged=the event log could not be written: No space left on device" in failed, output
    assert "Traceback" not in output, output


def test_a_refused_token_stops_the_gateway_before_it_listens_and_an_absent_commons_does_not(
        key_file: Path, tmp_path: Path, sqlite_commons: Commons) -> None:
    """A wrong token was found only when the first study was sent, after the PACS had been told
    that everything was stored. A commons that does not answer yet is no reason to refuse
    studies: they spool until it does. (The shared commons: any commons refuses a token it does
    not know.)"""
    (tmp_path / "wrong.token").write_text("rc_not-a-token\n")
    base = [sys.executable, "-m", "radcommons", "gateway", "--ae-title", "RCGW", "--site", "SITE_A", "--project", "P",
            "--key-file", str(key_file), "--host", "127.0.0.1", "--token-file", str(tmp_path / "wrong.token")]
    refused = subprocess.run([*base, "--port", str(free_port()), "--state-dir", str(tmp_path / "s1"),
                              "--server", sqlite_commons.url], capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "refused or did not answer" in refused.stderr, refused.stderr
    absent = subprocess.Popen([*base, "--port", str(free_port()), "--state-dir", str(tmp_path / "s2"),
                               "--server", f"http://127.0.0.1:{free_port()}"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        # Its own "listening as" line, not a connection to the port (another process may hold a port
        # free_port() gave out): the gateway handles SIGINT from then on; before, a signal a test
        # runner ignores would be ignored by it too.
        assert absent.stdout is not None
        while not any(line.startswith("listening as") for line in lines):
            line = absent.stdout.readline()
            assert line, "".join(lines)  # it ended before it listened
            lines.append(line)
        absent.send_signal(signal.SIGINT)
        output, _ = absent.communicate(timeout=60)
    finally:
        absent.kill()
    output = "".join(lines) + output
    assert "did not answer" in output and "studies are spooled" in " ".join(output.split()), output


def test_a_refused_instance_is_named_and_a_failed_send_says_when_it_is_tried_again(
        corpus: Path, key_file: Path, tmp_path: Path) -> None:
    """A refused instance was logged with the reason and the calling AE title only: the data manager
    could not tell which instance of the PACS it was. While the commons was away each retry said
    'the run can be repeated' (a hint for contribute, not for a gateway that retries by itself),
    counted attempts instead of saying when, and announced the same studies again before each."""
    report = pydicom.dcmread(radiographs(corpus)[0])
    report.SOPClassUID = report.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"  # Basic Text SR
    report.SOPInstanceUID = report.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.8.498.4242"
    report.AccessionNumber = "ACC-REFUSED-77"
    refused = tmp_path / "sr.dcm"
    report.save_as(refused)
    port, state = free_port(), tmp_path / "state"
    # checked every 0.5 s (the command's default, 2 s, and its doubled retry wait took most of 13 s)
    gateway = start_gateway(port, key_file, state, 0.5, "--server", f"http://127.0.0.1:{free_port()}",
                            "--token-file", str(key_file), "--check-seconds", "0.5")
    try:
        stored = subprocess.run(["storescu", "-aec", "RCGW", "127.0.0.1", str(port), str(radiographs(corpus)[1])],
                                capture_output=True, text=True, timeout=120)
        assert stored.returncode == 0, stored.stderr
        store = subprocess.run(["storescu", "-aec", "RCGW", "127.0.0.1", str(port), str(refused)],
                               capture_output=True, text=True, timeout=120)
        deadline = time.time() + 60
        while time.time() < deadline and (state / "gateway" / "events.jsonl").read_text().count("send_failed") < 2:
            time.sleep(0.1)
    finally:
        gateway.send_signal(signal.SIGINT)
        output, _ = gateway.communicate(timeout=30)
    assert "0110" in store.stdout + store.stderr or store.returncode != 0, store
    events = [json.loads(line) for line in (state / "gateway" / "events.jsonl").read_text().splitlines()]
    withheld = next(e for e in events if e["event"] == "withheld")
    assert withheld["sop_instance_uid"] == "1.2.826.0.1.3680043.8.498.4242", withheld
    assert withheld["study_instance_uid"] == str(report.StudyInstanceUID)
    assert withheld["accession_number"] == "ACC-REFUSED-77"  # in the private event log only
    console = [line for line in output.splitlines() if line.startswith("withheld:")]
    assert console and "1.2.826.0.1.3680043.8.498.4242" in console[0] and "ACC-REFUSED" not in output, output
    failed = [e for e in events if e["event"] == "send_failed"]
    assert len(failed) >= 2, output
    assert all(re.fullmatch(r"in \d+ s, at \d\d:\d\d:\d\d UTC, by itself", e["next_try"]) for e in failed), failed
    assert failed[0]["waiting"] == "1 stud(ies) in the spool"
    # The round gave up within seconds (SEND_BACKOFF), not after the client's default backoff (8 to
    # 15 s): the gateway's own wait, the one send_failed announces, is what spaces the tries.
    complete = next(e for e in events if e["event"] == "complete")
    gave_up = _dt.datetime.fromisoformat(failed[0]["time"]) - _dt.datetime.fromisoformat(complete["time"])
    assert gave_up.total_seconds() < 7, (complete, failed[0])
    assert "can be repeated" not in output and "retry_in_attempts" not in output, output
    assert sum(e["event"] == "complete" for e in events) == 1, events  # said once, not before every retry


@pytest.mark.parametrize("held", [False, True], ids=["new study", "study the commons holds"])
def test_a_round_whose_commit_answer_was_lost_is_not_sent_again_as_a_second_submission(
        corpus: Path, tmp_path: Path, sqlite_commons: Commons, held: bool) -> None:
    """The commit of a round went through at the commons but its answer was lost (a dropped
    connection). The next round reads the study's versions again, now holding the version that
    commit made, so it declared another base version than the lost round had: its manifest
    differed from the journal's, the lost round was not recognised as committed, and a second
    submission sent the study again (an 'unchanged' receipt) while the first receipt was never
    kept. The next round now finds the lost round's submission and keeps its receipt."""
    folder = next(f for f in sorted({p.parent for p in (corpus / "site_a").rglob("*.dcm") if "CDROM" not in p.parts})
                  if len(list(f.glob("*.dcm"))) >= 2)
    first, second = sorted(folder.glob("*.dcm"))[:2]
    context = DeidContext(key=hashlib.sha256(f"lost commit answer {held}".encode()).digest(), site=SITE,
                          review_pixels=False)
    lose: list[str] = []

    class LosingCommit(CommonsClient):
        def commit(self, submission_id: int):
            receipt = super().commit(submission_id)
            if lose:
                lose.pop()
                raise ConnectionFailedError("the connection dropped before the answer", "try again")
            return receipt

    state = tmp_path / "state"
    client = LosingCommit(sqlite_commons.url, sqlite_commons.tokens["uploader"], backoff=0.001)
    sender = commons_sender(client, state, server=sqlite_commons.url, project=PROJECT, site=SITE)
    gateway = Gateway(GatewayConfig("RCGW", free_port(), context, state, host="127.0.0.1", quiet_seconds=60,
                                    check_seconds=3600), sender)
    gateway.start()
    try:
        if held:
            store(gateway.config.port, [first])
            assert gateway.flush(now=time.time() + 61) is not None
        store(gateway.config.port, [second])
        lose.append("armed")
        with pytest.raises(ConnectionFailedError):
            gateway.flush(now=time.time() + 61)
        time.sleep(1.01 - time.time() % 1)  # the next round's dataset is named by the next second
        retried = gateway.flush(now=time.time() + 61)
    finally:
        gateway.stop()
    assert retried is not None and not lose
    [study] = retried.receipt.studies
    versions = sqlite_commons.client().study_versions(study["study_uid"], PROJECT)
    # no submission after the one that made the study's latest version (the shared commons runs one test at a time)
    later = [s for s in sqlite_commons.client().list_submissions(PROJECT) if s.id > versions[-1]["submission_id"]]
    assert retried.committed_before, (retried.submission, retried.receipt.data)
    assert (study["status"], study["version"]) == ("new_version" if held else "accepted", len(versions)), study
    assert versions[-1]["submission_id"] == retried.submission.id
    assert later == [], [(s.id, s.dataset, s.status) for s in later]
    spool = state / "gateway"
    assert spooled_files(spool) == []
    assert (state / "receipts" / f"gateway-{retried.submission.dataset}-{retried.submission.id}.json").exists()


def _peak_rss_mb(pid: int) -> float:
    """The peak resident memory of process ``pid`` so far (VmHWM), in MiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) / 1024


def _large_multiframe(path: Path, frames: int) -> Path:
    """A multi-frame CT of ``frames`` 512 x 512 16-bit frames (0.5 MiB each), with a name and a patient
    ID to remove; the Pixel Data is written frame by frame, never held whole."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"  # CT Image Storage
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = "LARGE^PATIENT", "MRN-LARGE-1", "19600101"
    ds.Modality, ds.StudyDate, ds.AccessionNumber = "CT", "20240102", "ACC-LARGE"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.Rows = ds.Columns = 512
    ds.NumberOfFrames = frames
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    return write_multiframe(path, ds, frames)


def test_a_large_instance_is_received_with_flat_memory(key_file: Path, tmp_path: Path) -> None:
    """pynetdicom decoded each received data set into memory, and the gateway de-identified it there:
    a 288 MB instance took more than 288 MB, a 1 GB one more than 1 GB. The instance is now received
    into a file and de-identified from it (pixels copied, never decoded), with flat memory."""

    source = _large_multiframe(tmp_path / "large.dcm", 400)  # 200 MiB of Pixel Data
    port, state = free_port(), tmp_path / "state"
    gateway = start_gateway(port, key_file, state, 60.0)
    try:
        idle = _peak_rss_mb(gateway.pid)
        store(port, [source])
        # and again from a sender that puts the whole instance in one PDU (pynetdicom's SCU, when the
        # gateway set no maximum length): the PDU alone was read whole into memory
        from pynetdicom import AE

        peer = AE(ae_title="PACS1")
        peer.maximum_pdu_size = 0
        peer.add_requested_context("1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.1.2.1")
        assoc = peer.associate("127.0.0.1", port, ae_title="RCGW", max_pdu=0)
        try:
            assert assoc.send_c_store(source).Status == 0
        finally:
            assoc.release()
        peak = _peak_rss_mb(gateway.pid)
        # a PACS that goes away in the middle of an instance: what it sent (identified) does not stay
        receiving = state / "gateway" / "receiving"
        cut = subprocess.Popen(["storescu", "-aec", "RCGW", "127.0.0.1", str(port), str(source)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 30
        while not any(p.stat().st_size > 1 << 20 for p in receiving.iterdir()) and time.time() < deadline:
            time.sleep(0.01)
        cut.kill()
        cut.wait(30)
        deadline = time.time() + 10
        while list(receiving.iterdir()) and time.time() < deadline:
            time.sleep(0.1)
        left = list(receiving.iterdir())
        print(f"gateway peak RSS {peak:.0f} MiB ({idle:.0f} MiB before) for a {source.stat().st_size >> 20} MiB "
              "instance")
    finally:
        gateway.send_signal(signal.SIGINT)
        gateway.wait(30)
    assert peak - idle < 100, (idle, peak)
    [spooled] = spooled_files(state / "gateway")
    assert left == []  # the instance the PACS did not finish sending is gone, and the ones received
    replaced = [e for e in map(json.loads, (state / "gateway" / "events.jsonl").read_text().splitlines())
                if e["event"] in ("stored", "replaced")][-1]
    assert replaced["event"] == "replaced" and replaced["content"] == "identical", replaced
    ds = pydicom.dcmread(spooled, stop_before_pixels=True)
    assert ds.PatientIdentityRemoved == "YES" and ds.PatientID == patient_pseudonym(KEY, "SITE_A", "MRN-LARGE-1")
    assert "LARGE" not in str(ds.PatientName) and "AccessionNumber" not in ds or ds.AccessionNumber != "ACC-LARGE"
    assert pixel_digest(spooled) == pixel_digest(source)


def test_received_instances_are_de_identified_as_the_data_set_in_memory_was(corpus: Path, key_file: Path,
                                                                            tmp_path: Path) -> None:
    """Received into a file and de-identified from it, an instance comes out byte for byte as the
    de-identification of the received data set in memory made it (the gateway's way until the
    instance had to fit in memory): the first instance of every series of the synthetic corpus, all
    modalities (every instance took four times as long: an ultrasound instance's pixels are checked for
    burned-in text, about 2 s each, once by the gateway and once here)."""
    from radcommons.deid import Registry, deidentify_dataset, key_fingerprint, make_state_dir
    from radcommons.deid.fileio import write_whole

    series: dict[Path, list[Path]] = {}
    for path in sorted((corpus / "site_a").rglob("*.dcm")):
        if "CDROM" not in path.parts:
            series.setdefault(path.parent, []).append(path)
    files = [instances[0] for instances in series.values()]
    port, state = free_port(), tmp_path / "state"
    gateway = start_gateway(port, key_file, state, 60.0)
    try:
        sent = subprocess.run(["storescu", "-aec", "RCGW", "127.0.0.1", str(port), *map(str, files)],
                              capture_output=True, text=True, timeout=300)
    finally:
        gateway.send_signal(signal.SIGINT)
        gateway.wait(30)
    events = [json.loads(line) for line in (state / "gateway" / "events.jsonl").read_text().splitlines()]
    refused = [e for e in events if e["event"] in ("rejected", "withheld")]
    spooled = {p.relative_to(state / "gateway" / "spool").as_posix(): p for p in spooled_files(state / "gateway")}
    assert len(spooled) + len(refused) == len(files), (sent.stdout, sent.stderr)
    with Registry(make_state_dir(tmp_path / "reference"), key_fingerprint(KEY)) as registry:
        context = registry.bind(DeidContext(key=KEY, site="SITE_A"))
    expected: dict[str, bytes] = {}
    for path in files:
        ds = pydicom.dcmread(path)
        transfer_syntax = str(ds.file_meta.TransferSyntaxUID)  # storescu sends each file in its own
        outcome = deidentify_dataset(ds, context)
        if outcome.ok and outcome.dataset is not None:
            uids = outcome.new_uids
            name = f"{uids['study']}/{uids['series']}/{uids['sop']}.dcm"
            write_whole(tmp_path / "expected" / name, outcome.dataset, transfer_syntax)
            expected[name] = (tmp_path / "expected" / name).read_bytes()
    assert len(expected) == len(spooled) and len(spooled) >= 5
    for name, path in spooled.items():
        assert path.read_bytes() == expected[name], name
