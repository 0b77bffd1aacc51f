"""Reading the append-only audit log (``audit_event``): filters by user, age and action.

Writing is :func:`radcommons.store.index.accounts.record_audit`; nothing here updates or
deletes (on PostgreSQL a trigger from revision 0004 refuses both).
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

from sqlalchemy import Engine, select

from radcommons.errors import UserError
from radcommons.store.index.accounts import as_utc, utcnow
from radcommons.store.index.schema import system_table

MAX_EVENTS = 10_000


def search_events(engine: Engine, *, user: str | None = None, since_days: float | None = None,
                  action: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
    """Audit events, newest first; ``action`` matches exactly or as a prefix ending in ``.`` (``research.``)."""
    if not 1 <= limit <= MAX_EVENTS:
        raise UserError(f"limit must be between 1 and {MAX_EVENTS}, not {limit}")
    if since_days is not None and not 0 <= since_days <= 36500:  # also NaN
        raise UserError(f"--since must be between 0 and 36500 days (got {since_days})", "e.g. --since 7")
    table = system_table("audit_event")
    statement = select(table).order_by(table.c.id.desc()).limit(limit)
    if user:
        statement = statement.where(table.c.actor == user)
    if since_days is not None:
        statement = statement.where(table.c.at >= utcnow() - _dt.timedelta(days=since_days))
    if action:
        statement = statement.where(table.c.action.startswith(action, autoescape=True) if action.endswith(".")
                                    else table.c.action == action)
    with engine.connect() as conn:
        rows = conn.execute(statement).mappings().all()
    return [{**dict(row), "at": as_utc(row["at"]).isoformat()} for row in rows]  # type: ignore[union-attr]
