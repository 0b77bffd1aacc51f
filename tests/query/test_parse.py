"""The JSON filter language: what parses to what, and the errors people see (no database)."""

from __future__ import annotations

import pytest

from radcommons.errors import UserError
from radcommons.store.query.ast import (
    MATCH_ALL,
    And,
    Compare,
    Contains,
    Exists,
    In,
    InCohort,
    IsNull,
    Not,
    Or,
    Ref,
)
from radcommons.store.query.parse import parse_filter

from .conftest import COVID_CT_COHORT


@pytest.mark.parametrize("op", ["=", "!=", "<", "<=", ">", ">="])
def test_comparisons(op: str) -> None:
    assert parse_filter("case", {op: {"age_at_index": 50}}) == Compare(op, "age_at_index", 50)  # type: ignore[arg-type]


def test_every_other_operator() -> None:
    assert parse_filter("case", {"in": {"sex": ["Female", "Male"]}}) == In("sex", ("Female", "Male"))
    assert parse_filter("case", {"is_null": "age_at_index"}) == IsNull("age_at_index")
    assert parse_filter("case", {"not_null": "age_at_index"}) == IsNull("age_at_index", negate=True)
    assert parse_filter("imaging_study", {"contains": {"study_modality": "CT"}}) == Contains("study_modality", ("CT",))
    assert parse_filter("case", {"in_cohort": "rc-cohort-0123456789ab"}) == InCohort("rc-cohort-0123456789ab")
    assert parse_filter("case", None) == MATCH_ALL == parse_filter("case", {})
    assert parse_filter("measurement", {"within": {"days_to_test": {"value": 10, "by": 3}}}) == And(
        (Compare(">=", "days_to_test", 7), Compare("<=", "days_to_test", 13)))


def test_nesting() -> None:
    parsed = parse_filter("case", {"or": [{"=": {"sex": "Female"}},
                                          {"not": {"and": [{">": {"age_at_index": 5}}, {"<": {"age_at_index": 9}}]}}]})
    assert parsed == Or((Compare("=", "sex", "Female"),
                         Not(And((Compare(">", "age_at_index", 5), Compare("<", "age_at_index", 9))))))


def test_dotted_paths_become_exists_in_both_directions() -> None:
    down = parse_filter("case", {"=": {"series.manufacturer": "SIEMENS"}})
    assert isinstance(down, Exists) and down.node == "series"
    # Series carry their case (dictionary 1.1.0), so the shortest path skips the study.
    assert [hop.target for hop in down.path] == ["series"]
    assert not any(hop.up for hop in down.path)
    up = parse_filter("series", {"=": {"case.sex": "Female"}})
    assert isinstance(up, Exists) and [hop.target for hop in up.path] == ["case"]
    assert all(hop.up for hop in up.path)
    two = parse_filter("case", {"=": {"instance.transfer_syntax": "1.2.840.10008.1.2.1"}})
    assert isinstance(two, Exists) and [hop.target for hop in two.path] == ["series", "instance"]
    study_up = parse_filter("imaging_study", {"=": {"case.sex": "Female"}})
    assert isinstance(study_up, Exists) and [hop.target for hop in study_up.path] == ["case"]
    sideways = parse_filter("imaging_study", {"=": {"measurement.test_method": "RT-PCR"}})
    assert isinstance(sideways, Exists) and [h.target for h in sideways.path] == ["case", "measurement"]
    project = parse_filter("series", {"=": {"project.availability": "open"}})
    assert isinstance(project, Exists) and project.path[0].column == "project_id"


def test_the_covid_ct_example_parses_with_a_reference() -> None:
    parsed = parse_filter("case", COVID_CT_COHORT)
    assert isinstance(parsed, And)
    study = parsed.items[3]
    assert isinstance(study, Exists) and study.alias == "ct"
    inner = study.filter
    assert isinstance(inner, And)
    tests = inner.items[1]
    assert isinstance(tests, Exists) and isinstance(tests.filter, And)
    assert Compare(">=", "days_to_test", Ref("ct", "days_to_study", -7)) in tests.filter.items
    assert Compare("<=", "days_to_test", Ref("ct", "days_to_study", 7)) in tests.filter.items


@pytest.mark.parametrize(
    ("node", "data", "message"),
    [
        ("case", {"=": {"sexx": "Female"}}, "case has no field 'sexx' (did you mean 'sex'?)"),
        ("case", {"=": {"sex": "female"}}, "'female' is not a value of sex (did you mean 'Female'"),
        ("case", {"=": {"age_at_index": "50"}}, "expects a number"),
        ("case", {">": {"sex": "Female"}}, "> does not apply to enum field case.sex"),
        ("case", {"equals": {"sex": "Female"}}, "unknown operator 'equals'"),
        ("case", {"=": {"sex": "Female"}, "in": {"race": ["Asian"]}}, "exactly one operator"),
        ("case", {"=": {"serie.manufacturer": "X"}}, "unknown node type 'serie' (did you mean 'series'?)"),
        ("case", {"=": {"series.vendor": "X"}}, "series has no field 'vendor'"),
        ("case", {"contains": {"sex": "Female"}}, "contains applies to list fields"),
        ("imaging_study", {"=": {"study_modality": "CT"}}, "is a list; use"),
        ("imaging_study", {"contains": {"study_modality": "XX"}}, "'XX' is not a value of study_modality"),
        ("measurement", {">=": {"days_to_test": {"ref": "nope.days_to_study"}}}, "'nope' is not an enclosing node"),
        ("case", {"exists": {"node": "case"}}, "must name another node type"),
        ("case", {"and": {"=": {"sex": "Female"}}}, "and: expects a list"),
        ("case", ["sex"], "a filter is a JSON object"),
    ],
)
def test_errors_name_the_problem(node: str, data: object, message: str) -> None:
    with pytest.raises(UserError) as error:
        parse_filter(node, data)  # type: ignore[arg-type]
    assert message in str(error.value)


def test_unknown_field_lists_valid_fields() -> None:
    with pytest.raises(UserError) as error:
        parse_filter("series", {"=": {"vendor": "GE"}})
    assert "manufacturer" in error.value.hint and "modality" in error.value.hint
    assert "and[1]" in str(_error("case", {"and": [{"=": {"sex": "Male"}}, {"=": {"bad": 1}}]}))


def _error(node: str, data: object) -> UserError:
    with pytest.raises(UserError) as error:
        parse_filter(node, data)  # type: ignore[arg-type]
    return error.value
