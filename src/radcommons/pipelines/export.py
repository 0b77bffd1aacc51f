"""ML-ready export of a frozen cohort: DICOM tree, NIfTI volumes or PNG images, labels, datasheet.

Reads the cohort's instances from the index (only ``projects``: the CLI passes the
non-sequestered projects unless an administrator asks otherwise), fetches each series'
objects from the object store in a worker (:func:`radcommons.parallel.map_unordered`,
one series in memory per worker), converts them with the pure functions of
:mod:`radcommons.export`, and writes, beside the files:

* ``labels.parquet`` and ``labels.csv``: one row per exported file with case, study and
  series fields, its relative path and its split (patient-level,
  :func:`radcommons.export.splits.assign_splits`);
* ``manifest.csv`` / ``manifest.json`` (DICOM format): object id (sha256), size, UIDs;
* ``README.md``: the datasheet.

Resumable: every file is written to a temporary name and renamed, so a file that exists is
whole. DICOM files are skipped when they exist with the indexed size; a converted series
is skipped when its record (``.done/<series>.json``, written last) lists files that all
exist with their recorded sizes.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import re
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import Engine, select

from radcommons import __version__
from radcommons.errors import UserError
from radcommons.export import labels as label_table
from radcommons.export.datasheet import ExportFacts, render_datasheet
from radcommons.export.splits import assign_splits
from radcommons.parallel import map_unordered
from radcommons.store.index import get_metadata
from radcommons.store.objects import ObjectStore
from radcommons.store.query import get_cohort, iter_rows, members

FORMATS = ("dicom", "nifti", "png")
SEQUESTERED = "sequestered"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def readable_projects(engine: Engine, *, include_sequestered: bool = False) -> list[str]:
    """Every project id, less the sequestered ones unless ``include_sequestered`` (admins only)."""
    project = get_metadata().tables["project"]
    with engine.connect() as connection:
        rows = connection.execute(select(project.c.project_id, project.c.availability)).all()
    return sorted(pid for pid, availability in rows if include_sequestered or availability != SEQUESTERED)


def _safe(part: Any) -> str:
    return _UNSAFE.sub("_", str(part or "unknown")).strip("._") or "unknown"


@dataclass(frozen=True)
class SeriesJob:
    """One series to export (plain data: pickled to a worker)."""

    key: str
    folder: str  # relative folder of the series' files
    objects: tuple[tuple[str, int, str], ...]  # (object id, size, SOP Instance UID)
    format: str
    dest: str
    store_url: str
    store_options: Mapping[str, Any]
    bits: int = 8
    size: int | None = None


@dataclass
class SeriesResult:
    """What a worker did: files (relative path -> extra label columns), counts, errors."""

    key: str
    files: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)  # (sop uid or "", path, extras)
    written: int = 0
    kept: int = 0
    skipped: list[str] = field(default_factory=list)
    error: str = ""


@dataclass
class ExportReport:
    """The outcome of :func:`export_cohort`."""

    dest: Path
    rows: list[dict[str, Any]]
    written: int = 0
    kept: int = 0
    excluded: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.parent / f".{path.name}.{uuid.uuid4().hex}.part"
    try:
        temp.write_bytes(data)
        os.replace(temp, path)
    finally:
        if temp.exists():
            temp.unlink()


def _done_path(dest: Path, job: SeriesJob) -> Path:
    return dest / ".done" / f"{_safe(job.key)}.json"


def _finished(dest: Path, job: SeriesJob) -> list[tuple[str, str, dict[str, Any]]] | None:
    record = _done_path(dest, job)
    if not record.is_file():
        return None
    try:
        files = json.loads(record.read_text())
        if all((dest / f["path"]).is_file() and (dest / f["path"]).stat().st_size == f["size"] for f in files):
            return [(f["sop"], f["path"], f["extras"]) for f in files]
    except (ValueError, KeyError, TypeError, OSError):
        pass
    return None


def export_series(job: SeriesJob) -> SeriesResult:
    """Worker job: export one series; never raises (errors are part of the result)."""
    result = SeriesResult(job.key)
    dest = Path(job.dest)
    try:
        store = ObjectStore(job.store_url, **job.store_options)
        if job.format == "dicom":
            for object_id, size, sop in job.objects:
                relative = f"{job.folder}/{_safe(sop)}.dcm"
                target = dest / relative
                if target.is_file() and target.stat().st_size == size:
                    result.kept += 1
                else:
                    store.copy_to(object_id, target)
                    result.written += 1
                result.files.append((sop, relative, {}))
            return result
        done = _finished(dest, job)
        if done is not None:
            result.files, result.kept = done, len(done)
            return result
        import pydicom

        datasets = [pydicom.dcmread(io.BytesIO(store.get_bytes(object_id))) for object_id, _, _ in job.objects]
        produced = _nifti(job, datasets, result) if job.format == "nifti" else _png(job, datasets, result)
        record = [{"sop": sop, "path": path, "size": (dest / path).stat().st_size, "extras": extras}
                  for sop, path, extras in produced]
        _write_atomic(_done_path(dest, job), json.dumps(record).encode())
        result.files = produced
    except Exception as error:  # one bad series must not stop the export
        result.error = f"{job.key}: {type(error).__name__}: {error}"
    return result


def _nifti(job: SeriesJob, datasets: list[Any], result: SeriesResult) -> list[tuple[str, str, dict[str, Any]]]:
    from radcommons.export.nifti import nifti_gz_bytes, sidecar
    from radcommons.export.volume import build_volumes

    dest = Path(job.dest)
    volumes, without_geometry = build_volumes(datasets)
    if without_geometry:
        result.skipped.append(f"{job.key}: {without_geometry} image(s) without an Image Plane module "
                              "(not part of a volume; use --format png)")
    produced = []
    for volume in volumes:
        suffix = "" if volume.stack == 1 else f"_stack{volume.stack}"
        relative = f"{job.folder}{suffix}.nii.gz"
        _write_atomic(dest / relative, nifti_gz_bytes(volume))
        _write_atomic(dest / f"{job.folder}{suffix}.json",
                      json.dumps(sidecar(volume, version=__version__), indent=2).encode())
        result.written += 1
        zooms = [round(float(v), 6) for v in (abs(volume.affine[:3, :3]) ** 2).sum(axis=0) ** 0.5]
        produced.append(("", relative, {
            "stack": volume.stack, "shape": "x".join(str(n) for n in volume.data.shape),
            "voxel_spacing": "x".join(str(z) for z in zooms),
            "gantry_tilt_degrees": round(volume.gantry_tilt_degrees, 4),
            "irregular_spacing": volume.irregular_spacing, "missing_slices": volume.missing_slices,
            "warnings": "; ".join(volume.warnings),
        }))
    return produced


def _png(job: SeriesJob, datasets: list[Any], result: SeriesResult) -> list[tuple[str, str, dict[str, Any]]]:
    from radcommons.dicom.rendering import frame_count
    from radcommons.export.png import png_bytes, render

    dest = Path(job.dest)
    produced = []
    for ds in datasets:
        sop = str(ds.get("SOPInstanceUID", ""))
        if "PixelData" not in ds:
            result.skipped.append(f"{job.key}: {sop} has no pixel data")
            continue
        frames = frame_count(ds)
        array = ds.pixel_array
        for frame in range(1, frames + 1):
            pixels = array[frame - 1] if frames > 1 else array
            rendered = render(ds, frame, bits=job.bits, size=job.size, pixels=pixels)
            name = _safe(sop) + (f"_f{frame:04d}" if frames > 1 else "")
            relative = f"{job.folder}/{name}.png"
            _write_atomic(dest / relative, png_bytes(rendered.image))
            result.written += 1
            produced.append((sop, relative, {
                "frame": frame, "bits": job.bits if rendered.window_source != "colour" else 8,
                "window_source": rendered.window_source, "window_center": rendered.window_center,
                "window_width": rendered.window_width, "inverted": rendered.inverted,
            }))
    return produced


def check_dest(dest: Path) -> None:
    """DEST must be a folder or not exist yet."""
    if dest.exists() and not dest.is_dir():
        raise UserError(f"{dest} exists and is not a folder", "give a new or existing folder as DEST")


def export_cohort(
    engine: Engine,
    store: ObjectStore,
    cohort_id: str,
    dest: Path,
    *,
    format: str,
    projects: Sequence[str],
    weights: Mapping[str, float] | None = None,
    stratify: Sequence[str] = (),
    seed: int = 0,
    bits: int = 8,
    size: int | None = None,
    workers: int = 1,
    scheduler: str = "",
    on_start: Callable[[int], None] | None = None,
    on_series: Callable[[SeriesResult], None] | None = None,
) -> ExportReport:
    """Export frozen cohort ``cohort_id`` to ``dest`` in ``format``; see the module docstring."""
    if format not in FORMATS:
        raise UserError(f"unsupported format {format!r}", f"choose one of {', '.join(FORMATS)}")
    if bits not in (8, 16):
        raise UserError(f"--bits must be 8 or 16, not {bits}")
    if size is not None and size < 1:
        raise UserError(f"--size must be a positive number of pixels, not {size}")
    check_dest(dest)
    cohort = get_cohort(engine, cohort_id)
    if not cohort.frozen:
        raise UserError(f"{cohort_id} is a saved query, not a frozen cohort", "freeze it first")
    allowed = set(projects)
    known_fields = {name for name, _ in label_table.CASE_FIELDS + label_table.STUDY_FIELDS
                    + label_table.SERIES_FIELDS} | {"age_bin"}
    for name in stratify:
        if name not in known_fields:
            raise UserError(f"cannot stratify on {name!r}", f"choose from {', '.join(sorted(known_fields))}")

    # Instances of the cohort in readable projects, with their case, study and series fields.
    sources = [source for _, source in label_table.INDEX_FIELDS]
    names = [name for name, _ in label_table.INDEX_FIELDS]
    instances: list[dict[str, Any]] = []
    for batch in iter_rows(engine, "instance", {"in_cohort": cohort.identifier}, fields=sources,
                           projects=sorted(allowed)):
        instances.extend({name: row[source] for name, source in zip(names, sources)} for row in batch)
    excluded: dict[str, int] = {}
    for batch in members(engine, cohort.identifier or cohort_id, node="instance"):
        for member in batch:
            if member.project_id not in allowed:
                reason = f"project {member.project_id} is not readable (sequestered or not granted)"
                excluded[reason] = excluded.get(reason, 0) + 1

    # Patient-level splits.
    patients: dict[str, tuple[str, ...]] = {}
    for row in instances:
        key = f"{row['project_id']}/{row['case_submitter_id']}"
        patients.setdefault(key, tuple(label_table.stratum_value(row, f) for f in stratify))
    split_of = assign_splits(patients, weights, seed=seed) if weights else {}

    by_series: dict[str, list[dict[str, Any]]] = {}
    for row in sorted(instances, key=lambda r: (r["series_uid"] or "", r["instance_number"] or 0,
                                                r["sop_instance_uid"] or "")):
        by_series.setdefault(f"{row['project_id']}/{row['series_uid']}", []).append(row)
    dest.mkdir(parents=True, exist_ok=True)
    jobs = []
    for key, rows in by_series.items():
        first = rows[0]
        folder = "/".join(_safe(p) for p in (first["project_id"], first["case_submitter_id"], first["study_uid"],
                                            first["series_uid"]))
        jobs.append(SeriesJob(key, folder, tuple((r["object_id"], int(r["size"] or 0), r["sop_instance_uid"])
                                                 for r in rows), format, str(dest), store.url,
                              dict(store.storage_options), bits, size))
    if on_start is not None:
        on_start(len(jobs))
    report = ExportReport(dest=dest, rows=[], excluded=excluded)
    instance_names = {name for name, _ in label_table.INSTANCE_FIELDS}
    for result in map_unordered(export_series, jobs, workers=workers, scheduler=scheduler, chunk_size=1):
        report.written += result.written
        report.kept += result.kept
        report.skipped.extend(result.skipped)
        if result.error:
            report.failures.append(result.error)
        rows = by_series[result.key]
        by_sop = {r["sop_instance_uid"]: r for r in rows}
        for sop, path, extras in result.files:
            base = by_sop.get(sop) if sop else {k: v for k, v in rows[0].items() if k not in instance_names}
            patient = f"{rows[0]['project_id']}/{rows[0]['case_submitter_id']}"
            report.rows.append({"file": path, "split": split_of.get(patient, ""), **(base or {}), **extras})
        if on_series is not None:
            on_series(result)
    report.rows.sort(key=lambda r: r["file"])
    _write_labels(dest, report.rows, label_table.columns(format, instance_level=format != "nifti"))
    if format == "dicom":
        _write_manifest(dest, report.rows)
    facts = ExportFacts(
        cohort_id=cohort.identifier or str(cohort_id), content_hash=cohort.content_hash or "",
        cohort_name=cohort.name, format=format,
        options={"split": ",".join(f"{k}={v:g}" for k, v in (weights or {}).items()),
                 "stratify": ",".join(stratify), "seed": seed if weights else None,
                 "bits": bits if format == "png" else None, "size": size if format == "png" else None},
        software_version=__version__, created=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        rows=report.rows, excluded=excluded, failures=report.failures, skipped=report.skipped,
    )
    _write_atomic(dest / "README.md", render_datasheet(facts).encode())
    return report


def _cell(value: Any) -> Any:
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    return value


def _write_labels(dest: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    present = [c for c in columns if any(c in r for r in rows)] or columns
    table = pa.Table.from_pylist([{c: _cell(r.get(c)) for c in present} for r in rows]) if rows else \
        pa.table({c: pa.array([], pa.string()) for c in present})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    _write_atomic(dest / "labels.parquet", sink.getvalue().to_pybytes())
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=present, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: _cell(row.get(c)) for c in present})
    _write_atomic(dest / "labels.csv", text.getvalue().encode())


MANIFEST_FIELDS = ("file", "object_id", "sha256", "size", "project_id", "case_submitter_id", "study_uid",
                   "series_uid", "sop_instance_uid")


def _write_manifest(dest: Path, rows: list[dict[str, Any]]) -> None:
    entries = [{**{k: row.get(k) for k in MANIFEST_FIELDS if k != "sha256"}, "sha256": row.get("object_id")}
               for row in rows]
    entries = [{k: e[k] for k in MANIFEST_FIELDS} for e in entries]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(MANIFEST_FIELDS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(entries)
    _write_atomic(dest / "manifest.csv", text.getvalue().encode())
    _write_atomic(dest / "manifest.json", json.dumps(entries, indent=1).encode())


def iter_label_rows(report: ExportReport) -> Iterator[dict[str, Any]]:
    """The label rows of an export (for callers that print or filter them)."""
    return iter(report.rows)
