"""Submissions at the commons: create, declare studies, stage clinical rows, commit, quarantine.

The HTTP layer (:mod:`radcommons.server.routes`) only parses requests and renders answers;
every rule lives here, as functions over an engine, an object store and the
:class:`~radcommons.store.index.accounts.Principal` acting. Refusals raise
:class:`SubmissionError` with a stable ``code`` and a ``kind`` the server maps to a status.

The commit (:func:`commit`) reads and gates every declared instance first, then writes the
whole submission in ONE transaction (index records, quarantine entries, study versions,
clinical records, derived fields, the receipt and the audit event): it is recorded whole or
not at all, and a repeated commit returns the stored receipt. A manifest or clinical post that
came while the commit gated makes it commit nothing (``submission_changed``: commit again). A
study declared with the version its manifest was built on (``base_version``) is versioned only
if that is still its latest version, checked in that transaction; otherwise it alone is left as it is, and its receipt entry
says so (:data:`CHANGED_SINCE_READ`) while the other studies commit, whatever files it lacks: a
file declared as held may be the copy of an instance that a newer version replaced. Only an
instance this site holds now in the project counts as held; an older version's objects do not
(a study answered changed_since_read needs nothing more, and one not stale is versioned from
files the submission holds, not from copies that a correction replaced).
"""

from __future__ import annotations

import datetime as _dt
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace as _replace
from typing import Any, TypeVar

from sqlalchemy import Engine, bindparam, column, delete, func, insert, select, true, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from radcommons.client import CHANGED_SINCE_READ
from radcommons.dicom.index_fields import InstanceFields
from radcommons.dictionary import LINK_COLUMN_SUFFIX, validate_records
from radcommons.errors import UserError
from radcommons.pipelines.indexing import (
    CLINICAL_NODES,
    Examined,
    IndexWriter,
    deid_gate,
    examine,
    index_transaction,
)
from radcommons.store.index import node_tables
from radcommons.store.index.accounts import Principal, as_utc, record_audit, record_audits, require_projects, utcnow
from radcommons.store.index.schema import system_table
from radcommons.store.index.system import (
    QUARANTINE_DELETED,
    QUARANTINE_HELD,
    QUARANTINE_RELEASED,
    SUBMISSION_ABANDONED,
    SUBMISSION_COMMITTED,
    SUBMISSION_OPEN,
)
from radcommons.store.objects import ObjectInfo, ObjectNotFoundError, ObjectStore, validate_digest

MAX_RECORDS_PER_POST = 50_000


class SubmissionError(UserError):
    """A refused request: ``kind`` is not_found | forbidden | conflict | invalid; ``extra`` goes in the error body."""

    def __init__(self, message: str, hint: str, *, code: str, kind: str, **extra: Any) -> None:
        super().__init__(message, hint)
        self.code = code
        self.kind = kind
        self.extra = extra


def _iso(value: _dt.datetime | None) -> str | None:
    value = as_utc(value)
    return value.isoformat() if value is not None else None


# ---------------------------------------------------------------------- access


def _require_contributor(principal: Principal) -> None:
    """403 unless ``principal`` may submit: a curator or admin, or a contributor with its site (an
    account made before a site was required would otherwise submit as any site it names)."""
    if principal.role not in ("admin", "curator", "contributor"):
        raise SubmissionError(f"a {principal.role} may not submit data",
                              "ask an administrator for a contributor account", code="forbidden", kind="forbidden")
    if not principal.is_curator and not principal.site_id:
        raise SubmissionError(f"contributor {principal.name!r} has no site, so it may not submit for any",
                              "ask an administrator for a contributor account with its site (radcommons admin "
                              "user add NAME --role contributor --project P --site SITE)",
                              code="forbidden", kind="forbidden")


def check_project(principal: Principal, project: str) -> None:
    """403 unless ``principal`` may submit to ``project``."""
    _require_contributor(principal)
    if not principal.may_submit_to(project):
        granted = ", ".join(sorted(principal.projects)) or "none"
        raise SubmissionError(f"user {principal.name!r} may not submit to project {project!r}",
                              f"projects granted to it: {granted}; ask an administrator "
                              f"(radcommons admin user grant {principal.name} --project {project})",
                              code="forbidden", kind="forbidden")


def check_curator_project(conn: Connection, principal: Principal, project: str) -> None:
    """404 when a curator or an administrator names a project that does not exist. A contributor
    submits to the projects an administrator granted it by name; a curator may submit anywhere,
    so a mistyped name used to create a new project (open to every researcher) at the commit."""
    if not principal.is_curator:
        return
    try:
        require_projects(conn, [project])
    except UserError as error:
        raise SubmissionError(error.message, error.hint, code="not_found", kind="not_found") from None


#: What a refusal says of the project or site holding a UID when the caller may not read it.
NOT_YOURS = "data you cannot write to"


def may_name_holder(conn: Connection, principal: Principal, project: str, *, site: str | None = None,
                    uid: str | None = None) -> bool:
    """Whether a refusal may name ``project`` (and its site) as holding a UID: only for a caller who
    may read it there, a curator or an administrator, or a contributor granted ``project`` whose
    site it is (``site``, or the site of the study, series or instance ``uid``). Anyone else is told
    the UIDs belong to :data:`NOT_YOURS`: a sequestered or restricted project, or another site, is
    not named to it."""
    if principal.is_curator:
        return True
    if principal.role != "contributor" or project not in principal.projects or not principal.site_id:
        return False
    if site is None and uid is not None:
        site = _site_of(conn, project, uid)
    return site == principal.site_id


def _site_of(conn: Connection, project: str, uid: str) -> str | None:
    """The site of the case of the study, series or instance ``uid`` in ``project``."""
    tables = node_tables()
    study, series, instance, case = (tables[n] for n in ("imaging_study", "series", "instance", "case"))
    by_series = select(case.c.site_id).join(series, series.c.case_id == case.c.id)
    for query in (
        select(case.c.site_id).join(study, study.c.case_id == case.c.id)
        .where(study.c.project_id == project, study.c.study_uid == uid),
        by_series.where(series.c.project_id == project, series.c.series_uid == uid),
        by_series.join(instance, instance.c.series_id == series.c.id)
        .where(instance.c.project_id == project, instance.c.sop_instance_uid == uid),
    ):
        found = conn.execute(query.limit(1)).first()
        if found is not None:
            return found[0]
    return None


def _load(conn: Connection, principal: Principal, submission_id: int) -> Any:
    table = system_table("submission")
    row = conn.execute(select(table).where(table.c.id == submission_id)).first()
    if row is None:
        raise SubmissionError(f"no submission {submission_id}", "create one with POST /api/v1/submissions",
                              code="not_found", kind="not_found")
    check_project(principal, row.project_id)
    if not principal.is_curator and principal.site_id and row.site_id != principal.site_id:
        raise SubmissionError(f"submission {submission_id} belongs to site {row.site_id}, not {principal.site_id}",
                              "use your own site's submissions", code="forbidden", kind="forbidden")
    return row


def _require_open(row: Any) -> None:
    if row.status == SUBMISSION_ABANDONED:
        raise SubmissionError(f"submission {row.id} was abandoned by the commons' operator: it takes no more "
                              "uploads, manifests, clinical records or commit, and what it held was dropped",
                              f"start a new submission (POST /api/v1/submissions with dataset {row.dataset!r}) "
                              "and send everything again; radcommons contribute does so when run again",
                              code="submission_closed", kind="conflict", state=row.status)
    if row.status != SUBMISSION_OPEN:
        raise SubmissionError(f"submission {row.id} is already committed",
                              f"start a new submission (POST /api/v1/submissions with dataset {row.dataset!r}) "
                              "to send corrections", code="submission_closed", kind="conflict")


def open_submission(engine: Engine, principal: Principal, submission_id: int) -> Any:
    """The submission row, checked for access and still open (for uploads)."""
    with engine.connect() as conn:
        row = _load(conn, principal, submission_id)
    _require_open(row)
    return row


def _view(conn: Connection, row: Any) -> dict[str, Any]:
    files, records = system_table("submission_file"), system_table("submission_record")
    n_files = conn.execute(select(func.count()).where(files.c.submission_id == row.id,
                                                      files.c.study_uid.is_not(None))).scalar_one()
    n_studies = conn.execute(select(func.count(files.c.study_uid.distinct()))
                             .where(files.c.submission_id == row.id)).scalar_one()
    n_records = conn.execute(select(func.count()).where(records.c.submission_id == row.id)).scalar_one()
    return {"id": row.id, "project": row.project_id, "dataset": row.dataset, "site_id": row.site_id,
            "status": row.status, "created_by": row.created_by, "created_at": _iso(row.created_at),
            "committed_at": _iso(row.committed_at), "files": n_files, "studies": n_studies,
            "clinical_records": n_records}


# ---------------------------------------------------------------------- submissions


def create_submission(engine: Engine, principal: Principal, *, project: str, dataset: str,
                      site_id: str | None, client: str | None = None) -> tuple[dict[str, Any], bool]:
    """The open submission of (project, dataset), created when there is none; (view, created)."""
    check_project(principal, project)
    site = site_id or principal.site_id
    if not site:
        raise SubmissionError("site_id is required for a user without a site", "add \"site_id\" to the body",
                              code="validation_error", kind="invalid")
    if not principal.is_curator and principal.site_id and site != principal.site_id:
        raise SubmissionError(f"user {principal.name!r} submits for site {principal.site_id}, not {site}",
                              f"use site_id {principal.site_id!r}", code="forbidden", kind="forbidden")
    table = system_table("submission")
    with engine.begin() as conn:
        check_curator_project(conn, principal, project)
        row = conn.execute(select(table).where(table.c.project_id == project, table.c.dataset == dataset,
                                               table.c.status == SUBMISSION_OPEN).order_by(table.c.id)).first()
        if row is not None:
            if row.site_id != site:
                raise SubmissionError(f"dataset {dataset!r} of project {project} is open for site {row.site_id}",
                                      "a dataset belongs to one site: choose another dataset name",
                                      code="conflict", kind="conflict")
            return _view(conn, row), False
        new_id = conn.execute(insert(table).values(
            project_id=project, dataset=dataset, site_id=site, status=SUBMISSION_OPEN, user_id=principal.user_id,
            created_by=principal.name, created_at=utcnow(),
        ).returning(table.c.id)).scalar_one()
        record_audit(conn, actor=principal.name, action="submission.create", target=f"submission {new_id}",
                     project=project, client=client, records=1, detail={"dataset": dataset, "site_id": site})
        row = conn.execute(select(table).where(table.c.id == new_id)).one()
        return _view(conn, row), True


def get_submission(engine: Engine, principal: Principal, submission_id: int) -> dict[str, Any]:
    with engine.connect() as conn:
        return _view(conn, _load(conn, principal, submission_id))


def list_submissions(engine: Engine, principal: Principal, project: str | None = None) -> list[dict[str, Any]]:
    _require_contributor(principal)
    table = system_table("submission")
    query = select(table).order_by(table.c.id.desc())
    if project:
        query = query.where(table.c.project_id == project)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
        return [_view(conn, r) for r in rows if principal.is_curator or (
            r.project_id in principal.projects and r.site_id == principal.site_id)]


#: ``submission_file.status`` of a file uploaded to the open submission (before the commit sets
#: its outcome). Only such files count as present: an object in the store that another
#: submission uploaded is not this one's to claim (uploading bytes that hash to it is how a
#: site proves it holds them; the store keeps one copy), nor is its existence told.
UPLOADED = "uploaded"
#: Digests per ``IN (...)`` list.
_IN_LIST = 500


_Key = TypeVar("_Key", str, int)


def _in_lists(values: Iterable[_Key]) -> Iterator[list[_Key]]:
    """``values`` (digests, row ids) sorted, in lists of at most :data:`_IN_LIST` (one ``IN (...)`` each)."""
    wanted = sorted(set(values))
    for start in range(0, len(wanted), _IN_LIST):
        yield wanted[start:start + _IN_LIST]


def uploaded_files(engine: Engine, submission_id: int, digests: Sequence[str]) -> set[str]:
    """The files among ``digests`` submission ``submission_id`` holds: uploaded to it (its bytes
    received), or :func:`indexed_for_site`."""
    table, submissions = system_table("submission_file"), system_table("submission")
    found: set[str] = set()
    with engine.connect() as conn:
        for some in _in_lists(digests):
            found.update(conn.execute(select(table.c.sha256).where(
                table.c.submission_id == submission_id, table.c.status == UPLOADED,
                table.c.sha256.in_(some))).scalars())
        row = conn.execute(select(submissions.c.project_id, submissions.c.site_id)
                           .where(submissions.c.id == submission_id)).first()
        if row is not None:
            found |= indexed_for_site(conn, row.project_id, row.site_id, set(digests) - found)
    return found


def indexed_for_site(conn: Connection, project: str, site: str | None, digests: set[str]) -> set[str]:
    """The files among ``digests`` already indexed in ``project`` from ``site``'s own cases.

    A site that sends its export again (a corrected study, a rerun after a commit) need not send
    these bytes again: it sent them before, and they are its own data in this project. Objects of
    another project or site still count as nothing until uploaded.
    """
    if not site or not digests:
        return set()
    tables = node_tables()
    instance, series, case = tables["instance"], tables["series"], tables["case"]
    found: set[str] = set()
    for some in _in_lists(digests):
        found.update(conn.execute(
            select(instance.c.object_id).join(series, instance.c.series_id == series.c.id)
            .join(case, series.c.case_id == case.c.id)
            .where(instance.c.project_id == project, case.c.site_id == site,
                   instance.c.object_id.in_(some))).scalars())
    return found


def _claim_open(conn: Connection, principal: Principal, submission_id: int) -> None:
    """Refuse (409 submission_closed) unless the submission is still open, and keep it so until
    ``conn``'s transaction ends: its first statement writes the submission's row, so SQLite takes its
    write lock now (reading what any commit before it wrote) and PostgreSQL locks the row (a commit
    that set it committed meanwhile is waited for, then seen). A request that found the submission
    open before a commit cannot record anything under it after that commit."""
    table = system_table("submission")
    still_open = conn.execute(update(table).where(table.c.id == submission_id, table.c.status == SUBMISSION_OPEN)
                              .values(status=SUBMISSION_OPEN)).rowcount
    if not still_open:
        _require_open(_load(conn, principal, submission_id))


def note_uploads(engine: Engine, principal: Principal, submission_id: int, uploads: Sequence[tuple[str, int, bool]],
                 client: str | None) -> None:
    """Record completed uploads (``(sha256, size, new object)``) as the submission's and audit them,
    one event each, in one transaction."""
    if not uploads:
        return
    table = system_table("submission_file")
    # A few statements for the whole request (a batch holds up to 1,000 files): one each per file
    # cost PostgreSQL three round trips a file.
    with engine.begin() as conn:
        _claim_open(conn, principal, submission_id)
        for some in _in_lists([sha256 for sha256, _, _ in uploads]):
            # declared (no status yet) or not: the files are this submission's now
            conn.execute(update(table).where(table.c.submission_id == submission_id,
                                             table.c.sha256.in_(some),
                                             table.c.status.is_(None)).values(status=UPLOADED))
        # not declared yet: a row of its own (kept when a concurrent request recorded it first)
        dialect = {"postgresql": postgresql, "sqlite": sqlite}[conn.dialect.name]
        conn.execute(dialect.insert(table).on_conflict_do_nothing(index_elements=["submission_id", "sha256"]),
                     [{"submission_id": submission_id, "sha256": sha256, "size": size, "status": UPLOADED}
                      for sha256, size, _ in uploads])
        record_audits(conn, actor=principal.name, action="file.upload", target=f"submission {submission_id}",
                      client=client, details=[{"sha256": sha256, "size": size, "new_object": created}
                                              for sha256, size, created in uploads])


# ---------------------------------------------------------------------- manifests


@dataclass(frozen=True)
class ManifestFile:
    sha256: str
    size: int
    path_in_package: str


def put_manifest(engine: Engine, store: ObjectStore, principal: Principal, submission_id: int, study_uid: str,
                 files: Sequence[ManifestFile], client: str | None = None,
                 base_version: int | None = None) -> dict[str, Any]:
    """Declare (or replace) the instances of one study; returns counts and the files not yet uploaded.

    ``base_version``: the study version the sender built the manifest on (0: the commons had none
    of the study when it read), kept for the commit, which versions the study only if that is
    still its latest version (:data:`CHANGED_SINCE_READ`); None: no such check."""
    study_uid = study_uid.strip()
    if not study_uid or len(study_uid) > 64:
        raise SubmissionError(f"not a Study Instance UID: {study_uid!r}", "give the study's UID (at most 64 characters)",
                              code="validation_error", kind="invalid")
    if base_version is not None and base_version < 0:
        raise SubmissionError(f"not a study version: {base_version}",
                              "give the version the manifest was built on (0: none)",
                              code="validation_error", kind="invalid")
    seen: set[str] = set()
    paths: dict[str, int] = {}
    for number, entry in enumerate(files):
        try:
            validate_digest(entry.sha256)
        except UserError as error:
            raise SubmissionError(error.message, error.hint, code="validation_error", kind="invalid") from None
        if entry.sha256 in seen:
            raise SubmissionError(f"file {entry.sha256} is listed twice in study {study_uid}",
                                  "list each instance once", code="validation_error", kind="invalid")
        seen.add(entry.sha256)
        # Two files at one path: the receipt and the curators' lists could not tell them apart.
        first = paths.setdefault(entry.path_in_package, number)
        if first != number:
            raise SubmissionError(f"files.{first} and files.{number} of study {study_uid} have the same "
                                  f"path_in_package {entry.path_in_package!r}",
                                  "give each file of the study its own path", code="validation_error", kind="invalid")
    table = system_table("submission_file")
    with engine.begin() as conn:
        _claim_open(conn, principal, submission_id)  # first: a commit comes wholly before or after
        row = _load(conn, principal, submission_id)
        elsewhere = conn.execute(select(table.c.sha256, table.c.study_uid).where(
            table.c.submission_id == submission_id, table.c.sha256.in_(sorted(seen)),
            table.c.study_uid.is_not(None), table.c.study_uid != study_uid)).first()
        if elsewhere is not None:
            raise SubmissionError(f"file {elsewhere.sha256} is already declared in study {elsewhere.study_uid}",
                                  "an instance belongs to one study", code="conflict", kind="conflict")
        # What was uploaded to this submission stays so, declared in this study or not.
        replaced = (table.c.study_uid == study_uid) | table.c.sha256.in_(sorted(seen))
        uploaded = dict(conn.execute(select(table.c.sha256, table.c.size).where(
            table.c.submission_id == submission_id, table.c.status == UPLOADED, replaced)).tuples().all())
        sizes = {f.sha256: f.size for f in files}
        uploaded |= {digest: sizes[digest]
                     for digest in indexed_for_site(conn, row.project_id, row.site_id, seen - set(uploaded))}
        conn.execute(delete(table).where(table.c.submission_id == submission_id, replaced))
        rows = [{"submission_id": submission_id, "sha256": f.sha256, "size": f.size, "study_uid": study_uid,
                 "path_in_package": f.path_in_package, "status": UPLOADED if f.sha256 in uploaded else None,
                 "base_version": base_version}
                for f in files]
        rows += [{"submission_id": submission_id, "sha256": digest, "size": size, "study_uid": None,
                  "path_in_package": None, "status": UPLOADED, "base_version": None}
                 for digest, size in uploaded.items() if digest not in seen]
        if rows:
            conn.execute(insert(table), rows)
        detail: dict[str, Any] = {"study_uid": study_uid}
        if base_version is not None:
            detail["base_version"] = base_version
        record_audit(conn, actor=principal.name, action="study.manifest", target=f"submission {submission_id}",
                     project=row.project_id, client=client, records=len(files), detail=detail)
    missing = [f.sha256 for f in files if f.sha256 not in uploaded or not store.exists(f.sha256)]
    answer: dict[str, Any] = {"study_uid": study_uid, "files": len(files), "missing": missing}
    if base_version is not None:
        answer["base_version"] = base_version
    return answer


# ---------------------------------------------------------------------- clinical records


def _problem_json(problem: Any) -> dict[str, Any]:
    return {"column": problem.column, "value": problem.value, "code": problem.code, "message": problem.message,
            "allowed": list(problem.allowed), "suggestion": problem.suggestion}


def post_clinical(engine: Engine, principal: Principal, submission_id: int, node: str,
                  records: Sequence[Any], first_row: int = 1, client: str | None = None) -> dict[str, Any]:
    """Validate and stage clinical records of ``node``; every row is accepted or rejected with its problems."""
    if node not in CLINICAL_NODES:
        raise SubmissionError(f"{node!r} is not a clinical node type", f"use one of: {', '.join(CLINICAL_NODES)}",
                              code="unknown_node", kind="invalid")
    if len(records) > MAX_RECORDS_PER_POST:
        raise SubmissionError(f"{len(records)} records in one request; the limit is {MAX_RECORDS_PER_POST}",
                              "send them in several requests (use first_row to keep the line numbers)",
                              code="too_large", kind="too_large")
    with engine.connect() as conn:
        row = _load(conn, principal, submission_id)
    _require_open(row)
    # Problems found before validation (shape, project, dataset), by row number.
    early: dict[int, list[dict[str, Any]]] = defaultdict(list)
    prepared: list[dict[str, Any]] = []
    for index, record in enumerate(records):
        number = first_row + index
        if not isinstance(record, Mapping):
            early[number].append({"column": None, "value": None, "code": "type", "allowed": [], "suggestion": None,
                                  "message": "each record must be a JSON object of property names to values"})
            prepared.append({})
            continue
        record = dict(record)
        project = record.pop("project_id", None)
        if project not in (None, "", row.project_id):
            early[number].append({"column": "project_id", "value": str(project), "code": "project", "allowed": [],
                                  "suggestion": None,
                                  "message": f"project_id {project!r} differs from the submission's project "
                                             f"{row.project_id!r}: leave it out"})
        if node == "case":
            dataset = record.get(f"dataset{LINK_COLUMN_SUFFIX}")
            if dataset in (None, ""):
                record[f"dataset{LINK_COLUMN_SUFFIX}"] = row.dataset
            elif dataset != row.dataset:
                early[number].append({"column": f"dataset{LINK_COLUMN_SUFFIX}", "value": str(dataset),
                                      "code": "dataset", "allowed": [], "suggestion": None,
                                      "message": f"dataset {dataset!r} differs from the submission's dataset "
                                                 f"{row.dataset!r}: leave it out"})
        prepared.append(record)
    validated = validate_records(prepared, node, first_row=first_row, file=f"{node} records")
    accepted = {r["_row"]: r for r in validated.records}
    problems: dict[int, list[dict[str, Any]]] = defaultdict(list)
    warnings: list[dict[str, Any]] = []
    for problem in validated.problems:
        if problem.row is None:
            warnings.append(_problem_json(problem))
        else:
            problems[problem.row].append(_problem_json(problem))
    rows: list[dict[str, Any]] = []
    staged: list[dict[str, Any]] = []
    for index, record in enumerate(prepared):
        number = first_row + index
        row_problems = early.get(number, []) + problems.get(number, [])
        submitter_id = record.get("submitter_id")
        submitter_id = str(submitter_id).strip() if submitter_id not in (None, "") else None
        status = "accepted" if number in accepted and not row_problems else "rejected"
        if status == "rejected" and not row_problems:
            row_problems = [{"column": None, "value": None, "code": "rejected", "allowed": [], "suggestion": None,
                             "message": "the row was not accepted"}]
        clean = {k: v for k, v in accepted.get(number, {}).items() if k != "_row"}
        rows.append({"row": number, "submitter_id": submitter_id, "status": status, "problems": row_problems})
        staged.append({"submission_id": submission_id, "node": node, "submitter_id": submitter_id, "row": number,
                       "status": status, "record": clean if status == "accepted" else None,
                       "problems": row_problems or None, "created_at": utcnow()})
    table = system_table("submission_record")
    with engine.begin() as conn:
        _claim_open(conn, principal, submission_id)  # first: a commit comes wholly before or after
        row = _load(conn, principal, submission_id)
        names = sorted({s["submitter_id"] for s in staged if s["submitter_id"]})
        for start in range(0, len(names), 500):
            conn.execute(delete(table).where(table.c.submission_id == submission_id, table.c.node == node,
                                             table.c.submitter_id.in_(names[start:start + 500])))
        if staged:
            conn.execute(insert(table), staged)
        n_accepted = sum(1 for r in rows if r["status"] == "accepted")
        record_audit(conn, actor=principal.name, action="clinical.post", target=f"submission {submission_id}",
                     project=row.project_id, client=client, records=len(rows),
                     detail={"node": node, "accepted": n_accepted, "rejected": len(rows) - n_accepted})
    result: dict[str, Any] = {"node": node, "accepted": n_accepted, "rejected": len(rows) - n_accepted, "rows": rows}
    if warnings:
        result["warnings"] = warnings
    return result


# ---------------------------------------------------------------------- commit


@dataclass
class _File:
    id: int
    sha256: str
    size: int | None
    study_uid: str
    path: str | None
    uploaded: bool
    base_version: int | None = None  #: the study version the sender read (0: none), None: not said
    missing: bool = False  #: declared but neither uploaded to the submission nor held (not examined)
    examined: Examined | None = None
    status: str = ""
    reason: str = ""
    quarantine_id: int | None = None


def _examine_stored(store: ObjectStore, entry: _File) -> Examined:
    try:
        actual = store.size(entry.sha256)
    except ObjectNotFoundError:
        return Examined("rejected", "not in the object store")
    if entry.size is not None and entry.size != actual:
        return Examined("rejected", f"the manifest says {entry.size} bytes, the uploaded file has {actual}")
    with store.open_unverified(entry.sha256) as handle:
        examined = examine(handle, object_id=entry.sha256, size=actual, gate=deid_gate)
    if examined.fields is not None and examined.study_uid != entry.study_uid:
        return Examined("rejected", f"its Study Instance UID {examined.study_uid} differs from the declared "
                                    f"study {entry.study_uid}")
    return examined


def commit(engine: Engine, store: ObjectStore, principal: Principal, submission_id: int,
           client: str | None = None) -> dict[str, Any]:
    """Gate, index or quarantine everything declared, in one transaction; return the receipt."""
    row, entries, staged = _read_and_gate(engine, store, principal, submission_id)
    if row.status == SUBMISSION_COMMITTED:
        return dict(row.receipt)
    try:
        return _commit_transaction(engine, principal, row, entries, staged, client)
    except _AlreadyCommitted:  # a concurrent commit won: its receipt is the answer
        with engine.connect() as conn:
            row = _load(conn, principal, submission_id)
        if row.status != SUBMISSION_COMMITTED:  # abandoned meanwhile (radcommons admin submission abandon)
            _require_open(row)
        return dict(row.receipt)


def _read_and_gate(engine: Engine, store: ObjectStore, principal: Principal,
                   submission_id: int) -> tuple[Any, list[_File], Sequence[Any]]:
    """What the commit writes: the submission, its declared files (read and gated) and its staged
    clinical records. Nothing is locked yet: the commit's transaction checks that the submission
    still holds exactly these (:func:`_require_unchanged`). A committed submission: no files."""
    files_table, records_table = system_table("submission_file"), system_table("submission_record")
    with engine.connect() as conn:
        row = _load(conn, principal, submission_id)
        if row.status == SUBMISSION_COMMITTED:
            return row, [], []
        _require_open(row)  # not an abandoned one: its files are no longer kept
        entries = [_File(r.id, r.sha256, r.size, r.study_uid, r.path_in_package, r.status == UPLOADED,
                         r.base_version)
                   for r in conn.execute(select(files_table).where(files_table.c.submission_id == submission_id,
                                                                   files_table.c.study_uid.is_not(None))
                                         .order_by(files_table.c.id))]
        staged = conn.execute(select(records_table).where(records_table.c.submission_id == submission_id)
                              .order_by(records_table.c.id)).all()
        held = indexed_for_site(conn, row.project_id, row.site_id, {e.sha256 for e in entries if not e.uploaded})
        entries = [e if e.uploaded or e.sha256 not in held else _replace(e, uploaded=True) for e in entries]
        # Only what was uploaded to this submission (or is this site's already in this project): an
        # object another submission stored is not this one's.
        for entry in entries:
            entry.missing = not entry.uploaded or not store.exists(entry.sha256)
        # A study declared on a version that is no longer its latest is answered changed_since_read
        # whatever it lacks: a file it declared as held may be one a newer version replaced (a
        # corrected copy of an instance), and it alone must wait, not the whole submission.
        stale = _stale_studies(conn, row.project_id, [e for e in entries if e.missing])
    _refuse_missing([e for e in entries if e.missing and e.study_uid not in stale])
    # Reading and gating happen before the transaction: it holds locks only while writing. A
    # missing file is never read (it is not this submission's to examine).
    for entry in entries:
        if not entry.missing:
            entry.examined = _examine_stored(store, entry)
    return row, entries, staged


def _stale_studies(conn: Connection, project: str, entries: Sequence[_File]) -> set[str]:
    """The studies of ``entries`` declared with a base version that is not their latest version now."""
    bases = {e.study_uid: e.base_version for e in entries if e.base_version is not None}
    latest = IndexWriter(project, "", "").latest_versions(conn, bases)
    return {uid for uid, base in bases.items() if latest.get(uid, 0) != base}


def _refuse_missing(missing: Sequence[_File]) -> None:
    if missing:
        raise SubmissionError(f"{len(missing)} declared file(s) were never uploaded to this submission",
                              "upload them (files the commons holds already too: uploading the bytes is how a "
                              "site shows it holds them), then commit again",
                              code="files_missing", kind="conflict", missing=[e.sha256 for e in missing])


def _require_unchanged(conn: Connection, submission_id: int, entries: Sequence[_File], staged: Sequence[Any]) -> None:
    """409 submission_changed unless the submission holds exactly the declared files and clinical
    records the commit read. Called once the commit holds the submission (a manifest or clinical
    post waits for it, then finds it committed): one that came between the commit's reading and
    that moment would be left out, or its replaced rows would be written. A manifest or a post
    replaces rows, so their ids tell."""
    files, records = system_table("submission_file"), system_table("submission_record")
    declared = conn.execute(select(files.c.id).where(files.c.submission_id == submission_id,
                                                     files.c.study_uid.is_not(None)).order_by(files.c.id)).scalars()
    posted = conn.execute(select(records.c.id).where(records.c.submission_id == submission_id)
                          .order_by(records.c.id)).scalars()
    if list(declared) != [e.id for e in entries] or list(posted) != [r.id for r in staged]:
        raise SubmissionError(f"submission {submission_id} changed while it was being committed: a study manifest "
                              "or clinical records arrived after the commit had read them; nothing was committed",
                              "commit again: the commit then includes what arrived",
                              code="submission_changed", kind="conflict")


class _AlreadyCommitted(Exception):
    """Raised inside the commit transaction to roll it back when another commit came first."""


def _commit_transaction(engine: Engine, principal: Principal, row: Any, entries: list[_File],
                        staged: Sequence[Any], client: str | None) -> dict[str, Any]:
    files_table, table = system_table("submission_file"), system_table("submission")
    submission_id = row.id
    with index_transaction(engine) as conn:
        claimed = conn.execute(update(table).where(table.c.id == submission_id, table.c.status == SUBMISSION_OPEN)
                               .values(status=SUBMISSION_COMMITTED, committed_at=utcnow())).rowcount
        if not claimed:
            raise _AlreadyCommitted
        _require_unchanged(conn, submission_id, entries, staged)
        writer = IndexWriter(row.project_id, row.dataset, principal.name)
        writer.ensure_project(conn)
        clinical: list[dict[str, Any]] = []
        by_node: dict[str, list[Any]] = defaultdict(list)
        for record in staged:
            by_node[record.node].append(record)

        def write_records(node: str) -> None:
            for record in by_node.get(node, []):
                outcome = {"node": node, "row": record.row, "submitter_id": record.submitter_id,
                           "status": record.status,
                           "problems": [p.get("message", "") if p.get("column") is None
                                        else f"{p['column']}: {p.get('message', '')}" for p in record.problems or []]}
                if record.status == "accepted":
                    problem = writer.write_clinical(conn, node, {**record.record}, row.site_id)
                    if problem:
                        outcome["status"], outcome["problems"] = "rejected", [problem]
                clinical.append(outcome)

        write_records("case")
        studies = [_commit_study(conn, writer, principal, row, study_uid,
                                 [e for e in entries if e.study_uid == study_uid])
                   for study_uid in dict.fromkeys(e.study_uid for e in entries)]
        for node in CLINICAL_NODES[1:]:
            write_records(node)
        writer.finish(conn)
        if entries:  # one statement for all the files (executemany)
            conn.execute(update(files_table).where(files_table.c.id == bindparam("file_id"))
                         .values(status=bindparam("new_status"), reason=bindparam("new_reason")),
                         [{"file_id": e.id, "new_status": e.status, "new_reason": e.reason or None} for e in entries])
        uploaded_unreferenced: list[str] = []
        receipt = _receipt(row, studies, clinical, uploaded_unreferenced)
        conn.execute(update(table).where(table.c.id == submission_id).values(receipt=receipt))
        counts = receipt["counts"]
        record_audit(conn, actor=principal.name, action="submission.commit", target=f"submission {submission_id}",
                     project=row.project_id, client=client,
                     records=counts["instances"]["indexed"] + counts["clinical"]["accepted"], detail=counts)
    return receipt


@dataclass(frozen=True)
class _Holders:
    """Who else holds the UIDs of a study about to be written (a commit's or a release's): a study,
    series or instance UID belongs to one project (as at STOW-RS), and a study to the site that sent
    it. A refusal names the project or site only to a caller who may read it there
    (:func:`may_name_holder`)."""

    elsewhere: dict[str, str]  #: UID -> the other project holding it
    study_refusal: str | None  #: why no instance of the study may be written, if none may
    hidden: bool  #: the study is another site's that the caller may not read

    @classmethod
    def of(cls, conn: Connection, writer: IndexWriter, principal: Principal, site_id: str | None, study_uid: str,
           batch: Sequence[InstanceFields]) -> _Holders:
        elsewhere = writer.held_elsewhere(conn, batch)
        other = elsewhere.get(study_uid)
        other_site = writer.held_by_other_site(conn, [study_uid], site_id or "").get(study_uid)
        hidden = other_site is not None and not may_name_holder(conn, principal, writer.project, site=other_site)
        refusal = None
        if other is not None:
            refusal = (f"study {study_uid} is already in project {other}"
                       if may_name_holder(conn, principal, other, uid=study_uid)
                       else f"study {study_uid} belongs to {NOT_YOURS}")
        elif other_site is not None:
            refusal = (f"study {study_uid} belongs to {NOT_YOURS if hidden else f'site {other_site}'}: "
                       "only that site may send a new version of it")
        return cls(elsewhere, refusal, hidden)

    def uid_refusal(self, conn: Connection, principal: Principal, fields: InstanceFields) -> str | None:
        """Why this instance may not be written: its SOP Instance or Series UID is another project's."""
        uid = next((u for u in (fields.instance["sop_instance_uid"], fields.series["series_uid"])
                    if u in self.elsewhere), None)
        if uid is None:
            return None
        return (f"its SOP Instance or Series UID is already in project {self.elsewhere[uid]}"
                if may_name_holder(conn, principal, self.elsewhere[uid], uid=uid)
                else f"its SOP Instance or Series UID belongs to {NOT_YOURS}")


def _commit_study(conn: Connection, writer: IndexWriter, principal: Principal, submission: Any, study_uid: str,
                  entries: list[_File]) -> dict[str, Any]:
    """Index, quarantine or reject the instances of one declared study; its receipt entry.

    A refusal names the project or site that holds a UID only to a caller who may read it
    there (:func:`may_name_holder`); nor are another site's version numbers told."""
    holders = _Holders.of(conn, writer, principal, submission.site_id, study_uid,
                          [e.examined.fields for e in entries if e.examined and e.examined.fields])
    hidden = holders.hidden
    base = next((e.base_version for e in entries if e.base_version is not None), None)
    if holders.study_refusal is None and base is not None:
        # Read under the index's write lock, in the transaction that would make the new version:
        # no other commit can version the study between this check and that version.
        latest = writer.latest_version(conn, study_uid)
        if latest != base:
            return _changed_since_read(study_uid, entries, base, latest)
    # Its files were missing when its base version looked stale; that version is its latest now
    # (a base beyond the latest that a commit since reached): they are missing after all.
    _refuse_missing([e for e in entries if e.missing])
    passing: list[_File] = []
    for entry in entries:
        examined = entry.examined
        assert examined is not None
        if holders.study_refusal is not None and examined.status != "rejected":
            examined = Examined("rejected", holders.study_refusal)
        if examined.status == "ok":
            assert examined.fields is not None
            refusal = holders.uid_refusal(conn, principal, examined.fields)
            if refusal is not None:
                examined = Examined("rejected", refusal)
        if examined.status == "rejected":
            entry.status, entry.reason = "rejected", examined.reason
        elif examined.status == "quarantine":
            entry.status, entry.reason = "quarantined", examined.reason
            entry.quarantine_id = writer.quarantine(
                conn, sha256=entry.sha256, size=entry.size, reason=examined.reason, findings=examined.findings,
                source="submission", site_id=submission.site_id, submission_id=submission.id,
                sop_instance_uid=examined.sop_instance_uid, study_uid=study_uid, path_in_package=entry.path)
        else:
            passing.append(entry)
    new = {e.examined.sop_instance_uid: e.sha256 for e in passing if e.examined}
    study_id = writer.study_id(conn, study_uid)
    status = "accepted"
    version = 0
    if study_id is not None:
        before = {uid: v["object_id"] for uid, v in writer.study_instances(conn, study_id).items()}
        changed = any(before.get(uid) != digest for uid, digest in new.items())
        quarantined_uids = {e.examined.sop_instance_uid for e in entries if e.status == "quarantined" and e.examined}
        # The declared study is the whole study: instances it no longer lists go (those held in
        # quarantine keep their previous content until a curator decides).
        dropped = set(before) - set(new) - quarantined_uids
        version = writer.latest_version(conn, study_uid)
        if passing and (changed or dropped):
            writer.keep_baselines(conn, {study_uid: study_id})  # indexed before versions were kept
            status = "new_version"
        elif passing:
            status = "unchanged"
    results = writer.write_instances(conn, [e.examined.fields for e in passing  # type: ignore[misc]
                                            if e.examined is not None], submission.site_id)
    for entry, result in zip(passing, results):
        entry.status = "unchanged" if result == "unchanged" else "indexed"
    if passing:
        study_id = writer.study_id(conn, study_uid)
        assert study_id is not None
        if status == "new_version":
            writer.remove_instances(conn, study_id, set(new) | {e.examined.sop_instance_uid for e in entries
                                                               if e.status == "quarantined" and e.examined})
            writer.refresh_studies(conn, {study_id: passing[0].examined.fields})  # type: ignore[dict-item]
        if status in ("accepted", "new_version"):
            version = writer.record_version(conn, study_uid, study_id,
                                            change="created" if status == "accepted" else "resubmitted",
                                            submission_id=submission.id)
    counts = {s: sum(1 for e in entries if e.status == s) for s in ("indexed", "unchanged", "quarantined", "rejected")}
    if not passing:
        status = "quarantined" if counts["quarantined"] else "rejected"
    elif counts["quarantined"] or counts["rejected"]:
        status = "partial"
    return {"study_uid": study_uid, "status": status, "version": None if hidden else version or None, **counts,
            "files": [{"sha256": e.sha256, "path_in_package": e.path, "status": e.status, "reason": e.reason,
                       **({"quarantine_id": e.quarantine_id} if e.quarantine_id else {})}
                      for e in entries if e.status in ("quarantined", "rejected")]}


def _changed_since_read(study_uid: str, entries: list[_File], base: int, latest: int) -> dict[str, Any]:
    """The receipt entry of a study whose manifest was built on version ``base`` while its latest
    version is ``latest``: none of its instances is written (nor quarantined), the study stays as
    it is, and the sender sends it again built on the latest version. A manifest built on an
    earlier version lacks what the versions since added, and would have dropped it."""
    if base > latest:
        reason = (f"the commons has no version {base} of the study (its latest is version {latest}): "
                  f"none of its instances was written; send it again built on version {latest}")
    else:
        read = f"read version {base}" if base else "read it (the commons had no version of it then)"
        reason = (f"the study changed at the commons (version {latest}) after this sender {read}: none of its "
                  f"instances was written; send it again built on version {latest}, with its instances")
    for entry in entries:
        if entry.examined is not None and entry.examined.status == "rejected":
            entry.status, entry.reason = "rejected", entry.examined.reason
        else:
            entry.status, entry.reason = "rejected", reason
    return {"study_uid": study_uid, "status": CHANGED_SINCE_READ, "version": latest or None,
            "base_version": base, "reason": reason, "indexed": 0, "unchanged": 0, "quarantined": 0,
            "rejected": len(entries),
            "files": [{"sha256": e.sha256, "path_in_package": e.path, "status": e.status, "reason": e.reason}
                      for e in entries]}


def _receipt(row: Any, studies: list[dict[str, Any]], clinical: list[dict[str, Any]],
             unreferenced: list[str]) -> dict[str, Any]:
    instances = {s: sum(study[s] for study in studies) for s in ("indexed", "unchanged", "quarantined", "rejected")}
    return {
        "submission_id": row.id, "project": row.project_id, "dataset": row.dataset, "site_id": row.site_id,
        "status": SUBMISSION_COMMITTED, "committed_at": utcnow().isoformat(),
        "counts": {"studies": len(studies), "instances": instances,
                   "clinical": {"accepted": sum(1 for c in clinical if c["status"] == "accepted"),
                                "rejected": sum(1 for c in clinical if c["status"] == "rejected")}},
        "studies": studies, "clinical": clinical, "unreferenced_files": unreferenced,
    }


def get_receipt(engine: Engine, principal: Principal, submission_id: int) -> dict[str, Any]:
    with engine.connect() as conn:
        row = _load(conn, principal, submission_id)
    if row.receipt is None:
        raise SubmissionError(f"submission {submission_id} is not committed yet", "commit it first",
                              code="not_found", kind="not_found")
    return dict(row.receipt)


def study_versions(engine: Engine, principal: Principal, project: str, study_uid: str) -> list[dict[str, Any]]:
    """A study's history, oldest first: for a curator or an administrator; for a contributor granted
    ``project``, only a study of its own site (the study's case, or a submission that sent a
    version of it, is its site's; a contributor without a site: a submission it made). Anyone else
    is told there is no such study (404, as for one that does not exist: existence is not revealed)."""
    table = system_table("study_version")
    with engine.connect() as conn:
        rows = conn.execute(select(table).where(table.c.project_id == project, table.c.study_uid == study_uid)
                            .order_by(table.c.version)).all()
        readable = bool(rows) and (principal.is_curator or _own_study(conn, principal, project, study_uid, rows))
    if not readable:
        raise SubmissionError(f"no study {study_uid} in project {project} that you may read",
                              "check the UID and the project: a contributor sees the history of its own "
                              "site's studies in the projects granted to it", code="not_found", kind="not_found")
    return [{"version": r.version, "change": r.change, "submission_id": r.submission_id,
             "created_at": _iso(r.created_at), "instances": r.instances, "study": r.study} for r in rows]


def _own_study(conn: Connection, principal: Principal, project: str, study_uid: str, versions: Sequence[Any]) -> bool:
    """Whether a contributor granted ``project`` sent the study: its case is of the contributor's
    site, or a submission of one of its ``versions`` is (or, without a site, was the contributor's)."""
    if not principal.may_submit_to(project):
        return False
    submissions = system_table("submission")
    sent = [v.submission_id for v in versions if v.submission_id is not None]
    ours = submissions.c.site_id == principal.site_id if principal.site_id else \
        submissions.c.user_id == principal.user_id
    if sent and conn.execute(select(submissions.c.id).where(submissions.c.id.in_(sent), ours).limit(1)).first():
        return True
    return bool(principal.site_id) and _site_of(conn, project, study_uid) == principal.site_id


# ---------------------------------------------------------------------- quarantine


def _require_curator(principal: Principal) -> None:
    if not principal.is_curator:
        raise SubmissionError(f"user {principal.name!r} ({principal.role}) may not manage the quarantine",
                              "ask a curator", code="forbidden", kind="forbidden")


def _quarantine_view(row: Any) -> dict[str, Any]:
    return {"id": row.id, "project": row.project_id, "submission_id": row.submission_id, "source": row.source,
            "dataset": row.dataset, "site_id": row.site_id, "sha256": row.sha256, "size": row.size,
            "sop_instance_uid": row.sop_instance_uid, "study_uid": row.study_uid,
            "path_in_package": row.path_in_package, "reason": row.reason, "findings": row.findings or [],
            "status": row.status, "created_at": _iso(row.created_at), "resolved_at": _iso(row.resolved_at),
            "resolved_by": row.resolved_by}


def list_quarantine(engine: Engine, principal: Principal, project: str | None = None,
                    status: str = QUARANTINE_HELD) -> list[dict[str, Any]]:
    _require_curator(principal)
    table = system_table("quarantine")
    query = select(table).order_by(table.c.id)
    if project:
        query = query.where(table.c.project_id == project)
    if status != "all":
        query = query.where(table.c.status == status)
    with engine.connect() as conn:
        return [_quarantine_view(r) for r in conn.execute(query)]


def _held(conn: Connection, quarantine_id: int) -> Any:
    table = system_table("quarantine")
    row = conn.execute(select(table).where(table.c.id == quarantine_id)).first()
    if row is None:
        raise SubmissionError(f"no quarantine entry {quarantine_id}", "list them with GET /api/v1/quarantine",
                              code="not_found", kind="not_found")
    if row.status != QUARANTINE_HELD:
        raise SubmissionError(f"quarantine entry {quarantine_id} is already {row.status}", "nothing to do",
                              code="not_held", kind="conflict")
    return row


def release(engine: Engine, store: ObjectStore, principal: Principal, quarantine_id: int,
            client: str | None = None) -> dict[str, Any]:
    """A curator's decision that a held instance may be published: index it (a new study version)."""
    _require_curator(principal)
    table = system_table("quarantine")
    with engine.connect() as conn:
        entry = _held(conn, quarantine_id)
    try:
        with store.open_unverified(entry.sha256) as handle:
            examined = examine(handle, object_id=entry.sha256, size=store.size(entry.sha256), gate=lambda _: [])
    except ObjectNotFoundError:
        with engine.connect() as conn:
            _held(conn, quarantine_id)  # a delete of the entry removed them meanwhile: not held any more
        raise SubmissionError(f"the bytes of quarantined object {entry.sha256} are missing from the object store",
                              "delete the entry", code="conflict", kind="conflict") from None
    if examined.fields is None:
        raise SubmissionError(f"quarantined object {entry.sha256} cannot be indexed: {examined.reason}",
                              "delete it instead", code="conflict", kind="conflict")
    with index_transaction(engine) as conn:
        entry = _held(conn, quarantine_id)
        writer = IndexWriter(entry.project_id, entry.dataset or "quarantine-release", principal.name)
        site_id = entry.site_id or "unknown"
        # The rules of a commit: a UID belongs to one project, a study to one site.
        holders = _Holders.of(conn, writer, principal, site_id, examined.study_uid, [examined.fields])
        refusal = holders.study_refusal or holders.uid_refusal(conn, principal, examined.fields)
        if refusal is not None:
            raise SubmissionError(f"quarantine entry {quarantine_id} cannot be released: {refusal}",
                                  "delete the entry (DELETE /api/v1/quarantine/{id}); the study's holder may "
                                  "send a corrected instance itself", code="held_elsewhere", kind="conflict")
        newer = _newer_version(conn, writer, entry, examined.study_uid, examined.sop_instance_uid)
        if newer is not None:
            raise SubmissionError(
                f"quarantine entry {quarantine_id} is out of date: version {newer} of study {examined.study_uid} "
                f"holds newer content of instance {examined.sop_instance_uid}, indexed after this one was "
                "quarantined; releasing it would replace that content with these older bytes",
                "delete the entry (DELETE /api/v1/quarantine/{id}); the older bytes stay wherever a study "
                "version or a frozen cohort still names them", code="superseded", kind="conflict", version=newer)
        writer.ensure_project(conn)
        writer.write_instance(conn, examined.fields, site_id)
        writer.finish(conn)
        study_uid = examined.study_uid
        study_id = writer.study_id(conn, study_uid)
        assert study_id is not None
        writer.record_version(conn, study_uid, study_id, change="released", submission_id=entry.submission_id)
        conn.execute(update(table).where(table.c.id == quarantine_id).values(
            status=QUARANTINE_RELEASED, resolved_at=utcnow(), resolved_by=principal.name))
        record_audit(conn, actor=principal.name, action="quarantine.release", target=f"quarantine {quarantine_id}",
                     project=entry.project_id, client=client, records=1, detail={"sha256": entry.sha256})
        return _quarantine_view(conn.execute(select(table).where(table.c.id == quarantine_id)).one())


def _newer_version(conn: Connection, writer: IndexWriter, entry: Any, study_uid: str, sop_uid: str) -> int | None:
    """The study version that indexed content of ``sop_uid`` newer than the quarantined entry, if any.

    The content the instance had when the entry was quarantined is the one of the last version
    recorded before it (or by the entry's own submission, which records its version after
    quarantining). The content indexed now is newer when it differs from that one and from the
    entry's, and a version recorded since, by anything else, exists."""
    study_id = writer.study_id(conn, study_uid)
    current = writer.study_instances(conn, study_id).get(sop_uid) if study_id is not None else None
    if current is None or current["object_id"] == entry.sha256:
        return None
    versions = system_table("study_version")
    rows = conn.execute(select(versions.c.version, versions.c.submission_id, versions.c.created_at,
                               versions.c.instances)
                        .where(versions.c.project_id == writer.project, versions.c.study_uid == study_uid)
                        .order_by(versions.c.version)).all()
    quarantined_at = as_utc(entry.created_at)

    def at_quarantine(row: Any) -> bool:
        same_submission = entry.submission_id is not None and row.submission_id == entry.submission_id
        return same_submission or (as_utc(row.created_at) or quarantined_at) <= quarantined_at

    before = [row for row in rows if at_quarantine(row)]
    since = [row for row in rows if not at_quarantine(row)]
    if not since:
        return None
    then = next((i["object_id"] for i in (before[-1].instances if before else []) or []
                 if i.get("sop_instance_uid") == sop_uid), None)
    if current["object_id"] == then:
        return None
    return int(since[-1].version)


def delete_quarantined(engine: Engine, store: ObjectStore, principal: Principal, quarantine_id: int,
                       client: str | None = None) -> dict[str, Any]:
    """A curator's decision that a held instance must not be published: drop it and, if nothing else
    names them (:func:`_object_in_use`), its bytes.

    Under the index's write lock, like :func:`release`: a release and a delete of one entry at the
    same time are one after the other (the second finds it no longer held), and the bytes are
    removed only while no writer can index an instance that uses them.
    """
    _require_curator(principal)
    table = system_table("quarantine")
    with index_transaction(engine) as conn:
        entry = _held(conn, quarantine_id)
        conn.execute(update(table).where(table.c.id == quarantine_id).values(
            status=QUARANTINE_DELETED, resolved_at=utcnow(), resolved_by=principal.name))
        record_audit(conn, actor=principal.name, action="quarantine.delete", target=f"quarantine {quarantine_id}",
                     project=entry.project_id, client=client, records=1, detail={"sha256": entry.sha256})
        view = _quarantine_view(conn.execute(select(table).where(table.c.id == quarantine_id)).one())
        if not _object_in_use(conn, entry.sha256):
            store.delete(entry.sha256)
    return view


def discard_unrecorded_objects(engine: Engine, store: ObjectStore, digests: Sequence[str]) -> list[str]:
    """Remove the objects among ``digests`` that nothing names (:func:`_object_in_use`); return
    the digests removed.

    Used for an upload's objects that could not be recorded (:func:`note_uploads` refused: its
    submission was committed meanwhile) and by ``radcommons objects unreferenced --delete`` (see
    :func:`unreferenced_objects`). Each is checked again and removed under the index's write lock,
    like :func:`delete_quarantined`, so no writer indexes or records a file that uses it meanwhile.
    Another request that found the object already stored and has not recorded it yet is not seen
    (it would then record a file the store lacks, which the commit reports as missing and the
    sender uploads again); the CLI's grace period covers uploads in flight.
    """
    removed = []
    # one transaction per list, not one for all: the lock stops every upload, commit and ingest while held,
    # and a long list of deletes (a remote store) would hold it for minutes
    for some in _in_lists(digests):
        with index_transaction(engine) as conn:
            used = _objects_in_use(conn, some)
            removed += [sha256 for sha256 in some if sha256 not in used and store.delete(sha256)]
    return removed


def unreferenced_objects(engine: Engine, store: ObjectStore, older_than: _dt.timedelta) -> list[ObjectInfo]:
    """The stored objects that nothing in the index names (:func:`_objects_in_use`), of those last
    written more than ``older_than`` ago, in the store's listing order.

    The grace period matters: an upload, an ingest or the gateway stores an object before it
    records it, so a young object may be named a moment later. An object whose store gives no
    modification time is never listed (its age is unknown). The index is asked a few set-based
    queries per :data:`_IN_LIST` digests, never one per object.
    """
    cutoff = utcnow() - older_than
    old = [item for item in store.iter_objects() if item.modified is not None and item.modified < cutoff]
    used: set[str] = set()
    with engine.connect() as conn:
        for some in _in_lists(item.digest for item in old):
            used |= _objects_in_use(conn, some)
    return [item for item in old if item.digest not in used]


def _object_in_use(conn: Connection, sha256: str) -> bool:
    """Whether anything still names the object (:func:`_objects_in_use`)."""
    return sha256 in _objects_in_use(conn, [sha256])


def _objects_in_use(conn: Connection, digests: Sequence[str]) -> set[str]:
    """The objects among ``digests`` (at most :data:`_IN_LIST`: one ``IN`` list each) that
    something still names: an indexed instance, a held quarantine entry, a frozen cohort's pinned
    member, a file of an OPEN submission, declared or uploaded (its commit reads those bytes; a
    held quarantine entry with the same content must not take them), or a study version (an older
    version's files stay obtainable). One query per kind of name, each asked only about the
    digests no earlier one named; the cheap indexed lookups come first.

    A committed submission's own file rows do not count: the commit leaves one per file, with its
    outcome, and whatever it made of the file (an instance, a held entry, a version) names the
    object by itself; a rejected file, or a quarantined one a curator deleted, is named by nothing.
    """
    instance = node_tables()["instance"]
    quarantine, members, files, submissions = (system_table(n) for n in (
        "quarantine", "cohort_member", "submission_file", "submission"))
    naming: tuple[Callable[[list[str]], Any], ...] = (
        lambda some: select(instance.c.object_id).where(instance.c.object_id.in_(some)),
        lambda some: select(quarantine.c.sha256).where(quarantine.c.sha256.in_(some),
                                                       quarantine.c.status == QUARANTINE_HELD),
        lambda some: select(members.c.object_id).where(members.c.object_id.in_(some)),
        lambda some: select(files.c.sha256).join(submissions, files.c.submission_id == submissions.c.id)
        .where(files.c.sha256.in_(some), submissions.c.status == SUBMISSION_OPEN),
        lambda some: _versioned(conn.dialect.name, some),
    )
    used: set[str] = set()
    for query in naming:
        rest = [sha256 for sha256 in digests if sha256 not in used]
        if not rest:
            break
        used.update(conn.execute(query(rest).distinct()).scalars())
    return used


def _versioned(dialect: str, digests: list[str]) -> Any:
    """The query of the ``digests`` a study version names: the object ids of a version are in its
    JSON list of instances (``[{"sop_instance_uid": ..., "object_id": ...}, ...]``), read element by
    element in the database (``jsonb_array_elements`` on PostgreSQL, ``json_each`` on SQLite): one
    pass over the versions per list, where a ``LIKE`` per digest scanned them all once per object."""
    versions = system_table("study_version")
    if dialect == "postgresql":
        element = func.jsonb_array_elements(versions.c.instances).table_valued(
            column("value", postgresql.JSONB)).lateral()
        object_id: Any = element.c.value["object_id"].astext
    else:
        element = func.json_each(versions.c.instances).table_valued("value")
        object_id = func.json_extract(element.c.value, "$.object_id")
    return select(object_id).select_from(versions.join(element, true())).where(object_id.in_(digests))


# ---------------------------------------------------------------------- abandoned submissions

#: What the upload spool holds of a submission: (bytes, the newest spool file's modification time).
SpoolUsage = Callable[[int], tuple[int, _dt.datetime | None]]


def operator_submissions(engine: Engine, spool_usage: SpoolUsage, *, open_only: bool = False,
                         idle_for: _dt.timedelta | None = None,
                         ids: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """Submissions as an operator sees them, oldest first: each with its files uploaded (bytes
    received and stored) and their bytes, the bytes still spooled (partial uploads), and its last
    activity.

    The index records no last activity of its own: it is the newest of the submission's creation,
    its audit events (``submission N``: each upload, manifest, clinical post, commit) and its
    newest spool file (a partial upload is audited only once complete). ``idle_for``: only those
    whose last activity is older than that; ``ids``: only these (an unknown one is not listed).
    """
    table, files, audit = (system_table(n) for n in ("submission", "submission_file", "audit_event"))
    query = select(table).order_by(table.c.id)
    if open_only:
        query = query.where(table.c.status == SUBMISSION_OPEN)
    if ids is not None:
        query = query.where(table.c.id.in_(sorted(set(ids))))
    with engine.connect() as conn:
        rows = conn.execute(query).all()
        # only the listed submissions' files and events, per IN list (their indexes: submission_file's
        # submission_id, audit_event's (target, at) of revision 0016), never the whole tables
        uploaded: dict[int, tuple[int, int]] = {}
        audited: dict[str, _dt.datetime] = {}
        for some_ids in _in_lists(int(row.id) for row in rows):
            uploaded.update((r.submission_id, (r.n, r.size or 0)) for r in conn.execute(
                select(files.c.submission_id, func.count().label("n"), func.sum(files.c.size).label("size"))
                .where(files.c.submission_id.in_(some_ids), files.c.status == UPLOADED)
                .group_by(files.c.submission_id)))
            audited.update((target, at) for target, at in conn.execute(
                select(audit.c.target, func.max(audit.c.at))
                .where(audit.c.target.in_([f"submission {n}" for n in some_ids])).group_by(audit.c.target)))
    cutoff = utcnow() - idle_for if idle_for is not None else None
    found = []
    for row in rows:
        spooled, spooled_at = spool_usage(row.id)
        last = max(t for t in (as_utc(row.created_at), as_utc(audited.get(f"submission {row.id}")), spooled_at)
                   if t is not None)
        if cutoff is not None and last >= cutoff:
            continue
        n_files, n_bytes = uploaded.get(row.id, (0, 0))
        found.append({"id": row.id, "project": row.project_id, "site_id": row.site_id, "dataset": row.dataset,
                      "status": row.status, "created_at": _iso(row.created_at), "last_activity": last.isoformat(),
                      "files_uploaded": n_files, "bytes_uploaded": int(n_bytes), "bytes_spooled": spooled})
    return found


def abandon(engine: Engine, principal: Principal, submission_id: int, *, client: str | None = None) -> dict[str, Any]:
    """``POST /submissions/{id}/abandon``: :func:`abandon_submission` for a caller allowed to end it.

    An administrator may end any submission (what ``radcommons admin submission abandon`` does on
    the server's machine). Otherwise only its own: a contributor its site's submission in a project
    granted to it (the accounts that may upload to and commit it), a curator one it created; a
    curator does not end another site's batch, which is the site's or the operator's to decide.
    """
    if principal.role != "admin":
        with engine.connect() as conn:
            row = _load(conn, principal, submission_id)
        if principal.is_curator and row.user_id != principal.user_id:
            raise SubmissionError(f"submission {submission_id} was created by {row.created_by}, not {principal.name}",
                                  "a curator ends only its own submissions; ask an administrator, or the "
                                  f"site {row.site_id}", code="forbidden", kind="forbidden")
    return abandon_submission(engine, submission_id, actor=principal.name, client=client)


def abandon_submission(engine: Engine, submission_id: int, *, actor: str = "admin-cli",
                       client: str | None = None) -> dict[str, Any]:
    """End an open submission that will never be committed (an operator's decision): its state
    becomes abandoned, so every later upload, manifest, clinical post or commit to it is a 409
    submission_closed, and its files no longer count as in use (:func:`_object_in_use`): the
    objects nothing else names are then found by ``radcommons objects unreferenced`` after its
    grace period. Audited as ``submission.abandon``. The caller removes its spool files (the
    server's upload spool); a request still writing one then finds the submission closed, as
    after a commit. A committed submission is refused: its data are indexed or quarantined.
    """
    table = system_table("submission")
    with index_transaction(engine) as conn:
        ended = conn.execute(update(table).where(table.c.id == submission_id, table.c.status == SUBMISSION_OPEN)
                             .values(status=SUBMISSION_ABANDONED)).rowcount
        row = conn.execute(select(table).where(table.c.id == submission_id)).first()
        if row is None:
            raise SubmissionError(f"no submission {submission_id}",
                                  "list them with: radcommons admin submission list", code="not_found",
                                  kind="not_found")
        if not ended:
            raise _not_abandonable(row)
        view = _view(conn, row)
        record_audit(conn, actor=actor, action="submission.abandon", target=f"submission {submission_id}",
                     project=row.project_id, client=client, records=1,
                     detail={"dataset": row.dataset, "site_id": row.site_id, "files": view["files"]})
    return view


def _not_abandonable(row: Any) -> SubmissionError:
    """Why ``row``, not open, cannot be abandoned."""
    if row.status == SUBMISSION_COMMITTED:
        return SubmissionError(
            f"submission {row.id} (project {row.project_id}, dataset {row.dataset}) was committed at "
            f"{_iso(row.committed_at)}: only an open submission can be abandoned",
            "its files are indexed or quarantined now: a curator corrects them with a new submission or "
            "the quarantine (radcommons admin submission list --open shows the open ones)",
            code="submission_closed", kind="conflict")
    return SubmissionError(f"submission {row.id} is already {row.status}", "nothing to do",
                           code="submission_closed", kind="conflict")
