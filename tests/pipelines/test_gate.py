"""The commons' verification gate (:func:`radcommons.deid.check_deidentified`) on files as they arrive.

Headers are written to bytes and read back, as the gate sees them in ``radcommons ingest``, STOW
and the submission commit: values not yet decoded (raw elements), which the gate reads through
its cache of verdicts. Private elements follow the engine's rule: safe only in the context
(chain of enclosing sequences) where TCIA reviewed them.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from radcommons.deid import check_deidentified, deidentify_dataset
from radcommons.deid.safe_private import disposition, load_allow_list

sys.path.insert(0, str(Path(__file__).parent.parent / "deid"))

from deid_support import context, make_ct  # noqa: E402,F401 - context is a fixture

SIEMENS = "SIEMENS CT VA0  COAD"  # (0019,xx90) reviewed by TCIA at the top level only
ELEKTA = "ELEKTA GAMMAPLAN"  # (0009,xx20) reviewed only inside (300A,0010)


def _as_read(ds: Dataset) -> Dataset:
    """``ds`` written as a Part 10 file and read back header-only, as the gate gets it."""
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    buffer.seek(0)
    return pydicom.dcmread(buffer, stop_before_pixels=True)


def _deidentified(context) -> Dataset:
    ds = make_ct()
    assert deidentify_dataset(ds, context, pixels_cleaned=False).ok
    return ds


def _codes(ds: Dataset) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for finding in check_deidentified(ds):
        found.setdefault(finding.code, set()).add(finding.path)
    return found


def test_engine_output_passes(context) -> None:
    ds = _deidentified(context)
    assert 0x00191090 in ds  # the safe private element the engine kept at the top level
    assert check_deidentified(_as_read(ds)) == []


def test_private_element_safe_at_top_level_is_quarantined_out_of_context(context) -> None:
    ds = _deidentified(context)
    item = ds.ReferencedImageSequence[0]
    item.private_block(0x0019, SIEMENS, create=True).add_new(0x90, "LO", "NESTED")
    tag = next(e.tag for e in item if e.tag.is_private and e.tag.element > 0xFF)
    # The creator + offset match alone (the gate's former rule) calls it safe ...
    assert disposition(load_allow_list(), 0x0019, SIEMENS, tag.element) == "k"
    findings = check_deidentified(_as_read(ds))
    # ... the engine's rule does not: reviewed at the top level, not inside (0008,1140).
    nested = f"(0008,1140)[0].(0019,{tag.element:04X})"
    assert [(f.code, f.path) for f in findings] == [("private", nested)]
    assert "inside 00081140" in findings[0].message


def test_private_element_reviewed_only_nested_is_quarantined_at_top_level(context) -> None:
    ds = _deidentified(context)
    ds.private_block(0x0009, ELEKTA, create=True).add_new(0x20, "LO", "TOP")
    assert _codes(_as_read(ds)) == {"private": {"(0009,1020)"}}


def test_gate_rejects_what_it_must(context) -> None:
    base = _deidentified(context)
    cases: list[tuple[str, str, object]] = []

    def case(code: str, path: str, change) -> None:
        cases.append((code, path, change))

    case("identity-not-removed", "(0012,0062)", lambda ds: setattr(ds, "PatientIdentityRemoved", "NO"))
    case("identity-not-removed", "(0012,0062)", lambda ds: setattr(ds, "PatientIdentityRemoved", "yes"))
    case("no-method-codes", "(0012,0064)", lambda ds: delattr(ds, "DeidentificationMethodCodeSequence"))
    case("residual-pattern", "(0008,1140)[0].(0020,4000)",
         lambda ds: setattr(ds.ReferencedImageSequence[0], "ImageComments", "call 555-123-4567"))
    case("residual-pattern", "(0008,103E)", lambda ds: setattr(ds, "SeriesDescription", "john.doe@example.org"))
    case("person-name", "(0008,0090)", lambda ds: setattr(ds, "ReferringPhysicianName", "HIBBERT^JULIUS"))
    case("private", "(0011,1001)", lambda ds: ds.private_block(0x0011, "ACME HOSPITAL", create=True)
         .add_new(0x01, "LO", "x"))
    case("uid-form", "(0008,1140)[0].(0008,1155)",
         lambda ds: setattr(ds.ReferencedImageSequence[0], "ReferencedSOPInstanceUID", "1.2.3.4.5"))
    case("uid-form", "(0020,000E)", lambda ds: setattr(ds, "SeriesInstanceUID", "1.2.826.0.1.3680043.8.498.9"))
    for code, path, change in cases:
        ds = _as_read(base)
        ds = pydicom.dcmread(io.BytesIO(_bytes_after(ds, change)), stop_before_pixels=True)
        assert path in _codes(ds).get(code, set()), (code, path, check_deidentified(ds))


def _bytes_after(ds: Dataset, change) -> bytes:
    change(ds)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def test_cached_verdicts_depend_on_the_pseudonym(context) -> None:
    """The same Patient's Name bytes pass where they are the patient's pseudonym, not elsewhere."""
    ds = _deidentified(context)
    assert check_deidentified(_as_read(ds)) == []
    other = _as_read(ds)
    other.PatientID = "SOMEONE-ELSE"  # Patient's Name stays the raw bytes of the first pseudonym
    assert _codes(other) == {"person-name": {"(0010,0010)"}}
    again = _as_read(ds)  # a cached verdict is repeated, not forgotten
    again.ImageComments = "call 555-123-4567"
    twice = [_codes(_as_read(again)), _codes(_as_read(again))]
    assert twice[0] == twice[1] == {"residual-pattern": {"(0020,4000)"}}


def test_cached_sequence_findings_are_repeated_under_each_path(context) -> None:
    """A sequence seen before is not decoded again; its findings still come back, at its path."""
    ds = _deidentified(context)
    ds.ReferencedImageSequence[0].ImageComments = "call 555-123-4567"
    nested = "(0008,1140)[0].(0020,4000)"
    assert [_codes(_as_read(ds)) for _ in range(2)] == [{"residual-pattern": {nested}}] * 2
    wrapped = _as_read(ds)  # the same bytes one level down: the path includes the outer item
    outer = Dataset()
    outer.ReferencedImageSequence = wrapped.ReferencedImageSequence
    ds.RequestAttributesSequence[0].ReferencedImageSequence = outer.ReferencedImageSequence
    assert f"(0040,0275)[0].{nested}" in _codes(_as_read(ds))["residual-pattern"]


def test_patient_id_is_judged_before_it_excuses_patients_name(context) -> None:
    """Patient's Name equal to Patient ID passed as "the pseudonym" whatever Patient ID held."""
    base = _deidentified(context)
    for value, problem in [("CAMPBELL^JENNIFER", "person's name"), ("Campbell, Jennifer", "person's name"),
                           ("JENNIFER CAMPBELL", "person's name"), ("20318452", "medical record number"),
                           ("MRN-20318452", "medical record number"), ("jc@example.org", "identifier-like")]:
        ds = _as_read(base)
        ds.PatientID = ds.PatientName = value
        found = check_deidentified(_as_read(ds))
        assert {(f.code, f.path) for f in found} >= {("patient-id", "(0010,0020)"), ("person-name", "(0010,0010)")}, value
        assert any(problem in f.message for f in found if f.code == "patient-id"), (value, found)
    # other tools' pseudonyms that are neither name- nor MRN-shaped pass
    for value in ["ANON0001", "ANON 0001", "3f9a6c0e4b2d81f7a5c3e9d0b1a2c4e6", "Subject-0042", "LIDC-IDRI-0001"]:
        ds = _as_read(base)
        ds.PatientID = ds.PatientName = value
        assert check_deidentified(_as_read(ds)) == [], value


def test_gate_flags_what_annex_e_removes(context) -> None:
    """Ages over 89, real dates without 113107, institution and station: flagged with reasons."""
    base = _deidentified(context)
    assert str(base.PatientAge) <= "090Y" and "113107" in {c.CodeValue for c in base.DeidentificationMethodCodeSequence}

    def codes_after(change) -> dict[str, set[str]]:
        ds = _as_read(base)
        change(ds)
        return _codes(_as_read(ds))

    assert codes_after(lambda ds: setattr(ds, "PatientAge", "095Y")) == {"age-over-89": {"(0010,1010)"}}
    assert codes_after(lambda ds: setattr(ds, "PatientAge", "090Y")) == {}
    assert codes_after(lambda ds: setattr(ds, "InstitutionName", "Springfield General")) == {
        "not-removed": {"(0008,0080)"}}
    assert codes_after(lambda ds: setattr(ds, "InstitutionAddress", "12 Main Street")) == {
        "not-removed": {"(0008,0081)"}}
    assert codes_after(lambda ds: setattr(ds, "StationName", "CT-ROOM-3")) == {"not-removed": {"(0008,1010)"}}
    assert codes_after(lambda ds: setattr(ds, "InstitutionName", "ANONYMIZED")) == {}

    def no_shift_claimed(ds: Dataset) -> None:
        ds.DeidentificationMethodCodeSequence = Sequence(
            [c for c in ds.DeidentificationMethodCodeSequence if c.CodeValue != "113107"])
        del ds.LongitudinalTemporalInformationModified
    found = codes_after(no_shift_claimed)
    assert set(found) == {"dates-not-shifted"} and "(0008,0020)" in found["dates-not-shifted"]

    def no_shift_no_dates(ds: Dataset) -> None:
        no_shift_claimed(ds)
        for element in list(ds.iterall()):
            if element.VR in ("DA", "DT"):
                element.value = ""
    assert codes_after(no_shift_no_dates) == {}


def test_cpt_codes_in_descriptions_are_not_identifiers(context) -> None:
    """Real MIDRC descriptions carry CPT codes; an accession-like run of digits is still caught."""
    base = _deidentified(context)
    for text in ["CT CHEST (CPT=71250)", "OUT X-RAY CHEST 1 VIEW 71045", "LOW DOSE LUNG CA SCRN 71271-CS",
                 "CT CHEST, ABDOMEN & PELVIS W/ 74177,71260,Q9967", "THORACENTESIS LT 32555 US-CS"]:
        ds = _as_read(base)
        ds.StudyDescription = ds.SeriesDescription = text
        assert check_deidentified(_as_read(ds)) == [], text
    ds = _as_read(base)
    ds.StudyDescription = "CT CHEST ACC 20318452"
    assert _codes(_as_read(ds)) == {"residual-pattern": {"(0008,1030)"}}
    ds = _as_read(base)
    ds.ImageComments = "71250"  # not a description: a run of digits is an identifier
    assert _codes(_as_read(ds)) == {"residual-pattern": {"(0020,4000)"}}


def test_engine_default_output_of_a_synthetic_site_passes(deid_tree: Path) -> None:
    """``radcommons synth`` + ``radcommons deid`` (default profile): nothing is quarantined by the new checks."""
    files = sorted(deid_tree.rglob("*.dcm"))
    assert files
    for path in files:
        assert check_deidentified(pydicom.dcmread(path, stop_before_pixels=True)) == [], path
