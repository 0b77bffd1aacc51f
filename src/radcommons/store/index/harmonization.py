"""Curator decisions on study codes, and the codes an operator imported, in the index.

A decision maps one (modality, normalised study description) pair to a LOINC / RSNA Playbook
code, or records that no code applies ("not mappable"). It wins over the matcher:

* at indexing, :class:`StoredDecisions` (held by the index writer) gives a decided pair the
  decision's code fields before the matcher is asked;
* when a decision is recorded, :func:`record_decision` re-harmonizes the studies already
  indexed with that pair, and those of every other pair the matcher now answers otherwise
  (it learns decisions as curated rows), in the same transaction, and audits both.

Plain data in, plain data out; the caller opens the transaction (the CLI and the server use
the index's write transaction, so a decision and a concurrent ingest never interleave).
"""

from __future__ import annotations

import datetime as _dt
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, delete, func, insert, select, update
from sqlalchemy.engine import Connection

from radcommons.errors import UserError
from radcommons.harmonize.matcher import DEFAULT_THRESHOLD, Decision, Matcher
from radcommons.harmonize.study_codes import (
    CODE_FIELDS,
    DecisionKey,
    curated_matcher,
    decision_description,
    decision_fields,
    decision_key,
    decision_row,
    require_decision_key,
    study_code_fields,
)
from radcommons.harmonize.catalogue import resolve_code, with_codes
from radcommons.harmonize.review import ReviewItem, review_queue
from radcommons.harmonize.tables import CodeInfo, MappingRow, StudyPair, load_table
from radcommons.store.index.accounts import as_utc, record_audit, utcnow
from radcommons.store.index.facts import refresh_series_facts
from radcommons.store.index.schema import get_metadata, system_table

#: Modalities that carry no image of their own: ignored when reading a study's modality.
NON_IMAGE_MODALITIES = frozenset(
    "SR KO PR SEG REG RTSTRUCT RTPLAN RTDOSE RTRECORD DOC PLAN RWV ECG".split()
)
#: At most this many study UIDs are named in one audit event (the count is always complete).
AUDIT_UIDS = 1000


@dataclass(frozen=True)
class StoredDecision:
    """A decision as stored: the pair as the curator gave it, its code (empty: not mappable)."""

    modality: str
    description: str
    code: str
    long_common_name: str
    method: str
    system: str
    contrast: str
    decided_by: str
    decided_at: _dt.datetime
    note: str

    @property
    def key(self) -> DecisionKey:
        return require_decision_key(self.modality, self.description)

    def fields(self) -> dict[str, str | None]:
        """The study columns this decision sets (all None when not mappable)."""
        if not self.code:
            return dict.fromkeys(CODE_FIELDS)
        return {"loinc_code": self.code, "loinc_long_common_name": self.long_common_name or None,
                "loinc_method": self.method or None, "loinc_system": self.system or None,
                "loinc_contrast": self.contrast or None}

    def as_decision(self) -> Decision:
        """The matcher's :class:`~radcommons.harmonize.matcher.Decision` for this row."""
        return Decision(self.modality, self.description, self.code, self.long_common_name, self.decided_by, self.note)


@dataclass(frozen=True)
class DecisionOutcome:
    """What recording a decision did: the decision, the code it replaced, the studies updated."""

    decision: StoredDecision
    previous_code: str | None  # None: the pair had no decision before; "": it was "not mappable"
    studies: int
    by_project: dict[str, int]


def _stored(row: Any) -> StoredDecision:
    return StoredDecision(
        modality=row.modality, description=row.description, code=row.loinc_code or "",
        long_common_name=row.loinc_long_common_name or "", method=row.loinc_method or "",
        system=row.loinc_system or "", contrast=row.loinc_contrast or "", decided_by=row.decided_by,
        decided_at=as_utc(row.decided_at), note=row.note or "",
    )


def list_decisions(conn: Connection) -> list[StoredDecision]:
    """Every decision, newest first."""
    table = system_table("harmonization_decision")
    rows = conn.execute(select(table).order_by(table.c.decided_at.desc(), table.c.id.desc())).all()
    return [_stored(row) for row in rows]


@dataclass
class StoredDecisions:
    """The decisions an index writer applies, read once per transaction (the table is small).

    :meth:`use` is called with each connection the writer writes with; the decisions are
    re-read when the connection changes, so a writer that spans several transactions (an
    ingest) sees a decision recorded between two of them.
    """

    _conn: Connection | None = None
    _decisions: dict[DecisionKey, dict[str, str | None]] = field(default_factory=dict)
    _matcher: Matcher | None = None

    def use(self, conn: Connection) -> None:
        if conn is not self._conn:
            stored = list_decisions(conn)
            self._decisions = {d.key: d.fields() for d in stored}
            self._matcher = curated_matcher(decided_rows(stored))
            self._conn = conn

    def study_code_fields(self, modality: str, description: str) -> Mapping[str, str | None]:
        """The code fields of a study: a stored decision's when there is one, else the matcher's
        (which also learns from the decisions as curated rows)."""
        return study_code_fields(modality, description, self._decisions, self._matcher)


def decided_rows(stored: Sequence[StoredDecision]) -> tuple[MappingRow, ...]:
    """The decisions with a code as curated rows for a matcher (:func:`list_decisions`' order in),
    oldest first, so the matcher's votes (ties go to the latest row) favour the newest."""
    rows = (decision_row(d.as_decision()) for d in reversed(stored))
    return tuple(row for row in rows if row is not None)


def image_modality(modalities: Iterable[str] | None) -> str:
    """The modality a study is harmonized under: its first image modality in sorted order."""
    listed = sorted(m for m in (modalities or ()) if m)
    images = [m for m in listed if m.upper() not in NON_IMAGE_MODALITIES]
    return (images or listed or [""])[0]


def _recoded_studies(conn: Connection, key: DecisionKey, before: StoredDecisions
                     ) -> list[tuple[Any, Mapping[str, str | None]]]:
    """The studies a decision just recorded changes, each with its code fields now: those of the
    decided pair (its key: however their description is cased and spaced), and those of every
    other pair the matcher now answers otherwise (it learns a decision as a curated row, so
    "XR CHEST 2 VWS" is answered as "XR CHEST 2 VIEWS" once that is decided; a replaced decision
    no longer answers them). What indexing the studies now would give them: only the decided
    pair was re-coded before, so its siblings kept the old answer while studies indexed later,
    and ``harmonize queue``, gave the decision's.

    ``before``: the decisions as they were before this one. Each distinct (modality, description)
    of the index is looked up (the matchers are built once); only studies that change are read.
    """
    study = get_metadata().tables["imaging_study"]
    after = StoredDecisions()
    after.use(conn)
    current = conn.execute(select(study.c.study_description, study.c.study_modality,
                                  *(study.c[name] for name in CODE_FIELDS))
                           .where(study.c.study_description.is_not(None)).distinct()).all()
    now: dict[tuple[str, str], dict[str, str | None]] = {}  # pair -> its fields after the decision
    changes: dict[tuple[str, str], bool] = {}  # pair -> whether the decision changes its answer
    descriptions = set()  # of the studies that change
    for row in current:
        if not row.study_modality:  # no instance (a clinical record alone): nothing was coded from images
            continue
        pair = (image_modality(row.study_modality), row.study_description)
        if pair not in now:
            now[pair] = _all_fields(after.study_code_fields(*pair))
        if all(getattr(row, name) == now[pair][name] for name in CODE_FIELDS):
            continue
        if pair not in changes:  # the matcher as it was asked only for pairs whose studies differ
            changes[pair] = (decision_key(*pair) == key
                             or now[pair] != _all_fields(before.study_code_fields(*pair)))
        if changes[pair]:
            descriptions.add(row.study_description)
    wanted = {pair: fields for pair, fields in now.items() if changes.get(pair)}
    listed = sorted(descriptions)
    changed = []
    for start in range(0, len(listed), 500):
        rows = conn.execute(select(study.c.id, study.c.project_id, study.c.study_uid, study.c.study_modality,
                                   study.c.study_description, *(study.c[name] for name in CODE_FIELDS))
                            .where(study.c.study_description.in_(listed[start:start + 500]))).all()
        for row in rows:
            if not row.study_modality:
                continue
            fields = wanted.get((image_modality(row.study_modality), row.study_description))
            if fields and any(getattr(row, name) != fields[name] for name in CODE_FIELDS):
                changed.append((row, fields))
    return changed


def _all_fields(fields: Mapping[str, str | None]) -> dict[str, str | None]:
    """Every code column of a study for :func:`study_code_fields`' answer (None where it has none)."""
    return {name: fields.get(name) for name in CODE_FIELDS}


def record_decision(conn: Connection, *, modality: str, description: str, code: str, info: CodeInfo | None,
                    by: str, note: str = "", client: str | None = None) -> DecisionOutcome:
    """Store (or replace) the decision for a pair and re-harmonize the studies that carry it, and
    those of the pairs the matcher now answers otherwise (:func:`_recoded_studies`).

    ``code`` empty means "not mappable": those studies lose any code the matcher gave them.
    ``info`` is the code's catalogue entry (its name, method, region, contrast are copied).
    Audited: one ``harmonization.decide`` event, and one ``harmonization.restudy`` event per
    project whose studies changed.
    """
    key = require_decision_key(modality, description)  # its description checked by decision_description
    before = StoredDecisions()  # what the matcher answered until now, to find the studies this decision changes
    before.use(conn)
    table = system_table("harmonization_decision")
    now = utcnow()
    fields = decision_fields(Decision(modality, description, code, info.long_common_name if info else ""), info)
    row = {
        "modality_key": key[0], "description_key": key[1], "modality": modality.strip(),
        "description": decision_description(description), "loinc_code": fields["loinc_code"],
        "loinc_long_common_name": fields["loinc_long_common_name"], "loinc_method": fields["loinc_method"],
        "loinc_system": fields["loinc_system"], "loinc_contrast": fields["loinc_contrast"],
        "decided_by": by, "decided_at": now, "note": note or None,
    }
    _require_fit(table, row, {"modality": "modality", "decided_by": "decider's name",
                              "loinc_long_common_name": "code's name"})
    where = (table.c.modality_key == key[0], table.c.description_key == key[1])
    previous = conn.execute(select(table.c.id, table.c.loinc_code).where(*where)).first()
    if previous is None:
        conn.execute(insert(table).values(row))
    else:
        conn.execute(update(table).where(table.c.id == previous.id).values(row))
    recoded = _recoded_studies(conn, key, before)
    by_project = _update_studies(conn, recoded)
    changed = [study for study, _ in recoded]
    # a study of another pair may get another code (a replaced decision no longer answers it)
    other_codes = {study.study_uid: new["loinc_code"] for study, new in recoded
                   if new["loinc_code"] != fields["loinc_code"]}
    decision = _stored(conn.execute(select(table).where(*where)).one())
    target = f"{key[0]} | {key[1]}"  # cut to its column by record_audit, whole in the detail
    record_audit(conn, actor=by, action="harmonization.decide", target=target, client=client,
                 records=1, detail={"code": code or None, "name": fields["loinc_long_common_name"],
                                    "previous_code": None if previous is None else previous.loinc_code,
                                    "replaced": previous is not None, "note": note or None,
                                    "studies": sum(by_project.values())})
    for project, uids in _uids_by_project(changed).items():
        record_audit(conn, actor=by, action="harmonization.restudy", target=target,
                     project=project, client=client, records=len(uids),
                     detail={"code": code or None, "study_uids": uids[:AUDIT_UIDS],
                             **({"other_codes": {uid: other_codes[uid] for uid in uids[:AUDIT_UIDS]
                                                 if uid in other_codes}}
                                if any(uid in other_codes for uid in uids) else {})})
    return DecisionOutcome(decision=decision,
                           previous_code=None if previous is None else (previous.loinc_code or ""),
                           studies=sum(by_project.values()), by_project=by_project)


def _require_fit(table: Any, row: Mapping[str, Any], labels: Mapping[str, str], where: str = "",
                 hint: str = "") -> None:
    """A :class:`UserError` for a value of ``row`` longer than its column (``labels``: column ->
    what a person calls it): PostgreSQL refused it with a database error, reported as a bug."""
    for column, label in labels.items():
        value, most = row.get(column), table.c[column].type.length
        if isinstance(value, str) and most and len(value) > most:
            raise UserError(f"{where}the {label} is {len(value)} characters long; at most {most} are kept",
                            hint or f"give a shorter {label}")


def _uids_by_project(studies: Sequence[Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for study in studies:
        out[study.project_id].append(study.study_uid)
    return {project: sorted(uids) for project, uids in sorted(out.items())}


def _update_studies(conn: Connection, recoded: Sequence[tuple[Any, Mapping[str, str | None]]]) -> dict[str, int]:
    """Set the code fields of each study (``recoded``: a study row, its fields) and rewrite their
    facet rows; studies per project."""
    if not recoded:
        return {}
    study = get_metadata().tables["imaging_study"]
    by_fields: dict[tuple[str | None, ...], list[int]] = defaultdict(list)
    for row, fields in recoded:
        by_fields[tuple(fields[name] for name in CODE_FIELDS)].append(row.id)
    for values, ids in by_fields.items():
        ids.sort()
        for start in range(0, len(ids), 500):
            conn.execute(update(study).where(study.c.id.in_(ids[start:start + 500]))
                         .values(updated_at=func.now(), **dict(zip(CODE_FIELDS, values, strict=True))))
    refresh_series_facts(conn, sorted(row.id for row, _ in recoded))
    return dict(Counter(row.project_id for row, _ in recoded))


def pending_pairs(conn: Connection, decisions: Sequence[StoredDecision] | None = None) -> list[StudyPair]:
    """(modality, description) pairs of indexed studies without a code and without a decision.

    One pair per decision key (modality alias group, normalised description), its modality and
    description as most studies carry them, its frequency the number of studies.

    A study without a code whose pair was decided *with* a code is listed too: the decision
    missed it (indexing harmonized a study under the modality of the first instance it saw, so
    a CT study whose dose report (SR) came first was looked up as an SR pair, until
    ``IndexWriter.finish`` coded studies under their image modality), and hiding it left it
    uncoded for good. Deciding the pair again re-codes it.

    ``decisions``: :func:`list_decisions`, when the caller has read them already.
    """
    study = get_metadata().tables["imaging_study"]
    stored = list_decisions(conn) if decisions is None else decisions
    decided = {d.key for d in stored if not d.code}  # not mappable
    rows = conn.execute(
        select(study.c.study_description, study.c.study_modality, func.count())
        .where(study.c.loinc_code.is_(None), study.c.study_description.is_not(None))
        .group_by(study.c.study_description, study.c.study_modality)
    ).all()
    counts: dict[DecisionKey, Counter[tuple[str, str]]] = defaultdict(Counter)
    for description, modalities, n in rows:
        modality = image_modality(modalities)
        key = decision_key(modality, description)
        if key is None or key in decided:
            continue
        counts[key][(modality, description)] += n
    pairs = []
    for counter in counts.values():
        (modality, description), _ = counter.most_common(1)[0]
        pairs.append(StudyPair(modality, description, sum(counter.values())))
    return pairs


# --- imported codes ---------------------------------------------------------------------


def imported_codes(conn: Connection) -> tuple[CodeInfo, ...]:
    """The codes an operator imported (``harmonize catalogue import``), by code."""
    table = system_table("harmonization_code")
    rows = conn.execute(select(table).order_by(table.c.code)).all()
    return tuple(CodeInfo(row.code, row.long_common_name, row.method or "", row.system or "", row.timing or "")
                 for row in rows)


def import_codes(engine: Engine, codes: Sequence[CodeInfo], *, source: str, by: str) -> tuple[int, int]:
    """Add or replace imported codes in one transaction, audited; (added, replaced)."""
    table = system_table("harmonization_code")
    with engine.begin() as conn:
        existing = set(conn.execute(select(table.c.code)).scalars())
        replaced = [info.code for info in codes if info.code in existing]
        for start in range(0, len(replaced), 500):
            conn.execute(delete(table).where(table.c.code.in_(replaced[start:start + 500])))
        now = utcnow()
        rows = [{"code": info.code, "long_common_name": info.long_common_name, "method": info.method or None,
                 "system": info.system or None, "timing": info.timing or None, "source": source[-256:],
                 "imported_by": by, "imported_at": now} for info in codes]
        for row in rows:  # the name was cut to 256 characters unsaid, and a long method failed on PostgreSQL
            _require_fit(table, row, {"long_common_name": "long common name", "method": "method",
                                      "system": "body region", "timing": "timing", "imported_by": "importer's name"},
                         where=f"{source}: code {row['code']}: ",
                         hint="nothing was imported: remove the code's rows from the file to import the others")
        for start in range(0, len(rows), 1000):
            conn.execute(insert(table), rows[start:start + 1000])
        record_audit(conn, actor=by, action="harmonization.catalogue_import", target=source,
                     records=len(rows), detail={"added": len(rows) - len(replaced), "replaced": len(replaced)})
    return len(rows) - len(replaced), len(replaced)


def index_review_queue(conn: Connection, *, mapping_table: Path | str | None = None,
                       threshold: float = DEFAULT_THRESHOLD) -> list[ReviewItem]:
    """The review queue of the index: every pending pair (:func:`pending_pairs`), busiest first,
    with the matcher's suggestion over the catalogue plus the imported codes.

    Every pending pair is listed, whatever the matcher says now: its studies have no code. The
    matcher knows the curators' decisions as curated rows, as indexing's does
    (:class:`StoredDecisions`): a pair like one decided is suggested the decided code, the code
    its studies would get if indexed now (the suggestion ignored the decisions before).
    """
    decisions = list_decisions(conn)  # read once: the pending pairs and the matcher's curated rows
    matcher = curated_matcher(decided_rows(decisions), imported_codes(conn),
                              table=None if mapping_table is None else load_table(mapping_table), threshold=threshold)
    return review_queue(pending_pairs(conn, decisions), matcher, only_unanswered=False)


def catalogue_code(conn: Connection, code: str, name: str | None = None) -> CodeInfo:
    """``code`` as a curator may decide it: from the catalogue, the imported codes, or named by
    ``name`` (:func:`radcommons.harmonize.catalogue.resolve_code`; :class:`UserError` otherwise)."""
    return resolve_code(code, with_codes(load_table(), imported_codes(conn)).codes, name)
