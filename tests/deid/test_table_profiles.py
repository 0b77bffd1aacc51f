"""Table E.1-1 as package data, profiles, compound actions and overrides."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from radcommons.deid import iod
from radcommons.deid.profile import load_profile, parse_tag, profile_names, read_overrides
from radcommons.deid.safe_private import build_allow_list, disposition, load_allow_list
from radcommons.deid.table import load_table
from radcommons.errors import UserError

REF_TABLE = Path("/work/shared/ref/dicom-ps3.15-annexE/confidentiality_profile_attributes.json")
TCIA_KB = Path("/work/shared/ref/tcia/TCIAPrivateTagKB-02-01-2024-formatted.csv")


def test_table_has_all_621_rows_and_known_actions():
    table = load_table()
    assert len(table.rows) == 621
    known = {"D", "Z", "X", "K", "C", "U", "X/Z", "X/D", "X/Z/D", "Z/D", "X/Z/U*"}
    assert {row.basic for row in table.rows} <= known
    for row in table.rows:
        assert set(row.options.values()) <= {"K", "C"}


def test_packaged_table_is_the_reference_copy():
    if not REF_TABLE.exists():
        pytest.skip("reference table not available")
    packaged = Path(__file__).parents[2] / "src/radcommons/deid/data/confidentiality_profile_attributes.json"
    assert json.loads(packaged.read_text()) == json.loads(REF_TABLE.read_text())


def test_lookup_patterns():
    table = load_table()
    assert table.lookup(0x00100010).clean_name == "Patient's Name"
    assert table.lookup(0x50020005).id == "50xxxxxx"
    assert table.lookup(0x601E3000).id == "60xx3000"
    assert table.lookup(0x60004000).id == "60xx4000"
    assert table.lookup(0x60000010) is None
    assert table.lookup(0x00091001).id == "ggggeeee-where-gggg-is-odd"
    assert table.lookup(0x00280010) is None


def test_default_profile_codes_are_honest():
    codes = [code for code, _ in load_profile("default").codes()]
    assert codes == ["113100", "113105", "113107", "113108", "113111"]
    assert "113109" not in codes  # only manufacturer and model are kept, not device identity
    assert [c for c, _ in load_profile("basic").codes()] == ["113100"]
    assert load_profile("research").name == "default"
    assert set(profile_names()) >= {"basic", "default", "research"}


def test_profile_decisions_follow_options():
    table, profile = load_table(), load_profile("default")
    study_date = profile.decide(table.lookup(0x00080020))
    assert (study_date.action, study_date.clean) == ("C", "dates")
    assert profile.decide(table.lookup(0x00101010)).action == "K"  # age kept
    assert profile.decide(table.lookup(0x00181000)).action == "X/Z/D"  # serial number not kept
    assert profile.decide(table.lookup(0x00080080)).action == "X/Z/D"  # institution not kept
    assert profile.decide(table.lookup(0x0008103E)).clean == "text"  # series description cleaned
    basic = load_profile("basic")
    assert basic.decide(table.lookup(0x00080020)).action == "Z"


@pytest.mark.parametrize(
    ("action", "type_", "expected"),
    [
        ("X/Z", 3, "X"), ("X/Z", 2, "Z"), ("X/D", 1, "D"), ("X/D", 3, "X"), ("X/Z/D", 2, "Z"),
        ("X/Z/D", 1, "D"), ("Z/D", 2, "Z"), ("Z/D", 1, "D"), ("X/Z/U*", 3, "U"), ("X/Z/D", None, "D"),
        ("X/Z", None, "Z"), ("Z", 3, "Z"),
    ],
)
def test_compound_resolution(action, type_, expected):
    assert iod.resolve(action, type_) == expected


def test_unknown_type_sequence_is_kept_and_cleaned():
    assert iod.resolve("X/Z", None, sequence=True) == "D"


def test_iod_types():
    assert iod.attribute_type("1.2.840.10008.5.1.4.1.1.2", 0x00181000) == 3
    assert iod.attribute_type("1.2.840.10008.5.1.4.1.1.2.1", 0x00181000) == 1  # enhanced CT
    assert iod.attribute_type("1.2.3.4", 0x00181000) is None


def test_overrides_file(tmp_path):
    path = tmp_path / "site.yaml"
    path.write_text("PatientWeight: X\n'(0008,1030)': k\n")
    profile = load_profile("default", path)
    assert profile.site_overrides == {0x00101030: "X", 0x00081030: "K"}
    (tmp_path / "o.json").write_text(json.dumps({"overrides": {"00080070": "X"}}))
    assert read_overrides(tmp_path / "o.json") == {0x00080070: "X"}
    path.write_text("PatientWeight: maybe\n")
    with pytest.raises(UserError):
        load_profile("default", path)
    path.write_text("NotAKeyword: X\n")
    with pytest.raises(UserError):
        load_profile("default", path)
    with pytest.raises(UserError):
        load_profile("nope")
    assert parse_tag("0010,0010") == 0x00100010


def test_safe_private_allow_list():
    allow = load_allow_list()
    assert disposition(allow, 0x0019, "SIEMENS CT VA0  COAD", 0x1090) == "k"
    assert disposition(allow, 0x0019, "siemens ct va0  coad ", 0x1190) == "k"  # any block
    assert disposition(allow, 0x0019, "NOBODY", 0x1090) is None
    assert disposition(allow, 0x0019, None, 0x1090) is None


def test_allow_list_is_derived_from_the_tcia_kb():
    if not TCIA_KB.exists():
        pytest.skip("TCIA knowledge base not available")
    packaged = json.loads(
        (Path(__file__).parents[2] / "src/radcommons/deid/data/safe_private.json").read_text()
    )
    assert build_allow_list(TCIA_KB) == packaged["entries"]
