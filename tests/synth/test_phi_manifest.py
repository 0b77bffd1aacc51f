"""The phi manifest says where every marker is, and it is there."""

from __future__ import annotations

import re
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset

from radcommons.synth.phi import MARKER_PATTERN

_STEP = re.compile(r"\(([0-9A-F]{4}),([0-9A-F]{4})\)(?:\[(\d+)\])?")


def _resolve(ds: Dataset, path: str):
    current: object = ds
    steps = path.split(".")
    for step in steps:
        match = _STEP.fullmatch(step)
        assert match, step
        group, element, index = match.groups()
        assert isinstance(current, Dataset)
        value = current[int(group, 16), int(element, 16)].value
        current = value[int(index)] if index is not None else value
    return current


def test_planted_markers_are_where_the_manifest_says(phi_corpus) -> None:
    out, manifest, phi = phi_corpus
    assert set(phi["files"]) == set(manifest.files)
    kinds = set()
    wheres = set()
    for relative, entry in phi["files"].items():
        ds = dcmread(out / relative)
        for planted in entry["planted"]:
            kinds.add(planted["kind"])
            wheres.add(planted["where"])
            assert planted["marker"] in phi["markers"]
            if planted["where"] == "tag":
                value = _resolve(ds, planted["path"])
                text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
                assert planted["marker"] in text, (relative, planted)
            elif planted["where"] == "filename":
                assert planted["marker"] in relative
            else:
                assert planted["marker"] in planted["text"]
        # Completeness: every marker in the header bytes is listed as a tag placement.
        header = (out / relative).read_bytes()
        if "PixelData" in ds:
            header = header.replace(ds.PixelData, b"")
        in_bytes = set(MARKER_PATTERN.findall(header.decode("latin-1")))
        listed = {p["marker"] for p in entry["planted"] if p["where"] == "tag"}
        assert in_bytes == listed, relative
        for path in entry["uids"]:
            assert str(_resolve(ds, path)) == entry["uids"][path]
        for path, value in entry["dates"].items():
            assert str(_resolve(ds, path)) == value
        assert entry["retain"]["Manufacturer"] == ds.Manufacturer
    assert {"patient_name", "mrn", "accession_number", "institution_name", "station_name",
            "device_serial_number", "physician_name", "operator_name", "patient_address",
            "patient_phone"} <= kinds
    assert wheres == {"tag", "filename", "pixels"}


def test_identifiers_in_sequences_private_tags_and_free_text(phi_corpus) -> None:
    _, _, phi = phi_corpus
    placements = [p for e in phi["files"].values() for p in e["planted"] if p["where"] == "tag"]
    paths = {p["path"] for p in placements}
    assert "(0040,0275)[0].(0008,0050)" in paths  # RequestAttributesSequence > AccessionNumber
    assert "(0010,1002)[0].(0010,0020)" in paths  # OtherPatientIDsSequence > PatientID
    assert any(p.get("private_creator") for p in placements)
    assert any(p["path"] == "(0010,21B0)" for p in placements)  # AdditionalPatientHistory
    assert any(p["path"] in ("(0008,1030)", "(0008,103E)") for p in placements)  # typed into descriptions
    assert any("PHIMARK" in e["uids"].get("(0008,1110)[0].(0008,1155)", "PHIMARK") for e in phi["files"].values())


def test_burned_in_annotation_yes_on_some_and_absent_on_others(phi_corpus) -> None:
    out, _, phi = phi_corpus
    flags = []
    for relative, entry in phi["files"].items():
        if any(p["where"] == "pixels" for p in entry["planted"]):
            ds = dcmread(Path(out / relative), stop_before_pixels=True)
            assert ds.Modality in ("US", "CT") and ds.SOPClassUID in (
                "1.2.840.10008.5.1.4.1.1.6.1", "1.2.840.10008.5.1.4.1.1.7")
            flags.append(ds.get("BurnedInAnnotation"))
    assert "YES" in flags and None in flags
