"""Outputs that broke their IOD, and objects withheld for no reason (found by a dciodvfy sweep over
many object types, dciodvfy on input and output)."""

from __future__ import annotations

import pytest
from deid_support import KEY, make_ct
from pydicom.data import get_testdata_file

from radcommons.deid import DeidContext, deidentify_dataset, load_profile
from radcommons.deid.pixels import _length_mismatch, needs_pixel_review

PET_IMAGE = "1.2.840.10008.5.1.4.1.1.128"


def _deid(ds, profile: str):
    outcome = deidentify_dataset(ds, DeidContext(KEY, "SITE_A", load_profile(profile), review_pixels=False))
    assert outcome.status == "deidentified", outcome.reason
    return outcome.dataset


def test_pet_series_and_acquisition_dates_stay_under_the_basic_profile() -> None:
    """PET Series Date/Time are Type 1 and PET Image Acquisition Date/Time Type 2 (PS3.3 C.8.9):
    resolved with the classic image Types (3), X/D and X/Z removed them."""
    ds = make_ct()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = PET_IMAGE
    ds.Modality = "PT"
    ds.SeriesTime, ds.AcquisitionTime = "101500", "101600"
    out = _deid(ds, "basic")
    assert out.SeriesDate and out.SeriesTime  # D: a dummy value
    assert "AcquisitionDate" in out and "AcquisitionTime" in out  # Z: present, empty


@pytest.mark.parametrize("profile", ["default", "basic"])
def test_a_label_that_is_all_identifier_gets_a_dummy_not_nothing(profile: str) -> None:
    """A Structure Set Label equal to the Study ID cleaned to an empty Type 1 attribute."""
    ds = make_ct()
    ds.StudyID = "S123"
    ds.StructureSetLabel = "S123"
    out = _deid(ds, profile)
    assert out.StructureSetLabel == "ANONYMIZED"


@pytest.mark.parametrize(("sop_class", "modality", "bits"), [
    ("1.2.840.10008.5.1.4.1.1.66.4", "SEG", 1),  # Segmentation: every binary one was withheld
    ("1.2.840.10008.5.1.4.1.1.30", "OT", 32),  # Parametric Map (float): "Pixel Data is absent"
])
def test_computed_pixels_need_no_burned_in_text_review(sop_class: str, modality: str, bits: int) -> None:
    ds = make_ct()
    ds.SOPClassUID, ds.Modality, ds.BitsAllocated = sop_class, modality, bits
    ds.ImageType = ["DERIVED", "PRIMARY"]
    del ds.BurnedInAnnotation
    assert not needs_pixel_review(ds).needs_cleaning


def test_uncompressed_ybr_full_422_has_its_own_size() -> None:
    """Two bytes a pixel (PS3.3 C.7.6.3.1.2): the size check withheld every such image."""
    import pydicom

    ds = pydicom.dcmread(get_testdata_file("SC_ybr_full_422_uncompressed.dcm"))
    assert _length_mismatch(ds, ds.file_meta.TransferSyntaxUID, int(ds.get("NumberOfFrames", 1) or 1)) == ""
