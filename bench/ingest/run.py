"""Ingest benchmark: the same de-identified corpus stored into RadCommons and into Orthanc.

Usage (from the repository root)::

    .venv/bin/python bench/ingest/run.py [--quick] [--out bench/work/ingest]

One run builds (or reuses) a de-identified corpus under OUT/corpus (``radcommons synth``, then
``radcommons keygen`` and ``radcommons deid`` per site), then times, each on a fresh store and
database with the page cache warm:

* ``radcommons ingest`` (one command per site) on SQLite and on PostgreSQL, 1 worker and one
  worker per core;
* the submission API: ``radcommons serve`` on a loopback port, the corpus uploaded with
  :class:`radcommons.client.CommonsClient` from a pool of threads, study manifests, commit
  (timed end to end), on SQLite and on PostgreSQL;
* Orthanc (Debian package, default SQLite index, DICOMweb plugin) on a loopback port, through
  REST ``POST /instances`` (1 thread and --threads threads) and STOW-RS
  ``POST /dicom-web/studies`` (batches of --stow-batch instances, 1 thread and --threads).

Then the peak resident memory (VmHWM) of the server and of the client while ONE ~1 GB file
goes through the upload API, and (with --profile) a cProfile of ``radcommons ingest --workers
1``. Writes OUT/results.json and the "## Ingest (bench/ingest)" section of bench/RESULTS.md.
"""

from __future__ import annotations

import sys
from pathlib import Path as _Path

sys.path.insert(0, str(_Path(__file__).resolve().parents[1]))  # bench/, for benchlib

from benchlib import (  # noqa: E402
    DICOMWEB_PLUGIN, ORTHANC, cpu_busy_s, free_port, orthanc_server as _orthanc_server, read_all, replace_section,
    settle_page_cache, stop_process, wait_http,
)

import argparse
import contextlib
import datetime as _dt
import json
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
VENV_BIN = REPO / ".venv" / "bin"
RADCOMMONS = str(VENV_BIN / "radcommons")
PYTHON = str(VENV_BIN / "python")
RESULTS_MD = REPO / "bench" / "RESULTS.md"
SECTION = "## Ingest (bench/ingest)"
#: Patients per site of the standard corpus (its table is SECTION; other sizes get a section each).
DEFAULT_PATIENTS = 12
PROJECT = "Bench-Ingest"
SITES = ("SITE_A", "SITE_B")  # synth folders site_a, site_b
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/rc_bench_ingest"
GOAL_RATIO = 2.0
GOAL_SERVER_RSS_MB = 500.0
#: The client streams chunks from the file: its peak stays flat whatever the file's size.
GOAL_CLIENT_RSS_MB = 150.0


# --------------------------------------------------------------------------- helpers


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for our commands: no inherited RADCOMMONS_* settings, only ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RADCOMMONS_")}
    env.update(extra)
    return env


def sh(argv: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
       timeout: float | None = None, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} failed (rc {proc.returncode}):\n{proc.stdout[-2000:]}\n"
                           f"{proc.stderr[-4000:]}")
    return proc


def first_line(argv: list[str]) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"unavailable ({error})"
    text = (proc.stdout or proc.stderr).strip()
    return text.splitlines()[0] if text else f"unavailable (rc {proc.returncode})"


def dicom_files(root: Path) -> list[Path]:
    out: list[Path] = []
    for folder, dirs, names in os.walk(root):
        dirs.sort()
        out.extend(Path(folder) / n for n in sorted(names) if n.endswith(".dcm"))
    return out


def warm_cache(files: list[Path]) -> float:
    """Read every input once so each line starts from the same warm page cache."""
    return read_all(files)


def _delta(machine0: float | None) -> float | None:
    now = cpu_busy_s()
    return None if machine0 is None or now is None else round(now - machine0, 2)


def wait_quiet(max_wait: float, threshold: float = 0.25) -> float:
    """Wait (at most ``max_wait`` s) until the machine's CPUs are < ``threshold`` busy; the last sample."""
    deadline = time.monotonic() + max_wait
    ncpu = os.cpu_count() or 1
    while True:
        a = cpu_busy_s()
        time.sleep(1.0)
        b = cpu_busy_s()
        busy = 0.0 if a is None or b is None else (b - a) / ncpu
        if busy < threshold or time.monotonic() >= deadline:
            return round(busy, 3)


def settle() -> None:
    """Flush dirty pages of the previous line so they are not written back during the next one."""
    os.sync()
    time.sleep(0.5)


def proc_status(pid: int, key: str) -> int | None:
    """A ``/proc/<pid>/status`` memory value in bytes (VmRSS, VmHWM)."""
    try:
        with open(f"/proc/{pid}/status") as fp:
            for line in fp:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def proc_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a live process has used so far, from /proc/<pid>/stat."""
    try:
        with open(f"/proc/{pid}/stat") as fp:
            fields = fp.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def self_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def children_cpu_s() -> float:
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def machine_info() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), "")
    mem = ""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/meminfo") as fp:
            kb = int(fp.readline().split()[1])
        mem = f"{kb / 1024 / 1024:.1f} GiB"
    return {"uname": " ".join(platform.uname()[:3]), "cpu_model": model, "cpu_count": os.cpu_count(),
            "memory": mem}


def versions(pg_url: str) -> dict[str, str]:
    out = {"python": platform.python_version()}
    code = ("import importlib.metadata as m\n"
            "for p in ('radcommons','pydicom','sqlalchemy','httpx','uvicorn','psycopg','dask'):\n"
            "    print(p, m.version(p))")
    for line in sh([PYTHON, "-c", code]).stdout.splitlines():
        name, _, ver = line.partition(" ")
        out[name] = ver
    out["orthanc"] = first_line([ORTHANC, "--version"])
    dicomweb = os.path.realpath(DICOMWEB_PLUGIN)
    out["orthanc-dicomweb"] = Path(dicomweb).name if os.path.exists(dicomweb) else "missing"
    try:
        import psycopg

        with psycopg.connect(admin_dsn(pg_url), autocommit=True) as conn:
            out["postgresql"] = conn.execute("select version()").fetchone()[0].split(",")[0]
    except Exception as error:  # noqa: BLE001 - informational only
        out["postgresql"] = f"unavailable ({error})"
    rev = first_line(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "src"], capture_output=True,
                           text=True).stdout.strip()
    out["git"] = rev + (" (src/ has uncommitted changes)" if dirty else "")
    return out


# --------------------------------------------------------------------------- corpus


def build_corpus(work: Path, patients: int, seed: int) -> dict[str, Any]:
    """synth -> keygen -> deid per site, cached under ``work/corpus`` by its parameters."""
    params = {"sites": len(SITES), "patients": patients, "seed": seed, "small": False}
    root = work / "corpus" / f"synth-s{len(SITES)}-p{patients}-seed{seed}"
    meta_path = root / "corpus.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("params") == params and meta.get("complete"):
            log(f"corpus: reusing {root}")
            return meta
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    raw, deid, state = root / "raw", root / "deid", root / "deid-state"
    commands: list[str] = []
    t0 = time.perf_counter()
    argv = [RADCOMMONS, "synth", str(raw), "--sites", str(len(SITES)), "--patients", str(patients),
            "--seed", str(seed)]
    log("corpus: " + shlex.join(argv))
    sh(argv, env=clean_env())
    commands.append(shlex.join(argv))
    key = state / "bench.key"
    state.mkdir(parents=True)
    argv = [RADCOMMONS, "keygen", str(key)]
    sh(argv, env=clean_env())
    commands.append(shlex.join(argv))
    for site in SITES:
        argv = [RADCOMMONS, "deid", str(raw / site.lower()), str(deid / site.lower()), "--site", site,
                "--key-file", str(key), "--state-dir", str(state / site.lower())]
        log("corpus: " + shlex.join(argv))
        sh(argv, env=clean_env())  # the clinical CSV/TSV files are "rejected" (not DICOM): expected
        commands.append(shlex.join(argv))
    synth_manifest = json.loads((raw / "synth_manifest.json").read_text())
    shutil.rmtree(raw)  # the raw export holds (synthetic) PHI and is not needed any more
    files = dicom_files(deid)
    per_site = {}
    for site in SITES:
        site_files = dicom_files(deid / site.lower())
        per_site[site] = {"instances": len(site_files), "bytes": sum(p.stat().st_size for p in site_files)}
    meta = {
        "params": params, "complete": True, "commands": commands, "seconds": round(time.perf_counter() - t0, 1),
        "instances": len(files), "bytes": sum(p.stat().st_size for p in files),
        "studies": len({p.parent.parent.name for p in files}), "series": len({p.parent.name for p in files}),
        "synth_totals": synth_manifest.get("totals"),
        "synth_modalities": {s["folder"]: s["modalities"] for s in synth_manifest.get("sites", [])},
        "per_site": per_site, "deid_tree": str(deid),
    }
    meta_path.write_text(json.dumps(meta, indent=1))
    return meta


# --------------------------------------------------------------------------- PostgreSQL


def admin_dsn(pg_url: str) -> str:
    """A libpq DSN for the server's ``postgres`` database (to create and drop the bench database)."""
    url = re.sub(r"^postgresql\+\w+://", "postgresql://", pg_url)
    return url.rsplit("/", 1)[0] + "/postgres"


def pg_dbname(pg_url: str) -> str:
    return pg_url.rsplit("/", 1)[1].split("?")[0]


def pg_recreate(pg_url: str, drop_only: bool = False) -> None:
    import psycopg
    from psycopg import sql

    name = pg_dbname(pg_url)
    with psycopg.connect(admin_dsn(pg_url), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        if not drop_only:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


@contextlib.contextmanager
def fresh_index(kind: str, scratch: Path, pg_url: str) -> Iterator[dict[str, str]]:
    """A fresh, migrated index and an empty object store; yields the environment for our commands."""
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    if kind == "sqlite":
        url = f"sqlite:///{scratch / 'index.db'}"
    else:
        pg_recreate(pg_url)
        url = pg_url
    env = clean_env(RADCOMMONS_DATABASE_URL=url, RADCOMMONS_OBJECT_STORE_URL=str(scratch / "objects"))
    sh([RADCOMMONS, "db", "upgrade"], env=env, cwd=scratch)
    try:
        yield env
    finally:
        if kind == "postgresql":
            with contextlib.suppress(Exception):
                pg_recreate(pg_url, drop_only=True)
        shutil.rmtree(scratch, ignore_errors=True)


def index_counts(env: dict[str, str], project: str) -> dict[str, int]:
    """Records of ``project`` in the index (to check that a line stored everything)."""
    code = (
        "import json, os, sqlalchemy as sa\n"
        "e = sa.create_engine(os.environ['RADCOMMONS_DATABASE_URL'])\n"
        "out = {}\n"
        "with e.connect() as c:\n"
        "    for t in ('instance', 'series', 'imaging_study', 'case'):\n"
        "        out[t] = c.execute(sa.text(f'select count(*) from \"{t}\" where project_id = :p'), {'p': %r}).scalar()\n"
        "    out['quarantine'] = c.execute(sa.text('select count(*) from quarantine')).scalar()\n"
        "print(json.dumps(out))\n" % project
    )
    proc = sh([PYTHON, "-c", code], env=env, check=False)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}  # type: ignore
    return json.loads(proc.stdout)


# --------------------------------------------------------------------------- lines: ours


def run_ingest(deid: Path, scratch: Path, kind: str, pg_url: str, workers: int) -> dict[str, Any]:
    """``radcommons ingest`` of each site folder, one command per site, timed together."""
    with fresh_index(kind, scratch, pg_url) as env:
        commands, per_site, outcomes = [], {}, {}
        settle()
        cpu0, machine0 = children_cpu_s(), cpu_busy_s()
        t0 = time.perf_counter()
        for site in SITES:
            report = scratch / f"report-{site}.json"
            argv = [RADCOMMONS, "ingest", str(deid / site.lower()), "--project", PROJECT, "--site", site,
                    "--workers", str(workers), "--report", str(report)]
            t1 = time.perf_counter()
            proc = sh(argv, env=env, cwd=scratch, check=False)
            per_site[site] = round(time.perf_counter() - t1, 3)
            commands.append(shlex.join(argv))
            if proc.returncode not in (0, 1) or not report.exists():
                raise RuntimeError(f"{shlex.join(argv)} failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
            for f in json.loads(report.read_text())["files"]:
                outcomes[f["status"]] = outcomes.get(f["status"], 0) + 1
        seconds = time.perf_counter() - t0
        our_cpu = children_cpu_s() - cpu0
        machine = _delta(machine0)
        counts = index_counts(env, PROJECT)
    return {"seconds": seconds, "our_cpu_seconds": round(our_cpu, 2), "machine_cpu_seconds": machine,
            "per_site_seconds": per_site,
            "commands": commands, "outcomes": outcomes,
            "stored": counts.get("instance"), "index_counts": counts}


def run_copy(deid: Path, scratch: Path) -> dict[str, Any]:
    """``cp -r`` of the corpus into a fresh folder on the same disk, then ``sync -f`` (syncfs): the
    durable copy that any store writing these bytes safely must at least pay."""
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    target = scratch / "copy"
    argv = ["sh", "-c", f"cp -r {shlex.quote(str(deid))} {shlex.quote(str(target))} && sync -f {shlex.quote(str(target))}"]
    try:
        settle()
        cpu0, machine0 = children_cpu_s(), cpu_busy_s()
        t0 = time.perf_counter()
        sh(argv)
        seconds = time.perf_counter() - t0
        our_cpu, machine = children_cpu_s() - cpu0, _delta(machine0)
        stored = len(dicom_files(target))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {"seconds": seconds, "our_cpu_seconds": round(our_cpu, 2), "machine_cpu_seconds": machine,
            "commands": [shlex.join(argv)], "stored": stored}


@contextlib.contextmanager
def commons_server(env: dict[str, str], scratch: Path) -> Iterator[tuple[str, str, subprocess.Popen]]:
    """``radcommons serve`` on a free loopback port with an admin user and the project it stores
    into (an admin may store into a project that exists); yields (url, token, process)."""
    sh([RADCOMMONS, "admin", "user", "add", "bench", "--role", "admin"], env=env, cwd=scratch)
    sh([RADCOMMONS, "admin", "project", "add", PROJECT, "--availability", "open"], env=env, cwd=scratch)
    token = sh([RADCOMMONS, "admin", "token", "create", "bench", "--expires-days", "1", "--label", "bench/ingest"],
               env=env, cwd=scratch).stdout.strip()
    token_file = scratch / "bench.token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    port = free_port()
    log_file = scratch / "serve.log"
    argv = [RADCOMMONS, "serve", "--host", "127.0.0.1", "--port", str(port), "--state-dir",
            str(scratch / "server-state"), "--log-level", "warning"]
    with open(log_file, "wb") as out:
        proc = subprocess.Popen(argv, env=env, cwd=scratch, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/api/v1/health", 90, proc, log_file)
        try:
            yield url, token, proc
        except Exception as error:
            text = log_file.read_text(errors="replace") if log_file.exists() else ""
            raise RuntimeError(f"{error}\n--- serve.log, last lines:\n{text[-2500:]}") from error
    finally:
        stop_process(proc)


def run_api(deid: Path, scratch: Path, kind: str, pg_url: str, threads: int,
            spy: tuple[str, Path] | None = None) -> dict[str, Any]:
    """Upload + manifests + commit through the submission API, timed end to end: the sending steps
    of ``radcommons contribute`` (``contribute_upload.upload_packages``: small files in batches, the
    others chunked), without its de-identification and packaging."""
    from radcommons.client import CommonsClient, file_sha256
    from radcommons.pipelines.contribute_upload import PackagedFile, StudyPackage, UploadJournal, upload_packages

    with fresh_index(kind, scratch, pg_url) as env, commons_server(env, scratch) as (url, token, proc):
        client = CommonsClient(url, token, timeout=600)
        site_files = {site: dicom_files(deid / site.lower()) for site in SITES}
        spy_proc = None
        if spy is not None:
            spy_proc = subprocess.Popen([spy[0], "record", "--idle", "-r", "50", "-f", "raw", "-o", str(spy[1]),
                                         "--pid", str(proc.pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(2)
        settle()
        cpu0, server_cpu0, machine0 = self_cpu_s(), proc_cpu_s(proc.pid), cpu_busy_s()
        t0 = time.perf_counter()
        subs = {site: client.create_submission(PROJECT, f"{site}_BENCH", site_id=site) for site in SITES}
        jobs = [(site, path) for site in SITES for path in site_files[site]]

        def packaged(job: tuple[str, Path]) -> tuple[str, PackagedFile]:
            site, path = job
            rel = path.relative_to(deid / site.lower()).as_posix()
            return site, PackagedFile(path, file_sha256(path), path.stat().st_size, rel)

        # As `radcommons contribute` does: hash every file, then send each site's studies (the
        # server is asked once per site what it holds of them; the journal is a fresh one).
        with ThreadPoolExecutor(threads) as pool:
            files = list(pool.map(packaged, jobs))
        packages: dict[str, dict[str, list[PackagedFile]]] = {site: {} for site in SITES}
        for site, item in files:
            packages[site].setdefault(item.path_in_package.split("/")[0], []).append(item)
        studies = sum(len(by_study) for by_study in packages.values())
        with UploadJournal(scratch / f"journal-{time.monotonic_ns()}") as journal:
            for site in SITES:
                upload_packages(client, journal, subs[site].id,
                                [StudyPackage(uid, tuple(items)) for uid, items in packages[site].items()],
                                workers=threads)
        t_upload = time.perf_counter()
        receipts = {site: client.commit(subs[site].id) for site in SITES}
        t_end = time.perf_counter()
        client_cpu, server_cpu = self_cpu_s() - cpu0, proc_cpu_s(proc.pid) - server_cpu0
        machine = _delta(machine0)
        if spy_proc is not None:
            spy_proc.send_signal(signal.SIGINT)
            spy_proc.wait(60)
        server_hwm = proc_status(proc.pid, "VmHWM")
        client.close()
        counts = index_counts(env, PROJECT)
    indexed = {site: r.counts.get("instances", {}) for site, r in receipts.items()}
    return {
        "seconds": t_end - t0, "upload_seconds": t_upload - t0, "commit_seconds": t_end - t_upload,
        "threads": threads,
        "client_cpu_seconds": round(client_cpu, 2), "server_cpu_seconds": round(server_cpu, 2),
        "our_cpu_seconds": round(client_cpu + server_cpu, 2), "machine_cpu_seconds": machine,
        "receipt_instances": indexed, "stored": counts.get("instance"), "index_counts": counts,
        "studies_declared": studies, "server_peak_rss_mb": round((server_hwm or 0) / 1e6, 1),
        "commands": [f"radcommons serve --host 127.0.0.1 --port <free> --state-dir <tmp> --log-level warning "
                     f"(RADCOMMONS_DATABASE_URL={'sqlite:///<tmp>/index.db' if kind == 'sqlite' else pg_url})",
                     f"CommonsClient: create_submission per site; {threads} threads: file_sha256; per site in turn: "
                     f"contribute_upload.upload_packages(workers={threads}) (upload_states, then upload_batch for "
                     f"small files, upload_file for the others, then put_study_manifest per study); commit per site "
                     f"(in turn)"],
    }


# --------------------------------------------------------------------------- lines: Orthanc


def orthanc_server(scratch: Path) -> contextlib.AbstractContextManager[tuple[str, subprocess.Popen]]:
    """Orthanc for the ingest lines: its defaults written out (no compression, fsync of every
    stored file, as our object store does)."""
    return _orthanc_server(scratch, "rc-bench-ingest", StorageCompression=False, SyncStorageArea=True)


def _orthanc_count(url: str) -> int:
    import httpx

    return int(httpx.get(url + "/statistics", timeout=60).json()["CountInstances"])


def run_orthanc_rest(files: list[Path], scratch: Path, threads: int) -> dict[str, Any]:
    import httpx

    with orthanc_server(scratch) as (url, proc):
        local = threading.local()
        clients: list[httpx.Client] = []
        lock = threading.Lock()

        def post(path: Path) -> None:
            c = getattr(local, "client", None)
            if c is None:
                c = local.client = httpx.Client(base_url=url, timeout=600)
                with lock:
                    clients.append(c)
            with open(path, "rb") as fp:
                body = fp.read()
            r = c.post("/instances", content=body, headers={"Content-Type": "application/dicom"})
            r.raise_for_status()
            status = r.json().get("Status")
            if status not in ("Success", "AlreadyStored"):
                raise RuntimeError(f"Orthanc answered {status} for {path}")

        settle()
        cpu0, server_cpu0, machine0 = self_cpu_s(), proc_cpu_s(proc.pid), cpu_busy_s()
        t0 = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(post, files))
        seconds = time.perf_counter() - t0
        client_cpu, server_cpu = self_cpu_s() - cpu0, proc_cpu_s(proc.pid) - server_cpu0
        machine = _delta(machine0)
        for c in clients:
            c.close()
        stored = _orthanc_count(url)
    return {"seconds": seconds, "threads": threads, "stored": stored, "server_cpu_seconds": round(server_cpu, 2),
            "client_cpu_seconds": round(client_cpu, 2), "our_cpu_seconds": round(server_cpu + client_cpu, 2),
            "machine_cpu_seconds": machine,
            "commands": [f"httpx POST {{orthanc}}/instances (raw file body, Content-Type: application/dicom), "
                         f"{threads} thread(s), one connection each"]}


def stow_batches(url: str, path: str, batches: list[tuple[dict[str, str], list[Path]]], threads: int,
                 headers: dict[str, str] | None = None) -> int:
    """POST each batch as one STOW-RS request (multipart/related, application/dicom parts); instances stored."""
    import httpx

    local = threading.local()
    clients: list[httpx.Client] = []
    lock = threading.Lock()

    def stow(item: tuple[dict[str, str], list[Path]]) -> int:
        params, group = item
        c = getattr(local, "client", None)
        if c is None:
            c = local.client = httpx.Client(base_url=url, timeout=600, headers=headers or {})
            with lock:
                clients.append(c)
        boundary = uuid.uuid4().hex
        parts = []
        for file in group:
            parts.append(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode())
            parts.append(file.read_bytes())
            parts.append(b"\r\n")
        parts.append(f"--{boundary}--\r\n".encode())
        r = c.post(path, params=params, content=b"".join(parts), headers={
            "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
            "Accept": "application/dicom+json"})
        if r.status_code >= 300:
            raise RuntimeError(f"STOW-RS answered {r.status_code}: {r.text[:500]}")
        answer = r.json()
        failed = answer.get("00081198", {}).get("Value", [])
        if failed:
            raise RuntimeError(f"STOW-RS: {len(failed)} instances failed: {json.dumps(failed[0])[:300]}")
        return len(answer.get("00081199", {}).get("Value", []))

    try:
        with ThreadPoolExecutor(threads) as pool:
            return sum(pool.map(stow, batches))
    finally:
        for c in clients:
            c.close()


def run_orthanc_stow(files: list[Path], scratch: Path, threads: int, batch: int) -> dict[str, Any]:
    with orthanc_server(scratch) as (url, proc):
        batches = [({}, files[i:i + batch]) for i in range(0, len(files), batch)]
        settle()
        cpu0, server_cpu0, machine0 = self_cpu_s(), proc_cpu_s(proc.pid), cpu_busy_s()
        t0 = time.perf_counter()
        referenced = stow_batches(url, "/dicom-web/studies", batches, threads)
        seconds = time.perf_counter() - t0
        client_cpu, server_cpu = self_cpu_s() - cpu0, proc_cpu_s(proc.pid) - server_cpu0
        machine = _delta(machine0)
        stored = _orthanc_count(url)
    return {"seconds": seconds, "threads": threads, "batch": batch, "stored": stored, "referenced": referenced,
            "server_cpu_seconds": round(server_cpu, 2), "client_cpu_seconds": round(client_cpu, 2),
            "our_cpu_seconds": round(server_cpu + client_cpu, 2),
            "machine_cpu_seconds": machine,
            "commands": [f"httpx POST {{orthanc}}/dicom-web/studies (multipart/related; type=application/dicom), "
                         f"batches of {batch} instances, {threads} thread(s)"]}


def run_our_stow(deid: Path, scratch: Path, kind: str, pg_url: str, threads: int, batch: int) -> dict[str, Any]:
    """Our STOW-RS (``POST /dicomweb/studies?project=P&site=S``), batches of one site's files in tree order."""
    with fresh_index(kind, scratch, pg_url) as env, commons_server(env, scratch) as (url, token, proc):
        batches: list[tuple[dict[str, str], list[Path]]] = []
        for site in SITES:
            site_files = dicom_files(deid / site.lower())
            params = {"project": PROJECT, "site": site, "dataset": f"STOW_{site}_BENCH"}
            batches += [(params, site_files[i:i + batch]) for i in range(0, len(site_files), batch)]
        settle()
        cpu0, server_cpu0, machine0 = self_cpu_s(), proc_cpu_s(proc.pid), cpu_busy_s()
        t0 = time.perf_counter()
        referenced = stow_batches(url, "/dicomweb/studies", batches, threads,
                                  headers={"Authorization": f"Bearer {token}"})
        seconds = time.perf_counter() - t0
        client_cpu, server_cpu = self_cpu_s() - cpu0, proc_cpu_s(proc.pid) - server_cpu0
        machine = _delta(machine0)
        server_hwm = proc_status(proc.pid, "VmHWM")
        counts = index_counts(env, PROJECT)
    return {"seconds": seconds, "threads": threads, "batch": batch, "stored": counts.get("instance"),
            "referenced": referenced, "index_counts": counts,
            "server_cpu_seconds": round(server_cpu, 2), "client_cpu_seconds": round(client_cpu, 2),
            "our_cpu_seconds": round(server_cpu + client_cpu, 2), "machine_cpu_seconds": machine,
            "server_peak_rss_mb": round((server_hwm or 0) / 1e6, 1),
            "commands": [f"httpx POST {{commons}}/dicomweb/studies?project={PROJECT}&site=SITE (multipart/related; "
                         f"type=application/dicom, bearer token), batches of {batch} instances of one site, "
                         f"{threads} thread(s)"]}


# --------------------------------------------------------------------------- streaming memory


def big_file(work: Path, mib: int) -> Path:
    path = work / f"upload-{mib}mib.bin"
    if path.exists() and path.stat().st_size == mib << 20:
        return path
    log(f"memory: writing {path} ({mib} MiB of random bytes)")
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as fp:
        for _ in range(mib):
            fp.write(os.urandom(1 << 20))
    tmp.replace(path)
    return path


def client_upload_main(args: argparse.Namespace) -> int:
    """Hidden subcommand: upload one file with CommonsClient; print timings and this process's VmHWM."""
    from radcommons.client import CommonsClient, file_sha256

    before = proc_status(os.getpid(), "VmHWM")
    token = Path(args.token_file).read_text().strip()
    with CommonsClient(args.url, token, timeout=600) as client:
        sub = client.create_submission(PROJECT, "MEMORY_BENCH", site_id="SITE_MEM")
        t0 = time.perf_counter()
        digest = file_sha256(args.file)
        t1 = time.perf_counter()
        result = client.upload_file(sub.id, args.file, sha256=digest)
        t2 = time.perf_counter()
    print(json.dumps({"hwm_before_bytes": before, "hwm_bytes": proc_status(os.getpid(), "VmHWM"),
                      "hash_seconds": t1 - t0, "upload_seconds": t2 - t1, "sent": result.sent, "size": result.size,
                      "chunk_size": client.chunk_size}))
    return 0


def run_memory(work: Path, scratch: Path, mib: int) -> dict[str, Any]:
    path = big_file(work, mib)
    warm_cache([path])
    with fresh_index("sqlite", scratch, "") as env, commons_server(env, scratch) as (url, token, proc):
        import httpx

        httpx.get(url + "/api/v1/health", timeout=30)
        baseline = proc_status(proc.pid, "VmHWM")
        samples: list[int] = []
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                rss = proc_status(proc.pid, "VmRSS")
                if rss:
                    samples.append(rss)
                time.sleep(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        argv = [PYTHON, str(Path(__file__).resolve()), "_client-upload", "--url", url, "--token-file",
                str(scratch / "bench.token"), "--file", str(path)]
        settle()
        t0 = time.perf_counter()
        proc_client = sh(argv, env=clean_env(), timeout=1800)
        seconds = time.perf_counter() - t0
        done.set()
        sampler.join()
        peak = proc_status(proc.pid, "VmHWM")
        client_info = json.loads(proc_client.stdout.strip().splitlines()[-1])
    size = path.stat().st_size
    return {
        "file_bytes": size, "file": str(path), "seconds": round(seconds, 2),
        "upload_mb_per_s": round(size / 1e6 / client_info["upload_seconds"], 1),
        "server_baseline_hwm_mb": round((baseline or 0) / 1e6, 1),
        "server_peak_hwm_mb": round((peak or 0) / 1e6, 1),
        "server_max_sampled_rss_mb": round(max(samples, default=0) / 1e6, 1), "samples": len(samples),
        "client_baseline_hwm_mb": round((client_info["hwm_before_bytes"] or 0) / 1e6, 1),
        "client_peak_hwm_mb": round((client_info["hwm_bytes"] or 0) / 1e6, 1),
        "client": client_info,
        "goal_server_mb": GOAL_SERVER_RSS_MB,
        "goal_met": (peak or 0) / 1e6 < GOAL_SERVER_RSS_MB,
        "goal_client_mb": GOAL_CLIENT_RSS_MB,
        "client_goal_met": (client_info["hwm_bytes"] or 0) / 1e6 < GOAL_CLIENT_RSS_MB,
    }


# --------------------------------------------------------------------------- profile


INGEST_HOTSPOTS = (
    ("start-up: imports (radcommons.cli and what it pulls in)", "radcommons/cli/__init__.py", "<module>"),
    ("per file: read_and_stage (worker job: header, gate, stage)", "radcommons/pipelines/examine.py",
     "read_and_stage"),
    ("  store: ObjectStore.stage_file (copy + sha256 into tmp/, no sync)", "radcommons/store/objects.py",
     "stage_file"),
    ("    copy_hashing_direct (read, sha256, O_DIRECT write: no page cache)", "radcommons/durable.py",
     "copy_hashing_direct"),
    ("  examine (header read once, gate, index fields)", "radcommons/pipelines/examine.py", "examine"),
    ("    read_header (one read of the first bytes; dcmread for odd files)", "radcommons/pipelines/examine.py", "read_header"),
    ("    check_deidentified (the gate)", "radcommons/deid/check.py", "check_deidentified"),
    ("    instance_fields", "radcommons/dicom/index_fields.py", "instance_fields"),
    ("per batch: ingest_tree.flush (publish + index, batches of 500; on the flusher thread, which cProfile does not see, but for the last batch)", "radcommons/pipelines/ingest.py", "flush"),
    ("  ObjectStore.publish (one syncfs, renames, one syncfs)", "radcommons/store/objects.py", "publish"),
    ("  IndexWriter.write_instances (one transaction per batch)", "radcommons/pipelines/indexing.py",
     "write_instances"),
    ("    harmonize.study_codes.builtin_matcher (matcher built on first use per process)",
     "radcommons/harmonize/study_codes.py", "builtin_matcher"),
    ("end: days_to_study_from_dates + finish", "radcommons/pipelines/indexing.py", "finish"),
)

SERVER_HOTSPOTS = (
    ("upload: _receive on the event loop (PATCH/PUT body into the spool)", "_receive (radcommons/server/routes/uploads.py"),
    ("upload: batch on the event loop (files/batch body into the spools)", "batch (radcommons/server/routes/uploads.py"),
    ("upload: _SpoolWriter._write_run (a body's bytes written and hashed on a worker thread)",
     "_SpoolWriter._write_run ("),
    ("upload: UploadSpool.finish_many (digest check, then move_in_many)", "UploadSpool.finish_many ("),
    ("  ObjectStore.publish (sync the spools, rename them into the store, sync the folders)", "ObjectStore.publish ("),
    ("    sync_paths (fsync each, or one syncfs for 8 or more)", "sync_paths ("),
    ("upload: note_uploads (one audit transaction per request)", "note_uploads ("),
    ("per request: open_submission (submission row lookup)", "open_submission ("),
    ("per request: current_principal / authenticate (token lookup)", "current_principal ("),
    ("commit: pipelines.submission.commit", "commit (radcommons/pipelines/submission.py"),
    ("  _examine_stored (re-read each header from the store + gate)", "_examine_stored ("),
    ("  _commit_transaction (one transaction: index writes, versions, receipt)",
     "_commit_transaction (radcommons/pipelines/submission.py"),
    ("    _commit_study", "_commit_study ("),
    ("    harmonize.study_codes.builtin_matcher (built on first use per process)", "builtin_matcher ("),
    ("event loop thread, Python frames (uvicorn's protocol callbacks, starlette)", "Runner.run (asyncio/runners.py"),
)

#: Stacks that are a thread waiting: a pool thread waiting for work, the asyncio loop in epoll,
#: or uvloop's loop with no Python frame above Runner.run (idle in epoll, or in its own C code:
#: py-spy cannot tell which, so neither counts as active).
IDLE_STACKS = ("anyio/_backends/_asyncio.py:1113", "EpollSelector.select")
#: Innermost frames of a waiting thread: the event loop in C, a thread pool worker waiting for work.
IDLE_STACK_ENDS = ("Runner.run (asyncio/runners.py:118)",)
IDLE_INNERMOST = ("_worker (concurrent/futures/thread.py",)


def server_hotspots(raw_file: Path) -> tuple[int, list[dict[str, Any]]]:
    """(active samples, the named hotspots' shares of them) from py-spy's collapsed stacks."""
    active = 0
    counts = {label: 0 for label, _ in SERVER_HOTSPOTS}
    for line in raw_file.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if (not count.isdigit() or any(d in stack for d in IDLE_STACKS) or stack.endswith(IDLE_STACK_ENDS)
                or stack.rpartition(";")[2].startswith(IDLE_INNERMOST)):
            continue
        active += int(count)
        for label, needle in SERVER_HOTSPOTS:
            if needle in stack:
                counts[label] += int(count)
    return active, [{"what": label, "where": needle.split(" (")[0] if " (" in needle else needle,
                     "pct": round(100 * counts[label] / active, 1) if active else None}
                    for label, needle in SERVER_HOTSPOTS]


def run_profile(deid: Path, scratch: Path, work: Path) -> dict[str, Any]:
    """cProfile (wall clock) of ``radcommons ingest --workers 1`` of site A on SQLite: named hotspots."""
    import pstats

    site = SITES[0]
    prof = work / "profile" / "ingest-w1-sqlite.prof"
    prof.parent.mkdir(parents=True, exist_ok=True)
    with fresh_index("sqlite", scratch, "") as env:
        argv = [PYTHON, "-m", "cProfile", "-o", str(prof), "-m", "radcommons", "ingest", str(deid / site.lower()),
                "--project", PROJECT, "--site", site, "--workers", "1"]
        settle()
        t0 = time.perf_counter()
        sh(argv, env=env, cwd=scratch, check=False)
        seconds = time.perf_counter() - t0
    stats = pstats.Stats(str(prof))
    raw = stats.stats  # type: ignore[attr-defined]
    total = max((ct for (_f, _l, name), (_cc, _n, _tt, ct, _c) in raw.items() if name == "<module>"), default=0.0)
    total = total or stats.total_tt  # type: ignore[attr-defined]
    hotspots = []
    for label, suffix, func in INGEST_HOTSPOTS:
        cum = 0.0
        calls = 0
        where = ""
        for (filename, line, name), (_cc, ncalls, _tt, ct, _callers) in raw.items():
            if name == func and (filename == suffix or _short(filename) == suffix):
                if func == "<module>" or ct > cum:
                    cum, calls, where = max(cum, ct), ncalls, f"{_short(filename)}:{line}"
        hotspots.append({"what": label, "where": where or suffix, "calls": calls, "seconds": round(cum, 2),
                         "pct": round(100 * cum / total, 1) if total else None})
    rows = []
    for (filename, line, name), (_cc, ncalls, tt, ct, _callers) in raw.items():
        rows.append({"function": name, "file": _short(filename), "line": line, "calls": ncalls,
                     "own_pct": round(100 * tt / total, 1), "cum_pct": round(100 * ct / total, 1)})
    by_own = sorted(rows, key=lambda r: -r["own_pct"])[:25]
    return {"command": shlex.join(argv).replace(str(REPO) + "/", ""), "seconds": round(seconds, 2),
            "profile_file": str(prof), "total_profiled_s": round(total, 2), "hotspots": hotspots, "top_own": by_own,
            "files": len(dicom_files(deid / site.lower()))}


def py_spy() -> str | None:
    found = VENV_BIN / "py-spy"
    return str(found) if found.exists() else shutil.which("py-spy")


def run_server_profile(deid: Path, scratch: Path, work: Path, threads: int) -> dict[str, Any]:
    """py-spy (wall clock, --idle) of the server during one api-sqlite line: named hotspots."""
    spy = py_spy()
    if spy is None:
        return {"error": "py-spy is not installed (.venv/bin/pip install py-spy)"}
    raw_file = work / "profile" / "server-api-sqlite.txt"
    raw_file.parent.mkdir(parents=True, exist_ok=True)
    result = run_api(deid, scratch, "sqlite", "", threads, spy=(spy, raw_file))
    active, hotspots = server_hotspots(raw_file)
    return {"raw_file": str(raw_file), "active_samples": active, "rate_hz": 50, "hotspots": hotspots,
            "seconds": round(result["seconds"], 2), "upload_seconds": round(result["upload_seconds"], 2),
            "commit_seconds": round(result["commit_seconds"], 2)}


def _short(filename: str) -> str:
    for marker in ("/src/radcommons/", "/site-packages/"):
        if marker in filename:
            return filename.split(marker, 1)[1] if marker == "/site-packages/" else "radcommons/" + filename.split(
                marker, 1)[1]
    return filename


# --------------------------------------------------------------------------- report


def fmt(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def section_heading(res: dict[str, Any]) -> str:
    """The RESULTS.md section of a run: the standard corpus's is SECTION, another size has its own
    (so a run on a larger corpus keeps its table beside the standard one)."""
    patients = res["corpus"]["params"]["patients"]
    if patients == DEFAULT_PATIENTS:
        return SECTION
    return f"## Ingest, {patients} patients per site (bench/ingest --patients {patients})"


def render_markdown(res: dict[str, Any]) -> str:
    m, c = res["machine"], res["corpus"]
    lines = [
        section_heading(res), "",
        f"Measured {res['date']} on {m['cpu_model']} ({m['cpu_count']} cores), {m['memory']} RAM "
        f"({m['uname']}); commit {res['versions'].get('git')}.",
        f"Command: `{res['command']}` ({'quick run' if res['quick'] else 'full run'}, "
        f"best of each line's runs, total {fmt(res['total_seconds'] / 60)} min).",
        "",
        f"Corpus: `radcommons synth --sites {len(SITES)} --patients {c['params']['patients']} --seed "
        f"{c['params']['seed']}` (full size), `radcommons keygen`, `radcommons deid` per site: "
        f"**{c['instances']:,} instances, {c['bytes'] / 1e6:,.0f} MB** ({c['studies']} studies, {c['series']} series; "
        f"modalities {c['synth_modalities']}; {c['bytes'] / c['instances'] / 1e6:.2f} MB per instance on average).",
        f"Each line stores the whole corpus into a fresh store and database (before each run: dirty pages "
        f"synced, the clean page cache dropped where permitted and the corpus read again, so every line "
        f"starts from the same memory state: `benchlib.settle_page_cache`). MB = 10^6 bytes of DICOM files. Versions: Orthanc {res['versions'].get('orthanc')} "
        f"({res['versions'].get('orthanc-dicomweb')}), {res['versions'].get('postgresql')}, Python "
        f"{res['versions'].get('python')}, pydicom {res['versions'].get('pydicom')}, SQLAlchemy "
        f"{res['versions'].get('sqlalchemy')}.",
        "",
        "| line | store | parallelism | instances/s | MB/s | x Orthanc REST | stored | seconds (runs) | CPU s (ours) | others' load | goal (>= 2x) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for line in res["lines"]:
        if "error" in line:
            lines.append(f"| {line['label']} | {line['store']} | {line['parallel']} | failed: {line['error'][:120]} "
                         f"| | | | | | | |")
            continue
        ratio = line.get("ratio_to_orthanc_rest")
        goal = "" if line.get("goal_met") is None else ("**met**" if line["goal_met"] else "not met")
        lines.append(
            f"| {line['label']} | {line['store']} | {line['parallel']} | {fmt(line['instances_per_s'])} | "
            f"{fmt(line['mb_per_s'])} | {fmt(ratio, 2)} | {line.get('stored')} / {c['instances']} | "
            f"{' / '.join(f'{x:.1f}' for x in line.get('all_seconds', [line['seconds']]))} | "
            f"{fmt(line.get('our_cpu_seconds'))} | {_pct(line.get('others_busy_during'))} | {goal} |")
    ref = res.get("orthanc_rest_reference")
    lines += ["", f"Best of the runs per line (within one invocation the runs go in rounds: every line once per "
              f"round; `--add-to-previous` adds an invocation's runs to the earlier ones). "
              f"CPU s (ours): CPU seconds of our processes in the timed section (ingest: the commands and their "
              f"workers; API and Orthanc: server process + this benchmark's client threads; PostgreSQL's own "
              f"backends are not counted). Others' load: share of the {m['cpu_count']} CPUs used by every other "
              f"process on the machine meanwhile (a shared machine: other people's test suites; PostgreSQL "
              f"backends land here too).",
              "", f"Ratios are to the best Orthanc REST line ({ref}). "
              "Our submission-API lines time everything from `create_submission` to the last commit "
              "receipt, sending as `radcommons contribute` does (`upload_packages`: hashing, small files in "
              "batches of up to one chunk, 16 MiB, the others in chunks of 16 MiB, each study's manifest); split per phase "
              "(hash + upload + manifests / commit, seconds):"]
    for line in res["lines"]:
        if line.get("kind") == "api" and "error" not in line:
            lines.append(f"- {line['label']} ({line['store']}): hash + upload + manifests {fmt(line['upload_seconds'])} s "
                         f"({fmt(c['instances'] / line['upload_seconds'])} instances/s), commit "
                         f"{fmt(line['commit_seconds'])} s "
                         f"({fmt(c['instances'] / line['commit_seconds'])} instances/s); client CPU "
                         f"{fmt(line.get('client_cpu_seconds'))} s; server peak RSS {fmt(line.get('server_peak_rss_mb'))} MB.")
    for line in res["lines"]:
        if line.get("kind") == "ingest" and "error" not in line:
            per = ", ".join(f"{k} {v:.1f} s" for k, v in line["per_site_seconds"].items())
            lines.append(f"- {line['label']} ({line['store']}, {line['parallel']}): per command {per}.")
    mem = res.get("memory")
    if mem and "error" not in mem:
        lines += ["", f"**Streaming memory** (one {mem['file_bytes'] / 1e9:.2f} GB file of random bytes through "
                  f"`CommonsClient.upload_file`, {mem['client']['chunk_size'] >> 20} MiB PATCH chunks, server on "
                  f"SQLite): server peak RSS (VmHWM) **{fmt(mem['server_peak_hwm_mb'])} MB** (at start "
                  f"{fmt(mem['server_baseline_hwm_mb'])} MB; highest sampled VmRSS {fmt(mem['server_max_sampled_rss_mb'])}"
                  f" MB); client peak RSS **{fmt(mem['client_peak_hwm_mb'])} MB** (after imports "
                  f"{fmt(mem['client_baseline_hwm_mb'])} MB); upload {fmt(mem['upload_mb_per_s'])} MB/s "
                  f"(hashing {mem['client']['hash_seconds']:.1f} s before). Goal server < "
                  f"{GOAL_SERVER_RSS_MB:.0f} MB: **{'met' if mem['goal_met'] else 'not met'}**"
                  + (f"; client < {GOAL_CLIENT_RSS_MB:.0f} MB: **{'met' if mem['client_goal_met'] else 'not met'}**"
                     if "client_goal_met" in mem else "") + "."]
    elif mem:
        lines += ["", f"Streaming memory: failed: {mem['error']}"]
    lines += ["", "**Goal (at least 2x Orthanc's REST rate, on SQLite and on PostgreSQL)**: " + res["goal_summary"]]
    floor = next((x for x in res["lines"] if x.get("kind") == "floor" and "error" not in x), None)
    rest = [x for x in res["lines"] if x.get("kind") == "orthanc-rest" and "error" not in x]
    if floor and rest:
        twice = c["instances"] / (GOAL_RATIO * max(x["instances_per_s"] for x in rest))
        lines += ["", f"For scale: 2x the Orthanc REST reference means the whole corpus in {twice:.2f} s; copying "
                  f"its files on the same disk and syncing them (`cp -r && sync -f`, nothing read, hashed or "
                  f"indexed) took {floor['seconds']:.2f} s ({fmt(floor['mb_per_s'])} MB/s)."]
    prof = res.get("profile")
    if prof and "error" not in prof:
        lines += ["", f"**Profile of `radcommons ingest --workers 1`** (cProfile, wall clock, site A = {prof['files']} "
                  f"files on SQLite, {prof['seconds']} s under the profiler; % of the whole command):", "",
                  "| what | where | % of wall time | seconds | calls |", "|---|---|---|---|---|"]
        for r in prof["hotspots"]:
            lines.append(f"| {r['what']} | `{r['where']}` | {fmt(r['pct'])} | {fmt(r['seconds'], 2)} | {r['calls']:,} |")
    elif prof:
        lines += ["", f"Profile: failed: {prof['error'][:300]}"]
    sprof = res.get("server_profile")
    if sprof and "error" not in sprof:
        lines += ["", f"**Profile of the server during one api-sqlite line** (py-spy --idle at {sprof['rate_hz']} Hz on "
                  f"the `radcommons serve` process, {sprof['seconds']} s: upload {sprof['upload_seconds']} s, commit "
                  f"{sprof['commit_seconds']} s; % of the thread samples that were not idle (idle: thread-pool "
                  "threads waiting for work, and the event loop thread when no Python frame is above the loop: uvloop "
                  "waits in epoll and runs its own work in C, which py-spy does not see into); several threads run "
                  "at once, so a blocked fsync counts as it waits):", "",
                  "| what | function | % of active thread samples |", "|---|---|---|"]
        for r in sprof["hotspots"]:
            lines.append(f"| {r['what']} | `{r['where']}` | {fmt(r['pct'])} |")
    elif sprof:
        lines += ["", f"Server profile: not run: {sprof['error'][:300]}"]
    lines += ["", "Orthanc: Debian package, default SQLite index, `StorageCompression` false, `SyncStorageArea` "
              "true (its defaults: fsync of every file; our object store syncs once per ingest batch or STOW "
              "request, the API syncs the complete files of each request before it acknowledges them: an fsync each, or one syncfs for 8 or more), started per line with a "
              "temporary configuration on a loopback port. Raw numbers: "
              f"`{res.get('results_file', 'bench/work/ingest/results.json')}`."]
    return "\n".join(lines) + "\n"


def write_results_md(markdown: str) -> None:
    """Replace our section of bench/RESULTS.md; its hand-written "### Findings" part stays."""
    replace_section(RESULTS_MD, markdown, keep_from=("\n### Findings",))


# --------------------------------------------------------------------------- main

ALL_LINES = ("ingest-sqlite-w1", "ingest-sqlite-wN", "ingest-pg-w1", "ingest-pg-wN", "api-sqlite", "api-pg",
             "stow-sqlite", "stow-pg", "orthanc-rest-1", "orthanc-rest-T", "orthanc-stow-1", "orthanc-stow-T",
             "copy-sync")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--render-only":
        # Re-write the RESULTS.md section from an existing results.json (no measurement).
        out = Path(argv[1]) if len(argv) > 1 else REPO / "bench" / "work" / "ingest" / "results.json"
        write_results_md(render_markdown(json.loads(out.read_text())))
        return 0
    if argv and argv[0] == "_client-upload":
        p = argparse.ArgumentParser()
        p.add_argument("--url")
        p.add_argument("--token-file")
        p.add_argument("--file")
        return client_upload_main(p.parse_args(argv[1:]))

    nproc = os.cpu_count() or 1
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small corpus (2 patients per site), 1 run per line; RESULTS.md is not written")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "work" / "ingest", help="scratch and results")
    parser.add_argument("--patients", type=int, default=None, help="patients per site (default 12; --quick 2)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--runs", type=int, default=None, help="runs per line, best kept (default 2; --quick 1)")
    parser.add_argument("--threads", type=int, default=4, help="client threads for the API and Orthanc lines")
    parser.add_argument("--stow-batch", type=int, default=50, help="instances per STOW-RS request")
    parser.add_argument("--our-stow-threads", type=int, default=None,
                        help="client threads for OUR STOW-RS lines (default: --threads)")
    parser.add_argument("--pg-url", default=DEFAULT_PG, help="PostgreSQL URL of a database this run may drop")
    parser.add_argument("--lines", default=",".join(ALL_LINES), help="comma-separated subset of: " + ", ".join(ALL_LINES))
    parser.add_argument("--mem-mib", type=int, default=1024, help="size of the streaming-memory upload (MiB)")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--profile", action="store_true",
                        help="also cProfile radcommons ingest --workers 1, and py-spy the server in one API line")
    parser.add_argument("--wait-quiet", type=float, default=60, help="wait up to S seconds for an idle CPU per line")
    parser.add_argument("--no-results-md", action="store_true", help="do not write bench/RESULTS.md")
    parser.add_argument("--add-to-previous", action="store_true",
                        help="add this invocation's runs (of --lines) to OUT/results.json's runs (same corpus, threads "
                             "and batch) instead of starting over; each line keeps its best run")
    args = parser.parse_args(argv)
    patients = args.patients or (2 if args.quick else DEFAULT_PATIENTS)
    runs = args.runs or (1 if args.quick else 2)
    wanted = [x.strip() for x in args.lines.split(",") if x.strip()]
    unknown = set(wanted) - set(ALL_LINES)
    if unknown:
        parser.error(f"unknown lines: {', '.join(sorted(unknown))}")
    work = args.out.resolve()
    work.mkdir(parents=True, exist_ok=True)
    runs_dir = work / "runs"
    started = time.perf_counter()
    res: dict[str, Any] = {
        "date": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "command": "python bench/ingest/run.py " + shlex.join(argv) if argv else "python bench/ingest/run.py",
        "quick": args.quick, "runs": runs, "threads": args.threads, "stow_batch": args.stow_batch,
        "machine": machine_info(), "versions": versions(args.pg_url),
    }
    log(f"machine {res['machine']}; versions {res['versions']}")
    corpus = build_corpus(work, patients, args.seed)
    res["corpus"] = corpus
    deid = Path(corpus["deid_tree"])
    files = dicom_files(deid)
    n, nbytes = len(files), sum(p.stat().st_size for p in files)
    log(f"corpus: {n} instances, {nbytes / 1e6:.0f} MB")

    def spec(name: str) -> tuple[str, str, str, str, Any]:
        t, ts = args.threads, args.our_stow_threads or args.threads
        table = {
            "ingest-sqlite-w1": ("radcommons ingest", "SQLite", "1 worker", "ingest",
                                 lambda s: run_ingest(deid, s, "sqlite", args.pg_url, 1)),
            "ingest-sqlite-wN": ("radcommons ingest", "SQLite", f"{nproc} workers", "ingest",
                                 lambda s: run_ingest(deid, s, "sqlite", args.pg_url, nproc)),
            "ingest-pg-w1": ("radcommons ingest", "PostgreSQL", "1 worker", "ingest",
                             lambda s: run_ingest(deid, s, "postgresql", args.pg_url, 1)),
            "ingest-pg-wN": ("radcommons ingest", "PostgreSQL", f"{nproc} workers", "ingest",
                             lambda s: run_ingest(deid, s, "postgresql", args.pg_url, nproc)),
            "api-sqlite": ("submission API (serve + CommonsClient)", "SQLite", f"{t} client threads", "api",
                           lambda s: run_api(deid, s, "sqlite", args.pg_url, t)),
            "api-pg": ("submission API (serve + CommonsClient)", "PostgreSQL", f"{t} client threads", "api",
                       lambda s: run_api(deid, s, "postgresql", args.pg_url, t)),
            "stow-sqlite": ("our STOW-RS (serve, /dicomweb/studies)", "SQLite",
                            f"{ts} thread{'s' if ts > 1 else ''}, {args.stow_batch}/request", "stow",
                            lambda s: run_our_stow(deid, s, "sqlite", args.pg_url, ts, args.stow_batch)),
            "stow-pg": ("our STOW-RS (serve, /dicomweb/studies)", "PostgreSQL",
                        f"{ts} thread{'s' if ts > 1 else ''}, {args.stow_batch}/request", "stow",
                        lambda s: run_our_stow(deid, s, "postgresql", args.pg_url, ts, args.stow_batch)),
            "orthanc-rest-1": ("Orthanc REST POST /instances", "Orthanc (SQLite)", "1 thread", "orthanc-rest",
                               lambda s: run_orthanc_rest(files, s, 1)),
            "orthanc-rest-T": ("Orthanc REST POST /instances", "Orthanc (SQLite)", f"{t} threads", "orthanc-rest",
                               lambda s: run_orthanc_rest(files, s, t)),
            "orthanc-stow-1": ("Orthanc STOW-RS", "Orthanc (SQLite)", f"1 thread, {args.stow_batch}/request",
                               "orthanc-stow", lambda s: run_orthanc_stow(files, s, 1, args.stow_batch)),
            "orthanc-stow-T": ("Orthanc STOW-RS", "Orthanc (SQLite)", f"{t} threads, {args.stow_batch}/request",
                               "orthanc-stow", lambda s: run_orthanc_stow(files, s, t, args.stow_batch)),
            "copy-sync": ("cp -r && sync -f (durable copy: the disk's floor)", "files", "1 process", "floor",
                          lambda s: run_copy(deid, s)),
        }
        return table[name]

    lines: list[dict[str, Any]] = []
    previous: dict[str, Any] = {}
    if args.add_to_previous:
        prev_path = work / "results.json"
        previous = json.loads(prev_path.read_text()) if prev_path.exists() else {}
        same = (previous.get("corpus", {}).get("params") == corpus["params"]
                and previous.get("threads") == args.threads and previous.get("stow_batch") == args.stow_batch)
        if not same:
            parser.error(f"--add-to-previous: {prev_path} is missing or was made with another corpus, --threads "
                         "or --stow-batch")
        old_lines = {x["name"]: x for x in previous.get("lines", [])}
        for name in ALL_LINES:
            if name in old_lines or name in wanted:
                label, store, parallel, kind, _fn = spec(name)
                old_runs = old_lines.get(name, {}).get("runs", [])
                lines.append({"name": name, "label": label, "store": store, "parallel": parallel, "kind": kind,
                              "runs": list(old_runs)})
        res["command"] = previous.get("command", "?") + "`, then `" + res["command"]
        res["invocations"] = previous.get("invocations", [{"date": previous.get("date"),
                                                           "command": previous.get("command"),
                                                           "total_seconds": previous.get("total_seconds")}])
        for key in ("memory", "profile", "server_profile"):
            if key in previous:
                res[key] = previous[key]
        old_git, new_git = previous.get("versions", {}).get("git"), res["versions"].get("git")
        if old_git and old_git != new_git:
            res["versions"]["git"] = f"{old_git} (earlier runs), {new_git} (added runs)"
    else:
        for name in wanted:
            label, store, parallel, kind, _fn = spec(name)
            lines.append({"name": name, "label": label, "store": store, "parallel": parallel, "kind": kind, "runs": []})
    ncpu = os.cpu_count() or 1
    try:
        # Rounds: every line once per round, so a busy spell on a shared machine hits all lines alike.
        for attempt in range(runs):
            for line in lines:
                name = line["name"]
                if name not in wanted:
                    continue
                busy = wait_quiet(args.wait_quiet)
                page_cache_dropped = settle_page_cache(files)
                log(f"{name} run {attempt + 1}/{runs} (CPU busy before: {busy:.0%})")
                try:
                    out = spec(name)[4](runs_dir / name)
                except Exception as error:  # noqa: BLE001 - recorded, the benchmark goes on
                    log(f"{name}: FAILED {error}")
                    line["runs"].append({"error": str(error)[-3000:]})
                    continue
                out["cpu_busy_before"] = busy
                out["page_cache_dropped"] = page_cache_dropped
                if out.get("machine_cpu_seconds") is not None:
                    # CPU the rest of the machine (other people's jobs) used during the timed section.
                    others = max(0.0, out["machine_cpu_seconds"] - out.get("our_cpu_seconds", 0.0))
                    out["others_busy_during"] = round(others / (out["seconds"] * ncpu), 3)
                out["instances_per_s"] = n / out["seconds"]
                out["mb_per_s"] = nbytes / 1e6 / out["seconds"]
                log(f"{name}: {out['seconds']:.1f} s, {out['instances_per_s']:.1f} instances/s, "
                    f"{out['mb_per_s']:.1f} MB/s, stored {out.get('stored')}, our CPU {out.get('our_cpu_seconds')} s, "
                    f"others' CPU during {out.get('others_busy_during')}")
                line["runs"].append(out)
        for line in lines:
            good = [r for r in line["runs"] if "error" not in r]
            if good:
                best = min(good, key=lambda r: r["seconds"])
                line.update({k: v for k, v in best.items() if k not in ("commands",)})
                line["commands"] = best.get("commands", [])
                line["complete"] = best.get("stored") == n
                line["all_seconds"] = [round(r["seconds"], 2) for r in good]
            else:
                line["error"] = line["runs"][-1]["error"]
        res["lines"] = lines
        rest = [x for x in lines if x["kind"] == "orthanc-rest" and "error" not in x]
        ref = max(rest, key=lambda x: x["instances_per_s"]) if rest else None
        res["orthanc_rest_reference"] = (f"{ref['parallel']}, {ref['instances_per_s']:.1f} instances/s"
                                         if ref else "none measured")
        summary = []
        for x in lines:
            if ref and "error" not in x:
                x["ratio_to_orthanc_rest"] = x["instances_per_s"] / ref["instances_per_s"]
                if x["kind"] in ("ingest", "api", "stow"):
                    x["goal_met"] = x["ratio_to_orthanc_rest"] >= GOAL_RATIO and x.get("complete", False)
        for store in ("SQLite", "PostgreSQL"):
            ours = [x for x in lines if x["kind"] in ("ingest", "api", "stow") and x["store"] == store and "goal_met" in x]
            if ours:
                best = max(ours, key=lambda x: x["instances_per_s"])
                summary.append(f"{store}: best of ours {best['instances_per_s']:.1f} instances/s ({best['label']}, "
                               f"{best['parallel']}) = {best['ratio_to_orthanc_rest']:.2f}x Orthanc REST: "
                               f"{'met' if best['goal_met'] else 'not met'}")
        res["goal_summary"] = "; ".join(summary) + "." if summary else "not evaluated."
        if not args.skip_memory:
            log("memory: one large upload through the API")
            try:
                res["memory"] = run_memory(work, runs_dir / "memory", args.mem_mib)
                log(f"memory: {res['memory']}")
            except Exception as error:  # noqa: BLE001
                log(f"memory: FAILED {error}")
                res["memory"] = {"error": str(error)[-3000:]}
        if args.profile:
            log("profile: cProfile of radcommons ingest --workers 1 (site A, SQLite)")
            try:
                res["profile"] = run_profile(deid, runs_dir / "profile", work)
            except Exception as error:  # noqa: BLE001
                res["profile"] = {"error": str(error)[-3000:]}
            log("profile: py-spy of the server during one api-sqlite line")
            try:
                res["server_profile"] = run_server_profile(deid, runs_dir / "server-profile", work, args.threads)
            except Exception as error:  # noqa: BLE001
                res["server_profile"] = {"error": str(error)[-3000:]}
    finally:
        with contextlib.suppress(Exception):
            pg_recreate(args.pg_url, drop_only=True)
        shutil.rmtree(runs_dir, ignore_errors=True)
    res["total_seconds"] = time.perf_counter() - started
    if previous:
        res["invocations"].append({"date": res["date"], "command": "python bench/ingest/run.py " + shlex.join(argv),
                                   "total_seconds": res["total_seconds"]})
        res["total_seconds"] += previous.get("total_seconds", 0.0)
        res["date"] = previous.get("date", "") + " and " + res["date"]
    res["results_file"] = str((work / "results.json").relative_to(REPO)) if work.is_relative_to(REPO) else str(
        work / "results.json")
    (work / "results.json").write_text(json.dumps(res, indent=1, default=str))
    markdown = render_markdown(res)
    print(markdown)
    if not args.no_results_md and not args.quick:  # a quick run is a smoke test, not a result
        write_results_md(markdown)
        log(f"wrote the section of {RESULTS_MD}")
    log(f"wrote {work / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
