"""The review queue's test site: a de-identified synthetic site whose study descriptions are
rewritten so the harmonization review queue has work (shared by the CLI and HTTP tests)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pydicom
import pytest

TIBIA = "XR TIBIA AND FIBULA LEFT 2 VIEWS"
# Original synthetic description -> what the test's site sends instead.
REWRITE = {
    "XR CHEST 1 VW PORTABLE": TIBIA,  # two CR studies
    "XR CHEST MORNING ROUTINE PORTABLE": "xr  tibia and fibula left 2 views",  # DX: same pair for MIDRC
    "XR CHEST 1 VW, FRONTAL": "XR CHEST PA ERECT",  # below the threshold: 24648-8 suggested
}


@pytest.fixture
def site(deid_tree: Path, tmp_path: Path) -> Path:
    tree = tmp_path / "site"
    shutil.copytree(deid_tree, tree)
    for path in tree.rglob("*.dcm"):
        ds = pydicom.dcmread(path)
        new = REWRITE.get(str(ds.get("StudyDescription", "")))
        if new:
            ds.StudyDescription = new
            ds.save_as(path)
    return tree
