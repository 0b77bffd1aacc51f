"""Mapping tables, the matcher, curator decisions and the review queue."""

from __future__ import annotations

from pathlib import Path

import pytest

from radcommons.errors import UserError
from radcommons.harmonize import (
    Decision,
    Matcher,
    StudyPair,
    builtin_table,
    find_conflicts,
    read_mapping_rows,
    read_pairs,
    review_queue,
)
from radcommons.harmonize.tables import MappingRow, builtin_attributes, build_table

HEADER = "Modality\tStudyDescription\tLOINC code\tL-Long Common Name\n"


@pytest.fixture(scope="module")
def matcher() -> Matcher:
    return Matcher(builtin_table())


def small_table(*rows: tuple[str, str, str, str]):
    return build_table(
        [MappingRow(m, d, c, n, line=i + 2) for i, (m, d, c, n) in enumerate(rows)], builtin_attributes()
    )


def test_builtin_table_is_cleaned() -> None:
    table = builtin_table()
    assert len(table.rows) == 597
    # MIDRC's file has codes with stray tabs/spaces/quotes and [blank] cells.
    assert all(row.code == row.code.strip() and '"' not in row.code for row in table.rows)
    assert "36234-3" in table.codes and "24627-2" in table.codes
    assert any(row.description == "" for row in table.rows)


def test_exact_is_midrc_normalisation(matcher: Matcher) -> None:
    match = matcher.match("CT", "ct chest  wo contrast")
    assert match.method == "exact"
    # CR/DX aliased: a DX pair finds a row curated for CR.
    assert matcher.match("DX", "xr port chest 1v").code == "36589-0"


def test_normalized_words(matcher: Matcher) -> None:
    match = matcher.match("CT", "CHEST CT WITHOUT CONTRAST")
    assert (match.code, match.method, match.accepted) == ("29252-4", "normalized", True)
    assert 0 < match.confidence <= 1 and "same words" in match.rule


def test_rules_signature(matcher: Matcher) -> None:
    match = matcher.match("CT", "Thorax^XXL_CHEST_WO (Adult)")
    assert (match.code, match.method) == ("29252-4", "rules")


def test_rules_code_name_without_any_curated_row() -> None:
    # No curated row at all: the answer can only come from the codes' own names.
    table = small_table(("CT", "SOMETHING ELSE", "24627-2", "CT Chest"))
    match = Matcher(table, threshold=0.0).match("CT", "CTA NECK W CONTRAST")
    assert match.code == "36234-3"
    assert match.method == "rules" and "code name" in match.rule


def test_similarity_ranks_truncated_descriptions() -> None:
    table = small_table(
        ("CT", "CT CHEST PULMONARY EMBOLISM PROTOCOL", "79077-4", ""),
        ("CT", "CT HEAD ROUTINE", "30799-1", ""),
    )
    match = Matcher(table, threshold=0.0).match("CT", "PULMONARY EMBOLI")
    assert match.code == "79077-4"


def test_similarity_respects_laterality() -> None:
    table = small_table(("DX", "XR LEFT WRIST 3+ VIEWS", "38942-9", "XR Wrist - left GE 3 Views"))
    match = Matcher(table, threshold=0.0).match("DX", "XR RIGHT WRIST 3+ VIEWS")
    assert match.code != "38942-9"


def test_low_confidence_is_not_accepted(matcher: Matcher) -> None:
    match = matcher.match("MR", "MRI SHOULDER WO, RT")
    assert not match.accepted and match.answer == ""


def test_decisions_win(matcher: Matcher) -> None:
    table = builtin_table()
    decided = Matcher(
        table,
        decisions=[
            Decision("CT", "ct chest wo contrast", "24627-2", curator="ana"),
            Decision("MR", "MRI SHOULDER WO, RT", "", note="no code in the catalogue"),
        ],
    )
    match = decided.match("CT", "CT CHEST WO CONTRAST")
    assert (match.code, match.method, match.confidence, match.accepted) == ("24627-2", "decision", 1.0, True)
    assert match.long_common_name == "CT Chest"
    no_code = decided.match("MR", "mri shoulder wo, rt")
    assert (no_code.method, no_code.accepted, no_code.answer) == ("decision", True, "")
    # The decision also takes the pair out of the queue.
    queue = review_queue([StudyPair("MR", "MRI SHOULDER WO, RT", 210)], decided)
    assert queue == []


def test_queue_is_ordered_by_studies_and_merges_duplicates(matcher: Matcher) -> None:
    pairs = [
        StudyPair("MR", "MRI KNEE LEFT", 3),
        StudyPair("MR", "MRI SHOULDER WO, RT", 210),
        StudyPair("DX", "XR CHEST 1 VIEW AP", 20540),  # mapped: not in the queue
        StudyPair("MR", "mri  knee left", 300),  # same pair as the first after normalisation
        StudyPair("MR", "MRI ELBOW", 3),
    ]
    queue = review_queue(pairs, matcher)
    assert [(item.description, item.studies) for item in queue] == [
        ("MRI KNEE LEFT", 303),
        ("MRI SHOULDER WO, RT", 210),
        ("MRI ELBOW", 3),
    ]
    assert [item.rank for item in queue] == [1, 2, 3]


def test_conflicts_found(tmp_path: Path) -> None:
    path = tmp_path / "table.tsv"
    path.write_text(
        HEADER
        + "CR\tXR CHEST 2 VIEWS\t36643-5\tXR Chest 2 Views\n"
        + "DX\txr chest  2 views\t42272-5\tXR Chest PA and Lateral\n"
        + "CT\tCT CHEST\t24627-2\tCT Chest\n"
        + "CT\tCHEST CT\t24627-2\tCT Chest plain\n",
        encoding="utf-8",
    )
    conflicts = find_conflicts(read_mapping_rows(path))
    assert [(c.kind, c.lines) for c in conflicts] == [("pair", (2, 3)), ("code", (4, 5))]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        (b"", "empty"),
        # cp1252 alone is read (as clinical files are); UTF-8 mixed with it would be misread
        (b"Modality\tStudyDescription\nCT\tC\xc3\xb4TE\nCT\tCAF\xe9\n", "line 3 is not UTF-8 (byte 0xE9)"),
        (b"Modality\tDescription\nCT\tCT CHEST\n", "missing column(s) StudyDescription"),
        (b"Modality\tStudyDescription\tfrequency\nCT\tCT CHEST\tmany\n", "row 2, column frequency"),
        (b"Modality\tStudyDescription\n", "no rows"),
        (b"Modality\tStudyDescription\tfrequency\nCT\tCT CHEST\tnan\n", "row 2, column frequency: not a whole"),
        (b"Modality\tStudyDescription\tfrequency\nCT\tCT CHEST\tinf\n", "row 2, column frequency: not a whole"),
        # the rows after an unclosed quote became one description, with line breaks, in the output
        (b'Modality\tStudyDescription\nCR\t"XR CHEST\nCR\tXR CHEST 2 VIEWS\nDX\tXR ABD\n',
         "row 2: a quote opened here runs on to line 4"),
        (b"Modality\tStudyDescription\nCR\tXR\x00CHEST\n", "row 2: a NUL byte"),
        (b"PK\x03\x04\x14\x00\x06\x00", "an Excel workbook (.xlsx) or another zip archive, not a CSV"),  # "not UTF-8"
    ],
)
def test_bad_pairs_files(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "pairs.tsv"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(UserError, match="pairs.tsv") as error:
        read_pairs(path)
    assert message in str(error.value)


def test_pairs_keep_extra_columns(tmp_path: Path) -> None:
    path = tmp_path / "pairs.csv"
    path.write_text('Modality,StudyDescription,frequency,site\nCR,"CHEST, 1 VIEW",12.0,A\n', encoding="utf-8")
    pairs = read_pairs(path)
    assert pairs.pairs[0] == StudyPair("CR", "CHEST, 1 VIEW", 12, 2)
    assert pairs.records[0]["site"] == "A"


def test_a_mapping_table_code_that_is_not_loinc_is_refused(tmp_path: Path) -> None:
    """`harmonize check` said ok, and `map` answered 'not-a-code' at confidence 1.000."""
    path = tmp_path / "table.tsv"
    path.write_text("Modality\tStudyDescription\tLOINC code\tL-Long Common Name\n"
                    "CR\tXR CHEST\tnot-a-code\tXR Chest Views\n", encoding="utf-8")
    with pytest.raises(UserError, match="row 2, column LOINC code: 'not-a-code' is not a LOINC code"):
        read_mapping_rows(path)


def test_a_cp1252_pairs_file_is_read_as_clinical_files_are(tmp_path: Path) -> None:
    """A pairs file saved by a Windows spreadsheet (cp1252) was refused as 'not UTF-8 ... iconv';
    it is decoded as the clinical reader decodes it (radcommons.inputs.decode_text_table)."""
    from radcommons.harmonize.tables import read_pairs

    path = tmp_path / "pairs.tsv"
    path.write_bytes("Modality\tStudyDescription\nCT\tTHORAX S/ CONTRASTE \u2013 PULM\u00c3O\n".encode("cp1252"))
    assert [p.description for p in read_pairs(path).pairs] == ["THORAX S/ CONTRASTE \u2013 PULM\u00c3O"]
