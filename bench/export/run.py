"""Export benchmark (not a test): CT series -> NIfTI, ours vs dcm2niix on the same series; radiographs -> PNG.

    .venv/bin/python bench/export/run.py [--data DIR] [--patients 6] [--series 10]

``--data``: a ``radcommons synth`` output (full size, not ``--small``); generated into
``var/bench-export`` when absent. The CT series are converted one at a time in this process
(ours: pydicom read -> radcommons.export.volume -> .nii.gz) and by ``dcm2niix -z y`` (its
own process, same files, same run). Prints a Markdown table; peak RSS: ours = this process
(one series at a time, i.e. one worker), dcm2niix = its largest child.
"""

from __future__ import annotations

import argparse
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import pydicom

ROOT = Path(__file__).resolve().parents[2]
DCM2NIIX = ROOT / ".venv" / "bin" / "dcm2niix"


def _series(data: Path) -> tuple[dict[str, list[Path]], list[Path]]:
    ct: dict[str, list[Path]] = defaultdict(list)
    radiographs: list[Path] = []
    for path in sorted(data.rglob("*")):
        if not path.is_file():
            continue
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


def _ours(files: list[Path], out: Path) -> int:
    from radcommons.export.nifti import nifti_gz_bytes
    from radcommons.export.volume import build_volumes

    volumes, _ = build_volumes([pydicom.dcmread(f) for f in files])
    for volume in volumes:
        (out / f"{volume.datasets[0].SeriesInstanceUID}_{volume.stack}.nii.gz").write_bytes(nifti_gz_bytes(volume))
    return len(volumes)


def _cpu() -> str:
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=ROOT / "var" / "bench-export")
    parser.add_argument("--patients", type=int, default=6)
    parser.add_argument("--series", type=int, default=10)
    args = parser.parse_args()
    if not args.data.exists():
        subprocess.run([sys.executable, "-m", "radcommons", "synth", str(args.data), "--sites", "1", "--patients",
                        str(args.patients), "--seed", "5"], check=True)
    ct, radiographs = _series(args.data)
    chosen = sorted(ct.items(), key=lambda kv: kv[0])[: args.series]
    size_mb = sum(f.stat().st_size for _, files in chosen for f in files) / 1e6
    slices = sum(len(files) for _, files in chosen)
    work = Path(tempfile.mkdtemp(prefix="bench-export-"))
    try:
        ours_out, theirs_out = work / "ours", work / "dcm2niix"
        ours_out.mkdir()
        theirs_out.mkdir()
        start = time.perf_counter()
        for _, files in chosen:
            _ours(files, ours_out)
        ours_s = time.perf_counter() - start
        ours_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        start = time.perf_counter()
        for uid, files in chosen:
            source = work / "src" / uid
            source.mkdir(parents=True)
            for f in files:
                (source / f.name).symlink_to(f.resolve())
            subprocess.run([str(DCM2NIIX), "-z", "y", "-f", "%s_%j", "-o", str(theirs_out), str(source)],
                           check=True, capture_output=True)
        theirs_s = time.perf_counter() - start
        theirs_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        from radcommons.export.png import png_bytes, render

        start = time.perf_counter()
        for path in radiographs:
            png_bytes(render(pydicom.dcmread(path)).image)
        png_s = time.perf_counter() - start
    finally:
        shutil.rmtree(work, ignore_errors=True)
    n = len(chosen)
    print(f"machine: {_cpu()}, {__import__('os').cpu_count()} cores; python {platform.python_version()}")
    print(f"data: {n} CT series, {slices} slices, {size_mb:.1f} MB of DICOM; {len(radiographs)} radiographs\n")
    print("| task | time (s) | series/s | MB/s | peak RSS (MiB) |")
    print("|---|---:|---:|---:|---:|")
    print(f"| NIfTI, radcommons (1 worker) | {ours_s:.2f} | {n / ours_s:.2f} | {size_mb / ours_s:.1f} | {ours_rss:.0f} |")
    print(f"| NIfTI, dcm2niix -z y | {theirs_s:.2f} | {n / theirs_s:.2f} | {size_mb / theirs_s:.1f} | "
          f"{theirs_rss:.0f} |")
    print(f"| ratio ours / dcm2niix | {ours_s / theirs_s:.2f}x | | | |")
    if radiographs:
        print(f"| PNG 8-bit, radiographs (1 worker) | {png_s:.2f} | {len(radiographs) / png_s:.1f} images/s | | |")


if __name__ == "__main__":
    main()
