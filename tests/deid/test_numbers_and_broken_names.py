"""Identifiers that survived ``radcommons deid`` in numbers and in names typed with a hyphen (issue 3).

* Integer and Decimal Strings (IS, DS) Table E.1-1 does not list were copied as read: text in
  one (Slice Thickness "Zyxw"), the study date as Series Number, the MRN's digits as Acquisition
  Number, the accession's digits as Patient's Weight all survived. A value that is not a number
  (PS3.5 6.2), or whose digits are an ID (6 digits or more) or a real date of the dataset, now
  goes as its Type allows: removed (Type 3), emptied (Type 2), a zero for each value (Type 1, or
  Type not known: inside a sequence). Ordinary numbers are kept byte for byte, a Decimal String
  longer than PS3.5's 16 bytes too (a double printed in full: the engine allows 32).
* A family name written in the header as one word (ZYXWORT, SMITHJONES) stayed in a
  description where it was typed with a hyphen, an apostrophe or a space inside ("Zyx-wort",
  "Smith Jones"); words that only look like a name cut in two stay ("CHEST ER" for CHESTER).
* A number that holds an ID inside a longer run of digits before its decimal point (the MRN's
  digits with a digit before them as Acquisition Number, the study date with one before it as
  Patient's Weight) survived: only whole values were compared. Digits after the point are still
  compared whole only (a measured value printed in full has many 6-digit runs in its fraction).
* A Decimal String written with a decimal comma ("1,5", a common writer's error) was emptied or
  zeroed as if it were text; it is a number, and is kept as read.
"""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from radcommons.deid.check import check_deidentified

from deid_support import assert_paths_agree, deid_run, deidentified_output, planted_ct

NAME, MRN, ACCESSION = "ZYXWORT^QUENNEL", "QX48213977", "A7731592"
ROOT = "1.2.826.0.1.3680043.8.498.62"
STUDY_DATE = "20190312"  # planted_ct's Study Date


def _replace(path: Path, old: bytes, new: bytes) -> None:
    data = path.read_bytes()
    assert data.count(old) == 1 and len(old) == len(new)
    path.write_bytes(data.replace(old, new))


def _write_inputs(src: Path) -> None:
    identity = (NAME, MRN, ACCESSION)
    ref = Dataset()
    ref.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ref.ReferencedSOPInstanceUID = f"{ROOT}.9.1"
    ref.ReferencedFrameNumber = "48213977"  # IS in an item: Type not known here, so a zero
    ds = planted_ct(1, ROOT, identity, SliceThickness="1.25", SeriesNumber=STUDY_DATE,
                    AcquisitionNumber="48213977", InstanceNumber="7", PatientWeight="7731592",
                    PatientSize="1.78", KVP="120", SliceLocation="-1234.56789012345", PixelSpacing=["0.5", "4.4"],
                    RescaleIntercept="-1024", ReferencedImageSequence=Sequence([ref]))
    path = src / "numbers.dcm"
    ds.save_as(path, enforce_file_format=True)
    # pydicom writes no DS holding text: make the bytes so
    _replace(path, b"1.25", b"Zyxw")
    _replace(path, b"0.5\\4.4 ", b"0.5\\Zyxw")

    ds = planted_ct(2, f"{ROOT}.2", identity, StudyDescription="CT Zyx-wort chest",
                    SeriesDescription="Zyx wort lung", ProtocolName="ZYX'WORT ROUTINE",
                    ImageComments="Quen-nel follow-up", SeriesNumber="3", InstanceNumber="12",
                    SliceThickness="1.0")
    ds.save_as(src / "hyphenated_name.dcm", enforce_file_format=True)

    ds = planted_ct(3, f"{ROOT}.3", ("SMITHJONES^ANN", "QX5520718", "A5520718"),
                    StudyDescription="CT Smith-Jones abdomen", SeriesDescription="SMITH JONES lung")
    ds.OperatorsName = "CHESTER^BOB"
    ds.ProtocolName = "CHEST ER follow up"
    ds.save_as(src / "double_barrelled_name.dcm", enforce_file_format=True)

    ds = planted_ct(4, f"{ROOT}.4", identity, AcquisitionNumber="948213977", PatientWeight="120190312",
                    SliceThickness="1.5", PixelSpacing=["0.5", "0.5"], SliceLocation="-12.34821397700011",
                    SeriesNumber="4", InstanceNumber="1")
    path = src / "numbers_inside.dcm"
    ds.save_as(path, enforce_file_format=True)
    _replace(path, b"1.5", b"1,5")  # pydicom writes no decimal comma
    _replace(path, b"0.5\\0.5", b"0,5\\0,5")

    # numbers that are no identifier of this dataset but look like one to the gate, which knows none
    ds = planted_ct(5, f"{ROOT}.5", identity, InstanceNumber="12345678", SliceLocation="19870615",
                    SeriesNumber="5", KVP="120")
    ds.save_as(src / "identifier_forms.dcm", enforce_file_format=True)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict]]:
    return deid_run(tmp_path_factory.mktemp("numbers_names"), _write_inputs)


_output = deidentified_output


def test_numbers_holding_text_or_identifiers_go_by_type(run: tuple[Path, dict]) -> None:
    path = _output(run, "numbers")
    data = path.read_bytes()
    assert [m for m in (b"Zyxw", b"48213977", b"7731592", STUDY_DATE.encode()) if m in data] == []
    ds = pydicom.dcmread(path)
    # Type 2 (Image Plane, General Series): emptied; Type 3: removed; Type 1: a zero each
    assert ds["SliceThickness"].is_empty and ds["SeriesNumber"].is_empty
    assert {"AcquisitionNumber", "PatientWeight"} & set(ds.dir()) == set()
    assert list(ds.PixelSpacing) == [0, 0]
    assert ds.ReferencedImageSequence[0].ReferencedFrameNumber == 0


def test_ordinary_numbers_stay_as_read(run: tuple[Path, dict]) -> None:
    ds = pydicom.dcmread(_output(run, "numbers"))
    assert (ds.InstanceNumber, str(ds.PatientSize), str(ds.KVP)) == (7, "1.78", "120")
    assert (str(ds.SliceLocation), str(ds.RescaleIntercept)) == ("-1234.56789012345", "-1024")
    ds = pydicom.dcmread(_output(run, "hyphenated_name"))
    assert (ds.SeriesNumber, ds.InstanceNumber, str(ds.SliceThickness)) == (3, 12, "1.0")


def test_an_identifier_inside_the_digits_before_the_point_goes(run: tuple[Path, dict]) -> None:
    path = _output(run, "numbers_inside")
    assert [m for m in (b"948213977", b"120190312") if m in path.read_bytes()] == []
    assert {"AcquisitionNumber", "PatientWeight"} & set(pydicom.dcmread(path).dir()) == set()  # Type 3


def test_a_decimal_comma_and_a_long_fraction_stay_as_read(run: tuple[Path, dict]) -> None:
    data = _output(run, "numbers_inside").read_bytes()
    assert b"1,5" in data and b"0,5\\0,5" in data
    assert b"-12.34821397700011" in data  # the MRN's digits in the fraction: chance, not an identifier


def test_a_number_that_looks_like_an_identifier_goes_so_the_gate_passes_the_output(run: tuple[Path, dict]) -> None:
    """The gate quarantines an IS / DS whose digits look like a date or, in an attribute that numbers
    things, a record number (it knows no original ID); the engine kept them when they spelled none of
    the dataset's IDs, so its own output was quarantined. It now removes them by the same form test."""
    path = _output(run, "identifier_forms")
    data = path.read_bytes()
    assert [m for m in (b"12345678", b"19870615") if m in data] == []
    ds = pydicom.dcmread(path)
    assert ds["InstanceNumber"].is_empty and "SliceLocation" not in ds  # Type 2, Type 3
    assert (ds.SeriesNumber, str(ds.KVP)) == (5, "120")
    assert [f for f in check_deidentified(ds) if f.code == "number-identifier"] == []


def test_a_name_typed_with_a_hyphen_apostrophe_or_space_inside_is_cut(run: tuple[Path, dict]) -> None:
    ds = pydicom.dcmread(_output(run, "hyphenated_name"))
    assert (ds.StudyDescription, ds.SeriesDescription, ds.ProtocolName) == ("CT chest", "lung", "ROUTINE")
    assert ds.ImageComments == "follow-up"
    ds = pydicom.dcmread(_output(run, "double_barrelled_name"))
    assert (ds.StudyDescription, ds.SeriesDescription) == ("CT abdomen", "lung")


def test_words_that_only_look_like_a_name_cut_in_two_stay(run: tuple[Path, dict]) -> None:
    assert pydicom.dcmread(_output(run, "double_barrelled_name")).ProtocolName == "CHEST ER follow up"


def test_the_streamed_path_writes_what_the_pydicom_path_writes(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    _write_inputs(src)
    assert_paths_agree(src, tmp_path, 5)
