"""STOW-RS (PS3.18 10.5): received instances go through the verification gate into the index.

Each part was spooled to a file and hashed as it arrived (:class:`~.multipart.PartSpool`). Every
instance is then handled as a submission commit handles it, with the same code
(:mod:`radcommons.pipelines.indexing`): its header is read and gated
(:func:`~radcommons.pipelines.indexing.examine`), the files of the readable ones are moved into
the object store with one sync for the request (:func:`publish`), and then in ONE transaction
(holding the index's write lock, :func:`~radcommons.pipelines.indexing.index_transaction`)
passing instances are indexed (:class:`~radcommons.pipelines.indexing.IndexWriter`), failing
ones quarantined, derived fields recomputed, a study version recorded for every study that
changed and an audit event written. Unlike a submission, a STOW request adds to a study:
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

from sqlalchemy import Engine

from radcommons.dicom.dicomweb_json import dataset_json
from radcommons.dicom.index_fields import InstanceFields
from radcommons.errors import UserError
from radcommons.pipelines.indexing import Examined, IndexWriter, deid_gate, examine, index_transaction
from radcommons.pipelines.submission import NOT_YOURS, may_name_holder
from radcommons.server.dicomweb.multipart import SpooledPart
from radcommons.store.index.accounts import Principal, record_audit
from radcommons.store.objects import ObjectStore

#: Failure Reason codes (PS3.4 Annex GG; C.4.2.1.4).
PROCESSING_FAILURE = 0x0110  # held in quarantine by the verification gate
NOT_AUTHORIZED = 0x0124  # the study or UIDs belong to another project or site
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
    #: The spooled part, until :func:`publish` moves it into the object store.
    part: SpooledPart | None = None

    def fail(self, reason: int, comment: str) -> None:
        self.stored, self.reason, self.comment = False, reason, comment


def _sop_class(examined: Examined) -> str:
    return examined.fields.instance.get("sop_class_uid", "") if examined.fields else ""


def receive(part: SpooledPart, study_uid: str | None) -> Outcome:
    """Read and gate one part (outside any transaction: gating reads the file)."""
    if part.media_type not in ("application/dicom", "application/octet-stream"):
        return Outcome(Examined("rejected"), reason=CANNOT_UNDERSTAND,
                       comment=f"part of type {part.media_type}, not application/dicom")
    with open(part.path, "rb") as handle:
        examined = examine(handle, object_id=part.sha256, size=part.size, gate=deid_gate)
    outcome = Outcome(examined, size=part.size, sop_class_uid=_sop_class(examined))
    if examined.status == "rejected":
        outcome.fail(CANNOT_UNDERSTAND, examined.reason)
        return outcome
    if study_uid is not None and examined.study_uid != study_uid:
        # The comment is an LO (64 characters): a UID (up to 64) would be cut, so it names none.
        outcome.fail(DOES_NOT_MATCH, "its Study Instance UID is not the study in the URL")
        return outcome
    outcome.object_id, outcome.part = part.sha256, part
    return outcome


def publish(store: ObjectStore, outcomes: list[Outcome]) -> None:
    """Move the parts of the readable instances into the object store, durable and visible (one sync
    for the request), before they are indexed; call it while the parts are still spooled.

    When the store refuses one copy (a remote store copies file by file and stops at the first
    failure), the instances are settled one by one: each fails only for its own copy."""
    moving = [o for o in outcomes if o.part is not None]
    try:
        store.move_in_many([(o.part.path, o.object_id) for o in moving if o.part is not None])
    except (OSError, UserError):
        for outcome in moving:
            assert outcome.part is not None
            try:
                if outcome.part.path.exists():  # not moved yet
                    store.move_in(outcome.part.path, outcome.object_id)
                elif not store.exists(outcome.object_id):
                    outcome.fail(OUT_OF_RESOURCES, "cannot store: the received file was lost; send it again")
            except (OSError, UserError) as error:
                outcome.fail(OUT_OF_RESOURCES, f"cannot store: {getattr(error, 'strerror', None) or error}")
    for outcome in moving:
        outcome.part = None


def index(engine: Engine, principal: Principal, outcomes: list[Outcome], *, project: str, dataset: str,
          site_id: str, client: str | None) -> None:
    """Index or quarantine the received instances in one transaction (sets each outcome)."""
    with index_transaction(engine) as conn:
        writer = IndexWriter(project, dataset, principal.name)
        writer.ensure_project(conn)
        existed: dict[str, int] = {}  # study uid -> its id, when in the index before this request
        modified: set[str] = set()  # studies with an instance added or replaced
        candidates = [o for o in outcomes if not o.reason and o.examined.fields is not None]
        # A study, series or instance UID belongs to one project (as at a submission commit).
        elsewhere = writer.held_elsewhere(conn, [o.examined.fields for o in candidates if o.examined.fields])
        other_site = writer.held_by_other_site(conn, [o.examined.study_uid for o in candidates], site_id)
        passing: list[Outcome] = []
        for outcome in candidates:
            examined = outcome.examined
            fields = examined.fields
            assert fields is not None
            study_uid = examined.study_uid
            # The project or site holding a UID is named only to a caller who may read it there.
            uid = next((u for u in (study_uid, examined.sop_instance_uid, fields.series["series_uid"])
                        if u in elsewhere), None)
            if uid is not None:
                other = elsewhere[uid]
                outcome.fail(NOT_AUTHORIZED, f"its study or UIDs are already in project {other}"
                             if may_name_holder(conn, principal, other, uid=uid)
                             else f"its study or UIDs belong to {NOT_YOURS}")
                continue
            if study_uid in other_site:
                site = other_site[study_uid]
                outcome.fail(NOT_AUTHORIZED, f"its study belongs to site {site}"
                             if may_name_holder(conn, principal, project, site=site)
                             else f"its study belongs to {NOT_YOURS}")
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
            if study_id is not None:
                existed[study_uid] = study_id
            passing.append(outcome)
        # indexed before versions were kept (ingest): record what was there first
        writer.keep_baselines(conn, existed)
        written = writer.write_instances(conn, [o.examined.fields for o in passing if o.examined.fields], site_id)
        sent: dict[int, InstanceFields] = {}  # an existing study changed -> an instance of it as sent now
        for outcome, result in zip(passing, written):
            if result != "unchanged":
                modified.add(outcome.examined.study_uid)
                if outcome.examined.study_uid in existed and outcome.examined.fields is not None:
                    sent[existed[outcome.examined.study_uid]] = outcome.examined.fields
            outcome.stored = True
        writer.refresh_studies(conn, sent)  # its description, code... are the corrected ones
        writer.finish(conn)
        for study_uid in sorted(modified):
            study_id = writer.study_id(conn, study_uid)
            if study_id is not None:
                writer.record_version(conn, study_uid, study_id,
                                      change="stow" if study_uid in existed else "created", submission_id=None)
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
