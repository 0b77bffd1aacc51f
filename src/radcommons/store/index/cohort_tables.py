"""The tables of saved queries and frozen cohorts, on the index's own MetaData.

:func:`radcommons.store.index.schema.build_metadata` calls :func:`add_cohort_tables`, so
Alembic (revision 0003) and the schema test see one MetaData.

* ``cohort``: a saved query (``frozen_at`` NULL, ``identifier`` NULL) or a frozen snapshot
  (``identifier`` ``rc-cohort-<12 hex>``, ``content_hash`` the sha256 of its member list,
  ``source_id`` the saved query it was frozen from, if any). A snapshot never changes.
* ``cohort_member``: the records of a snapshot: its node's records, and for imaging cohorts
  the instances under them (``node`` = ``instance``, ``object_id`` = the file's sha256).
  ``record_id`` is the record's ``id`` in its node table; there is no foreign key, so a
  snapshot outlives a record deleted from the index (its submitter_id and object id remain).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, ForeignKey, MetaData, String, Table, Text, func

#: Names of the tables this module adds.
COHORT_TABLES = ("cohort", "cohort_member")


def add_cohort_tables(metadata: MetaData) -> None:
    """Add ``cohort`` and ``cohort_member`` to ``metadata`` (built with the index's naming convention)."""
    # Imported here: schema.build_metadata imports this module while it builds.
    from radcommons.store.index.schema import id_type, json_type

    Table(
        "cohort", metadata,
        Column("id", id_type(), primary_key=True, autoincrement=True),
        Column("identifier", String(64), nullable=True, unique=True),
        Column("name", String(256), nullable=False),
        Column("owner", String(128), nullable=False, index=True),
        Column("node", String(64), nullable=False),
        Column("filter", json_type(), nullable=False),
        Column("description", Text(), nullable=True),
        # The projects the owner could read when it was frozen (NULL: all).
        Column("projects", json_type(), nullable=True),
        Column("source_id", id_type(), ForeignKey("cohort.id", ondelete="SET NULL"), nullable=True, index=True),
        Column("content_hash", String(64), nullable=True),
        Column("member_count", BigInteger(), nullable=True),
        Column("instance_count", BigInteger(), nullable=True),
        Column("dictionary_version", String(32), nullable=True),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("frozen_at", DateTime(timezone=True), nullable=True),
    )
    Table(
        "cohort_member", metadata,
        Column("cohort_id", id_type(), ForeignKey("cohort.id", ondelete="CASCADE"), primary_key=True),
        Column("node", String(64), primary_key=True),
        Column("record_id", id_type(), primary_key=True, autoincrement=False),
        Column("project_id", String(64), nullable=False),
        Column("submitter_id", String(128), nullable=False),
        Column("object_id", String(64), nullable=True),
    )
