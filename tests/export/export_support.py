"""A small commons for the export tests (once per session; the fixture is re-exported by conftest.py).

The de-identified synthetic site of tests/server (``deid_tree``: 3 patients, small; most workers
have built it already for the server, research and DICOMweb tests) -> ``db upgrade`` -> ingest:
two patients into the open project, one without CT into a sequestered one; then one frozen
cohort of every series (frozen with admin scope, so it holds sequestered members).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest

from radcommons.pipelines.ingest import ingest_tree
from radcommons.store.index import make_engine, upgrade
from radcommons.store.objects import ObjectStore
from radcommons.store.query import freeze

OPEN, SEQUESTERED = "Open-A1", "Seq-A1"


@dataclass(frozen=True)
class Commons:
    root: Path
    db_url: str
    store_url: str
    cohort_id: str
    deid: Path
    sequestered_patient: str


def radcommons(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "radcommons", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "COLUMNS": "200", **(env or {})})


@pytest.fixture(scope="session")
def commons(deid_tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Commons:
    root = tmp_path_factory.mktemp("export-commons")
    db_url = f"sqlite:///{root / 'index.db'}"
    upgrade(db_url)
    engine = make_engine(db_url)
    store = ObjectStore(str(root / "objects"))
    # The de-identified tree is by study: regroup it by patient (symlinks) to ingest patients apart.
    by_patient = root / "by-patient"
    modalities: dict[str, set[str]] = {}
    for path in sorted(deid_tree.rglob("*.dcm")):
        header = pydicom.dcmread(path, stop_before_pixels=True)
        patient = str(header.PatientID)
        modalities.setdefault(patient, set()).add(str(header.Modality))
        link = by_patient / patient / path.relative_to(deid_tree)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(path)
    # Pseudonyms change with the key: sequester a patient without CT, so the CT stays exportable.
    held_back = sorted(p for p, m in modalities.items() if "CT" not in m)[0]
    patients = sorted(by_patient.iterdir(), key=lambda folder: folder.name == held_back)
    for folder in patients:
        sequestered = folder.name == held_back
        ingest_tree(folder, engine=engine, store=store, project=SEQUESTERED if sequestered else OPEN,
                    site_id="SITE_A", availability="sequestered" if sequestered else "open", workers=1)
    cohort = freeze(engine, node="series", filter=None, name="all series", owner="admin")
    engine.dispose()
    assert cohort.identifier
    return Commons(root, db_url, str(root / "objects"), cohort.identifier, deid_tree, patients[-1].name)
