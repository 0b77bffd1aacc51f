"""Normalising sex, race, ethnicity, body part and other enumerations (raw value kept)."""

from __future__ import annotations

from pathlib import Path

import pytest

from radcommons.errors import UserError
from radcommons.harmonize import (
    ValueNormalizer,
    normalize_body_part,
    normalize_ethnicity,
    normalize_race,
    normalize_sex,
    normalize_value,
)


@pytest.mark.parametrize(
    ("raw", "value"),
    [("M", "Male"), ("male", "Male"), ("F", "Female"), ("Female", "Female"), ("O", "Not Reported"),
     ("Unknown", "Not Reported"), ("", "Not Reported"), (None, "Not Reported")],
)
def test_sex(raw: str | None, value: str) -> None:
    result = normalize_sex(raw)
    assert (result.value, result.raw) == (value, raw)


@pytest.mark.parametrize("raw", ["CHEST", "Chest", "THORAX", "LUNG", "lungs", "chest wall"])
def test_body_part_chest(raw: str) -> None:
    assert normalize_body_part(raw).value == "CHEST"


def test_race_ethnicity_and_others() -> None:
    assert normalize_race("Black").value == "Black or African American"
    assert normalize_race("Unknown/Declined").value == "Not Reported"
    assert normalize_ethnicity("non-hispanic").value == "Not Hispanic or Latino"
    assert normalize_value("case.icu_indicator", "True").value == "Yes"
    assert normalize_value("measurement.test_result_text", "not detected").value == "Negative"
    assert normalize_value("imaging_study.body_part_examined", "abd pelvis").value == "ABDOMENPELVIS"


def test_methods_and_unmapped() -> None:
    assert normalize_sex("Male").method == "exact"
    assert normalize_sex("m").method == "synonym"
    assert normalize_race("white").method in {"synonym", "case"}
    martian = normalize_sex("martian")
    assert (martian.value, martian.method, martian.ok) == (None, "unmapped", False)
    with pytest.raises(UserError, match="unknown enumeration field"):
        normalize_value("case.shoe_size", "42")


def test_site_mapping_extends(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text('case.sex:\n  "1": Male\n  "2": Female\nbody_part_examined:\n  TORSO: CHEST\n', encoding="utf-8")
    normalizer = ValueNormalizer.from_file(path)
    assert normalizer.normalize("case.sex", "1").value == "Male"
    assert normalizer.normalize("case.sex", "1").method == "site"
    assert normalizer.normalize("series.body_part_examined", "torso").value == "CHEST"
    assert normalizer.normalize("case.sex", "F").value == "Female"  # built-ins still apply


@pytest.mark.parametrize(
    ("text", "message"),
    [("case.sex:\n  x: Alien\n", "not an allowed value"), ("case.nope:\n  x: y\n", "unknown field"),
     ("- a\n- b\n", "expected a mapping"), ("case.sex: [\n", "not valid YAML")],
)
def test_bad_site_mapping(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(UserError, match=message):
        ValueNormalizer.from_file(path)
