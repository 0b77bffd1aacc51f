"""The gateway end to end: dcmtk's storescu sends to ``radcommons gateway``, which de-identifies, waits for
the quiet period and uploads into a real ``radcommons serve``; the instances end up indexed there."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

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


def test_gateway_uploads_into_a_running_commons(corpus: Path, key_file: Path, tmp_path: Path) -> None:
    (tmp_path / "commons").mkdir()
    commons = make_commons(tmp_path / "commons", f"sqlite:///{tmp_path / 'commons' / 'index.db'}")
    files = radiographs(corpus)
    token_file = tmp_path / "upload.token"
    token_file.write_text(commons.tokens["uploader"] + "\n")
    token_file.chmod(0o600)
    port = free_port()
    state = tmp_path / "site-state"
    gateway = subprocess.Popen(
        [sys.executable, "-m", "radcommons", "gateway", "--ae-title", "RCGW", "--port", str(port),
         "--host", "127.0.0.1", "--site", SITE, "--project", PROJECT, "--key-file", str(key_file),
         "--state-dir", str(state), "--quiet-seconds", "1", "--server", commons.url,
         "--token-file", str(token_file)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            if subprocess.run(["echoscu", "-aec", "RCGW", "127.0.0.1", str(port)], capture_output=True).returncode == 0:
                break
            assert gateway.poll() is None, gateway.stdout.read() if gateway.stdout else "gateway exited"
            time.sleep(0.3)
        store = subprocess.run(["storescu", "-aec", "RCGW", "127.0.0.1", str(port), *map(str, files)],
                               capture_output=True, text=True, timeout=120)
        assert store.returncode == 0, store.stderr
        receipts = state / "receipts"
        deadline = time.time() + 120
        while time.time() < deadline and not list(receipts.glob("gateway-*.json")):
            assert gateway.poll() is None, gateway.stdout.read() if gateway.stdout else "gateway exited"
            time.sleep(0.5)
        found = list(receipts.glob("gateway-*.json"))
        assert found, "no receipt from the commons within 120 s"
    finally:
        gateway.send_signal(signal.SIGINT)
        try:
            gateway.wait(30)
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
