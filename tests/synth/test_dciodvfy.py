"""Every generated file is a valid Part 10 file of its IOD: dciodvfy reports no Error."""

from __future__ import annotations

import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest


def _dciodvfy() -> str:
    found = shutil.which("dciodvfy")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("dciodvfy (Debian dicom3tools) is required in CI")
        pytest.skip("dciodvfy (Debian package dicom3tools) is not installed")
    return found


def test_every_file_passes_dciodvfy(phi_corpus) -> None:
    tool = _dciodvfy()
    out, manifest, _ = phi_corpus
    assert manifest.files

    def check(relative: str) -> list[str]:
        run = subprocess.run([tool, str(out / relative)], capture_output=True, text=True, check=False)
        lines = (run.stdout + run.stderr).splitlines()
        return [f"{relative}: {line}" for line in lines if line.startswith("Error")]

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        errors = [line for lines in pool.map(check, manifest.files) for line in lines]
    assert errors == [], "\n".join(errors[:40])


def test_part10_preamble_and_meta(phi_corpus) -> None:
    from pydicom import dcmread

    out, manifest, _ = phi_corpus
    for relative in manifest.files[:20]:
        raw = (out / relative).read_bytes()
        assert raw[:128] == b"\x00" * 128 and raw[128:132] == b"DICM"
        ds = dcmread(Path(out / relative), stop_before_pixels=True)
        assert ds.file_meta.MediaStorageSOPClassUID == ds.SOPClassUID
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.file_meta.ImplementationClassUID.startswith("2.25.")
