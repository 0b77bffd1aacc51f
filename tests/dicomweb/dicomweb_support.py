"""Helpers of the DICOMweb tests: an Orthanc (with its DICOMweb plugin) on loopback, in a temp folder.

Orthanc is the reference small archive (DOMAIN.md section 7); the parity tests ask it and the
commons the same QIDO-RS questions. Without the Debian ``orthanc`` and ``orthanc-dicomweb``
packages the parity tests are skipped, except when ``CI`` is set: CI installs them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest

from radcommons.store.objects import ObjectStore
from serve_support import free_port

OPEN, SEQUESTERED, STOW = "Open-A1", "Seq-A1", "Stow-A1"

PLUGIN_DIRS = (Path("/usr/share/orthanc/plugins"), Path("/usr/lib/orthanc/plugins"),
               Path("/usr/local/share/orthanc/plugins"))
PLUGIN_NAME = "libOrthancDicomWeb.so"



def orthanc_executable() -> str | None:
    return shutil.which("Orthanc") or next((p for p in ("/usr/sbin/Orthanc", "/usr/bin/Orthanc")
                                            if Path(p).is_file()), None)


def dicomweb_plugin() -> Path | None:
    return next((d / PLUGIN_NAME for d in PLUGIN_DIRS if (d / PLUGIN_NAME).is_file()), None)


def require_orthanc() -> tuple[str, Path]:
    """Orthanc's executable and DICOMweb plugin; skip (or fail under CI) when either is missing."""
    executable, plugin = orthanc_executable(), dicomweb_plugin()
    if executable is None or plugin is None:
        missing = "the Orthanc executable" if executable is None else f"the DICOMweb plugin ({PLUGIN_NAME})"
        message = f"{missing} is not installed (apt-get install orthanc orthanc-dicomweb)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return executable, plugin


@dataclass
class DicomwebCommons:
    """The running commons and what was put in it."""

    server: Any  # commons_fixtures.Commons
    open_instances: list[Any]  # commons_fixtures.Instance
    sequestered_instances: list[Any]

    @property
    def url(self) -> str:
        return self.server.url + "/dicomweb"

    def token(self, user: str) -> str:
        return self.server.tokens[user]

    @property
    def store(self) -> ObjectStore:
        return ObjectStore(str(self.server.store_dir))


@dataclass
class Orthanc:
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def dicomweb_url(self) -> str:
        return self.url + "/dicom-web"

    def upload(self, path: Path) -> None:
        response = httpx.post(self.url + "/instances", content=path.read_bytes(), timeout=30)
        assert response.status_code == 200, response.text


@contextmanager
def start_orthanc(root: Path) -> Iterator[Orthanc]:
    """Orthanc on a free loopback port with its own storage under ``root``, stopped on exit."""
    executable, plugin = require_orthanc()
    port = free_port()
    config = {
        "Name": "radcommons-parity",
        "StorageDirectory": str(root / "storage"),
        "IndexDirectory": str(root / "index"),
        "HttpPort": port,
        "DicomServerEnabled": False,
        "DicomPort": free_port(),
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "HttpDescribeErrors": True,
        "Plugins": [str(plugin)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False, "StudiesMetadata": "Full",
                     "SeriesMetadata": "Full"},
    }
    (root / "config.json").write_text(json.dumps(config, indent=2))
    log = open(root / "orthanc.log", "ab")
    process = subprocess.Popen([executable, str(root / "config.json")], cwd=root, stdout=log, stderr=subprocess.STDOUT)
    server = Orthanc(port, process)
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise AssertionError(f"Orthanc exited: {(root / 'orthanc.log').read_text()[-2000:]}")
            try:
                if httpx.get(server.url + "/system", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("Orthanc did not start in 30 s")
            time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        log.close()


def uids(results: list[dict], tag: str) -> list[str]:
    """The first value of ``tag`` (e.g. ``"0020000D"``) in each DICOM JSON result."""
    return [item[tag]["Value"][0] for item in results if item.get(tag, {}).get("Value")]


def value(item: dict, tag: str) -> list:
    """All values of ``tag`` in a DICOM JSON object, person names as their alphabetic string."""
    return [v.get("Alphabetic") if isinstance(v, dict) else v for v in item.get(tag, {}).get("Value", [])]


def multipart_parts(body: bytes, content_type: str) -> list[tuple[dict[str, str], bytes]]:
    """Split a multipart/related body into (headers, content) pairs (a test's own parser)."""
    boundary = next(p.split("=", 1)[1].strip('"') for p in content_type.split(";") if p.strip().startswith("boundary="))
    parts = []
    for chunk in body.split(b"--" + boundary.encode())[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, content = chunk.partition(b"\r\n\r\n")
        headers = dict(line.split(": ", 1) for line in head.decode().strip().split("\r\n") if ": " in line)
        parts.append(({k.lower(): v for k, v in headers.items()}, content[:-2]))  # drop the CRLF before the next
    return parts


#: Basic Text SR: a document, no pixel data.
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"


def fresh_copy(commons: DicomwebCommons) -> pydicom.Dataset:
    """The first open instance under new study, series and SOP Instance UIDs (for a test's own STOW-RS)."""
    ds = pydicom.dcmread(commons.open_instances[0].path)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = f"2.25.{uuid.uuid4().int}", f"2.25.{uuid.uuid4().int}"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"2.25.{uuid.uuid4().int}"
    if "RequestAttributesSequence" in ds:
        del ds.RequestAttributesSequence
    return ds


def structured_report(commons: DicomwebCommons) -> pydicom.Dataset:
    """A :func:`fresh_copy` made a structured report: no pixel data, nothing to render. It claims Clean
    Structured Content (113104): the verification gate publishes an SR only then (it reads its content
    items only then)."""
    ds = fresh_copy(commons)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = BASIC_TEXT_SR
    ds.Modality = "SR"
    code = pydicom.Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "113104", "DCM", "Clean Structured Content"
    ds.DeidentificationMethodCodeSequence.append(code)
    for keyword in ("PixelData", "Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
                    "SamplesPerPixel", "PhotometricInterpretation"):
        if keyword in ds:
            delattr(ds, keyword)
    return ds
