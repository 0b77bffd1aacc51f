"""The dictionary YAML loads into typed, frozen objects and encodes the privacy conventions."""

from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path

import pytest

from radcommons.dictionary import (
    NOT_REPORTED,
    SCHEMA_DIR,
    Dictionary,
    PropertyType,
    load_dictionary,
)
from radcommons.errors import UserError


@pytest.fixture(scope="module")
def dictionary() -> Dictionary:
    return load_dictionary()


def test_version_and_graph_order(dictionary: Dictionary) -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+", dictionary.version)
    assert dictionary.node_names[:7] == (
        "program", "project", "dataset", "case", "imaging_study", "series", "instance"
    )
    assert {"measurement", "visit", "condition", "medication", "procedure", "observation"} <= set(
        dictionary.node_names
    )


def test_links(dictionary: Dictionary) -> None:
    targets = {node.name: [(link.target, link.column) for link in node.links] for node in dictionary.nodes}
    assert targets["case"] == [("dataset", "dataset.submitter_id")]
    assert targets["imaging_study"] == [("case", "case.submitter_id")]
    assert targets["series"] == [("imaging_study", "imaging_study.submitter_id"), ("case", "case.submitter_id")]
    assert targets["instance"] == [("series", "series.submitter_id")]
    for clinical in ("measurement", "visit", "condition", "medication", "procedure", "observation"):
        assert targets[clinical] == [("case", "case.submitter_id")]


def test_objects_are_frozen(dictionary: Dictionary) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        dictionary["case"].get("sex").required = False  # type: ignore[union-attr,misc]


def test_case_follows_midrc(dictionary: Dictionary) -> None:
    case = dictionary["case"]
    assert case.get("sex").enum == ("Female", "Male", "Not Reported")  # type: ignore[union-attr]
    assert case.get("ethnicity").enum == ("Hispanic or Latino", "Not Hispanic or Latino", "Not Reported")  # type: ignore[union-attr]
    assert case.get("covid19_positive").enum == ("Yes", "No", "Indeterminate", "Not Reported")  # type: ignore[union-attr]
    assert case.get("index_event").enum == (  # type: ignore[union-attr]
        "COVID-19 Test", "Long COVID Diagnosis", "Study Enrollment", "First Imaging Study"
    )
    age = case.get("age_at_index")
    assert age is not None and age.type is PropertyType.INTEGER and (age.minimum, age.maximum) == (0, 89)
    assert case.get("zip").pattern == "^[0-9]{3}$"  # type: ignore[union-attr]
    measurement = dictionary["measurement"]
    assert measurement.get("test_method").enum[:2] == ("RT-PCR", "Rapid antigen test")  # type: ignore[union-attr]
    assert measurement.get("test_result_text").enum == ("Positive", "Negative", "Indeterminate", "Not Reported")  # type: ignore[union-attr]
    study = dictionary["imaging_study"]
    assert study.get("days_from_study_to_pos_covid_test").items is PropertyType.INTEGER  # type: ignore[union-attr]


def test_privacy_conventions_hold_for_every_node(dictionary: Dictionary) -> None:
    for node in dictionary.nodes:
        assert node.get("submitter_id") is not None and node.get("submitter_id").required  # type: ignore[union-attr]
        for prop in node.properties:
            where = f"{node.name}.{prop.name}"
            assert "date" not in prop.name, f"{where}: calendar dates are not allowed"
            if prop.name.startswith("days_"):
                assert prop.element_type is PropertyType.INTEGER, where
            for value in prop.enum:
                assert value.lower() not in {"unknown", "unknown/declined", ""}, f"{where}: use {NOT_REPORTED!r}"


def test_facets_exist_for_search(dictionary: Dictionary) -> None:
    facets = {(n.name, p.name) for n in dictionary.nodes for p in n.properties if p.facet}
    for expected in [("case", "sex"), ("case", "race"), ("series", "modality"), ("series", "manufacturer"),
                     ("imaging_study", "loinc_code"), ("case", "covid19_positive")]:
        assert expected in facets


def _copy_schema(tmp_path: Path) -> Path:
    target = tmp_path / "schema"
    shutil.copytree(SCHEMA_DIR, target)
    return target


def test_unknown_key_in_yaml_is_refused(tmp_path: Path) -> None:
    schema = _copy_schema(tmp_path)
    path = schema / "visit.yaml"
    path.write_text(path.read_text().replace("    required: true\n    facet: true", "    requird: true\n    facet: true", 1))
    with pytest.raises(UserError, match=r"visit.yaml: unknown key\(s\) \['requird'\]"):
        load_dictionary(schema)


def test_link_to_unknown_node_is_refused(tmp_path: Path) -> None:
    schema = _copy_schema(tmp_path)
    path = schema / "visit.yaml"
    path.write_text(path.read_text().replace("target: case", "target: patient"))
    with pytest.raises(UserError, match="targets 'patient'"):
        load_dictionary(schema)


def test_node_missing_from_meta_is_refused(tmp_path: Path) -> None:
    schema = _copy_schema(tmp_path)
    (schema / "extra.yaml").write_text("name: extra\ncategory: clinical\n")
    with pytest.raises(UserError, match="'nodes' lists"):
        load_dictionary(schema)
