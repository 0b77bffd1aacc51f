"""Curator decisions through the CLI, on SQLite and PostgreSQL: stored, audited, and they win.

A real de-identified synthetic site is ingested with some study descriptions rewritten so the
review queue has work: a decision recorded before the ingest is used by indexing instead of
the matcher, and one recorded after re-harmonizes the studies already indexed (their code
fields and their facet rows), in one audited transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from radcommons.store.index import make_engine
from radcommons.store.index.schema import get_metadata, system_table

DATA = Path(__file__).parent / "data"

from queue_site import TIBIA, site  # noqa: E402,F401  (the fixture)


def studies(url: str) -> dict[str, list[dict[str, Any]]]:
    """Description -> the code fields of its studies (and their series' facet rows)."""
    tables = get_metadata().tables
    study, facts = tables["imaging_study"], tables["series_facts"]
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(study.c.id, study.c.study_description, study.c.loinc_code,
                                       study.c.loinc_long_common_name, study.c.loinc_method,
                                       study.c.loinc_system)).all()
            fact_codes = {row.imaging_study_id: row.imaging_study__loinc_code
                          for row in conn.execute(select(facts.c.imaging_study_id, facts.c.imaging_study__loinc_code))}
    finally:
        engine.dispose()
    out: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        out.setdefault(row.study_description, []).append({**row._asdict(), "fact_code": fact_codes.get(row.id)})
    return out


def audit(url: str) -> list[Any]:
    table = system_table("audit_event")
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(select(table).where(table.c.action.startswith("harmonization."))
                                .order_by(table.c.id)).all()
    finally:
        engine.dispose()


def test_decisions_are_stored_audited_and_win(
    migrated_url: str, site: Path, tmp_path: Path, run_cli: Callable[..., Any]
) -> None:
    # Migrated in the process: 'db upgrade' through a process is tests/index/test_db_cli.py's, on both databases.
    db_url = migrated_url

    def cli(*args: str) -> Any:
        return run_cli(*args, "--url", db_url)

    def ok(*args: str) -> str:
        result = cli(*args)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    # Decided before any study carries it: indexing must use the decision, not the matcher (42272-5).
    out = ok("harmonize", "decide", "CR", "chest pa &  lateral (rad)-cs", "36643-5", "--by", "dr-curie")
    assert "recorded: CR | chest pa & lateral (rad)-cs -> 36643-5 XR Chest 2 Views; 0 indexed" in out
    result = run_cli("ingest", str(site), "--project", "Open-A1", "--site", "SITE_A", "--workers", "1",
                     "--url", db_url, "--store", str(tmp_path / "objects"))
    assert result.returncode == 0, result.stderr
    indexed = studies(db_url)
    assert [s["loinc_code"] for s in indexed["CHEST PA & LATERAL (RAD)-CS"]] == ["36643-5"]
    assert indexed["XR CHEST 2 VIEWS"][0]["loinc_code"] == "42272-5"  # the matcher's exact answer
    assert all(s["loinc_code"] is None for s in indexed[TIBIA])

    # The queue: pairs without code, one item per MIDRC pair (case, spaces, CR/DX), by studies.
    queue = ok("harmonize", "queue")
    assert "review queue of the index: 2 pair(s), 4 studies" in queue
    lines = [line for line in queue.splitlines() if "TIBIA" in line.upper() or "PA ERECT" in line]
    assert len(lines) == 2 and "TIBIA" in lines[0] and "│ 3 " in lines[0], queue
    assert "24648-8 XR Chest PA upright" in lines[1]

    # Bad input: a clear message, no traceback, nothing stored.
    for args, message in (
        (("DX", TIBIA, "99999-9"), "code 99999-9 is not in the catalogue"),
        (("DX", TIBIA, "tibia"), "'tibia' is not a LOINC code"),
        (("DX", TIBIA), "give the code, or --not-mappable"),
        (("DX", TIBIA, "36643-5", "--not-mappable"), "not both"),
        (("CT, MR", TIBIA, "36643-5"), "give exactly one modality"),
        (("XRAY", TIBIA, "36643-5"), "'XRAY' is not a DICOM modality"),  # it was stored, and never matched
        (("DX", "  ", "36643-5"), "the study description is empty"),
    ):
        result = cli("harmonize", "decide", *args)
        assert result.returncode != 0 and message in result.stderr + result.stdout, (args, result.stderr)
        assert "Traceback" not in result.stderr

    # Decided after indexing: the studies already indexed change, facets with them, audited.
    out = ok("harmonize", "decide", "DX", "XR CHEST 2 VIEWS", "36643-5", "--note", "2 views, not PA and lateral",
             "--by", "dr-curie")
    assert "recorded: DX | XR CHEST 2 VIEWS -> 36643-5 XR Chest 2 Views; 1 indexed study(ies) updated (Open-A1: 1)" \
        in out
    out = ok("harmonize", "decide", "CR", TIBIA.lower(), "--not-mappable", "--note", "no code in the catalogue")
    assert "-> not mappable; 0 indexed study(ies) updated" in out  # they had no code to lose
    indexed = studies(db_url)
    chest = indexed["XR CHEST 2 VIEWS"][0]
    assert (chest["loinc_code"], chest["loinc_long_common_name"], chest["loinc_method"], chest["loinc_system"],
            chest["fact_code"]) == ("36643-5", "XR Chest 2 Views", "XR", "Chest", "36643-5")
    queue = ok("harmonize", "queue")
    assert "1 pair(s), 1 studies" in queue and "TIBIA" not in queue.upper()

    # A code with no attributes in MIDRC's tables gets them once the Playbook is imported.
    ok("harmonize", "decide", "DX", "XR CHEST PA ERECT", "24648-8")
    assert [(s["loinc_code"], s["loinc_method"]) for s in studies(db_url)["XR CHEST PA ERECT"]] == [("24648-8", None)]
    out = ok("harmonize", "catalogue", "import", str(DATA / "LoincRsnaRadiologyPlaybook.csv"))
    assert "imported 3 code(s)" in out and "3 new" in out
    out = ok("harmonize", "decide", "DX", "XR CHEST PA ERECT", "24648-8", "--note", "with the Playbook's attributes")
    assert out.startswith("replaced:")
    erect = studies(db_url)["XR CHEST PA ERECT"][0]
    assert (erect["loinc_method"], erect["loinc_system"], erect["fact_code"]) == ("XR", "Chest", "24648-8")
    assert "0 pair(s)" in ok("harmonize", "queue")

    listed = ok("harmonize", "decisions")
    assert "4 decision(s)" in listed and "(not mappable)" in listed and "dr-curie" in listed

    events = audit(db_url)
    decide = [e for e in events if e.action == "harmonization.decide"]
    assert len(decide) == 5 and decide[1].actor == "dr-curie" and decide[1].target == "CR/DX | XR CHEST 2 VIEWS"
    assert decide[1].detail["code"] == "36643-5" and decide[1].detail["note"] == "2 views, not PA and lateral"
    assert decide[1].detail["studies"] == 1 and decide[2].detail["code"] is None
    restudy = [e for e in events if e.action == "harmonization.restudy"]
    assert [(e.project_id, e.records) for e in restudy] == [("Open-A1", 1), ("Open-A1", 1), ("Open-A1", 1)]
    assert [e.action for e in events].count("harmonization.catalogue_import") == 1


def test_decide_needs_a_migrated_index(tmp_path: Path, run_cli: Callable[..., Any]) -> None:
    result = run_cli("harmonize", "decide", "DX", "XR CHEST", "36643-5", "--url", f"sqlite:///{tmp_path / 'x.db'}")
    assert result.returncode != 0 and "radcommons db upgrade" in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
