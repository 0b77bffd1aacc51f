"""End to end against a real ``radcommons serve``: contribute, kill -9 mid-upload, rerun, receipt."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from contribute_support import RealCommons

HERE = Path(__file__).parent
pytestmark = pytest.mark.slow


def test_contribute_killed_and_resumed_sends_nothing_twice(commons: RealCommons, corpus: Path,
                                                          key_file: Path, tmp_path: Path) -> None:
    url, token_file = commons.url, commons.token_files["SITE_A"]
    state = tmp_path / "state"
    clinical = [str(p) for p in sorted((corpus / "site_b" / "clinical").iterdir()) if "corrections" not in p.name]
    args = ["contribute", str(corpus / "site_b"), *sum((["--clinical", c] for c in clinical), []),
            "--site", "SITE_A", "--project", "Open-T1", "--server", url, "--token-file", str(token_file),
            "--key-file", str(key_file), "--state-dir", str(state), "--workers", "1", "--dataset", "SITE_A_E2E"]
    env = {**os.environ, "COLUMNS": "200"}
    killed = subprocess.run([sys.executable, str(HERE / "kill_after.py"), "5", *args], capture_output=True,
                            text=True, env=env, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    stored, last = map(int, re.search(r"killed after (\d+) files, the last request carried (\d+)",  # type: ignore[union-attr]
                                      killed.stderr).groups())
    assert not list((state / "receipts").glob("*"))

    resumed = subprocess.run([sys.executable, "-m", "radcommons", *args], capture_output=True, text=True, env=env,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    receipt_file = next((state / "receipts").glob("receipt-SITE_A_E2E-*.json"))
    saved = json.loads(receipt_file.read_text())
    upload, receipt = saved["upload"], saved["receipt"]
    # The kill came after the last request's files reached the server but before the journal
    # recorded them: the others are skipped from the journal, those are found on the server
    # (files/states); none is re-sent.
    assert upload["confirmed_before"] == stored - last and last >= 1
    assert upload["already_on_server"] >= last
    assert upload["sent"] + upload["confirmed_before"] + upload["already_on_server"] == upload["files"]
    instances = receipt["counts"]["instances"]
    assert instances["indexed"] == upload["files"] and instances.get("rejected", 0) == 0
    assert {s["status"] for s in receipt["studies"]} <= {"accepted", "partial"}
    assert receipt["counts"]["clinical"]["rejected"] == 0
    assert receipt["counts"]["clinical"]["accepted"] == sum(1 for r in saved["clinical_rows"])
    assert "receipt (private)" in resumed.stdout
    # the submission as committed, not as the run opened it (open, no files): it stood beside the receipt
    assert saved["submission"]["status"] == "committed" and saved["submission"]["committed_at"]
    assert saved["submission"]["files"] == upload["files"]
    assert saved["submission"]["studies"] == receipt["counts"]["studies"] == len(receipt["studies"])

    # Run once more: nothing new, so no second submission of the dataset; its receipt again.
    again = subprocess.run([sys.executable, "-m", "radcommons", *args], capture_output=True, text=True, env=env,
                           timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"submission {receipt['submission_id']} (SITE_A_E2E) was committed before" in again.stdout, again.stdout
    assert [p.name for p in (state / "receipts").glob("receipt-*.json")] == [receipt_file.name]
