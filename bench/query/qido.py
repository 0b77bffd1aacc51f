"""QIDO-RS latency: RadCommons against Orthanc on the same small data set, in the same run.

Not a test. A de-identified synthetic corpus (``radcommons synth`` -> ``keygen`` -> ``deid``,
a few hundred instances, cached in ``bench/work/qido/``) goes into a fresh RadCommons index
with ``radcommons ingest`` (SQLite, or PostgreSQL with ``--backend postgresql``) served by
``radcommons serve``, and into Orthanc (Debian ``orthanc`` + ``orthanc-dicomweb``, default
SQLite index) with its REST ``POST /instances``. Both run on loopback at the same time; each
typical QIDO-RS query is asked of both in turn (``--reps`` times after one warm-up each), and
the p50/p95 wall times of the HTTP round trips are reported with the number of results, which
must agree.

    .venv/bin/python bench/query/qido.py                       # ~2 min on 2 cores
    .venv/bin/python bench/query/qido.py --backend postgresql --results-md

``--results-md`` rewrites the "### QIDO-RS against Orthanc" part of the "## Query
(bench/query)" section of ``bench/RESULTS.md``. ``--profile`` records the server with py-spy
while the queries run (``.venv/bin/pip install py-spy``) and prints its hottest frames.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pydicom

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchlib import free_port, orthanc_server, percentiles, stop_process, wait_http  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / "bench" / "work" / "qido"
RESULTS = ROOT / "bench" / "RESULTS.md"
SECTION = "## Query (bench/query)"
SUBSECTION = "### QIDO-RS against Orthanc (bench/query/qido.py)"
RADCOMMONS = str(ROOT / ".venv" / "bin" / "radcommons")
PG_SERVER = os.environ.get("RADCOMMONS_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432").rstrip("/")
PROJECT = "Open-Q1"


def sh(argv: list[str], env: dict[str, str] | None = None) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, env=env)
    if done.returncode not in (0, 1):  # ingest exits 1 when some files were quarantined
        raise RuntimeError(f"{shlex.join(argv)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout


def corpus(sites: int, patients: int, seed: int) -> Path:
    """De-identified synthetic exports, one folder per site (cached by their parameters)."""
    root = WORK / f"corpus-s{sites}-p{patients}-seed{seed}"
    deid = root / "deid"
    if (root / "complete").exists():
        return deid
    shutil.rmtree(root, ignore_errors=True)
    raw = root / "raw"
    sh([RADCOMMONS, "synth", str(raw), "--sites", str(sites), "--patients", str(patients), "--seed", str(seed),
        "--small"])
    sh([RADCOMMONS, "keygen", str(root / "deid.key")])
    for site in sorted(p.name for p in raw.iterdir() if p.is_dir()):
        sh([RADCOMMONS, "deid", str(raw / site), str(deid / site), "--site", site.upper(),
            "--key-file", str(root / "deid.key"), "--state-dir", str(root / "state" / site), "--workers", "1"])
    shutil.rmtree(raw)  # synthetic PHI, not needed any more
    (root / "complete").write_text("")
    return deid


def dicom_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix == ".dcm")


@contextlib.contextmanager
def commons(deid: Path, scratch: Path, backend: str) -> Iterator[tuple[str, dict[str, str], subprocess.Popen[bytes]]]:
    """A fresh index holding the corpus (``radcommons ingest``), served on loopback; yields (url, headers, proc)."""
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    database = None
    if backend == "postgresql":
        import psycopg

        database = f"rc_bench_qido_{uuid.uuid4().hex[:6]}"
        with psycopg.connect("host=127.0.0.1 user=postgres dbname=test", autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{database}"')
        url = f"{PG_SERVER}/{database}"
    else:
        url = f"sqlite:///{scratch / 'index.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RADCOMMONS_")}
    env.update(RADCOMMONS_DATABASE_URL=url, RADCOMMONS_OBJECT_STORE_URL=str(scratch / "objects"))
    proc = None
    try:
        sh([RADCOMMONS, "db", "upgrade"], env)
        for site in sorted(p.name for p in deid.iterdir() if p.is_dir()):
            sh([RADCOMMONS, "ingest", str(deid / site), "--project", PROJECT, "--site", site.upper(),
                "--workers", "1"], env)
        sh([RADCOMMONS, "admin", "user", "add", "bench", "--role", "admin"], env)
        token = sh([RADCOMMONS, "admin", "token", "create", "bench", "--expires-days", "1"], env).strip()
        port = free_port()
        log_file = scratch / "serve.log"
        with open(log_file, "wb") as out:
            proc = subprocess.Popen([RADCOMMONS, "serve", "--host", "127.0.0.1", "--port", str(port), "--state-dir",
                                     str(scratch / "state"), "--log-level", "warning"], env=env, stdout=out,
                                    stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/api/v1/health", 90, proc, log_file)
        yield base + "/dicomweb", {"Authorization": f"Bearer {token}"}, proc
    finally:
        if proc is not None:
            stop_process(proc)
        if database:
            import psycopg

            with psycopg.connect("host=127.0.0.1 user=postgres dbname=test", autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        shutil.rmtree(scratch, ignore_errors=True)


def queries(files: list[Path]) -> list[tuple[str, str]]:
    """Typical QIDO-RS requests (label, path?query), with values taken from the corpus."""
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in files]
    target = max(headers, key=lambda ds: sum(1 for h in headers if h.StudyInstanceUID == ds.StudyInstanceUID))
    dates = sorted({h.StudyDate for h in headers if h.get("StudyDate")})
    low, high = dates[len(dates) // 4], dates[3 * len(dates) // 4]
    study, series = target.StudyInstanceUID, target.SeriesInstanceUID
    return [
        ("studies, all (limit 100)", "/studies?limit=100"),
        ("studies by PatientID", f"/studies?PatientID={target.PatientID}"),
        ("studies by StudyDate range", f"/studies?StudyDate={low}-{high}"),
        ("studies by ModalitiesInStudy=CT", "/studies?ModalitiesInStudy=CT"),
        ("studies by PatientID, includefield StudyDescription,PatientAge",
         f"/studies?PatientID={target.PatientID}&includefield=00081030&includefield=00101010"),
        ("series of a study", f"/studies/{study}/series"),
        ("series of a study, includefield BodyPartExamined", f"/studies/{study}/series?includefield=00180015"),
        ("instances of a series", f"/studies/{study}/series/{series}/instances"),
        ("instances of a series, includefield Rows,Columns",
         f"/studies/{study}/series/{series}/instances?includefield=00280010&includefield=00280011"),
    ]


def ask(client: httpx.Client, path: str) -> tuple[float, int]:
    start = time.perf_counter()
    response = client.get(path)
    elapsed = (time.perf_counter() - start) * 1000
    if response.status_code not in (200, 204):
        raise RuntimeError(f"{client.base_url}{path}: HTTP {response.status_code} {response.text[:300]}")
    return elapsed, len(response.json()) if response.content else 0


def measure(ours: httpx.Client, theirs: httpx.Client, asks: list[tuple[str, str]], reps: int) -> list[dict[str, Any]]:
    rows = []
    for label, path in asks:
        mine, orthanc = [], []
        count_ours, count_orthanc = ask(ours, path)[1], ask(theirs, path)[1]  # warm-up, and the answers
        for _ in range(reps):  # alternate, so both see the same moments of a busy machine
            mine.append(ask(ours, path)[0])
            orthanc.append(ask(theirs, path)[0])
        (p50, p95), (o50, o95) = percentiles(mine), percentiles(orthanc)
        rows.append({"query": label, "path": path, "ours_p50": round(p50, 1), "ours_p95": round(p95, 1),
                     "orthanc_p50": round(o50, 1), "orthanc_p95": round(o95, 1), "results_ours": count_ours,
                     "results_orthanc": count_orthanc})
        print(f"{label}: ours {p50:.1f} / {p95:.1f} ms, Orthanc {o50:.1f} / {o95:.1f} ms "
              f"({count_ours} / {count_orthanc} results)", flush=True)
    return rows


@contextlib.contextmanager
def profiled(pid: int, out: Path) -> Iterator[None]:
    """py-spy recording ``pid`` (raw collapsed stacks) while the block runs."""
    spy = shutil.which("py-spy", path=str(ROOT / ".venv" / "bin")) or shutil.which("py-spy")
    if spy is None:
        raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")
    proc = subprocess.Popen([spy, "record", "--pid", str(pid), "--format", "raw", "--output", str(out), "--rate",
                             "200", "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1)
    try:
        yield
    finally:
        stop_process(proc, 30)


def hottest(collapsed: Path, n: int = 25) -> list[tuple[str, float]]:
    """Functions by inclusive share of samples, from py-spy's collapsed stacks."""
    totals: dict[str, int] = {}
    samples = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        samples += int(count)
        for frame in set(stack.split(";")):
            totals[frame] = totals.get(frame, 0) + int(count)
    return [(f, round(100 * c / samples, 1)) for f, c in sorted(totals.items(), key=lambda fc: -fc[1])[:n]]


def machine() -> str:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = re.search(r"Model name:\s*(.+)", lscpu)
    orthanc = subprocess.run(["/usr/sbin/Orthanc", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    return f"{model.group(1).strip() if model else '?'}, {os.cpu_count()} CPUs; {orthanc.strip()}"


def write_results(report: dict[str, Any]) -> None:
    lines = [SUBSECTION, "",
             f"Date: {report['date']}. Machine: {report['machine']}. Command: `{report['command']}`. "
             f"Data: {report['instances']} de-identified synthetic instances ({report['studies']} studies; "
             f"`radcommons synth --small`, `deid`), in our index ({report['backend']}, `radcommons ingest`, served "
             f"by `radcommons serve`, admin token) and in Orthanc (default SQLite index, REST `POST /instances`), "
             f"both on loopback at once. {report['reps']} repetitions of each request after one warm-up, ours "
             f"and Orthanc's alternating; wall time of the HTTP round trip (httpx, keep-alive). Load average "
             f"during the run: {report['loadavg']}.", "",
             "| QIDO-RS request | ours p50 / p95 (ms) | Orthanc p50 / p95 (ms) | results (ours / Orthanc) |",
             "|---|---|---|---|"]
    for row in report["rows"]:
        lines.append(f"| {row['query']} | {row['ours_p50']} / {row['ours_p95']} | {row['orthanc_p50']} / "
                     f"{row['orthanc_p95']} | {row['results_ours']} / {row['results_orthanc']} |")
    lines += ["", *report.get("notes", []), ""]
    block = "\n".join(lines)
    text = RESULTS.read_text()
    section = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    found = section.search(text)
    if not found:
        raise SystemExit(f"no {SECTION!r} section in {RESULTS}: run bench/query/run.py --results-md first")
    body = found.group(0)
    at = body.find(SUBSECTION)
    body = (body[:at] if at >= 0 else body.rstrip("\n") + "\n\n") + block + "\n"
    RESULTS.write_text(text[:found.start()] + body + text[found.end():])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--sites", type=int, default=3)
    parser.add_argument("--patients", type=int, default=15, help="patients per site")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--reps", type=int, default=50)
    parser.add_argument("--profile", action="store_true", help="py-spy the server while the queries run")
    parser.add_argument("--results-md", action="store_true")
    args = parser.parse_args(argv)
    deid = corpus(args.sites, args.patients, args.seed)
    files = dicom_files(deid)
    asks = queries(files)
    print(f"corpus: {len(files)} instances", flush=True)
    with commons(deid, WORK / f"commons-{args.backend}", args.backend) as (url, headers, server), \
            orthanc_server(WORK / "orthanc", "rc-bench-qido") as (orthanc_url, _):
        with httpx.Client(timeout=60) as upload:
            for path in files:
                response = upload.post(orthanc_url + "/instances", content=path.read_bytes())
                response.raise_for_status()
        with httpx.Client(base_url=url, headers=headers, timeout=60) as ours, \
                httpx.Client(base_url=orthanc_url + "/dicom-web", timeout=60) as theirs:
            load0 = os.getloadavg()
            if args.profile:
                with profiled(server.pid, WORK / "server.pyspy"):
                    rows = measure(ours, theirs, asks, args.reps)
                for frame, share in hottest(WORK / "server.pyspy"):
                    print(f"{share:5.1f}%  {frame}")
            else:
                rows = measure(ours, theirs, asks, args.reps)
            load1 = os.getloadavg()
    studies = len({pydicom.dcmread(p, stop_before_pixels=True).StudyInstanceUID for p in files})
    slower = [r["query"] for r in rows if r["ours_p50"] > r["orthanc_p50"]]
    report = {
        "date": dt.date.today().isoformat(), "machine": machine(), "backend": args.backend, "reps": args.reps,
        "command": ".venv/bin/python bench/query/qido.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "instances": len(files), "studies": studies, "rows": rows,
        "loadavg": f"{load0[0]:.1f} at the start, {load1[0]:.1f} at the end (1-minute, 2 CPUs)",
        "notes": [f"- Goal (QIDO-RS no slower than Orthanc, by p50): "
                  + ("met on every request." if not slower else "not met on: " + "; ".join(slower) + ".")],
    }
    (WORK / f"results-{args.backend}.json").write_text(json.dumps(report, indent=2))
    if args.results_md:
        write_results(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
