"""deidentify_dataset on synthetic datasets: every rule of the engine, in memory."""

from __future__ import annotations

import copy

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from radcommons.deid import (
    DEIDENTIFIED,
    WITHHELD,
    DeidContext,
    check_deidentified,
    date_offset_days,
    deidentify_dataset,
    load_profile,
    new_uid,
    patient_pseudonym,
)
from radcommons.deid.check import Finding

from deid_support import KEY, PATIENT_ID, SOP_UID, STUDY_UID, make_ct

PHI = ["DOE", "JOHN", "MRN0048151623", "ACC7781234", "Springfield", "HIBBERT", "SMITHERS",
       "SGHCT01", "SN-44556677", "OTHER998877", "19670211", "555-123-4567", "john.doe", "Evergreen"]


def _all_text(ds: Dataset) -> str:
    parts = []
    for element in ds.iterall():
        if element.VR not in ("OB", "OW", "SQ", "UN"):
            parts.append(str(element.value))
    return " ".join(parts)


def test_default_profile_removes_phi_and_keeps_research_values(context):
    ds = make_ct()
    outcome = deidentify_dataset(ds, context)
    assert outcome.status == DEIDENTIFIED
    text = _all_text(ds).upper()
    for value in PHI:
        assert value.upper() not in text, value
    assert "20210304" not in text
    pseudonym = patient_pseudonym(KEY, "SITE_A", PATIENT_ID)
    assert ds.PatientID == pseudonym and ds.PatientName == pseudonym
    assert ds.PatientBirthDate == ""
    assert (ds.PatientSex, ds.PatientAge, ds.PatientSize, ds.PatientWeight) == ("M", "054Y", 1.78, 81)
    assert (ds.Manufacturer, ds.ManufacturerModelName) == ("SIEMENS", "SOMATOM Force")
    assert "DeviceSerialNumber" not in ds and "StationName" not in ds and "InstitutionName" not in ds
    assert ds.StudyDescription.startswith("CT CHEST WO CONTRAST")
    assert "CHEST ROUTINE" == ds.ProtocolName
    assert ds.PatientIdentityRemoved == "YES"
    assert ds.LongitudinalTemporalInformationModified == "MODIFIED"
    assert [i.CodeValue for i in ds.DeidentificationMethodCodeSequence] == [
        "113100", "113105", "113107", "113108", "113111"]
    assert check_deidentified(ds) == []


def test_uids_replaced_everywhere_consistently(context):
    ds = make_ct()
    deidentify_dataset(ds, context)
    new_study = new_uid(KEY, STUDY_UID)
    assert ds.StudyInstanceUID == new_study
    assert ds.SOPInstanceUID == new_uid(KEY, SOP_UID)
    request = ds.RequestAttributesSequence[0]
    assert request.StudyInstanceUID == new_study
    assert request.ReferencedStudySequence[0].ReferencedSOPInstanceUID == new_study
    assert ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID.startswith("2.25.")
    assert ds.ReferencedImageSequence[0].ReferencedSOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"


def test_dates_shift_by_the_patient_offset_everywhere(context):
    ds = make_ct(study_date="20210304")
    later = make_ct(study_date="20210401", sop_uid="1.2.3.9", study_uid="1.2.3.8")
    deidentify_dataset(ds, context)
    deidentify_dataset(later, context)
    offset = date_offset_days(KEY, "SITE_A", PATIENT_ID)
    import datetime as dt

    shifted = dt.date(2021, 3, 4) + dt.timedelta(days=offset)
    assert ds.StudyDate == shifted.strftime("%Y%m%d")
    assert ds.AcquisitionDateTime == shifted.strftime("%Y%m%d") + "101502.123+0100"
    assert ds.StudyTime == "101502"  # TM kept: a whole-day shift
    gap = dt.datetime.strptime(later.StudyDate, "%Y%m%d") - dt.datetime.strptime(ds.StudyDate, "%Y%m%d")
    assert gap.days == 28  # intervals within a patient preserved exactly


def test_private_attributes_only_safe_ones_kept(context):
    ds = make_ct()
    deidentify_dataset(ds, context)
    private = {(e.tag.group, e.tag.element): e.value for e in ds if e.tag.is_private}
    assert private == {(0x0019, 0x0010): "SIEMENS CT VA0  COAD", (0x0019, 0x1090): "0"}
    basic = make_ct()
    deidentify_dataset(basic, DeidContext(KEY, "SITE_A", load_profile("basic"), review_pixels=False))
    assert not any(e.tag.is_private for e in basic)


def test_overlays_and_curves_removed(context):
    ds = make_ct()
    deidentify_dataset(ds, context)
    assert not [e for e in ds if e.tag.group in (0x6000, 0x5000)]


def test_basic_profile(context):
    ds = make_ct()
    outcome = deidentify_dataset(ds, DeidContext(KEY, "SITE_A", load_profile("basic"), review_pixels=False))
    assert outcome.ok
    assert ds.StudyDate == "" and "SeriesDate" not in ds  # Z (Type 2) and X (Type 3)
    assert "PatientAge" not in ds and "StudyDescription" not in ds
    assert ds.LongitudinalTemporalInformationModified == "REMOVED"
    assert [i.CodeValue for i in ds.DeidentificationMethodCodeSequence] == ["113100"]
    assert check_deidentified(ds) == []


def test_old_age_and_malformed_age(context):
    ds = make_ct(age="093Y")
    deidentify_dataset(ds, context)
    assert ds.PatientAge == "090Y"
    ds = make_ct(age="??")
    deidentify_dataset(ds, context)
    assert "PatientAge" not in ds


def test_site_overrides(tmp_path, context):
    path = tmp_path / "o.yaml"
    path.write_text("PatientWeight: X\nStudyDescription: K\n")
    ctx = DeidContext(KEY, "SITE_A", load_profile("default", path), review_pixels=False)
    ds = make_ct()
    deidentify_dataset(ds, ctx)
    assert "PatientWeight" not in ds
    assert "Hibbert" in ds.StudyDescription  # the site asked for it
    assert "with site overrides" in ds.DeidentificationMethod


def test_no_patient_id_gets_a_study_scoped_pseudonym(context):
    ds = make_ct(patient_id="")
    outcome = deidentify_dataset(ds, context)
    assert outcome.ok and ds.PatientID.startswith("RC")
    assert outcome.patient.patient_id == "study:" + STUDY_UID


def test_structured_reports_are_withheld(context):
    ds = make_ct()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    assert deidentify_dataset(ds, context).status == WITHHELD


def test_burned_in_yes_without_cleaning_is_withheld(context):
    ds = make_ct()
    ds.BurnedInAnnotation = "YES"
    outcome = deidentify_dataset(ds, context)
    assert outcome.status == WITHHELD and "Burned In" in outcome.reason


def test_missing_uid_is_rejected(context):
    ds = make_ct()
    del ds.SOPInstanceUID
    assert deidentify_dataset(ds, context).status == "rejected"


def test_nested_phi_in_unlisted_sequences(context):
    ds = make_ct()
    item = Dataset()
    item.PerformedProcedureStepDescription = "CT for DOE JOHN"
    item.ReviewerName = "SOMEONE^ELSE"
    item.ObservationDateTime = "20210304120000"
    ds.add_new(0x00400260, "SQ", Sequence([item]))  # Performed Protocol Code Sequence, unlisted
    deidentify_dataset(ds, context)
    nested = ds[0x00400260].value[0]
    assert "DOE" not in nested.PerformedProcedureStepDescription
    assert "ReviewerName" not in nested or nested.ReviewerName == ""
    assert nested.ObservationDateTime != "20210304120000"


def test_checker_finds_problems():
    ds = make_ct()
    codes = {f.code for f in check_deidentified(ds)}
    assert {"identity-not-removed", "no-method-codes", "uid-form", "person-name", "private", "birth-date"} <= codes
    assert all(isinstance(f, Finding) for f in check_deidentified(ds))


def test_same_input_twice_same_result(context):
    a, b = make_ct(), make_ct()
    deidentify_dataset(a, context)
    deidentify_dataset(b, context)
    assert a == b
    c = make_ct()
    deidentify_dataset(c, DeidContext(KEY, "SITE_B", load_profile("default"), review_pixels=False))
    assert c.PatientID != a.PatientID  # another site: another patient
    assert c.StudyInstanceUID == a.StudyInstanceUID  # same key: same UIDs
    d = copy.deepcopy(make_ct())
    deidentify_dataset(d, DeidContext(bytes(32), "SITE_A", load_profile("default"), review_pixels=False))
    assert d.StudyInstanceUID != a.StudyInstanceUID and d.PatientID != a.PatientID
