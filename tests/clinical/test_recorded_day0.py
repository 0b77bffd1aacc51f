"""A case the commons already holds is counted from its recorded day 0, whatever a later contribution holds."""

from __future__ import annotations

import datetime as dt

from radcommons.clinical import NOTE, Day0, ImagingStudy, SourceTable, convert_clinical
from radcommons.deid import date_offset_days

KEY = bytes(range(32))
MRN = "100200"


def _study(uid: str, day: dt.date) -> ImagingStudy:
    return ImagingStudy(MRN, uid, day, date_offset_days=date_offset_days(KEY, "S", MRN))


def _table(name: str, columns: list[str], *rows: list[object]) -> SourceTable:
    return SourceTable(f"{name}.csv", None, tuple(columns),
                       tuple((i, dict(zip(columns, row))) for i, row in enumerate(rows, start=2)))


DEMOGRAPHICS = _table("demographics", ["MRN", "Sex"], [MRN, "F"])
VISITS = _table("visits", ["MRN", "visit_type", "admission_date"], [MRN, "Emergency", "2022-05-30"])


def _convert(tables: list[SourceTable], studies: list[ImagingStudy], day0: dict[str, Day0] | None = None):
    return convert_clinical(tables, key=KEY, site="S", project="Open-T1", studies=studies, day0=day0)


def _days_to_study(result) -> dict[str, int]:
    return {row["study_uid"]: row["days_to_study"] for row in result.by_node()["imaging_study"]}


def test_an_earlier_study_sent_later_counts_from_the_recorded_day0_with_a_note() -> None:
    first = _convert([DEMOGRAPHICS, VISITS], [_study("2.25.2", dt.date(2022, 5, 23))])
    assert first.day0 == {MRN: Day0("first_imaging_study", dt.date(2022, 5, 23))}
    assert _days_to_study(first) == {"2.25.2": 0}

    recorded = Day0("first_imaging_study", dt.date(2022, 5, 23), "S_20220601")
    both = [_study("2.25.1", dt.date(2021, 12, 3)), _study("2.25.2", dt.date(2022, 5, 23))]
    later = _convert([DEMOGRAPHICS, VISITS], both, {MRN: recorded})
    assert later.ok and later.day0 == {MRN: recorded}
    assert _days_to_study(later) == {"2.25.1": -171, "2.25.2": 0}
    assert later.by_node()["visit"][0]["days_to_visit"] == 7  # as in the first contribution
    assert later.by_node()["case"][0]["index_event"] == "First Imaging Study"
    notes = [i for i in later.issues if i.code == "day0_recorded"]
    assert len(notes) == 1 and notes[0].severity == NOTE and notes[0].file == "demographics.csv" and notes[0].row == 2
    assert "2022-05-23" in notes[0].message and "2021-12-03" in notes[0].message and "S_20220601" in notes[0].message
    assert "curators" in notes[0].fix

    alone = _convert([DEMOGRAPHICS, VISITS], [_study("2.25.1", dt.date(2021, 12, 3))])  # without the record
    assert _days_to_study(alone) == {"2.25.1": 0}


def test_a_new_positive_test_does_not_move_a_recorded_day0() -> None:
    tests = _table("covid_tests", ["MRN", "test_date", "test_result"], [MRN, "2022-05-20", "Positive"])
    recorded = Day0("first_imaging_study", dt.date(2022, 5, 23), "S_20220601")
    result = _convert([DEMOGRAPHICS, tests], [_study("2.25.3", dt.date(2022, 6, 1))], {MRN: recorded})
    assert result.ok
    assert result.by_node()["measurement"][0]["days_to_test"] == -3
    assert _days_to_study(result) == {"2.25.3": 9}
    assert result.by_node()["case"][0]["index_event"] == "First Imaging Study"
    note = next(i for i in result.issues if i.code == "day0_recorded")
    assert "first positive COVID-19 test of 2022-05-20" in note.message


def test_the_same_day0_again_is_no_note_and_a_batch_without_the_event_still_counts_from_it() -> None:
    recorded = Day0("first_imaging_study", dt.date(2022, 5, 23), "S_20220601")
    same = _convert([DEMOGRAPHICS], [_study("2.25.2", dt.date(2022, 5, 23))], {MRN: recorded})
    assert same.ok and not [i for i in same.issues if i.code == "day0_recorded"]
    # a later visit sent alone: without the record it has no day 0 (an error), with it it is counted from it
    assert not _convert([DEMOGRAPHICS, VISITS], []).ok
    visit_only = _convert([DEMOGRAPHICS, VISITS], [], {MRN: recorded})
    assert visit_only.ok and visit_only.by_node()["visit"][0]["days_to_visit"] == 7
