"""Benchmark of the research query engine on the real NCI Imaging Data Commons metadata.

Not a test. Loads the ~1M-series index shipped by the ``idc-index-data`` PyPI package
(``.venv/bin/pip install idc-index-data``) into RadCommons' index as synthetic records
(collection -> project, patient -> case, study -> imaging_study, series -> series, the
collection's cancer types -> one condition per case), on PostgreSQL (a dedicated database,
dropped afterwards) and SQLite, then times typical queries: load rate (rows/s) and
p50/p95 latency over ``--reps`` repetitions of facet counts, a linked cohort count and
page 1 of a query.

    .venv/bin/python bench/query/run.py                 # everything (~15 min on 2 cores)
    .venv/bin/python bench/query/run.py --limit 50000   # a quick run
    .venv/bin/python bench/query/run.py --backends postgresql --results-md

Scratch data goes to ``bench/work/query/``; ``--results-md`` rewrites the
"## Query (bench/query)" section of ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pyarrow.parquet as pq
from sqlalchemy import Engine, insert, text
from sqlalchemy.engine import make_url

from radcommons.dictionary import load_dictionary
from radcommons.store.index import make_engine, node_tables, upgrade
from radcommons.store.index.facts import refresh_series_facts
from radcommons.store.query import count, facets, query

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/, for benchlib
from benchlib import replace_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / "bench" / "work" / "query"
RESULTS = ROOT / "bench" / "RESULTS.md"
SECTION = "## Query (bench/query)"
QIDO_SUBSECTION = "### QIDO-RS against Orthanc"  # written by bench/query/qido.py
PG_SERVER = os.environ.get("RADCOMMONS_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432").rstrip("/")
COLUMNS = ["collection_id", "PatientID", "StudyInstanceUID", "SeriesInstanceUID", "Modality", "BodyPartExamined",
           "Manufacturer", "ManufacturerModelName", "instanceCount", "PatientAge", "PatientSex", "StudyDate",
           "StudyDescription", "SeriesDescription", "SeriesNumber"]
AGE_BINS = [0, 18, 30, 40, 50, 65, 75, 85, 90]
NOTES = [
    "- Load: PostgreSQL by psycopg COPY (ids assigned in Python), SQLite by Core executemany in 20k-row "
    "batches, into the migrated schema with all its indexes, then the bulk `refresh_series_facts` (the same store "
    "function indexing calls per study, filling `series_facts` and `series_facet_counts`; its time is inside the load figure and given below), then VACUUM ANALYZE "
    "/ ANALYZE (in neither figure). Rows = projects + datasets + cases + studies + series + conditions.",
    "- Series facets are read from `series_facet_counts` (migration 0008: `series_facts` pre-aggregated over its "
    "low-cardinality columns, one row per project and combination of modality, body part, manufacturer, model, "
    "study year, case sex, age, race and ethnicity, with its number of series; recomputed per project by the same "
    "refresh, in the same transaction) when the field and the filter name only those columns: a `SUM(n) ... GROUP "
    "BY` over tens of thousands of rows. Else from `series_facts` (migration 0006: one row per series with its own, "
    "its study's and its case's facet columns) for a parent's field, else the node tables.",
    "- The machine was shared with other engineers' test suites while this ran (load average given below, "
    "on 2 CPUs): figures are pessimistic and p95s noisy.",
]


# ---------------------------------------------------------------------------------------------
# IDC metadata -> RadCommons records


def idc_rows(limit: int | None) -> tuple[list[dict[str, Any]], dict[str, str], str]:
    import idc_index_data

    path = Path(idc_index_data.IDC_INDEX_PARQUET_FILEPATH)
    table = pq.read_table(path, columns=COLUMNS)
    if limit:
        table = table.slice(0, limit)
    collections = pq.read_table(path.parent / "collections_index.parquet", columns=["collection_id", "cancer_types"])
    cancer = {c: t or "" for c, t in zip(collections["collection_id"].to_pylist(), collections["cancer_types"].to_pylist())}
    version = (table.schema.metadata or {}).get(b"idc_index_data_version", b"?").decode()
    return table.to_pylist(), cancer, version


def _age(text_value: str | None) -> int | None:
    m = re.fullmatch(r"(\d{1,3})([YMWD])", (text_value or "").strip())
    if not m:
        return None
    n, unit = int(m.group(1)), m.group(2)
    return n if unit == "Y" else 0


def _day(text_value: str | None) -> dt.date | None:
    try:
        return dt.date.fromisoformat(text_value) if text_value else None
    except ValueError:
        return None


def _cut(value: str | None, n: int) -> str | None:
    # A few IDC headers carry NUL bytes, which PostgreSQL text cannot hold.
    return value.replace("\x00", "").strip()[:n] or None if value else None


def build_records(rows: list[dict[str, Any]], cancer: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    """Records with explicit ids, in insert order (parents first)."""
    modalities = set(load_dictionary()["series"].get("modality").enum)  # type: ignore[union-attr]
    out: dict[str, list[dict[str, Any]]] = {n: [] for n in
                                            ("program", "project", "dataset", "case", "imaging_study", "series",
                                             "condition")}
    out["program"].append({"id": 1, "project_id": None, "submitter_id": "IDC", "name": "NCI Imaging Data Commons"})
    projects: dict[str, int] = {}
    cases: dict[tuple[str, str], int] = {}
    studies: dict[str, dict[str, Any]] = {}
    first_day: dict[int, dt.date] = {}
    seen_series: set[str] = set()
    for row in rows:
        project = row["collection_id"]
        if project not in projects:
            projects[project] = len(projects) + 1
            out["project"].append({"id": projects[project], "project_id": project, "submitter_id": project,
                                   "program_id": 1, "name": project, "availability": "open"})
            out["dataset"].append({"id": projects[project], "project_id": project,
                                   "submitter_id": f"{project}-idc", "site_id": project})
        key = (project, row["PatientID"])
        if key not in cases:
            case_id = cases[key] = len(cases) + 1
            age = _age(row["PatientAge"])
            out["case"].append({
                "id": case_id, "project_id": project, "submitter_id": row["PatientID"][:128],
                "dataset_id": projects[project], "index_event": "First Imaging Study",
                "age_at_index": age if age is not None and age <= 89 else None,
                "age_at_index_gt89": "Not Reported" if age is None else ("Yes" if age > 89 else "No"),
                "sex": {"F": "Female", "M": "Male"}.get(row["PatientSex"] or "", "Not Reported"),
                "race": "Not Reported", "ethnicity": "Not Reported", "covid19_positive": "Not Reported",
                "site_id": project,
            })
            for n, name in enumerate(t.strip() for t in cancer.get(project, "").split(",") if t.strip()):
                out["condition"].append({"id": len(out["condition"]) + 1, "project_id": project,
                                         "submitter_id": f"{row['PatientID'][:100]}-cond{n}", "case_id": case_id,
                                         "condition_name": name[:256]})
        case_id = cases[key]
        modality = row["Modality"] if row["Modality"] in modalities else "OT"
        study_uid = row["StudyInstanceUID"]
        day = _day(row["StudyDate"])
        if study_uid not in studies:
            studies[study_uid] = {
                "id": len(studies) + 1, "project_id": project, "submitter_id": study_uid, "case_id": case_id,
                "study_uid": study_uid, "study_description": _cut(row["StudyDescription"], 256),
                "study_modality": set(), "body_part_examined": _cut(row["BodyPartExamined"], 64),
                "study_year": day.year if day and 1900 <= day.year <= 2200 else None, "_day": day,
            }
            if day:
                first_day[case_id] = min(first_day.get(case_id, day), day)
        study = studies[study_uid]
        study["study_modality"].add(modality)
        series_uid = row["SeriesInstanceUID"]
        if series_uid in seen_series:
            continue
        seen_series.add(series_uid)
        number = row["SeriesNumber"]
        out["series"].append({
            "id": len(out["series"]) + 1, "project_id": study["project_id"], "submitter_id": series_uid,
            "imaging_study_id": study["id"], "case_id": study["case_id"], "series_uid": series_uid, "modality": modality,
            "series_number": int(number) if number and re.fullmatch(r"-?\d{1,9}", number) else None,
            "series_description": _cut(row["SeriesDescription"], 256),
            "body_part_examined": _cut(row["BodyPartExamined"], 64),
            "manufacturer": _cut(row["Manufacturer"], 128),
            "manufacturer_model_name": _cut(row["ManufacturerModelName"], 128),
            "number_of_instances": min(int(row["instanceCount"] or 0), 1_000_000),
        })
    for study in studies.values():
        day = study.pop("_day")
        first = first_day.get(study["case_id"])
        study["days_to_study"] = (day - first).days if day and first else None
        study["study_modality"] = sorted(study["study_modality"])
        out["imaging_study"].append(study)
    return out


# ---------------------------------------------------------------------------------------------
# Loading


def load_postgresql(url: str, records: dict[str, list[dict[str, Any]]]) -> tuple[float, float]:
    """COPY every table (ids given), fix the id sequences, fill series_facts, VACUUM ANALYZE; (s, facts s)."""
    tables = node_tables()
    parsed = make_url(url)
    conninfo = f"host={parsed.host} port={parsed.port or 5432} user={parsed.username} dbname={parsed.database}"
    start = time.perf_counter()
    with psycopg.connect(conninfo) as connection:
        with connection.cursor() as cursor:
            for node, rows in records.items():
                if not rows:
                    continue
                names = [c for c in rows[0] if c in tables[node].c]
                json_columns = {c for c in names if c in ("study_modality",)}
                quoted = ", ".join(f'"{c}"' for c in names)
                with cursor.copy(f'COPY "{node}" ({quoted}) FROM STDIN') as copy:
                    for row in rows:
                        copy.write_row([json.dumps(row[c]) if c in json_columns else row[c] for c in names])
                cursor.execute(f"SELECT setval(pg_get_serial_sequence('\"{node}\"', 'id'), "
                               f"(SELECT max(id) FROM \"{node}\"))")
        connection.commit()
    facts_s = refresh_facts(url)
    elapsed = time.perf_counter() - start
    with psycopg.connect(conninfo, autocommit=True) as connection:
        connection.execute("VACUUM ANALYZE")
    return elapsed, facts_s


def refresh_facts(url: str) -> float:
    """Fill ``series_facts`` and ``series_facet_counts`` from the loaded rows (the bulk form of what indexing does per study); seconds."""
    engine = make_engine(url)
    start = time.perf_counter()
    with engine.begin() as connection:
        refresh_series_facts(connection)
    elapsed = time.perf_counter() - start
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT count(*) FROM series_facts")).scalar_one()
        combos = connection.execute(text("SELECT count(*) FROM series_facet_counts")).scalar_one()
    engine.dispose()
    print(f"series_facts: {rows:,} rows, series_facet_counts: {combos:,} rows, in {elapsed:.1f} s", flush=True)
    return elapsed


def load_sqlite(engine: Engine, records: dict[str, list[dict[str, Any]]], batch: int = 20_000
                ) -> tuple[float, float]:
    """Core executemany in batches, one transaction per table, fill series_facts, ANALYZE; (s, facts s)."""
    tables = node_tables()
    start = time.perf_counter()
    for node, rows in records.items():
        with engine.begin() as connection:
            for i in range(0, len(rows), batch):
                connection.execute(insert(tables[node]), rows[i:i + batch])
    facts_s = refresh_facts(engine.url.render_as_string(hide_password=False))
    elapsed = time.perf_counter() - start
    with engine.begin() as connection:
        connection.execute(text("ANALYZE"))
    return elapsed, facts_s


# ---------------------------------------------------------------------------------------------
# Queries


COHORT = {"and": [
    {">=": {"age_at_index": 50}}, {"<=": {"age_at_index": 64}},
    {"exists": {"node": "condition", "filter": {"in": {"condition_name": ["Lung Cancer", "Non-small Cell Lung Cancer"]}}}},
    {"exists": {"node": "series", "filter": {"and": [{"=": {"modality": "CT"}}, {"=": {"manufacturer": "SIEMENS"}}]}}},
]}


def workloads(engine: Engine) -> dict[str, Callable[[], Any]]:
    return {
        "facet series.modality": lambda: facets(engine, "series", None, ["modality"]),
        "facet series.body_part_examined": lambda: facets(engine, "series", None, ["body_part_examined"], top=50),
        "facet series.manufacturer": lambda: facets(engine, "series", None, ["manufacturer"], top=50),
        "facet series by case.sex": lambda: facets(engine, "series", None, ["case.sex"]),
        "facet series by case.age_at_index (bins)": lambda: facets(
            engine, "series", None, ["case.age_at_index"], bins={"case.age_at_index": AGE_BINS}),
        "5 facets in one call, min_count=10": lambda: facets(
            engine, "series", None, ["modality", "body_part_examined", "manufacturer", "case.sex", "case.age_at_index"],
            bins={"case.age_at_index": AGE_BINS}, min_count=10, top=50),
        "facet manufacturer where modality=CT": lambda: facets(
            engine, "series", {"=": {"modality": "CT"}}, ["manufacturer"], top=50),
        "cohort count: cases 50-64, linked condition + CT SIEMENS series": lambda: count(engine, "case", COHORT),
        "page 1 (100 rows): series where modality=MR": lambda: query(
            engine, "series", {"=": {"modality": "MR"}}, limit=100),
        "page 1 (100 rows): cases of the cohort, by age desc": lambda: query(
            engine, "case", COHORT, sort=[("age_at_index", "desc")], limit=100),
    }


def time_it(fn: Callable[[], Any], reps: int) -> tuple[float, float, Any]:
    result = fn()  # warm caches and the connection pool
    samples = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    p95 = samples[min(len(samples) - 1, int(round(0.95 * len(samples) + 0.5)) - 1)]
    return statistics.median(samples), p95, result


def run_backend(backend: str, records: dict[str, list[dict[str, Any]]], reps: int, keep: bool) -> dict[str, Any]:
    n_rows = sum(len(v) for v in records.values())
    if backend == "postgresql":
        name = f"rc_bench_query_{uuid.uuid4().hex[:6]}"
        admin = psycopg.connect(_admin(), autocommit=True)
        admin.execute(f'CREATE DATABASE "{name}"')
        url = f"{PG_SERVER}/{name}"
    else:
        WORK.mkdir(parents=True, exist_ok=True)
        path = WORK / "bench.db"
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
        url = f"sqlite:///{path}"
    try:
        upgrade(url)
        engine = make_engine(url)
        print(f"[{backend}] loading {n_rows:,} rows ...", flush=True)
        engine.dispose()
        load_s, facts_s = (load_postgresql(url, records) if backend == "postgresql" else load_sqlite(engine, records))
        print(f"[{backend}] loaded in {load_s:.1f} s ({n_rows / load_s:,.0f} rows/s), series_facts included "
              f"({facts_s:.1f} s)", flush=True)
        timings = {}
        for label, fn in workloads(engine).items():
            p50, p95, result = time_it(fn, reps)
            timings[label] = {"p50_ms": round(p50, 1), "p95_ms": round(p95, 1), "answer": _summary(result)}
            print(f"[{backend}] {label}: p50 {p50:.1f} ms, p95 {p95:.1f} ms  -> {_summary(result)}", flush=True)
        engine.dispose()
        return {"rows": n_rows, "load_s": round(load_s, 1), "facts_s": round(facts_s, 1),
                "rows_per_s": round(n_rows / load_s), "timings": timings, "loadavg": os.getloadavg()}
    finally:
        if backend == "postgresql" and not keep:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.close()


def _summary(result: Any) -> str:
    if isinstance(result, int):
        return f"{result:,}"
    if isinstance(result, dict):
        return "; ".join(f"{k}: {len(v)} buckets" for k, v in result.items())
    return f"{len(result.rows)} rows"


def _admin() -> str:
    url = make_url(PG_SERVER + "/test")
    return f"host={url.host} port={url.port or 5432} user={url.username} dbname=test"


def machine() -> str:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = re.search(r"Model name:\s*(.+)", lscpu)
        cpus = re.search(r"^CPU\(s\):\s*(\d+)", lscpu, re.M)
        cpu = f"{model.group(1).strip() if model else '?'}, {cpus.group(1) if cpus else os.cpu_count()} CPUs"
    except (OSError, subprocess.CalledProcessError):
        cpu = f"{platform.processor()}, {os.cpu_count()} CPUs"
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    pg = "?"
    try:
        with psycopg.connect(_admin()) as c:
            pg = str(c.execute("show server_version").fetchone()[0])
    except psycopg.Error:
        pass
    import sqlite3

    return f"{cpu}, {memory:.0f} GiB RAM; PostgreSQL {pg} (local, default settings); SQLite {sqlite3.sqlite_version}"


def write_results(report: dict[str, Any]) -> None:
    lines = [SECTION, "", f"Date: {report['date']}. Machine: {report['machine']}.",
             f"Command: `{report['command']}`. Data: idc-index-data {report['idc_version']} "
             f"({report['series']:,} series, {report['studies']:,} studies, {report['cases']:,} cases, "
             f"{report['projects']} projects, {report['conditions']:,} conditions; {report['reps']} repetitions "
             f"after one warm-up; latencies are wall time of the Python call, connection pool warm).", ""]
    backends = list(report["backends"])
    lines.append("| | " + " | ".join(f"{b} p50 / p95 (ms)" for b in backends) + " |")
    lines.append("|---|" + "---|" * len(backends))
    lines.append("| load (rows/s) | " + " | ".join(
        f"{report['backends'][b]['rows_per_s']:,} rows/s ({report['backends'][b]['load_s']} s)" for b in backends) + " |")
    for label in next(iter(report["backends"].values()))["timings"]:
        cells = [f"{report['backends'][b]['timings'][label]['p50_ms']} / {report['backends'][b]['timings'][label]['p95_ms']}"
                 for b in backends]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", *report.get("notes", [])]
    for b in backends:
        run = report["backends"][b]
        lines.append(f"- {b}: filling `series_facts` and `series_facet_counts` took {run.get('facts_s')} s of the load; load average "
                     f"(1/5/15 min) when the queries ended: " + "/".join(f"{x:.1f}" for x in run.get("loadavg", ())))
    lines.append("")
    # bench/query/qido.py's part of the section stays
    replace_section(RESULTS, "\n".join(lines), keep_from=(QIDO_SUBSECTION,))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=None, help="load only the first N series rows of the IDC index")
    parser.add_argument("--backends", default="postgresql,sqlite")
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--keep", action="store_true", help="keep the PostgreSQL database")
    parser.add_argument("--results-md", action="store_true", help="rewrite our section of bench/RESULTS.md")
    parser.add_argument("--json", type=Path, default=WORK / "results.json")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    rows, cancer, version = idc_rows(args.limit)
    records = build_records(rows, cancer)
    del rows
    print(f"prepared {', '.join(f'{k} {len(v):,}' for k, v in records.items())} "
          f"in {time.perf_counter() - started:.0f} s", flush=True)
    report: dict[str, Any] = {
        "date": dt.date.today().isoformat(), "machine": machine(), "idc_version": version,
        "command": ".venv/bin/python bench/query/run.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "series": len(records["series"]), "studies": len(records["imaging_study"]), "cases": len(records["case"]),
        "projects": len(records["project"]), "conditions": len(records["condition"]), "reps": args.reps,
        "backends": {}, "notes": NOTES,
    }
    for backend in args.backends.split(","):
        report["backends"][backend] = run_backend(backend, records, args.reps, args.keep)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    if args.results_md:
        write_results(report)
    print(f"done in {time.perf_counter() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
