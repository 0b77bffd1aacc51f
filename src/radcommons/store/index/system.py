"""System tables of the index: users, tokens, submissions, quarantine, study history, audit.

They are not part of the data dictionary (researchers never see them) and are added to the
same :class:`~sqlalchemy.MetaData` by :func:`add_system_tables`, so that one Alembic history
(revision 0002 onward) and one schema test cover everything.

* ``user``: a person or a machine account with one role (admin | curator | contributor |
  researcher) and, for a contributor, its site;
* ``user_project``: the projects a user may submit to (project submitter_ids; the project
  record itself may not exist until the first commit);
* ``token``: bearer tokens, only their SHA-256 hash is kept; expiry and revocation;
* ``submission``, ``submission_file`` (declared instances and, after the commit, their
  outcome), ``submission_record`` (staged clinical rows);
* ``quarantine``: instances that failed the verification gate, kept for a curator's decision;
* ``study_version``: every version of every study (the instance object ids and study values),
  so a corrected resubmission never loses the previous content;
* ``audit_event``: append-only log of who did what, when, from where, to how many records;
* ``dua_acceptance``: which version of the data use agreement each user accepted, when and from
  where (revision 0004); a researcher reads nothing before accepting the current one;
* ``harmonization_decision``: a curator's decision for one (modality, normalised study
  description): a LOINC code or "not mappable", who, when and why; it wins over the matcher
  (revision 0007, :mod:`radcommons.store.index.harmonization`);
* ``harmonization_code``: LOINC / RSNA Radiology Playbook codes an operator imported beyond the
  built-in catalogue (revision 0007);
* ``ingest_pending``: the studies an ingest has indexed whose derived fields and facet rows it
  has not yet written (revision 0010), named with the run (``host:pid``): written with each
  batch, removed by the run's end; what a killed run left is finished by the next ingest or
  server start (:func:`radcommons.pipelines.indexing.finish_abandoned`);
* ``case_day0``: the (shifted) StudyDate that is day 0 of a case whose ``days_to_study`` an ingest
  derived from its images alone (revision 0014): recorded by the first run that derives one, kept
  by every later run, so that a study ingested later, earlier or not, counts from the same day.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    true,
)

from radcommons.roles import ROLES  # re-exported: roles, from most to least powerful
from radcommons.store.index.schema import id_type, json_type

#: Submission states: abandoned is an open one an operator ended (radcommons admin submission abandon).
SUBMISSION_OPEN, SUBMISSION_COMMITTED, SUBMISSION_ABANDONED = "open", "committed", "abandoned"
#: Quarantine states.
QUARANTINE_HELD, QUARANTINE_RELEASED, QUARANTINE_DELETED = "held", "released", "deleted"

SYSTEM_TABLES = (
    "user", "user_project", "token", "submission", "submission_file", "submission_record",
    "quarantine", "study_version", "audit_event", "dua_acceptance",
    "harmonization_decision", "harmonization_code", "ingest_pending", "case_day0",
)


def _id() -> Column[int]:
    return Column("id", id_type(), primary_key=True, autoincrement=True)


def _fk(name: str, target: str, nullable: bool = False, ondelete: str | None = None) -> Column[int]:
    return Column(name, id_type(), ForeignKey(f"{target}.id", ondelete=ondelete), nullable=nullable, index=True)


def _created() -> Column[object]:
    return Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now())


def add_system_tables(metadata: MetaData) -> None:
    """Add the system tables to ``metadata`` (which must use the index's naming convention)."""
    Table(
        "user", metadata, _id(),
        Column("name", String(128), nullable=False, unique=True),
        Column("role", String(16), nullable=False),
        Column("site_id", String(64), nullable=True),
        _created(),
        Column("disabled_at", DateTime(timezone=True), nullable=True),
    )
    Table(
        "user_project", metadata,
        Column("user_id", ForeignKey("user.id", ondelete="CASCADE"), primary_key=True),
        Column("project_id", String(64), primary_key=True),
        _created(),
    )
    Table(
        "token", metadata, _id(),
        _fk("user_id", "user", ondelete="CASCADE"),
        # sha256 hex of the token: a stolen database reveals no usable token.
        Column("token_hash", String(64), nullable=False, unique=True),
        Column("label", String(128), nullable=True),
        _created(),
        Column("expires_at", DateTime(timezone=True), nullable=False),
        Column("revoked_at", DateTime(timezone=True), nullable=True),
        Column("last_used_at", DateTime(timezone=True), nullable=True),
    )
    Table(
        "submission", metadata, _id(),
        Column("project_id", String(64), nullable=False, index=True),
        Column("dataset", String(128), nullable=False, index=True),
        Column("site_id", String(64), nullable=False),
        Column("status", String(16), nullable=False, index=True),
        _fk("user_id", "user", nullable=True),
        Column("created_by", String(128), nullable=False),
        _created(),
        Column("committed_at", DateTime(timezone=True), nullable=True),
        Column("receipt", json_type(), nullable=True),
    )
    Table(
        "submission_file", metadata, _id(),
        _fk("submission_id", "submission", ondelete="CASCADE"),
        Column("sha256", String(64), nullable=False, index=True),
        Column("size", BigInteger(), nullable=True),
        Column("study_uid", String(64), nullable=True, index=True),
        Column("path_in_package", Text(), nullable=True),
        # Before the commit: uploaded (its bytes were received in this submission: only then does
        # it count as present) or NULL; after: indexed | unchanged | quarantined | rejected, and why.
        Column("status", String(16), nullable=True),
        Column("reason", Text(), nullable=True),
        # The study version the sender built the study's manifest on (revision 0013; 0: none, the
        # commons had no version of it): the commit versions the study only if it is still the
        # latest. NULL: the sender declared none, no check.
        Column("base_version", Integer(), nullable=True),
        UniqueConstraint("submission_id", "sha256"),
    )
    Table(
        "submission_record", metadata, _id(),
        _fk("submission_id", "submission", ondelete="CASCADE"),
        Column("node", String(64), nullable=False),
        Column("submitter_id", String(128), nullable=True),
        Column("row", Integer(), nullable=True),
        Column("status", String(16), nullable=False),  # accepted | rejected
        Column("record", json_type(), nullable=True),
        Column("problems", json_type(), nullable=True),
        _created(),
    )
    Table(
        "quarantine", metadata, _id(),
        Column("project_id", String(64), nullable=False, index=True),
        _fk("submission_id", "submission", nullable=True),
        Column("source", String(16), nullable=False),  # submission | ingest
        Column("dataset", String(128), nullable=True),
        Column("site_id", String(64), nullable=True),
        Column("sha256", String(64), nullable=False, index=True),
        Column("size", BigInteger(), nullable=True),
        Column("sop_instance_uid", String(64), nullable=True, index=True),
        Column("study_uid", String(64), nullable=True),
        Column("path_in_package", Text(), nullable=True),
        Column("reason", Text(), nullable=False),
        Column("findings", json_type(), nullable=True),
        Column("status", String(16), nullable=False, index=True),
        _created(),
        Column("resolved_at", DateTime(timezone=True), nullable=True),
        Column("resolved_by", String(128), nullable=True),
    )
    Table(
        "study_version", metadata, _id(),
        Column("project_id", String(64), nullable=False),
        Column("study_uid", String(64), nullable=False, index=True),
        Column("version", Integer(), nullable=False),
        _fk("submission_id", "submission", nullable=True),
        Column("change", String(32), nullable=False),  # created | resubmitted | released | stow | ingest
        Column("instances", json_type(), nullable=False),
        Column("study", json_type(), nullable=True),
        _created(),
        UniqueConstraint("project_id", "study_uid", "version"),
    )
    Table(
        "audit_event", metadata, _id(),
        Column("at", DateTime(timezone=True), nullable=False, server_default=func.now(), index=True),
        Column("actor", String(128), nullable=True),
        Column("action", String(64), nullable=False, index=True),
        Column("target", String(256), nullable=True),
        Column("project_id", String(64), nullable=True),
        Column("client", String(128), nullable=True),
        Column("records", Integer(), nullable=True),
        Column("success", Boolean(), nullable=False, server_default=true()),
        Column("detail", json_type(), nullable=True),
        # a submission's last activity is its newest event (revision 0016)
        Index("ix_audit_event_target_at", "target", "at"),
    )
    Table(
        "dua_acceptance", metadata, _id(),
        _fk("user_id", "user", ondelete="CASCADE"),
        Column("version", String(32), nullable=False),
        Column("accepted_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("client", String(128), nullable=True),
        UniqueConstraint("user_id", "version"),
    )
    # Harmonization (revision 0007): curator decisions win over the matcher; imported codes.
    Table(
        "harmonization_decision", metadata, _id(),
        # The key: the modality's alias group ("CR/DX") and the description upper-cased with its
        # white space collapsed (MIDRC's normalisation), so "xr chest" and "XR  CHEST" are one pair.
        Column("modality_key", String(32), nullable=False),
        Column("description_key", String(256), nullable=False),
        Column("modality", String(64), nullable=False),  # as the curator gave them
        Column("description", String(256), nullable=False),
        # NULL code: "not mappable" (no code applies); the attributes are copied from the catalogue.
        Column("loinc_code", String(16), nullable=True),
        Column("loinc_long_common_name", String(256), nullable=True),
        Column("loinc_method", String(64), nullable=True),
        Column("loinc_system", String(128), nullable=True),
        Column("loinc_contrast", String(64), nullable=True),
        Column("decided_by", String(128), nullable=False),
        Column("decided_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("note", Text(), nullable=True),
        UniqueConstraint("modality_key", "description_key"),
    )
    Table(
        "harmonization_code", metadata,
        Column("code", String(16), primary_key=True),
        Column("long_common_name", String(256), nullable=False),
        Column("method", String(64), nullable=True),
        Column("system", String(128), nullable=True),
        Column("timing", String(64), nullable=True),
        Column("source", String(256), nullable=True),
        Column("imported_by", String(128), nullable=True),
        Column("imported_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )
    Table(
        "ingest_pending", metadata,
        Column("study_id", id_type(), ForeignKey("imaging_study.id", ondelete="CASCADE"), primary_key=True),
        Column("run", String(128), nullable=False, index=True),  # host:pid of the ingest
        # For days_to_study (a case's first study of the run is its day 0): the study's patient
        # and shifted StudyDate, as the run read them from the header.
        Column("patient_id", String(128), nullable=True),
        Column("study_date", String(8), nullable=True),
        _created(),
    )
    Table(
        "case_day0", metadata,
        Column("case_id", id_type(), ForeignKey("case.id", ondelete="CASCADE"), primary_key=True),
        Column("study_date", String(8), nullable=False),  # YYYYMMDD, shifted as the headers hold it
        _created(),
    )
