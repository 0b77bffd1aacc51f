"""Identifiers that survived ``radcommons deid`` in a privacy officer's review (issue 3).

Each input is a small CT built here with the same planted patient; one ``radcommons deid`` run
takes them all and every output is searched byte for byte:

* a descriptor written in another character set than the file declares (UTF-8 bytes in a file
  declared ISO_IR 100, Latin-1 bytes in one declared ISO_IR 192: common in exports that merge
  RIS and modality text) kept the patient's name, mis-decoded, in its original bytes;
* URLs Table E.1-1 does not list (Retrieve URL / URI, Pixel Data Provider URL) were copied as
  read, with the Patient ID, the name and the archive's host in them;
* Code Strings it does not list (Scan Options, Body Part Examined) were copied as read, an MRN or
  a name typed into them included;
* a safe private element (TCIA "k") kept in the VR pydicom's private dictionary gives it in an
  implicit VR file (DS, FD) was copied as read whatever its bytes held, and one with an explicit
  DS holding text too;
* a time (TM) holding the date or a date-time (a writer that put DT where TM belongs) was kept,
  the real date in it, while every DA and DT was shifted;
* a family name of several words (De La Cruz) stayed in a descriptor written as one (DELACRUZ).
"""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from deid_support import assert_paths_agree, deid_run, deidentified_output, planted_ct

NAME, MRN, ACCESSION = "Müller^Jürgen", "QX48213977", "A7731592"
ROOT = "1.2.826.0.1.3680043.8.498.61"
#: the name as it is written in UTF-8 and in Latin-1, the MRN, the accession, the original UIDs
PLANTED = (b"M\xc3\xbcller", b"M\xfcller", b"J\xc3\xbcrgen", b"J\xfcrgen", b"ller", MRN.encode(),
           ACCESSION.encode(), ROOT.encode())


def _ct(number: int, charset: str = "ISO_IR 192", **values: object) -> Dataset:
    values = {"StudyDescription": "CT", "BodyPartExamined": "CHEST"} | values
    return planted_ct(number, ROOT, (NAME, MRN, ACCESSION), charset, **values)


def _with_description(path: Path, raw: bytes) -> None:
    """Write ``raw`` as the Study Description's bytes, whatever the declared character set says."""
    data = path.read_bytes()
    old = b"\x08\x00\x30\x10LO\x02\x00CT"
    assert data.count(old) == 1
    path.write_bytes(data.replace(old, b"\x08\x00\x30\x10LO" + len(raw).to_bytes(2, "little") + raw))


def _write_inputs(src: Path) -> None:
    _ct(1, "ISO_IR 100").save_as(src / "utf8_text_in_latin1_file.dcm", enforce_file_format=True)
    _with_description(src / "utf8_text_in_latin1_file.dcm", b"CT M\xc3\xbcller")
    _ct(2).save_as(src / "latin1_text_in_utf8_file.dcm", enforce_file_format=True)
    _with_description(src / "latin1_text_in_utf8_file.dcm", b"CT M\xfcller ")

    ds = _ct(3)
    ds.add_new(0x00081190, "UR", f"https://pacs.example.org/wado?patientID={MRN}&study={ROOT}.1")
    ds.add_new(0x0040E010, "UR", "https://pacs.example.org/M%C3%BCller")
    ds.add_new(0x00287FE0, "UR", f"https://pacs.example.org/{ACCESSION}")
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "24627-2", "LN", "CT Chest"
    code.add_new(0x00080120, "UR", "urn:oid:2.16.840.1.113883.6.1")  # URN Code Value: a code's URL
    ds.ProcedureCodeSequence = Sequence([code])
    ds.save_as(src / "urls.dcm", enforce_file_format=True)

    _ct(4, ScanOptions=MRN, BodyPartExamined="MULLER").save_as(src / "code_strings.dcm", enforce_file_format=True)

    ds = _ct(5)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2"
    ds.add_new(0x00190010, "LO", "SIEMENS CT VA0  COAD")  # TCIA keeps (0019,xx90-92): DS
    ds.add_new(0x00191090, "LO", "0.5")
    ds.add_new(0x00191092, "LO", f"{MRN} Mueller")
    ds.add_new(0x01F10010, "LO", "ELSCINT1")  # TCIA keeps (01F1,xx26): FD in pydicom's dictionary
    ds.add_new(0x01F11026, "OB", f"{MRN}      ".encode())
    ds.save_as(src / "implicit_private.dcm", implicit_vr=True, little_endian=True, enforce_file_format=True)

    ds = _ct(6)
    ds.add_new(0x00190010, "LO", "SIEMENS CT VA0  COAD")
    ds.add_new(0x00191090, "DS", "0.5")
    ds.add_new(0x00191092, "DS", "12345.6")  # made "Mueller" below: pydicom writes no such DS
    ds.save_as(src / "explicit_private_ds.dcm", enforce_file_format=True)
    path = src / "explicit_private_ds.dcm"
    assert path.read_bytes().count(b"12345.6 ") == 1
    path.write_bytes(path.read_bytes().replace(b"12345.6 ", b"Mueller "))

    ds = _ct(7, StudyTime="20190312101502", AcquisitionTime="101502.5")
    ds.add_new(0x00080033, "TM", "20190312")  # Content Time
    ds.add_new(0x00400245, "TM", "10:15:02")  # Performed Procedure Step Start Time (ACR-NEMA form)
    ds.save_as(src / "times_holding_dates.dcm", enforce_file_format=True)

    ds = planted_ct(8, f"{ROOT}.8", ("De La Cruz^Maria Jose", "QX5520718", "A5520718"),
                    StudyDescription="CT DELACRUZ chest", SeriesDescription="MARIAJOSE lung")
    ds.save_as(src / "family_name_of_several_words.dcm", enforce_file_format=True)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict]]:
    return deid_run(tmp_path_factory.mktemp("privacy_review"), _write_inputs)


_output = deidentified_output


NAMES = ["utf8_text_in_latin1_file", "latin1_text_in_utf8_file", "urls", "code_strings", "implicit_private",
         "explicit_private_ds", "times_holding_dates"]


@pytest.mark.parametrize("name", NAMES)
def test_nothing_planted_survives(run: tuple[Path, dict], name: str) -> None:
    data = _output(run, name).read_bytes()
    assert [marker for marker in PLANTED if marker in data] == []
    assert b"Mueller" not in data and b"MULLER" not in data


@pytest.mark.parametrize("name", ["utf8_text_in_latin1_file", "latin1_text_in_utf8_file"])
def test_a_name_in_another_character_set_is_cut_and_the_clinical_words_stay(run: tuple[Path, dict],
                                                                            name: str) -> None:
    assert pydicom.dcmread(_output(run, name)).StudyDescription == "CT"


def test_archive_urls_go_and_a_codes_url_stays(run: tuple[Path, dict]) -> None:
    ds = pydicom.dcmread(_output(run, "urls"))
    assert {"RetrieveURL", "RetrieveURI", "PixelDataProviderURL"} & set(ds.dir()) == set()
    assert ds.ProcedureCodeSequence[0].URNCodeValue == "urn:oid:2.16.840.1.113883.6.1"


def test_code_strings_are_scrubbed_and_a_clean_one_stays(run: tuple[Path, dict]) -> None:
    ds = pydicom.dcmread(_output(run, "code_strings"))
    assert MRN not in str(ds.get("ScanOptions", "")) and "MULLER" not in str(ds.get("BodyPartExamined", ""))
    assert pydicom.dcmread(_output(run, "urls")).BodyPartExamined == "CHEST"


@pytest.mark.parametrize("name", ["implicit_private", "explicit_private_ds"])
def test_a_safe_private_number_holding_text_goes_and_a_number_stays(run: tuple[Path, dict], name: str) -> None:
    ds = pydicom.dcmread(_output(run, name))
    assert (0x0019, 0x1092) not in ds and (0x01F1, 0x1026) not in ds
    assert float(ds[0x00191090].value) == 0.5


def test_the_streamed_path_writes_what_the_pydicom_path_writes(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    _write_inputs(src)
    assert_paths_agree(src, tmp_path, len(NAMES) + 1)


def test_a_time_holding_a_date_keeps_only_the_time(run: tuple[Path, dict]) -> None:
    path = _output(run, "times_holding_dates")
    assert b"20190312" not in path.read_bytes()
    ds = pydicom.dcmread(path)
    assert (ds.StudyTime, ds.AcquisitionTime, ds.PerformedProcedureStepStartTime) == ("101502", "101502.5", "10:15:02")
    assert ds.ContentTime == "000000"  # nothing but a date: action D's dummy (Content Time may be Type 1)


def test_a_name_of_several_words_written_as_one_is_cut(run: tuple[Path, dict]) -> None:
    ds = pydicom.dcmread(_output(run, "family_name_of_several_words"))
    assert (ds.StudyDescription, ds.SeriesDescription) == ("CT chest", "lung")
