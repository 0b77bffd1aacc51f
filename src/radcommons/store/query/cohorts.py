"""Cohorts: saved queries, and frozen snapshots a paper can cite.

* :func:`save_query` keeps a query under a name (its answer changes as the commons grows).
* :func:`freeze` runs a query once and stores its answer as member rows: the records of
  the queried node and, for imaging cohorts, every instance under them with its object id
  (the file's sha256). The snapshot never changes afterwards, whatever is added to the index.
  Its ``content_hash`` is the sha256 of its member list and its identifier is
  ``rc-cohort-<first 12 hex of the hash>``; freezing the same members again returns the
  owner's own earlier snapshot. Another owner who freezes the same members gets a snapshot of
  its own (its name, filter and description; the same ``content_hash``), named by the hash of
  the content hash and the owner: one user's record is never handed to another.

Member list hashed (one line per member, UTF-8, sorted by code point on each column in
order; ``object_id`` empty for non-instances)::

    <node>\\t<project_id>\\t<submitter_id>\\t<object_id>\\n

Members are selected and inserted by the database (``INSERT ... SELECT``); only the hash is
computed here, streaming the sorted member rows.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, Table, delete, func, insert, literal, select, update
from sqlalchemy.engine import Connection, Row

from radcommons.dictionary import load_dictionary
from radcommons.errors import UserError
from radcommons.store.index import get_metadata
from radcommons.store.query import graph
from radcommons.store.query.ast import MATCH_ALL
from radcommons.store.query.compile import Compiler, Projects, normalize_projects
from radcommons.store.query.pages import iter_rows
from radcommons.store.query.parse import parse_filter

#: Prefix of frozen cohort identifiers.
IDENTIFIER_PREFIX = "rc-cohort-"
#: Node types whose frozen cohorts also record the instances (files) under each member.
IMAGING_NODES = ("case", "imaging_study", "series", "instance")


@dataclass(frozen=True)
class Cohort:
    """A saved query (``identifier`` None) or a frozen snapshot."""

    id: int
    identifier: str | None
    name: str
    owner: str
    node: str
    filter: dict[str, Any]
    description: str
    projects: tuple[str, ...] | None
    source_id: int | None
    content_hash: str | None
    member_count: int | None
    instance_count: int | None
    dictionary_version: str | None
    created_at: dt.datetime
    frozen_at: dt.datetime | None

    @property
    def frozen(self) -> bool:
        return self.frozen_at is not None


@dataclass(frozen=True)
class Member:
    """One member of a frozen cohort."""

    node: str
    record_id: int
    project_id: str
    submitter_id: str
    object_id: str | None


def _tables() -> tuple[Table, Table]:
    metadata = get_metadata()
    return metadata.tables["cohort"], metadata.tables["cohort_member"]


def _cohort(row: Row[Any]) -> Cohort:
    m = row._mapping
    return Cohort(
        id=m["id"], identifier=m["identifier"], name=m["name"], owner=m["owner"], node=m["node"],
        filter=dict(m["filter"] or {}), description=m["description"] or "",
        projects=tuple(m["projects"]) if m["projects"] is not None else None, source_id=m["source_id"],
        content_hash=m["content_hash"], member_count=m["member_count"], instance_count=m["instance_count"],
        dictionary_version=m["dictionary_version"], created_at=m["created_at"], frozen_at=m["frozen_at"],
    )


def _check_member_node(node: str) -> None:
    if node == "program":  # members are counted, scoped and shown per project; a program is in none
        raise UserError("a cohort cannot hold program records: they belong to no project",
                        "write the query for project, case, imaging_study, series or instance records")


def save_query(engine: Engine, name: str, node: str, filter: Mapping[str, Any] | None, *, owner: str,
               description: str = "") -> Cohort:
    """Save ``filter`` on ``node`` under ``name`` for ``owner`` (validated now, run later)."""
    if not name.strip():
        raise UserError("a saved query needs a name")
    _check_member_node(node)
    parse_filter(node, filter)
    cohort, _ = _tables()
    with engine.begin() as connection:
        new_id = connection.execute(
            insert(cohort).values(name=name, owner=owner, node=node, filter=dict(filter or {}),
                                  description=description).returning(cohort.c.id)
        ).scalar_one()
        return _get(connection, new_id)


def get_cohort(engine: Engine, key: str | int) -> Cohort:
    """A cohort by identifier (``rc-cohort-...``) or id; :class:`UserError` when there is none."""
    with engine.connect() as connection:
        return _get(connection, key)


def _get(connection: Connection, key: str | int) -> Cohort:
    cohort, _ = _tables()
    where = cohort.c.id == key if isinstance(key, int) else cohort.c.identifier == key
    row = connection.execute(select(cohort).where(where)).first()
    if row is None:
        raise UserError(f"no cohort {key!r}", "list cohorts to see their identifiers")
    return _cohort(row)


def list_cohorts(engine: Engine, *, owner: str | None = None, frozen: bool | None = None) -> list[Cohort]:
    """Cohorts, newest first; only ``owner``'s when given; only frozen (or only saved) ones when asked."""
    cohort, _ = _tables()
    statement = select(cohort).order_by(cohort.c.id.desc())
    if owner is not None:
        statement = statement.where(cohort.c.owner == owner)
    if frozen is not None:
        statement = statement.where(cohort.c.frozen_at.is_not(None) if frozen else cohort.c.frozen_at.is_(None))
    with engine.connect() as connection:
        return [_cohort(row) for row in connection.execute(statement)]


def freeze(
    engine: Engine,
    source: int | Cohort | None = None,
    *,
    node: str | None = None,
    filter: Mapping[str, Any] | None = None,
    name: str | None = None,
    owner: str,
    projects: Projects = None,
    include_instances: bool | None = None,
    description: str = "",
) -> Cohort:
    """Freeze a saved query (``source``) or a ``node`` + ``filter`` into an immutable snapshot.

    ``projects`` is what the owner may read now; members outside it are never recorded.
    ``include_instances`` (default: yes for case, imaging_study, series and instance cohorts)
    records every instance under each member, so the snapshot pins the exact files.
    """
    if source is not None:
        saved = source if isinstance(source, Cohort) else get_cohort(engine, source)
        node, filter, name = saved.node, saved.filter, name or saved.name
        description = description or saved.description
        source_id: int | None = saved.id
    else:
        source_id = None
    if node is None or name is None:
        raise UserError("freeze needs a saved query, or a node type, a filter and a name")
    _check_member_node(node)
    expr = parse_filter(node, filter)
    if include_instances is None:
        include_instances = node in IMAGING_NODES
    if include_instances and node not in IMAGING_NODES:
        raise UserError(f"{node} records have no instances under them")
    scope = normalize_projects(projects)
    cohort, member = _tables()
    with engine.begin() as connection:
        compiler = Compiler(connection.dialect.name, scope, connection=connection)
        cohort_id = connection.execute(
            insert(cohort).values(
                name=name, owner=owner, node=node, filter=dict(filter or {}), description=description,
                projects=list(scope) if scope is not None else None, source_id=source_id,
                dictionary_version=load_dictionary().version, frozen_at=dt.datetime.now(dt.timezone.utc),
            ).returning(cohort.c.id)
        ).scalar_one()
        table = compiler.alias(node)
        object_id = table.c.object_id if node == "instance" else literal(None)
        columns = ["cohort_id", "node", "record_id", "project_id", "submitter_id", "object_id"]
        chosen = select(literal(cohort_id), literal(node), table.c.id, table.c.project_id, table.c.submitter_id,
                        object_id).where(compiler.where(node, expr, table))
        connection.execute(insert(member).from_select(columns, chosen))
        if include_instances and node != "instance":
            instance = compiler.alias("instance")
            conditions, ancestor = compiler.walk(graph.find_path(compiler.dictionary, "instance", node), instance)
            in_cohort = select(member.c.record_id).where(member.c.cohort_id == cohort_id, member.c.node == node)
            files = select(literal(cohort_id), literal("instance"), instance.c.id, instance.c.project_id,
                           instance.c.submitter_id, instance.c.object_id).where(
                compiler.where("instance", MATCH_ALL, instance), *conditions, ancestor.c.id.in_(in_cohort))
            connection.execute(insert(member).from_select(columns, files))
        # Counted, not taken from rowcount: drivers report -1 for INSERT ... SELECT.
        tally = dict(connection.execute(
            select(member.c.node, func.count()).where(member.c.cohort_id == cohort_id).group_by(member.c.node)
        ).all())
        member_count, instance_count = int(tally.get(node, 0)), int(tally.get("instance", 0))
        digest = _hash(connection, cohort_id)
        existing = connection.execute(select(cohort.c.id).where(
            cohort.c.content_hash == digest, cohort.c.owner == owner).order_by(cohort.c.id).limit(1)).scalar()
        if existing is not None:  # the owner froze the same members before: that snapshot is this one
            connection.execute(delete(member).where(member.c.cohort_id == cohort_id))
            connection.execute(delete(cohort).where(cohort.c.id == cohort_id))
            return _get(connection, existing)
        identifier = _identifier(connection, digest, owner)
        connection.execute(
            update(cohort).where(cohort.c.id == cohort_id).values(
                identifier=identifier, content_hash=digest, member_count=member_count,
                instance_count=instance_count)
        )
        return _get(connection, cohort_id)


def _identifier(connection: Connection, digest: str, owner: str) -> str:
    """``rc-cohort-<12 hex of digest>``, longer on a prefix collision; when another owner's snapshot
    of the same members holds that name, the hex of the sha256 of ``digest``, a tab and ``owner``."""
    cohort, _ = _tables()
    for name in (digest, hashlib.sha256(f"{digest}\t{owner}".encode()).hexdigest()):
        for length in (12, 16, 24, 32, 40, 54):
            candidate = IDENTIFIER_PREFIX + name[:length]
            row = connection.execute(select(cohort.c.content_hash).where(cohort.c.identifier == candidate)).first()
            if row is None:
                return candidate
            if row[0] == digest:
                break
    raise AssertionError("sha256 prefixes collide")  # pragma: no cover


def _sorted_members(connection: Connection, cohort_id: int) -> Any:
    _, member = _tables()
    columns = [member.c.node, member.c.project_id, member.c.submitter_id, member.c.object_id]
    # Code point order on every database: PostgreSQL's default collation depends on the locale.
    order = [c.collate("C") for c in columns] if connection.dialect.name == "postgresql" else columns
    return select(*columns).where(member.c.cohort_id == cohort_id).order_by(*order)


def _hash(connection: Connection, cohort_id: int) -> str:
    digest = hashlib.sha256()
    # Statement-level option: Connection.execution_options would change the connection for later statements.
    result = connection.execute(_sorted_members(connection, cohort_id).execution_options(yield_per=10_000))
    for node, project_id, submitter_id, object_id in result:
        digest.update(f"{node}\t{project_id}\t{submitter_id}\t{object_id or ''}\n".encode())
    return digest.hexdigest()


def verify(engine: Engine, key: str | int) -> bool:
    """True when a frozen cohort's stored members still hash to its ``content_hash``."""
    with engine.connect() as connection:
        found = _get(connection, key)
        if not found.frozen:
            raise UserError(f"cohort {key!r} is a saved query, not a frozen snapshot")
        return _hash(connection, found.id) == found.content_hash


def members(engine: Engine, key: str | int, *, node: str | None = None, projects: Projects = None,
            chunk_size: int = 10_000) -> Iterator[list[Member]]:
    """A frozen cohort's members in batches, in hash order; only ``node``'s when given."""
    scope = normalize_projects(projects)
    _, member = _tables()
    with engine.connect() as connection:
        found = _get(connection, key)
        statement = (
            select(member.c.node, member.c.record_id, member.c.project_id, member.c.submitter_id,
                   member.c.object_id)
            .where(member.c.cohort_id == found.id)
            .order_by(member.c.node, member.c.project_id, member.c.submitter_id)
        )
        if node is not None:
            statement = statement.where(member.c.node == node)
        if scope is not None:
            statement = statement.where(member.c.project_id.in_(scope))
        result = connection.execute(statement.execution_options(yield_per=chunk_size))
        for rows in result.partitions(chunk_size):
            yield [Member(*row) for row in rows]


#: :attr:`PinnedFile.state`: the instance is indexed with the pinned file; it is indexed with
#: another file now (its study got a new version); it is no longer indexed (removed).
SAME, CHANGED, REMOVED = "indexed", "changed", "removed"


@dataclass(frozen=True)
class PinnedFile:
    """One file a frozen cohort pinned: its member, and the instance as indexed now (if it still is)."""

    member: Member
    state: str  # SAME, CHANGED or REMOVED
    indexed: dict[str, Any] | None  # ``fields`` of the instance as indexed now (None: removed)

    @property
    def object_id(self) -> str:
        return str(self.member.object_id)


def pinned_files(engine: Engine, key: str | int, *, fields: list[str], projects: Projects = None,
                 chunk_size: int = 1_000) -> Iterator[list[PinnedFile]]:
    """The files a frozen cohort pinned (its instance members in ``projects``), in batches.

    Each comes with ``fields`` (instance-rooted, as :func:`iter_rows` takes them) of the
    instance as indexed now, found by project and SOP Instance UID: a corrected study keeps
    its instances' records with new files, so the pinned ``object_id`` is the member's, never
    the record's. ``state`` says whether the index still holds the pinned file.
    """
    wanted = list(dict.fromkeys([*fields, "project_id", "sop_instance_uid", "object_id"]))
    for batch in members(engine, key, node="instance", projects=projects, chunk_size=chunk_size):
        indexed: dict[tuple[str, str], dict[str, Any]] = {}
        for project in sorted({m.project_id for m in batch}):
            uids = [m.submitter_id for m in batch if m.project_id == project]
            for rows in iter_rows(engine, "instance", {"in": {"sop_instance_uid": uids}}, fields=wanted,
                                  projects=[project], chunk_size=chunk_size):
                indexed.update(((r["project_id"], r["sop_instance_uid"]), r) for r in rows)
        found = []
        for m in batch:
            row = indexed.get((m.project_id, m.submitter_id))
            state = REMOVED if row is None else SAME if row["object_id"] == m.object_id else CHANGED
            found.append(PinnedFile(m, state, row))
        yield found


def pinning_project(engine: Engine, object_id: str, *, reader: str, projects: Projects = None) -> str | None:
    """The project of a file (``object_id``) that a frozen cohort ``reader`` may see pinned, within
    ``projects`` (None: every project); None when there is none.

    A cohort is seen by its owner, and by anyone who may read every project it has members in
    (the research API's rule): its files stay theirs to fetch after a corrected study replaced
    them in the index.
    """
    scope = normalize_projects(projects)
    cohort, member = _tables()
    statement = (select(member.c.project_id).join(cohort, cohort.c.id == member.c.cohort_id)
                 .where(member.c.node == "instance", member.c.object_id == object_id, cohort.c.frozen_at.is_not(None))
                 .limit(1))
    if scope is not None:
        other = member.alias("other_member")
        outside = select(other.c.record_id).where(other.c.cohort_id == cohort.c.id, other.c.project_id.not_in(scope))
        statement = statement.where(member.c.project_id.in_(scope),
                                    (cohort.c.owner == reader) | ~outside.exists())
    with engine.connect() as connection:
        found = connection.execute(statement).scalar()
    return None if found is None else str(found)
