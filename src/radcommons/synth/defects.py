"""What goes wrong in real site exports, planted on purpose (``--defects``).

Per site: a truncated DICOM file (an interrupted transfer), a JPEG preview
saved with a ``.dcm`` name, a zero-byte file, a DICOMDIR folder from a CD-style
export (PS3.10 §8, Media Storage Directory), an instance duplicated byte for
byte under another name, and a clinical CSV with an impossible date and a sex
of "X". Each returns an entry for ``defects_manifest.json``::

    {"site": "site_a", "kind": "truncated_dicom", "path": "site_a/.../IM9001.dcm",
     "copy_of": "site_a/.../IM0001.dcm", "detail": "first 1234 of 2468 bytes"}

Kinds: ``truncated_dicom``, ``not_dicom``, ``zero_bytes``, ``dicomdir`` (one
entry for the DICOMDIR file and one per instance copied beside it),
``duplicate_instance``, ``bad_clinical_value``. Paths are relative to OUT.
"""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from PIL import Image
from pydicom import dcmread
from pydicom.fileset import FileSet

from radcommons.dicom.uid import random_uid
from radcommons.synth.clinical import ClinicalIdentity, ClinicalStyle, style_for
from radcommons.synth.population import Patient


def _sibling(rel: str, stem: str) -> PurePosixPath:
    source = PurePosixPath(rel)
    return source.parent / f"{stem}{source.suffix}"


def write_defects(
    out: Path,
    site: str,
    files: list[str],
    style: ClinicalStyle,
    patients: list[Patient],
    identities: list[ClinicalIdentity],
    rng: np.random.Generator,
) -> list[dict[str, Any]]:
    """Plant the defects of one site's export; ``files`` are its DICOM files (relative to ``out``)."""
    entries: list[dict[str, Any]] = []
    if not files:
        return entries
    pick = files[int(rng.integers(len(files)))]
    data = (out / pick).read_bytes()

    truncated = _sibling(pick, "IM9001")
    cut = len(data) // 2
    (out / truncated).write_bytes(data[:cut])
    entries.append({"site": site, "kind": "truncated_dicom", "path": str(truncated), "copy_of": pick,
                    "detail": f"first {cut} of {len(data)} bytes"})

    jpeg = _sibling(pick, "IM9002")
    buffer = io.BytesIO()
    preview = (rng.random((64, 64)) * 255).astype(np.uint8)
    Image.fromarray(preview, mode="L").save(buffer, format="JPEG", quality=80)
    (out / jpeg).write_bytes(buffer.getvalue())
    entries.append({"site": site, "kind": "not_dicom", "path": str(jpeg), "detail": "JPEG image with a DICOM file name"})

    empty = _sibling(pick, "IM9003")
    (out / empty).write_bytes(b"")
    entries.append({"site": site, "kind": "zero_bytes", "path": str(empty), "detail": "empty file"})

    other = files[int(rng.integers(len(files)))]
    duplicate = _sibling(other, "IM9004")
    shutil.copyfile(out / other, out / duplicate)
    entries.append({"site": site, "kind": "duplicate_instance", "path": str(duplicate), "copy_of": other,
                    "detail": "identical bytes under another name"})

    # A CD-style export: DICOMDIR plus a copy of one instance, in the site's folder.
    media = PurePosixPath(site) / "CDROM"
    fileset = FileSet()
    fileset.ID = "SYNTHCD"
    fileset.UID = random_uid(rng)  # pydicom would draw a random File-set UID: not reproducible
    source = files[0]
    fileset.add(dcmread(out / source))
    fileset.write(out / media)
    entries.append({"site": site, "kind": "dicomdir", "path": str(media / "DICOMDIR"),
                    "detail": "Media Storage Directory (PS3.10) from a CD export"})
    for instance in fileset:
        copied = media / PurePosixPath(*Path(instance.path).relative_to(out / media).parts)
        entries.append({"site": site, "kind": "dicomdir", "path": str(copied), "copy_of": source,
                        "detail": "instance referenced by the DICOMDIR"})

    # A clinical CSV with bad values, in the site's own demographics columns.
    columns = style_for(0).columns["demographics"] if style.extension != ".csv" else style.columns["demographics"]
    bad = PurePosixPath(site) / "clinical" / "demographics_corrections.csv"
    patient, ident = patients[0], identities[0]
    with (out / bad).open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(columns)
        writer.writerow([ident.mrn, f"{ident.family}^{ident.given}", "2021-02-30", "X",
                         patient.race, patient.ethnicity, patient.zip5])
    entries.append({"site": site, "kind": "bad_clinical_value", "path": str(bad), "row": 2, "column": columns[2],
                    "value": "2021-02-30", "detail": "impossible date"})
    entries.append({"site": site, "kind": "bad_clinical_value", "path": str(bad), "row": 2, "column": columns[3],
                    "value": "X", "detail": "sex outside the vocabulary"})
    return entries
