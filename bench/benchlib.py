"""Helpers every benchmark in bench/ uses: a warm page cache, the machine's CPU use, servers on loopback
(Orthanc with its DICOMweb plugin), latency percentiles."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterable, Iterator
from pathlib import Path


def read_all(files: Iterable[Path]) -> float:
    """Read every file once (so each tool starts from the same warm page cache); seconds taken."""
    t0 = time.perf_counter()
    for path in files:
        with open(path, "rb", buffering=0) as fp:
            while fp.read(8 << 20):
                pass
    return time.perf_counter() - t0


def settle_page_cache(inputs: Iterable[Path]) -> bool:
    """Put the page cache in the same state before every timed run: dirty pages written
    (``sync``), clean ones dropped where this process may (root: ``/proc/sys/vm/drop_caches``),
    then ``inputs`` read again. Without it a run pays for reclaiming what earlier runs left
    cached, and the order of the tools decides the result. True when the caches were dropped."""
    subprocess.run(["sync"], check=False)
    try:
        with open("/proc/sys/vm/drop_caches", "w") as fp:
            fp.write("1")
        dropped = True
    except OSError:
        dropped = False
    read_all(inputs)
    return dropped


def files_under(folder: Path) -> list[Path]:
    """Every file under ``folder``."""
    return [Path(root) / name for root, _dirs, names in os.walk(folder) for name in names]


def cpu_busy_s() -> float | None:
    """CPU-seconds all processes on the machine have used since boot (from /proc/stat)."""
    try:
        with open("/proc/stat") as fp:
            fields = [int(x) for x in fp.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------------------
# Servers on loopback (Orthanc, `radcommons serve`) and latency percentiles


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout: float, proc: subprocess.Popen[bytes], log_file: Path) -> None:
    """Wait until ``url`` answers 200 (raise with the server's log if it exits or never does)."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the server exited (rc {proc.returncode}):\n{log_file.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout} s:\n{log_file.read_text()[-3000:]}")


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """SIGINT, then SIGKILL after ``timeout`` seconds."""
    import signal

    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


ORTHANC = "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"


@contextlib.contextmanager
def orthanc_server(scratch: Path, name: str = "rc-bench",
                   **settings: object) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Orthanc (Debian package, DICOMweb plugin at /dicom-web/) on a free loopback port with a temporary
    configuration under ``scratch`` (emptied first, removed after); ``settings`` override the configuration.
    Yields its base URL and process."""
    import json
    import shutil

    shutil.rmtree(scratch, ignore_errors=True)
    (scratch / "storage").mkdir(parents=True)
    (scratch / "index").mkdir()
    port = free_port()
    config = {
        "Name": name, "StorageDirectory": str(scratch / "storage"), "IndexDirectory": str(scratch / "index"),
        "HttpPort": port, "HttpServerEnabled": True, "DicomServerEnabled": False, "DicomPort": free_port(),
        "RemoteAccessAllowed": False, "AuthenticationEnabled": False, "Plugins": [DICOMWEB_PLUGIN],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"}, **settings,
    }
    (scratch / "orthanc.json").write_text(json.dumps(config, indent=1))
    log_file = scratch / "orthanc.log"
    with open(log_file, "wb") as out:
        proc = subprocess.Popen([ORTHANC, str(scratch / "orthanc.json")], cwd=scratch, stdout=out,
                                stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/system", 60, proc, log_file)
        yield url, proc
    finally:
        stop_process(proc)
        shutil.rmtree(scratch, ignore_errors=True)


def percentiles(samples_ms: Iterable[float]) -> tuple[float, float]:
    """(p50, p95) of latency samples (p95: nearest rank)."""
    import statistics

    ordered = sorted(samples_ms)
    p95 = ordered[min(len(ordered) - 1, max(0, -(-95 * len(ordered) // 100) - 1))]
    return statistics.median(ordered), p95


def replace_section(results: Path, markdown: str, keep_from: Iterable[str] = ()) -> None:
    """Put ``markdown``, a ``## `` section of ``results`` (bench/RESULTS.md) named by its first line, in
    place of the old one (or at the end), re-reading the file right before writing: others edit it.

    The old section's tail from the first of ``keep_from`` found in it (a hand-written part that
    explains the numbers, another script's subsection) is kept after the new text.
    """
    import re

    text = results.read_text() if results.exists() else "# Benchmark results\n\n"
    heading = markdown.split("\n", 1)[0]
    pattern = re.compile("^" + re.escape(heading) + r"\n.*?(?=^## |\Z)", re.S | re.M)
    found = pattern.search(text)
    if found is None:
        results.write_text(text.rstrip() + "\n\n" + markdown.rstrip() + "\n")
        return
    old = found.group(0)
    starts = [i for i in (old.find(marker) for marker in keep_from) if i >= 0]
    new = markdown.rstrip() + "\n"
    if starts:
        new += "\n" + old[min(starts):].strip("\n") + "\n"
    text = text[:found.start()] + new + "\n" + text[found.end():]
    results.write_text(text.rstrip() + "\n")
