"""What indexing a small batch into a big project costs in ``series_facts`` / ``series_facet_counts``.

Not a test. Loads one project of ``--series`` synthetic series (two per study, two studies per
case; modality, body part, manufacturer, model, study year, sex, age, race and ethnicity drawn
so that the counts table has tens of thousands of combinations, like IDC's big collections),
then indexes ``--rounds`` batches of ``--batch`` new studies into it, each in its own
transaction as a STOW-RS request or an ingest batch does, and times
``refresh_series_facts`` for the batch (p50 / p95). Checks after every round that the counts
still equal a recount from ``series_facts``.

    .venv/bin/python bench/query/facts_refresh.py --series 300000 --backends postgresql,sqlite

Scratch data goes to ``bench/work/facts/``; PostgreSQL uses a database it creates and drops.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import func, insert, select, text

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import load_postgresql, load_sqlite  # noqa: E402

from radcommons.store.index import make_engine, node_tables, upgrade  # noqa: E402
from radcommons.store.index.facts import counts_table, cube_columns, facts_table, refresh_series_facts  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / "bench" / "work" / "facts"
PROJECT = "big"
MODALITIES = ["CT", "CR", "DX", "MR", "PT", "US", "NM"]
BODY_PARTS = ["CHEST", "ABDOMEN", "HEAD", "PELVIS", "BREAST", "LUNG", "SPINE", "KNEE", None]
MAKERS = {"SIEMENS": ["SOMATOM Force", "Biograph", "Skyra"], "GE MEDICAL SYSTEMS": ["Revolution", "Discovery", "Optima"],
          "Philips": ["iCT", "Ingenuity", "Achieva"], "TOSHIBA": ["Aquilion"], "Agfa": ["DX-D"], None: [None]}
RACES = ["White", "Black or African American", "Asian", "Other", "Not Reported"]
ETHNICITIES = ["Hispanic or Latino", "Not Hispanic or Latino", "Not Reported"]


def records(n_series: int, first_case: int, first_study: int, first_series: int, seed: int) -> dict[str, list]:
    """Correlated like a real collection (a case's studies come from a few scanners and body
    parts; most cases lack age, race and ethnicity), so combinations repeat."""
    rng = random.Random(seed)
    out: dict[str, list[dict[str, Any]]] = {"case": [], "imaging_study": [], "series": []}
    case_id, study_id, series_id = first_case, first_study, first_series
    while len(out["series"]) < n_series:
        described = rng.random() < 0.2
        out["case"].append({
            "id": case_id, "project_id": PROJECT, "submitter_id": f"case-{case_id}", "dataset_id": 1,
            "index_event": "First Imaging Study", "age_at_index": rng.randint(18, 89) if described else None,
            "age_at_index_gt89": "No" if described else "Not Reported",
            "sex": rng.choice(["Female", "Male"]), "race": rng.choice(RACES) if described else "Not Reported",
            "ethnicity": rng.choice(ETHNICITIES) if described else "Not Reported",
            "covid19_positive": "Not Reported", "site_id": PROJECT,
        })
        maker = rng.choice(list(MAKERS))
        model = rng.choice(MAKERS[maker])
        part = rng.choice(BODY_PARTS)
        for _ in range(2):
            out["imaging_study"].append({
                "id": study_id, "project_id": PROJECT, "submitter_id": f"study-{study_id}", "case_id": case_id,
                "study_uid": f"2.25.{study_id}", "study_modality": [], "body_part_examined": part,
                "study_year": rng.randint(2015, 2024),
            })
            modality = rng.choice(MODALITIES[:3])
            for _ in range(2):
                out["series"].append({
                    "id": series_id, "project_id": PROJECT, "submitter_id": f"series-{series_id}",
                    "imaging_study_id": study_id, "case_id": case_id, "series_uid": f"2.25.9{series_id}",
                    "modality": modality, "body_part_examined": part,
                    "manufacturer": maker, "manufacturer_model_name": model,
                    "number_of_instances": 1,
                })
                series_id += 1
            study_id += 1
        case_id += 1
    return out


def base_records(n_series: int) -> dict[str, list]:
    out: dict[str, list[dict[str, Any]]] = {
        "program": [{"id": 1, "project_id": None, "submitter_id": "BENCH", "name": "bench"}],
        "project": [{"id": 1, "project_id": PROJECT, "submitter_id": PROJECT, "program_id": 1, "name": PROJECT,
                     "availability": "open"}],
        "dataset": [{"id": 1, "project_id": PROJECT, "submitter_id": f"{PROJECT}-1", "site_id": PROJECT}],
    }
    out.update(records(n_series, 1, 1, 1, seed=1))
    return out


def counts_agree(engine) -> bool:
    facts, counts = facts_table(), counts_table()
    keys = [facts.c.project_id, *(facts.c[c.name] for c in cube_columns())]
    with engine.connect() as connection:
        recount = sorted(map(tuple, connection.execute(select(*keys, func.count()).group_by(*keys)).all()),
                         key=repr)
        stored = sorted(map(tuple, connection.execute(select(*(counts.c[k.name] for k in keys), counts.c.n)).all()),
                        key=repr)
    return recount == stored


def bench(url: str, backend: str, args: argparse.Namespace) -> dict[str, Any]:
    upgrade(url)
    loader = load_postgresql if backend == "postgresql" else load_sqlite
    data = base_records(args.series)
    engine = make_engine(url)
    loaded_s, _ = loader(url, data) if backend == "postgresql" else loader(engine, data)
    tables = node_tables()
    with engine.connect() as connection:
        cells = connection.execute(select(func.count()).select_from(counts_table())).scalar_one()
    next_ids = [len(data["case"]) + 1, len(data["imaging_study"]) + 1, len(data["series"]) + 1]
    times: list[float] = []
    for round_ in range(args.rounds):
        new = records(args.batch, *next_ids, seed=100 + round_)
        next_ids = [next_ids[0] + len(new["case"]), next_ids[1] + len(new["imaging_study"]),
                    next_ids[2] + len(new["series"])]
        with engine.begin() as connection:
            for node in ("case", "imaging_study", "series"):
                connection.execute(insert(tables[node]), new[node])
            start = time.perf_counter()
            refresh_series_facts(connection, [s["id"] for s in new["imaging_study"]])
            times.append(time.perf_counter() - start)
    agree = counts_agree(engine)
    engine.dispose()
    times.sort()
    return {"backend": backend, "series": args.series, "cells": cells, "load_s": round(loaded_s, 1),
            "batch_series": args.batch, "p50_ms": round(statistics.median(times) * 1000, 1),
            "p95_ms": round(times[int(0.95 * (len(times) - 1))] * 1000, 1), "counts_agree": agree}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", type=int, default=300_000)
    parser.add_argument("--batch", type=int, default=50, help="series per indexing transaction")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--backends", default="postgresql,sqlite")
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/rc_bench_facts")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    for backend in args.backends.split(","):
        if backend == "postgresql":
            admin = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
            with psycopg.connect(admin, autocommit=True) as connection:
                connection.execute("DROP DATABASE IF EXISTS rc_bench_facts")
                connection.execute("CREATE DATABASE rc_bench_facts")
            try:
                print(bench(args.pg, backend, args), flush=True)
            finally:
                with psycopg.connect(admin, autocommit=True) as connection:
                    connection.execute("DROP DATABASE IF EXISTS rc_bench_facts")
        else:
            db = WORK / "facts.db"
            db.unlink(missing_ok=True)
            print(bench(f"sqlite:///{db}", backend, args), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
