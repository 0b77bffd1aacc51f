"""The site's record of each committed case's day 0 (pipelines/case_days): kept for good, private, per project."""

from __future__ import annotations

import datetime as dt
import stat
from pathlib import Path

import pytest

from radcommons.clinical import Day0
from radcommons.errors import UserError
from radcommons.pipelines import case_days

LATE = Day0("first_imaging_study", dt.date(2022, 5, 23))
EARLY = Day0("first_imaging_study", dt.date(2021, 12, 3))


def test_a_recorded_day0_is_kept_when_recorded_again_and_is_per_site_and_project(tmp_path: Path) -> None:
    state = tmp_path / "state"
    assert case_days.known(state, "S", "P") == {} and not state.exists()  # reading creates nothing
    assert case_days.record(state, "S", "P", {"1": ("C1", LATE)}, dataset="S_1", submission_id=1) == 1
    assert stat.S_IMODE((state / case_days.FILENAME).stat().st_mode) == 0o600
    assert case_days.record(state, "S", "P", {"1": ("C1", EARLY), "2": ("C2", EARLY)}, dataset="S_2",
                            submission_id=2) == 1
    assert case_days.known(state, "S", "P") == {"1": Day0(LATE.event, LATE.date, "S_1"),
                                                "2": Day0(EARLY.event, EARLY.date, "S_2")}
    assert case_days.known(state, "S", "Other") == {} and case_days.known(state, "T", "P") == {}


def test_an_empty_file_is_no_record_and_a_damaged_one_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / case_days.FILENAME).write_bytes(b"")  # a run stopped between creating it and writing
    assert case_days.known(tmp_path, "S", "P") == {}
    (tmp_path / case_days.FILENAME).write_bytes(b"not a database" * 100)
    with pytest.raises(UserError) as error:
        case_days.known(tmp_path, "S", "P")
    assert case_days.FILENAME in error.value.message and "backup" in error.value.hint
