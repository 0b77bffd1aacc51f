"""A small hand-built commons for the query engine tests, on SQLite and PostgreSQL.

Three projects: ``open-a`` and ``open-b`` (open) and ``seq-c`` (sequestered). The cases are
chosen so each test's expected answer can be read off this file:

====  =======  ===  ======  ==========================  =========================================
case  project  age  sex     imaging                     COVID tests (days_to_test)
====  =======  ===  ======  ==========================  =========================================
A1    open-a   55   Female  CT day 10 (SIEMENS), 2 inst  RT-PCR Positive day 14  (within 7 days)
A2    open-a   60   Male    CT day 0 (GE)                RT-PCR Positive day 20  (too late)
A3    open-a   45   Female  CT day 5 (SIEMENS)           RT-PCR Positive day 6   (too young)
A4    open-a   -    -       CR day 0 (Philips), gt89     none
B1    open-b   64   Female  CT+CR day 0 (SIEMENS, Agfa)  RT-PCR Negative day 1, antigen Pos day 2
C1    seq-c    50   Female  CT day 0 (SIEMENS)           RT-PCR Positive day 3
====  =======  ===  ======  ==========================  =========================================

Also: A2 has a *sequestered* measurement (project seq-c, RT-PCR Positive on day 2, linked
across projects to A2), which must never make A2 match for a reader of open-a only; A1 has
the condition "Pneumonia".
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import Engine, insert

from radcommons.store.index import make_engine, node_tables, upgrade
from radcommons.store.index.facts import refresh_series_facts


@dataclass
class Commons:
    """The engine and the ids of what the builder inserted (node -> submitter_id -> id)."""

    engine: Engine
    ids: dict[str, dict[str, int]] = field(default_factory=dict)
    counter: int = 0

    def add(self, node: str, project: str | None, submitter_id: str, **values: Any) -> int:
        table = node_tables()[node]
        row = {"submitter_id": submitter_id, "project_id": project, **values}
        with self.engine.begin() as connection:
            new_id = connection.execute(insert(table).values(row).returning(table.c.id)).scalar_one()
        self.ids.setdefault(node, {})[submitter_id] = new_id
        return new_id

    def uid(self) -> str:
        self.counter += 1
        return f"1.2.826.0.1.3680043.10.{self.counter}"

    def case(self, project: str, name: str, *, age: int | None, sex: str | None, **values: Any) -> int:
        dataset = self.ids["dataset"][f"{project}-batch1"]
        defaults = {"index_event": "COVID-19 Test", "race": "White", "ethnicity": "Not Hispanic or Latino",
                    "covid19_positive": "Not Reported", "age_at_index_gt89": "No"}
        return self.add("case", project, name, dataset_id=dataset, age_at_index=age, sex=sex,
                        **{**defaults, **values})

    def study(self, project: str, case_id: int, name: str, *, modalities: list[str], day: int,
              series: list[tuple[str, str]], instances: int = 1) -> int:
        study_id = self.add("imaging_study", project, name, case_id=case_id, study_uid=self.uid(),
                            study_modality=modalities, days_to_study=day, body_part_examined="CHEST")
        for n, (modality, manufacturer) in enumerate(series, 1):
            series_uid = self.uid()
            series_id = self.add("series", project, f"{name}-s{n}", imaging_study_id=study_id, case_id=case_id,
                                 series_uid=series_uid, modality=modality, manufacturer=manufacturer,
                                 body_part_examined="CHEST", number_of_instances=instances)
            for _ in range(instances):
                sop = self.uid()
                self.add("instance", project, sop, series_id=series_id, sop_instance_uid=sop,
                         sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
                         object_id=hashlib.sha256(sop.encode()).hexdigest(), size=1000 + self.counter)
        with self.engine.begin() as connection:  # rows written here, not by IndexWriter: refresh as it would
            refresh_series_facts(connection, [study_id])
        return study_id

    def test(self, project: str, case_id: int, name: str, method: str, result: str, day: int) -> int:
        return self.add("measurement", project, name, case_id=case_id, test_method=method,
                        test_result_text=result, days_to_test=day)


def build_commons(engine: Engine) -> Commons:
    c = Commons(engine)
    program = c.add("program", None, "MIDRC", name="MIDRC")
    for project, availability in (("open-a", "open"), ("open-b", "open"), ("seq-c", "sequestered")):
        c.add("project", project, project, program_id=program, availability=availability, name=project)
        c.add("dataset", project, f"{project}-batch1", site_id=project)
    a1 = c.case("open-a", "A1", age=55, sex="Female", covid19_positive="Yes")
    c.study("open-a", a1, "A1-st1", modalities=["CT"], day=10, series=[("CT", "SIEMENS")], instances=2)
    c.test("open-a", a1, "A1-m1", "RT-PCR", "Positive", 14)
    c.add("condition", "open-a", "A1-c1", case_id=a1, condition_name="Pneumonia", condition_code="J18.9")
    a2 = c.case("open-a", "A2", age=60, sex="Male", covid19_positive="Yes")
    c.study("open-a", a2, "A2-st1", modalities=["CT"], day=0, series=[("CT", "GE MEDICAL SYSTEMS")])
    c.test("open-a", a2, "A2-m1", "RT-PCR", "Positive", 20)
    c.test("seq-c", a2, "A2-m-seq", "RT-PCR", "Positive", 2)  # cross-project: must stay invisible
    a3 = c.case("open-a", "A3", age=45, sex="Female", covid19_positive="Yes")
    c.study("open-a", a3, "A3-st1", modalities=["CT"], day=5, series=[("CT", "SIEMENS")])
    c.test("open-a", a3, "A3-m1", "RT-PCR", "Positive", 6)
    a4 = c.case("open-a", "A4", age=None, sex=None, age_at_index_gt89="Yes")
    c.study("open-a", a4, "A4-st1", modalities=["CR"], day=0, series=[("CR", "Philips")])
    b1 = c.case("open-b", "B1", age=64, sex="Female", covid19_positive="No")
    c.study("open-b", b1, "B1-st1", modalities=["CT", "CR"], day=0, series=[("CT", "SIEMENS"), ("CR", "Agfa")])
    c.test("open-b", b1, "B1-m1", "RT-PCR", "Negative", 1)
    c.test("open-b", b1, "B1-m2", "Rapid antigen test", "Positive", 2)
    c1 = c.case("seq-c", "C1", age=50, sex="Female", covid19_positive="Yes")
    c.study("seq-c", c1, "C1-st1", modalities=["CT"], day=0, series=[("CT", "SIEMENS")])
    c.test("seq-c", c1, "C1-m1", "RT-PCR", "Positive", 3)
    return c


@pytest.fixture
def commons(db_url: str) -> Iterator[Commons]:
    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        yield build_commons(engine)
    finally:
        engine.dispose()


OPEN = ("open-a", "open-b")

#: The brief's example: age 50-64, an RT-PCR positive within 7 days of a CT study, a SIEMENS scanner.
COVID_CT_COHORT: dict[str, Any] = {"and": [
    {">=": {"age_at_index": 50}},
    {"<=": {"age_at_index": 64}},
    {"=": {"series.manufacturer": "SIEMENS"}},
    {"exists": {"node": "imaging_study", "as": "ct", "filter": {"and": [
        {"contains": {"study_modality": "CT"}},
        {"exists": {"node": "measurement", "filter": {"and": [
            {"=": {"test_method": "RT-PCR"}},
            {"=": {"test_result_text": "Positive"}},
            {"within": {"days_to_test": {"ref": "ct.days_to_study", "by": 7}}},
        ]}}},
    ]}}},
]}
