"""Reading the LOINC/RSNA Radiology Playbook, and extending the catalogue with it."""

from __future__ import annotations

from pathlib import Path

import pytest

from radcommons.errors import UserError
from radcommons.harmonize import CodeInfo, builtin_table
from radcommons.harmonize.catalogue import read_playbook, resolve_code, with_codes

FIXTURE = Path(__file__).parent / "data" / "LoincRsnaRadiologyPlaybook.csv"
HEADER = '"LoincNumber","LongCommonName","PartNumber","PartTypeName","PartName","PartSequenceOrder","RID",' \
         '"PreferredName","RPID","LongName"\n'


def test_playbook_codes_read_as_midrc_writes_them() -> None:
    codes = {info.code: info for info in read_playbook(FIXTURE)}
    assert sorted(codes) == ["24648-8", "29252-4", "42274-1"]
    builtin = builtin_table().codes
    for code in ("29252-4", "42274-1"):  # the same method, region and timing as MIDRC's attributes
        mine, midrc = codes[code], builtin[code]
        assert (mine.long_common_name, mine.method, mine.system, mine.timing) == \
            (midrc.long_common_name, midrc.method, midrc.system, midrc.timing)
    assert codes["42274-1"].system == "Abdomen+Pelvis" and codes["42274-1"].timing == "WO & W"
    # "Modality type" (lower case t, as some releases write it) is read too.
    assert codes["24648-8"].method == "XR"


def test_imported_codes_fill_in_only_what_the_catalogue_lacks() -> None:
    table = builtin_table()
    assert not table.codes["24648-8"].method  # named by a curated row only
    extended = with_codes(table, [*read_playbook(FIXTURE), CodeInfo("29252-4", "CT Chest WO contrast", "XX")])
    assert extended.codes["24648-8"].method == "XR" and extended.codes["24648-8"].system == "Chest"
    assert extended.codes["29252-4"].method == "CT"  # MIDRC's attributes are kept
    assert extended.rows == table.rows and len(extended.codes) == len(table.codes)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('"LoincNumber","LongCommonName"\n"29252-4","CT Chest WO contrast"\n', "missing column(s) PartTypeName"),
        (HEADER + '"CT-CHEST","CT Chest WO contrast","","Rad.Timing","WO","A","","","",""\n',
         "row 2, column LoincNumber: 'CT-CHEST' is not a LOINC code"),
        (HEADER + '"29252-4","CT Chest WO contrast","","Rad.Timing","WO","A","","","",""\n'
         '"29252-4","CT Chest","","Rad.Timing","WO","A","","","",""\n', "row 3: code 29252-4 has two names"),
        (HEADER, "has a header but no rows"),
        ("", "the file is empty"),
        (HEADER + '"24627-2","CT Chest","",\n', "row 2: 4 cells for 10 columns"),  # it emptied the code's method
    ],
)
def test_bad_playbook_files_are_refused_with_the_row(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "LoincRsnaRadiologyPlaybook.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_playbook(path)


def test_resolve_code() -> None:
    codes = builtin_table().codes
    assert resolve_code(" 36643-5 ", codes).long_common_name == "XR Chest 2 Views"
    assert resolve_code("36643-5", codes, "xr chest  2 views").code == "36643-5"
    with pytest.raises(UserError, match="not 'XR Chest PA'"):
        resolve_code("36643-5", codes, "XR Chest PA")
    with pytest.raises(UserError, match="not in the catalogue"):
        resolve_code("99999-9", codes)
    assert resolve_code("99999-9", codes, "Some  name") == CodeInfo("99999-9", "Some name")
    with pytest.raises(UserError, match="not a LOINC code"):
        resolve_code("36643", codes)
