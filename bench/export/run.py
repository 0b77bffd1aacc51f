"""Export benchmark (not a test): CT series -> NIfTI, ours vs dcm2niix on the same series; radiographs -> PNG.

    .venv/bin/python bench/export/run.py [--data DIR] [--patients 40] [--seed 5] [--min-series 10]
    .venv/bin/python bench/export/run.py --profile     # cProfile of our NIfTI conversion, top 25

``--data``: a full-size ``radcommons synth`` output (not ``--small``); generated as
``synth DIR --sites 1 --patients 40 --seed 5`` when absent (default ``bench/work/export/synth``:
13 CT series of 66 or 110 slices of 512x512, 104 radiographs). Every CT series found is used;
fewer than ``--min-series`` is an error (raise ``--patients``).

Each tool runs in its own fresh child process, waited for with ``os.wait4``, so its peak RSS
(``ru_maxrss``) and CPU time are that process's alone:

* ours: one child converts every series in turn from the same files, as one export worker does
  (pydicom read -> ``radcommons.export.volume.build_volumes`` -> ``nifti_gz_bytes`` + JSON
  sidecar, written to disk); the time is measured inside the child around the conversions
  (interpreter start and imports excluded, reported apart). A second child converts only the
  largest series: if the two peaks agree, memory is bounded by one series, not by the corpus.
  A third child runs the export's own worker, ``pipelines.export.export_series``, on every
  series from an object store holding the same files (sha256-verified reads, atomic writes,
  the ``.done`` records): what ``radcommons export --format nifti --workers 1`` does per series;
* dcm2niix ``-z y``: one child per series (its only way to be told one series), each series in
  a folder of symlinks; its time is the sum of the children's wall times;
* PNG: one child renders every radiograph (8-bit, no resize) as ``--format png`` does.

The page cache is warmed (every file read once) before the tools run. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from benchlib import read_all  # noqa: E402

DCM2NIIX = ROOT / ".venv" / "bin" / "dcm2niix"
PYTHON = ROOT / ".venv" / "bin" / "python"


def _series(data: Path) -> tuple[dict[str, list[Path]], list[Path]]:
    import pydicom

    ct: dict[str, list[Path]] = defaultdict(list)
    radiographs: list[Path] = []
    for path in sorted(data.rglob("*.dcm")):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:
            continue
        modality = str(ds.get("Modality", ""))
        if modality == "CT" and "ImagePositionPatient" in ds:
            ct[str(ds.SeriesInstanceUID)].append(path)
        elif modality in ("CR", "DX"):
            radiographs.append(path)
    return ct, radiographs


# ---- what the children run -------------------------------------------------------------------

def child_nifti(job: Path) -> None:
    """Convert every series of ``job`` (JSON: out folder, lists of files) as one export worker does."""
    spec = json.loads(job.read_text())
    import pydicom

    from radcommons.export.nifti import nifti_gz_bytes, sidecar
    from radcommons.export.volume import build_volumes

    out = Path(spec["out"])
    peaks: list[float] = []  # this process's peak RSS (MiB) after each series
    start = time.perf_counter()
    for index, files in enumerate(spec["series"]):
        volumes, _ = build_volumes([pydicom.dcmread(f) for f in files])
        for volume in volumes:
            (out / f"{index}_{volume.stack}.nii.gz").write_bytes(nifti_gz_bytes(volume))
            (out / f"{index}_{volume.stack}.json").write_text(json.dumps(sidecar(volume), indent=2))
        del volumes  # as a worker returns: one series in memory at a time
        peaks.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps({"seconds": time.perf_counter() - start, "peaks": peaks}))


def child_pipeline(job: Path) -> None:
    """Run the export's own worker (``pipelines.export.export_series``) on every series of ``job``."""
    spec = json.loads(job.read_text())
    from radcommons.pipelines.export import SeriesJob, export_series

    start = time.perf_counter()
    for index, objects in enumerate(spec["series"]):
        result = export_series(SeriesJob(f"series{index}", f"s{index}", tuple(tuple(o) for o in objects), "nifti",
                                         spec["out"], spec["store"], {}))
        if result.error:
            raise SystemExit(result.error)
    print(json.dumps({"seconds": time.perf_counter() - start}))


def child_png(job: Path) -> None:
    """Render every radiograph of ``job`` to an 8-bit PNG (kept in memory, as bytes)."""
    spec = json.loads(job.read_text())
    import pydicom

    from radcommons.export.png import png_bytes, render

    start = time.perf_counter()
    for path in spec["files"]:
        png_bytes(render(pydicom.dcmread(path)).image)
    print(json.dumps({"seconds": time.perf_counter() - start}))


# ---- the parent ------------------------------------------------------------------------------

def _run(argv: list[str]) -> tuple[float, float, float, str]:
    """(wall s, CPU s, peak RSS MiB, stdout) of one fresh child process."""
    out = tempfile.TemporaryFile()
    start = time.perf_counter()
    child = subprocess.Popen(argv, stdout=out, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    err = child.stderr.read().decode() if child.stderr else ""
    out.seek(0)
    text = out.read().decode()
    if child.returncode != 0:
        raise SystemExit(f"{argv[0]} failed ({child.returncode}): {err[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, text


def _ours(work: Path, name: str, series: list[list[Path]], store: str = "") -> dict[str, float]:
    """Our conversion in a fresh child: from the files, or (``store``) the export worker from the object store."""
    out = work / name
    out.mkdir()
    job = work / f"{name}.json"
    if store:
        from radcommons.store.objects import ObjectStore

        objects = ObjectStore(store)
        listed = [[(objects.put_file(f).digest, f.stat().st_size, f.stem) for f in s] for s in series]
        job.write_text(json.dumps({"out": str(out), "store": store, "series": listed}))
        mode = "--child-pipeline"
    else:
        job.write_text(json.dumps({"out": str(out), "series": [[str(f) for f in s] for s in series]}))
        mode = "--child-nifti"
    wall, cpu, rss, text = _run([str(PYTHON), __file__, mode, str(job)])
    said = json.loads(text.strip().splitlines()[-1])
    return {"seconds": said["seconds"], "peaks": said.get("peaks", []), "wall": wall, "cpu": cpu, "rss": rss,
            "out_mb": sum(p.stat().st_size for p in out.rglob("*.nii.gz")) / 1e6}


def _dcm2niix(work: Path, series: dict[str, list[Path]]) -> dict[str, float]:
    out = work / "dcm2niix"
    out.mkdir()
    total = cpu = rss = 0.0
    for uid, files in series.items():
        source = work / "src" / uid
        source.mkdir(parents=True)
        for f in files:
            (source / f.name).symlink_to(f.resolve())
        wall, used, peak, _ = _run([str(DCM2NIIX), "-z", "y", "-f", "%s_%j", "-o", str(out), str(source)])
        total, cpu, rss = total + wall, cpu + used, max(rss, peak)
    return {"seconds": total, "cpu": cpu, "rss": rss,
            "out_mb": sum(p.stat().st_size for p in out.glob("*.nii.gz")) / 1e6}


def _profile(series: list[list[Path]]) -> None:
    import cProfile
    import pstats

    import pydicom

    from radcommons.export.nifti import nifti_gz_bytes
    from radcommons.export.volume import build_volumes

    profiler = cProfile.Profile()
    profiler.enable()
    for files in series:
        volumes, _ = build_volumes([pydicom.dcmread(f) for f in files])
        for volume in volumes:
            nifti_gz_bytes(volume)
    profiler.disable()
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)


def _machine() -> str:
    model = platform.processor()
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores; Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT / "bench" / "work" / "export" / "synth")
    parser.add_argument("--patients", type=int, default=40)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--min-series", type=int, default=10)
    parser.add_argument("--profile", action="store_true", help="profile our conversion of 3 series and stop")
    parser.add_argument("--child-nifti", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-png", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-pipeline", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_nifti:
        return child_nifti(args.child_nifti)
    if args.child_png:
        return child_png(args.child_png)
    if args.child_pipeline:
        return child_pipeline(args.child_pipeline)
    if not args.data.exists():
        subprocess.run([str(PYTHON), "-m", "radcommons", "synth", str(args.data), "--sites", "1", "--patients",
                        str(args.patients), "--seed", str(args.seed)], check=True)
    ct, radiographs = _series(args.data)
    if len(ct) < args.min_series:
        raise SystemExit(f"{args.data} holds {len(ct)} CT series, fewer than --min-series {args.min_series}: "
                         "generate more with a larger --patients into a new --data folder")
    chosen = dict(sorted(ct.items()))
    if args.profile:
        return _profile(list(chosen.values())[:3])
    size_mb = sum(f.stat().st_size for files in chosen.values() for f in files) / 1e6
    slices = sum(len(files) for files in chosen.values())
    warm = read_all([f for files in chosen.values() for f in files] + radiographs)
    work = Path(tempfile.mkdtemp(prefix="bench-export-"))
    try:
        ours = _ours(work, "ours", list(chosen.values()))
        largest = max(chosen.values(), key=len)
        one = _ours(work, "ours-one", [largest])
        worker = _ours(work, "worker", list(chosen.values()), store=str(work / "objects"))
        theirs = _dcm2niix(work, chosen)
        job = work / "png.json"
        job.write_text(json.dumps({"files": [str(p) for p in radiographs]}))
        png_wall, png_cpu, png_rss, text = _run([str(PYTHON), __file__, "--child-png", str(job)])
        png_s = json.loads(text.strip().splitlines()[-1])["seconds"]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    n = len(chosen)
    version = subprocess.run([str(DCM2NIIX), "-v"], capture_output=True, text=True).stdout.strip().splitlines()[-1]
    print(f"machine: {_machine()}; load average before: {os.getloadavg()[0]:.2f}")
    print(f"data: {args.data}: {n} CT series, {slices} slices, {size_mb:.1f} MB of DICOM; "
          f"{len(radiographs)} radiographs; page cache warmed in {warm:.1f} s; dcm2niix {version}\n")
    print("| task | time (s) | CPU (s) | series/s | MB/s (DICOM in) | peak RSS (MiB) |")
    print("|---|---:|---:|---:|---:|---:|")
    print(f"| NIfTI, radcommons, 1 process, all {n} series | {ours['seconds']:.2f} | {ours['cpu']:.2f} | "
          f"{n / ours['seconds']:.2f} | {size_mb / ours['seconds']:.1f} | {ours['rss']:.0f} |")
    print(f"| NIfTI, dcm2niix -z y, 1 process per series | {theirs['seconds']:.2f} | {theirs['cpu']:.2f} | "
          f"{n / theirs['seconds']:.2f} | {size_mb / theirs['seconds']:.1f} | {theirs['rss']:.0f} (largest) |")
    print(f"| ratio ours / dcm2niix | {ours['seconds'] / theirs['seconds']:.2f}x | "
          f"{ours['cpu'] / theirs['cpu']:.2f}x | | | |")
    print(f"| NIfTI, radcommons, 1 process, largest series only ({len(largest)} slices) | {one['seconds']:.2f} | "
          f"| | | {one['rss']:.0f} |")
    print(f"| NIfTI, radcommons export worker (object store, sha256 check, sidecar, .done), all {n} series | "
          f"{worker['seconds']:.2f} | {worker['cpu']:.2f} | {n / worker['seconds']:.2f} | "
          f"{size_mb / worker['seconds']:.1f} | {worker['rss']:.0f} |")
    print(f"| PNG 8-bit, {len(radiographs)} radiographs, 1 process | {png_s:.2f} | {png_cpu:.2f} | "
          f"{len(radiographs) / png_s:.2f} images/s | | {png_rss:.0f} |")
    peaks = ours["peaks"]
    print(f"\nours, peak RSS of the child after series 1, 2, {n // 2} and {n} (sizes "
          f"{', '.join(str(len(s)) for s in list(chosen.values())[:2])}, ... slices): "
          f"{peaks[0]:.0f}, {peaks[1]:.0f}, {peaks[n // 2 - 1]:.0f}, {peaks[-1]:.0f} MiB")
    print(f"ours: child wall {ours['wall']:.2f} s (interpreter start + imports "
          f"{ours['wall'] - ours['seconds']:.2f} s); output {ours['out_mb']:.1f} MB .nii.gz "
          f"(dcm2niix {theirs['out_mb']:.1f} MB); PNG child wall {png_wall:.2f} s")


if __name__ == "__main__":
    main()
