"""STOW-RS (PS3.18 10.5): received instances go through the verification gate into the index.

Each part was spooled to a file as it arrived (:class:`~.multipart.PartSpool`). Every instance
is then handled as a submission commit handles it, with the same code
(:mod:`radcommons.pipelines.indexing`): its header is read and gated
(:func:`~radcommons.pipelines.indexing.examine`), its bytes are staged in the object store and
published with one sync for the request, and then in ONE transaction (holding the index's write
lock, :func:`~radcommons.pipelines.indexing.index_transaction`) passing instances are indexed
(:class:`~radcommons.pipelines.indexing.IndexWriter`), failing ones quarantined, derived fields
recomputed, a study version recorded for every study that changed and an audit event written. Unlike a submission, a STOW request adds to a study:
instances already there and not sent again stay.

The answer is the Store Instances Response (PS3.18 10.5.3, Table 10.5.3-3): Referenced SOP
Sequence for the stored instances, Failed SOP Sequence with a Failure Reason (PS3.4 C.4.2.1.4
and Annex GG status codes) for the others, and (0000,0902) Error Comment with the reason in
words (the same element a DIMSE C-STORE response carries). Status: 200 all stored, 202 some
failed, 409 none stored.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, select

from radcommons.dicom.dicomweb_json import dataset_json
from radcommons.pipelines.indexing import Examined, IndexWriter, deid_gate, examine, index_transaction
from radcommons.server.dicomweb.multipart import SpooledPart
from radcommons.store.index.accounts import Principal, record_audit
from radcommons.store.objects import ObjectStore, StagedObject

#: Failure Reason codes (PS3.4 Annex GG; C.4.2.1.4).
PROCESSING_FAILURE = 0x0110  # held in quarantine by the verification gate
NOT_AUTHORIZED = 0x0124  # the study or UIDs belong to another project
OUT_OF_RESOURCES = 0xA700
DOES_NOT_MATCH = 0xA900  # the Study Instance UID differs from the one in the URL
CANNOT_UNDERSTAND = 0xC000  # not DICOM, unreadable, UIDs missing, not application/dicom
#: Error Comment is an LO: 64 characters at most.
COMMENT_LENGTH = 64

_SOP_CLASS, _SOP_INSTANCE = 0x00081150, 0x00081155
_FAILURE_REASON, _RETRIEVE_URL = 0x00081197, 0x00081190
_FAILED_SEQUENCE, _REFERENCED_SEQUENCE = 0x00081198, 0x00081199
_ERROR_COMMENT = 0x00000902


@dataclass
class Outcome:
    """What happened to one part: ``stored`` or failed with ``reason`` (a Failure Reason code)."""

    examined: Examined
    object_id: str = ""
    size: int = 0
    stored: bool = False
    reason: int = 0
    comment: str = ""
    sop_class_uid: str = ""
    staged: StagedObject | None = None
    store: ObjectStore | None = None

    def fail(self, reason: int, comment: str) -> None:
        self.stored, self.reason, self.comment = False, reason, comment


def _sop_class(examined: Examined) -> str:
    return examined.fields.instance.get("sop_class_uid", "") if examined.fields else ""


def receive(store: ObjectStore, part: SpooledPart, study_uid: str | None) -> Outcome:
    """Read, gate and store one part (outside any transaction: gating reads the file)."""
    if part.media_type not in ("application/dicom", "application/octet-stream"):
        return Outcome(Examined("rejected"), reason=CANNOT_UNDERSTAND,
                       comment=f"part of type {part.media_type}, not application/dicom")
    with open(part.path, "rb") as handle:
        examined = examine(handle, object_id="", size=part.size, gate=deid_gate)
    outcome = Outcome(examined, size=part.size, sop_class_uid=_sop_class(examined))
    if examined.status == "rejected":
        outcome.fail(CANNOT_UNDERSTAND, examined.reason)
        return outcome
    if study_uid is not None and examined.study_uid != study_uid:
        outcome.fail(DOES_NOT_MATCH, f"Study Instance UID is not {study_uid}")
        return outcome
    try:
        staged = store.stage_file(part.path)
    except OSError as error:
        outcome.fail(OUT_OF_RESOURCES, f"cannot store: {error.strerror or error}")
        return outcome
    outcome.object_id, outcome.staged, outcome.store = staged.digest, staged, store
    assert examined.fields is not None
    examined.fields.instance["object_id"] = staged.digest
    return outcome


def _publish(outcomes: list[Outcome]) -> None:
    """Make the staged objects durable and visible (one sync per store) before they are indexed."""
    by_store: dict[int, tuple[ObjectStore, list[Outcome]]] = {}
    for outcome in outcomes:
        if outcome.staged is not None and outcome.store is not None:
            by_store.setdefault(id(outcome.store), (outcome.store, []))[1].append(outcome)
    for store, staged in by_store.values():
        try:
            store.publish([o.staged for o in staged if o.staged is not None])
        except OSError as error:
            for outcome in staged:
                outcome.fail(OUT_OF_RESOURCES, f"cannot store: {error.strerror or error}")
        for outcome in staged:
            outcome.staged = None


def index(engine: Engine, principal: Principal, outcomes: list[Outcome], *, project: str, dataset: str,
          site_id: str, client: str | None) -> None:
    """Index or quarantine the received instances in one transaction (sets each outcome)."""
    _publish(outcomes)
    with index_transaction(engine) as conn:
        writer = IndexWriter(project, dataset, principal.name)
        writer.ensure_project(conn)
        study, series, instance = writer.tables["imaging_study"], writer.tables["series"], writer.tables["instance"]
        existed: dict[str, bool] = {}  # study uid -> was in the index before this request
        modified: set[str] = set()  # studies with an instance added or replaced
        for outcome in outcomes:
            examined = outcome.examined
            if outcome.reason or examined.fields is None:
                continue
            fields = examined.fields
            study_uid = examined.study_uid
            # A study, series or instance UID belongs to one project (as at a submission commit).
            other = conn.execute(select(study.c.project_id).where(
                study.c.study_uid == study_uid, study.c.project_id != project)).scalar()
            other = other or conn.execute(select(instance.c.project_id).where(
                instance.c.sop_instance_uid == examined.sop_instance_uid, instance.c.project_id != project)).scalar()
            other = other or conn.execute(select(series.c.project_id).where(
                series.c.series_uid == fields.series["series_uid"], series.c.project_id != project)).scalar()
            if other:
                outcome.fail(NOT_AUTHORIZED, f"its study or UIDs are already in project {other}")
                continue
            if examined.status == "quarantine":
                entry = writer.quarantine(
                    conn, sha256=outcome.object_id, size=outcome.size, reason=examined.reason,
                    findings=examined.findings, source="stow", site_id=site_id,
                    sop_instance_uid=examined.sop_instance_uid, study_uid=study_uid)
                codes = ", ".join(dict.fromkeys(f.code for f in examined.findings))
                outcome.fail(PROCESSING_FAILURE, f"quarantined ({entry}): {codes}")
                continue
            study_id = writer.study_id(conn, study_uid)
            if study_uid not in existed:
                existed[study_uid] = study_id is not None
                if study_id is not None and writer.latest_version(conn, study_uid) == 0:
                    # indexed before versions were kept (ingest): record what was there first
                    writer.record_version(conn, study_uid, study_id, change="created", submission_id=None)
            if writer.write_instance(conn, fields, site_id) != "unchanged":
                modified.add(study_uid)
            outcome.stored = True
        writer.finish(conn)
        for study_uid in sorted(modified):
            study_id = writer.study_id(conn, study_uid)
            if study_id is not None:
                writer.record_version(conn, study_uid, study_id,
                                      change="stow" if existed[study_uid] else "created", submission_id=None)
        stored = sum(1 for o in outcomes if o.stored)
        record_audit(conn, actor=principal.name, action="dicomweb.stow", target=dataset, project=project,
                     client=client, records=stored,
                     detail={"stored": stored, "failed": len(outcomes) - stored, "studies": sorted(modified)})


def default_dataset(site_id: str, today: _dt.date | None = None) -> str:
    """The dataset (batch) of STOW-RS requests of a site on a day: ``STOW_<site>_<YYYYMMDD>``."""
    return f"STOW_{site_id}_{(today or _dt.date.today()):%Y%m%d}"


def response(outcomes: list[Outcome], base_url: str, study_uid: str | None) -> tuple[int, dict[str, Any]]:
    """The status and DICOM JSON body of a Store Instances Response (PS3.18 10.5.3)."""
    referenced, failed = [], []
    for outcome in outcomes:
        examined = outcome.examined
        uid = examined.sop_instance_uid
        item: dict[int, Any] = {_SOP_CLASS: outcome.sop_class_uid or None, _SOP_INSTANCE: uid or None}
        if outcome.stored:
            item[_RETRIEVE_URL] = (f"{base_url}/studies/{examined.study_uid}/series/"
                                   f"{examined.fields.series['series_uid'] if examined.fields else ''}"
                                   f"/instances/{uid}")
            referenced.append(dataset_json(item))
        else:
            item[_FAILURE_REASON] = outcome.reason
            item[_ERROR_COMMENT] = outcome.comment[:COMMENT_LENGTH]
            failed.append(dataset_json(item))
    body: dict[int, Any] = {}
    if study_uid is not None:
        body[_RETRIEVE_URL] = f"{base_url}/studies/{study_uid}"
    if referenced:
        body[_REFERENCED_SEQUENCE] = {"vr": "SQ", "Value": referenced}
    if failed:
        body[_FAILED_SEQUENCE] = {"vr": "SQ", "Value": failed}
    status = 200 if not failed else 202 if referenced else 409
    return status, dataset_json(body)
