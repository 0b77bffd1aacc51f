"""Keys, keyed pseudonyms and UIDs, date offsets and date/age values."""

from __future__ import annotations

import os
import stat

import pytest

from radcommons.deid import date_offset_days, generate_key_file, new_uid, patient_pseudonym, read_key_file
from radcommons.deid.dates import normalise_age, shift_da, shift_dt
from radcommons.deid.keys import parse_key
from radcommons.deid.uids import is_deidentified_uid
from radcommons.errors import UserError

from deid_support import KEY, OTHER_KEY


def test_keygen_creates_private_key_and_refuses_overwrite(tmp_path):
    path = generate_key_file(tmp_path / "secrets" / "site.key")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert len(read_key_file(path)) == 32
    with pytest.raises(UserError, match="already exists"):
        generate_key_file(path)


def test_bad_key_files(tmp_path):
    with pytest.raises(UserError, match="not found"):
        read_key_file(tmp_path / "missing.key")
    (tmp_path / "short.key").write_text("abcd")
    with pytest.raises(UserError, match="32 or more bytes"):
        read_key_file(tmp_path / "short.key")
    import base64

    assert parse_key(base64.b64encode(KEY).decode()) == KEY


def test_pseudonyms_are_keyed_and_namespaced_by_site():
    a = patient_pseudonym(KEY, "SITE_A", "12345")
    assert a == patient_pseudonym(KEY, "SITE_A", "12345")
    assert a != patient_pseudonym(KEY, "SITE_B", "12345")  # same MRN, two sites: two patients
    assert a != patient_pseudonym(OTHER_KEY, "SITE_A", "12345")
    assert "12345" not in a and len(a) <= 64


def test_uids_same_key_same_uid():
    uid = "1.2.826.0.1.3680043.8.498.1"
    assert new_uid(KEY, uid) == new_uid(KEY, uid + " ")  # padding does not matter
    assert new_uid(KEY, uid) != new_uid(OTHER_KEY, uid)
    assert is_deidentified_uid(new_uid(KEY, uid)) and len(new_uid(KEY, uid)) <= 64
    assert new_uid(KEY, "1.2.840.10008.5.1.4.1.1.2") == "1.2.840.10008.5.1.4.1.1.2"
    assert new_uid(KEY, "1.2.840.10008.1.2.4.50") == "1.2.840.10008.1.2.4.50"


def test_date_offsets_never_small_and_in_range():
    offsets = {date_offset_days(KEY, "S", f"P{i}") for i in range(3000)}
    assert all(30 <= abs(offset) <= 365 for offset in offsets)  # 1 or 2 days would hide nothing
    assert len(offsets) > 500  # spread, not one offset for everybody
    assert date_offset_days(KEY, "S", "P1") == date_offset_days(KEY, "S", "P1")


def test_shift_values():
    assert shift_da("20210304", -3) == "20210301"
    assert shift_da("2021.03.04", 1) == "20210305"
    assert shift_da("", 5) == ""
    assert shift_da("not a date", 5) is None
    assert shift_dt("20210304101502.123+0100", 1) == "20210305101502.123+0100"
    assert shift_dt("202103", 1) == "202103"
    assert shift_dt("2021", -300) == "2020"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("054Y", "054Y"), ("75Y", "075Y"), ("75", "075Y"), ("095Y", "090Y"), ("1200M", "090Y"),
     ("003W", "003W"), ("", ""), ("old", None)],
)
def test_ages(value, expected):
    assert normalise_age(value) == expected
