"""ML-ready export of a cohort or query: DICOM tree, NIfTI volumes or PNG images, labels, datasheet.

What: a frozen cohort's members, or a query run now (a saved query, or a JSON query file:
:func:`query_selection`). For whom: :func:`export_scope` applies the server's access decision
(:func:`radcommons.roles.readable_projects`, the data use agreement) to the named user, or to
an operator acting as administrator; sequestered projects only for an administrator or
curator who asks explicitly. Every export is written to the audit log.

Reads the selection's instances in the readable projects from the index, fetches each series'
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
import functools
import inspect
import io
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import Engine, select

from radcommons import __version__, roles
from radcommons.durable import folder_held, write_atomic
from radcommons.errors import UserError
from radcommons.export import labels as label_table
from radcommons.export.dest import check_dest, claim_dest
from radcommons.export.datasheet import ExportFacts, render_datasheet
from radcommons.export.splits import assign_splits
from radcommons.inputs import read_input_text
from radcommons.parallel import map_unordered
from radcommons.store.index import dua, get_metadata
from radcommons.store.index.accounts import get_user, record_audit
from radcommons.store.index.schema import system_table
from radcommons.store.objects import CorruptObjectError, ObjectNotFoundError, ObjectStore
from radcommons.store.query import Cohort, get_cohort, iter_rows, members, parse_filter, pinned_files
from radcommons.store.query.cohorts import REMOVED, SAME, PinnedFile
from radcommons.store.query.compile import Projects

FORMATS = ("dicom", "nifti", "png")
#: Node types a query (saved or in a file) may select: they all have instances under them.
QUERY_NODES = ("case", "imaging_study", "series", "instance")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class ExportScope:
    """Whom an export is for and what it may hold: the decision of :func:`export_scope`."""

    recipient: str  # a user name, or ADMIN
    role: str
    projects: tuple[str, ...]  # the projects whose members are exported
    #: Projects whose left-out members are not even counted in the datasheet (sequestered ones,
    #: for a recipient who may not know of them: they never enter a count a researcher sees).
    uncounted: frozenset[str] = frozenset()


#: The recipient of an export made by an operator acting as administrator (``--as-admin``).
ADMIN = "admin (operator)"


def export_scope(engine: Engine, *, for_user: str | None = None, as_admin: bool = False,
                 include_sequestered: bool = False) -> ExportScope:
    """The projects an export for ``for_user`` (or for an operator acting ``as_admin``) may hold.

    The decision is the server's (:func:`radcommons.roles.readable_projects` and the data use
    agreement): a researcher gets open projects and the restricted ones granted to it, never a
    sequestered one. Sequestered projects enter only when ``include_sequestered`` is asked for
    an administrator or curator (``as_admin``, or ``for_user`` naming one).
    """
    if bool(for_user) == bool(as_admin):
        raise UserError("say whom the export is for: --for USER or --as-admin" + (", not both" if as_admin else ""),
                        "--for NAME exports what that commons account may read (radcommons admin user list); "
                        "--as-admin exports every project but the sequestered ones (add --include-sequestered "
                        "to include those)")
    project = get_metadata().tables["project"]
    with engine.connect() as connection:
        availability = dict(connection.execute(select(project.c.submitter_id, project.c.availability)).all())
        if as_admin:
            name, role, grants, accepted = ADMIN, "admin", frozenset(), frozenset()
        else:
            user = get_user(engine, str(for_user))
            users = system_table("user")
            if connection.execute(select(users.c.disabled_at).where(users.c.id == user.id)).scalar() is not None:
                raise UserError(f"the user {user.name!r} is disabled: nothing is exported for them",
                                "ask an administrator")
            name, role, grants, accepted = user.name, user.role, frozenset(user.projects), \
                dua.accepted_versions(connection, user.id)
    if include_sequestered and role not in roles.CURATOR_ROLES:
        raise UserError(f"{name!r} is a {role}: sequestered projects are never exported for a {role}",
                        "leave out --include-sequestered; only an export for an administrator or curator "
                        "(--as-admin, or --for one of their accounts) may include them")
    if not roles.agreement_accepted(role, accepted, dua.DUA_VERSION):
        raise UserError(f"{name!r} has not accepted the data use agreement (version {dua.DUA_VERSION}): "
                        "nothing is exported for them",
                        "they accept it in the explorer or with radcommons.Client(...).accept_dua(), then rerun")
    readable = roles.readable_projects(role, grants, availability)
    if readable is None:
        readable = {p for p, state in availability.items() if include_sequestered or not roles.withheld(state)}
        uncounted: frozenset[str] = frozenset()
    else:
        uncounted = frozenset(p for p, state in availability.items() if roles.withheld(state))
    return ExportScope(name, role, tuple(sorted(readable)), uncounted)


@dataclass(frozen=True)
class Selection:
    """What to export: a frozen cohort's members, or a query (saved, or from a file) run now."""

    label: str  # the cohort identifier, "saved query N", or the query file
    name: str
    node: str
    filter: dict[str, Any] | None
    cohort: Cohort | None = None  # the frozen snapshot, when it is one

    def instance_filter(self) -> dict[str, Any]:
        """The filter on instances that selects the files of this selection."""
        if self.cohort is not None:
            return {"in_cohort": self.cohort.identifier}
        if self.node == "instance":
            return dict(self.filter or {})
        linked: dict[str, Any] = {"node": self.node}
        if self.filter:
            linked["filter"] = self.filter
        return {"exists": linked}


def cohort_selection(engine: Engine, key: str) -> Selection:
    """A frozen cohort (``rc-cohort-...``) or a saved query (its number) as a :class:`Selection`."""
    cohort = get_cohort(engine, int(key) if key.isdigit() else key)
    if cohort.frozen:
        return Selection(cohort.identifier or key, cohort.name, cohort.node, cohort.filter, cohort)
    if cohort.node not in QUERY_NODES:
        raise UserError(f"saved query {key} selects {cohort.node} records, which have no images",
                        f"export a query of {', '.join(QUERY_NODES)}")
    return Selection(f"saved query {cohort.id}", cohort.name, cohort.node, cohort.filter)


def query_selection(path: Path) -> Selection:
    """A query file as a :class:`Selection`: ``{"node": "series", "filter": {...}}`` (docs/EXPORT.md).

    Bad files raise :class:`UserError` naming the file, the place in it and what to do.
    """
    hint = ('write {"node": "series", "filter": {"=": {"modality": "CT"}}} '
            "(node: case, imaging_study, series or instance; filter: docs/QUERY.md)")
    try:
        text = read_input_text(path)
    except OSError as error:
        raise UserError(f"{path}: cannot read the query file ({error.strerror or error})",
                        "give the path of a JSON query file") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: the query file is not UTF-8 text", hint) from None
    try:
        document = json.loads(text)
    except ValueError as error:
        raise UserError(f"{path}: not JSON ({error})", hint) from None
    except RecursionError:
        raise UserError(f"{path}: JSON nested too deeply to be a query", hint) from None
    if not isinstance(document, dict):
        raise UserError(f"{path}: the query must be a JSON object, not {type(document).__name__}", hint)
    unknown = sorted(set(document) - {"node", "filter", "name"})
    if unknown:
        raise UserError(f"{path}: unknown key(s) {', '.join(unknown)}", "a query file holds node, filter and name; " + hint)
    node = document.get("node")
    if node not in QUERY_NODES:
        raise UserError(f"{path}: node {node!r} cannot be exported" if node is not None else
                        f"{path}: the query names no node", hint)
    try:
        parse_filter(node, document.get("filter"))
    except UserError as error:
        raise UserError(f"{path}: {error.message}", error.hint or hint) from None
    name = document.get("name") or path.stem
    return Selection(f"query {path.name}", str(name), node, document.get("filter"))


@dataclass(frozen=True)
class Failure:
    """A series (or, with ``sop_instance_uid``, one file of it) left out of an export, and why.

    ``reason`` is for the recipient (the datasheet, the export's status, the explorer): never a
    path of the commons nor the text of an unexpected error (:func:`_reason`).
    """

    project_id: str
    series_uid: str
    reason: str
    sop_instance_uid: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"project_id": self.project_id, "series_uid": self.series_uid,
                "sop_instance_uid": self.sop_instance_uid, "reason": self.reason}


@dataclass
class FrozenFiles:
    """The files a frozen cohort pinned, as :func:`frozen_files` found them."""

    rows: list[dict[str, Any]]  # one per pinned file still in the object store, keyed like ``columns``
    changed: list[str] = field(default_factory=list)  # members whose instance holds another file now, or is gone
    gone: list[str] = field(default_factory=list)  # members whose pinned file is no longer in the object store
    #: ``gone`` as :class:`Failure` records (project, series and instance UID, reason)
    gone_files: list[Failure] = field(default_factory=list)


#: DICOM attributes that stand in for the index fields of an instance no longer indexed.
_HEADER_FIELDS = {"case.submitter_id": "PatientID", "imaging_study.study_uid": "StudyInstanceUID",
                  "series.series_uid": "SeriesInstanceUID", "series.modality": "Modality",
                  "instance_number": "InstanceNumber"}


def _header_fields(store: ObjectStore, object_id: str) -> dict[str, Any]:
    import pydicom

    with store.open_unverified(object_id) as handle:
        header = pydicom.dcmread(handle, stop_before_pixels=True, force=True)
    return {name: (str(header.get(keyword)) if header.get(keyword) is not None else None)
            for name, keyword in _HEADER_FIELDS.items()}


def _pinned_row(store: ObjectStore, pinned: PinnedFile, columns: Mapping[str, str]) -> dict[str, Any]:
    """``columns`` (name -> instance-rooted field) of a pinned file: the file and its size are the
    member's, the other fields the instance's as indexed now (or, once it left the index, its
    file's header); :class:`ObjectNotFoundError` when the file is no longer stored."""
    values = dict(pinned.indexed or {})
    if pinned.state != SAME:
        values["size"] = store.size(pinned.object_id)
    if pinned.state == REMOVED:
        values = {**values, **_header_fields(store, pinned.object_id)}
    values.update(project_id=pinned.member.project_id, sop_instance_uid=pinned.member.submitter_id,
                  object_id=pinned.object_id)
    return {name: values.get(source) for name, source in columns.items()}


def frozen_files(engine: Engine, store: ObjectStore, key: str | int, columns: Mapping[str, str], *,
                 projects: Projects = None) -> FrozenFiles:
    """The files frozen cohort ``key`` pinned (its members in ``projects``), as rows of ``columns``.

    A frozen cohort names its files: a study corrected since (a new version, with new files
    under the same instance records) or instances removed from the index do not change what it
    holds. Those members are listed in ``changed``; a pinned file that is no longer in the
    object store is left out and listed in ``gone``, never replaced by the file indexed now.
    """
    found = FrozenFiles([])
    for batch in pinned_files(engine, key, fields=sorted(set(columns.values())), projects=projects):
        for pinned in batch:
            label = f"{pinned.member.project_id}/{pinned.member.submitter_id}"
            try:
                found.rows.append(_pinned_row(store, pinned, columns))
            except ObjectNotFoundError:
                reason = f"its frozen file {pinned.object_id} is no longer in the commons"
                found.gone.append(f"{label}: {reason}")
                series_uid = str((pinned.indexed or {}).get("series.series_uid") or "")
                found.gone_files.append(Failure(pinned.member.project_id, series_uid, reason,
                                                pinned.member.submitter_id))
                continue
            if pinned.state != SAME:
                how = "removed from the index" if pinned.state == REMOVED else "replaced by a newer version"
                found.changed.append(f"{label}: {how} since the freeze")
    return found


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
    error: str = ""  # for the recipient (the datasheet): "<key>: <reason>"
    reason: str = ""  # the error's reason alone (see :func:`_reason`)
    detail: str = ""  # for the operator: the error as raised


@dataclass
class ExportReport:
    """The outcome of :func:`export_cohort`."""

    dest: Path
    rows: list[dict[str, Any]]
    written: int = 0
    kept: int = 0
    excluded: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    #: the failures as records: which series (or file) and the reason, for a list a person reads
    failed: list[Failure] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    #: members of a frozen cohort whose instance changed in the index since the freeze (their frozen files are exported)
    changed: list[str] = field(default_factory=list)
    #: the failures as raised (paths of the commons included): for the operator's eyes, not the datasheet
    details: list[str] = field(default_factory=list)


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
        write_atomic(_done_path(dest, job), json.dumps(record).encode())
        result.files = produced
    except Exception as error:  # one bad series must not stop the export
        result.reason = _reason(error, job.format)
        result.error = f"{job.key}: {result.reason}"
        result.detail = f"{job.key}: {type(error).__name__}: {error}"
    return result


#: Modules whose ``ValueError`` messages describe the images, in words written for the recipient
#: (e.g. "only single-frame, single-sample slices can be stacked"): the pure conversions.
_CONVERSIONS = ("radcommons.export.", "radcommons.dicom.rendering")


def _raised_in(error: BaseException) -> str:
    """The module of the code that raised ``error`` (its traceback's last frame)."""
    trace = error.__traceback__
    while trace is not None and trace.tb_next is not None:
        trace = trace.tb_next
    return str(trace.tb_frame.f_globals.get("__name__", "")) if trace is not None else ""


def _reason(error: Exception, format: str = "") -> str:
    """What went wrong, for the datasheet, the export's status and the explorer: no path, and
    not the text of an unexpected error (it can hold the commons' paths or another record;
    the operator sees :attr:`SeriesResult.detail`, the server logs it)."""
    if isinstance(error, ObjectNotFoundError):
        return f"its stored file {error.digest} is missing from the commons' object store"
    if isinstance(error, CorruptObjectError):
        return f"its stored file {error.digest} is damaged (its content no longer matches its sha256)"
    if isinstance(error, OSError):
        return f"the file could not be written ({error.strerror or type(error).__name__})"
    target = {"nifti": "a NIfTI volume", "png": "PNG images"}.get(format, "the export's format")
    origin = _raised_in(error)
    if isinstance(error, ValueError) and origin.startswith(_CONVERSIONS):
        return f"it cannot be made into {target}: {error}"
    if origin.startswith("pydicom"):
        return (f"it cannot be made into {target}: its stored DICOM's header or pixel data cannot be decoded "
                "(a DICOM format export holds the files as stored)")
    return (f"it could not be made into {target}: an unexpected error of the commons (its operators' log "
            "has the details)")


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
        write_atomic(dest / relative, nifti_gz_bytes(volume))
        write_atomic(dest / f"{job.folder}{suffix}.json",
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
            write_atomic(dest / relative, png_bytes(rendered.image))
            result.written += 1
            produced.append((sop, relative, {
                "frame": frame, "bits": job.bits if rendered.window_source != "colour" else 8,
                "window_source": rendered.window_source, "window_center": rendered.window_center,
                "window_width": rendered.window_width, "inverted": rendered.inverted,
            }))
    return produced


def stratify_fields() -> list[str]:
    """The fields a split may be stratified on: the label table's case, study and series fields, and ``age_bin``."""
    return sorted({name for name, _ in label_table.CASE_FIELDS + label_table.STUDY_FIELDS
                   + label_table.SERIES_FIELDS} | {"age_bin"})


def check_stratify(stratify: Sequence[str]) -> None:
    """Every name in ``stratify`` must be a label-table field (or ``age_bin``): :class:`UserError` otherwise."""
    known_fields = stratify_fields()
    for name in stratify:
        if name not in known_fields:
            raise UserError(f"cannot stratify on {name!r}", f"choose from {', '.join(known_fields)}")


_P = ParamSpec("_P")
_R = TypeVar("_R")


def check_options(format: str, bits: int, size: int | None) -> None:
    """Refuse an export format, bit depth or image size the exporter does not make."""
    if format not in FORMATS:
        raise UserError(f"unsupported format {format!r}", f"choose one of {', '.join(FORMATS)}")
    if bits not in (8, 16):
        raise UserError(f"--bits must be 8 or 16, not {bits}")
    if size is not None and size < 1:
        raise UserError(f"--size must be a positive number of pixels, not {size}")


def _one_export_per_dest(export: Callable[_P, _R]) -> Callable[_P, _R]:
    """``export`` holding its ``dest`` while it runs: a second export into the same folder is
    refused, so a resumed export may remove what a killed one left half written."""
    signature = inspect.signature(export)

    @functools.wraps(export)
    def held(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        # bad options are refused before the folder is made (folder_held creates it)
        check_options(bound.arguments["format"], bound.arguments["bits"], bound.arguments["size"])
        check_stratify(bound.arguments["stratify"])
        dest = Path(bound.arguments["dest"])
        check_dest(dest)
        with folder_held(dest, user="another export",
                         hint="wait for it to finish, or export into another folder"):
            return export(*args, **kwargs)

    return held


@_one_export_per_dest
def export_cohort(
    engine: Engine,
    store: ObjectStore,
    source: Selection | str,
    dest: Path,
    *,
    format: str,
    scope: ExportScope,
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
    """Export ``source`` (a :class:`Selection`, or a cohort key) for ``scope`` to ``dest`` in ``format``.

    Only members in ``scope.projects`` are exported (see :func:`export_scope`); see the module
    docstring for the rest.
    """
    selection = cohort_selection(engine, source) if isinstance(source, str) else source
    allowed = set(scope.projects)

    # Instances of the selection in readable projects, with their case, study and series fields:
    # a frozen cohort's pinned files, a query's files as indexed now.
    columns = [column for _, column in label_table.INDEX_FIELDS]
    names = [name for name, _ in label_table.INDEX_FIELDS]
    instances: list[dict[str, Any]] = []
    frozen = FrozenFiles([])
    if selection.cohort is not None:
        frozen = frozen_files(engine, store, selection.cohort.id, dict(label_table.INDEX_FIELDS),
                              projects=sorted(allowed))
        instances = frozen.rows
    else:
        for batch in iter_rows(engine, "instance", selection.instance_filter(), fields=columns,
                               projects=sorted(allowed)):
            instances.extend({name: row[column] for name, column in zip(names, columns)} for row in batch)
    left_out: list[str] = []
    if selection.cohort is not None:
        for batch in members(engine, selection.label, node="instance"):
            left_out.extend(m.project_id for m in batch if m.project_id not in allowed)
    else:
        for batch in iter_rows(engine, "instance", selection.instance_filter(), fields=["project_id"]):
            left_out.extend(r["project_id"] for r in batch if r["project_id"] not in allowed)
    excluded: dict[str, int] = {}
    for project_id in left_out:
        if project_id not in scope.uncounted:
            reason = f"project {project_id} is not readable by {scope.recipient} (sequestered or not granted)"
            excluded[reason] = excluded.get(reason, 0) + 1
    claim_dest(dest, {
        "selection": selection.label, "content_hash": selection.cohort.content_hash if selection.cohort else None,
        "query": None if selection.cohort else {"node": selection.node, "filter": selection.filter},
        "format": format, "recipient": scope.recipient, "projects": sorted(allowed),
        "split": dict(weights or {}), "stratify": list(stratify), "seed": seed if weights else None,
        "bits": bits if format == "png" else None, "size": size if format == "png" else None,
    })
    with engine.begin() as connection:
        record_audit(connection, actor=scope.recipient, action="export", target=selection.label,
                     records=len(instances), detail={"format": format, "dest": str(dest),
                                                     "projects": sorted(allowed)})

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
    report = ExportReport(dest=dest, rows=[], excluded=excluded, failures=list(frozen.gone), changed=frozen.changed,
                          details=list(frozen.gone), failed=list(frozen.gone_files))
    instance_names = {name for name, _ in label_table.INSTANCE_FIELDS}
    for result in map_unordered(export_series, jobs, workers=workers, scheduler=scheduler, chunk_size=1):
        report.written += result.written
        report.kept += result.kept
        report.skipped.extend(result.skipped)
        rows = by_series[result.key]
        if result.error:
            report.failures.append(result.error)
            report.details.append(result.detail)
            report.failed.append(Failure(str(rows[0]["project_id"]), str(rows[0]["series_uid"] or ""),
                                         result.reason))
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
        cohort_id=selection.label, content_hash=(selection.cohort.content_hash or "") if selection.cohort else "",
        cohort_name=selection.name, format=format, recipient=scope.recipient,
        query=None if selection.cohort else {"node": selection.node, "filter": selection.filter},
        options={"split": ",".join(f"{k}={v:g}" for k, v in (weights or {}).items()),
                 "stratify": ",".join(stratify), "seed": seed if weights else None,
                 "bits": bits if format == "png" else None, "size": size if format == "png" else None},
        software_version=__version__, created=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        rows=report.rows, excluded=excluded, failures=report.failures, skipped=report.skipped,
        changed=report.changed,
    )
    write_atomic(dest / "README.md", render_datasheet(facts).encode())
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
    write_atomic(dest / "labels.parquet", sink.getvalue().to_pybytes())
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=present, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: _cell(row.get(c)) for c in present})
    write_atomic(dest / "labels.csv", text.getvalue().encode())


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
    write_atomic(dest / "manifest.csv", text.getvalue().encode())
    write_atomic(dest / "manifest.json", json.dumps(entries, indent=1).encode())


def iter_label_rows(report: ExportReport) -> Iterator[dict[str, Any]]:
    """The label rows of an export (for callers that print or filter them)."""
    return iter(report.rows)
