"""Path parameters that several routes share: the id of a row of the index, and a cohort's key."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path

#: The largest id a row of the index can have: SQLite's INTEGER and PostgreSQL's BIGINT hold
#: 64 bits, signed. A larger number reached the database and came back as its own words
#: (SQLite: "Python int too large to convert to SQLite INTEGER") in a 400 or a 500.
ROW_ID_MAX = 2**63 - 1

#: The id of a row of the index in a URL (a submission, a quarantine entry): 1 to
#: :data:`ROW_ID_MAX`; any other number is a 422 naming the parameter, before the database is asked.
RowId = Annotated[int, Path(ge=1, le=ROW_ID_MAX, description=f"a row id: a whole number from 1 to {ROW_ID_MAX}")]

#: A cohort's key: its number (a row id from 1, at most 18 digits, so always below
#: :data:`ROW_ID_MAX`) or its identifier (snapshots). In a path and in an export's body.
COHORT_KEY = r"^([1-9][0-9]{0,17}|rc-cohort-[0-9a-f]{12,64})$"
