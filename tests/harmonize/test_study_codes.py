"""A study's code fields: the matcher's answer, unless a curator's decision for the pair says otherwise."""

from __future__ import annotations

import pytest

from radcommons.errors import UserError
from radcommons.harmonize import Decision, builtin_table
from radcommons.harmonize.study_codes import (
    CODE_FIELDS,
    decision_fields,
    decision_key,
    require_decision_key,
    study_code_fields,
)


def test_decision_key_is_midrcs_pair() -> None:
    assert decision_key("CR", " xr  chest 2 views ") == decision_key("DX", "XR CHEST 2 VIEWS") == \
        ("CR/DX", "XR CHEST 2 VIEWS")
    assert decision_key("PT", "PET CT") == ("CT/PT", "PET CT")
    assert decision_key("CT, MR", "X") is None and decision_key("", "X") is None and decision_key("CT", " ") is None
    with pytest.raises(UserError, match="exactly one modality"):
        require_decision_key("CT, MR", "CT HEAD")
    with pytest.raises(UserError, match="description is empty"):
        require_decision_key("CT", "")


def test_a_decision_wins_over_the_matcher() -> None:
    assert study_code_fields("DX", "XR CHEST 2 VIEWS")["loinc_code"] == "42272-5"
    chosen = decision_fields(Decision("DX", "XR CHEST 2 VIEWS", "36643-5"), builtin_table().codes["36643-5"])
    assert chosen == {"loinc_code": "36643-5", "loinc_long_common_name": "XR Chest 2 Views", "loinc_method": "XR",
                      "loinc_system": "Chest", "loinc_contrast": None}
    decisions = {("CR/DX", "XR CHEST 2 VIEWS"): chosen}
    assert study_code_fields("CR", "xr chest  2 views", decisions) == chosen
    assert study_code_fields("CT", "XR CHEST 2 VIEWS", decisions) != chosen  # another modality: the matcher
    # "Not mappable" clears every code field, even where the matcher has an answer.
    none = decision_fields(Decision("DX", "XR CHEST 2 VIEWS", ""))
    assert none == dict.fromkeys(CODE_FIELDS)
    assert study_code_fields("DX", "XR CHEST 2 VIEWS", {("CR/DX", "XR CHEST 2 VIEWS"): none}) == none


def test_a_decision_teaches_the_matcher_its_sibling_pairs() -> None:
    # Real pairs of MIDRC's long tail: one decision lifts its siblings over the threshold.
    from radcommons.harmonize.study_codes import builtin_matcher, curated_matcher, decision_row

    # (The knee family of this test, "XR KNEE LT 4 OR MORE VIEWS", is answered without a
    # decision since the structured rule reads view ranges.)
    decided = Decision("CR", "CHEST 1 VIEW PA OR AP", "36554-4", "XR Chest Single view")
    assert decision_row(Decision("DX", "X", "")) is None  # "not mappable" teaches nothing
    matcher = curated_matcher((decision_row(decided),))
    assert curated_matcher(()) is builtin_matcher()
    for sibling in ("CHEST 1 VIEW AP/PA", "CHEST 1 VIEW PA/AP"):
        assert not builtin_matcher().match("CR", sibling).accepted
        assert study_code_fields("CR", sibling, {}, matcher)["loinc_code"] == "36554-4"
    assert study_code_fields("CR", "CHEST 2 VIEWS PA/LAT", {}, matcher).get("loinc_code") != "36554-4"
