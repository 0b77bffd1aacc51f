"""Helpers shared by the clinical tests that run ``radcommons contribute --dry-run`` (a module of its own:
conftest modules cannot be imported)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom

KEY = bytes(range(32))


@dataclass(frozen=True)
class Radiograph:
    """One CR/DX study of the synthetic corpus: its folder and Patient ID."""

    folder: Path
    mrn: str


def find_radiograph(corpus: Path) -> Radiograph:
    """A CR/DX study of one patient (radiographs need no pixel review: the dry run runs no OCR)."""
    for study in sorted({p.parent for p in (corpus / "site_a").rglob("*.dcm") if "CDROM" not in p.parts}):
        headers = [pydicom.dcmread(p, stop_before_pixels=True, force=True) for p in sorted(study.glob("*.dcm"))]
        one_patient = len({ds.PatientID for ds in headers}) == 1
        if {str(ds.get("Modality", "")) for ds in headers} <= {"CR", "DX"} and one_patient:
            return Radiograph(study, str(headers[0].PatientID))
    raise AssertionError("no radiograph study in the corpus")


@dataclass(frozen=True)
class DryRun:
    """What ``radcommons contribute --dry-run`` said: its JSON report and its standard output."""

    report: dict[str, Any]
    stdout: str

    def sampled(self, node: str) -> list[dict[str, Any]]:
        """The records of ``node`` the dry run shows (two at most: its sample of what would leave)."""
        header = f"\n{node} (sample of "
        start = self.stdout.find(header)
        assert start >= 0, f"no {node} records shown:\n{self.stdout}"
        text = self.stdout[self.stdout.index("\n", start + 1) + 1:]
        decoder, rows = json.JSONDecoder(), []
        while text.startswith("{"):
            row, end = decoder.raw_decode(text)
            rows.append(row)
            text = text[end:].lstrip("\n")
        return rows


def dry_run(study: Radiograph, state: Path, *clinical: Path, mapping: Path | None = None, partial: bool = False,
            errors: bool = True) -> DryRun:
    """A dry run of ``study`` with the ``clinical`` files (with --allow-partial: showing what it would send),
    after checking it ran cleanly and ended as ``errors`` (exit 1) or not (exit 0) says."""
    key_file = state.parent / f"{state.name}.key"
    key_file.write_text(KEY.hex() + "\n")
    key_file.chmod(0o600)
    args = [arg for path in clinical for arg in ("--clinical", str(path))]
    args += ["--mapping", str(mapping)] if mapping else []
    done = subprocess.run([sys.executable, "-m", "radcommons", "contribute", str(study.folder), *args, "--site", "S",
                           "--project", "Open-T1", "--key-file", str(key_file), "--state-dir", str(state),
                           "--dry-run", "--workers", "1", *(["--allow-partial"] if partial else [])],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == (1 if errors else 0), done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    return DryRun(json.loads(next((state / "reports").glob("contribute-*.json")).read_text()), done.stdout)


def write_csv(path: Path, rows: list[list[object]]) -> Path:
    path.write_text("".join(",".join(str(c) for c in row) + "\n" for row in rows), encoding="utf-8")
    return path
