"""The data use agreement (DUA): its current text and version, and who accepted which version.

A researcher reads no record before accepting the current version (``server.access``
enforces it); an acceptance is kept forever, with its time and client address, so the
commons can show who agreed to what. Plain data in, plain data out; no HTTP here.
"""

from __future__ import annotations

import datetime as _dt

from sqlalchemy import Engine, insert, select
from sqlalchemy.engine import Connection

from radcommons.store.index.accounts import record_audit, utcnow
from radcommons.store.index.schema import system_table

#: Bump when the text changes: everyone must accept the new version before reading again.
DUA_VERSION = "2026-11"
DUA_TEXT = """RadCommons data use agreement (version 2026-11)

By accepting, you agree to:
1. use the data only for research and education, never for clinical care;
2. make no attempt to re-identify any person, nor link the data to other data for that purpose;
3. not redistribute the data; share cohort identifiers (rc-cohort-...) instead, so others
   download the same files under this agreement;
4. report any identifying information you find to the commons operators at once, and delete it;
5. cite the commons and the frozen cohort identifiers you used in publications;
6. keep your token secret (a file readable only by you); every access is logged.
"""


def accepted_versions(conn: Connection, user_id: int) -> frozenset[str]:
    """The agreement versions ``user_id`` accepted."""
    table = system_table("dua_acceptance")
    return frozenset(conn.execute(select(table.c.version).where(table.c.user_id == user_id)).scalars())


def accept(engine: Engine, user_id: int, user_name: str, *, version: str = DUA_VERSION,
           client: str | None = None) -> _dt.datetime:
    """Record that ``user_id`` accepted ``version`` (again: harmless); returns when it was first accepted."""
    table = system_table("dua_acceptance")
    with engine.begin() as conn:
        found = conn.execute(select(table.c.accepted_at).where(table.c.user_id == user_id,
                                                                table.c.version == version)).scalar()
        if found is not None:
            return found if found.tzinfo else found.replace(tzinfo=_dt.timezone.utc)
        now = utcnow()
        conn.execute(insert(table).values(user_id=user_id, version=version, accepted_at=now, client=client))
        record_audit(conn, actor=user_name, action="dua.accept", target=f"dua {version}", client=client, records=1)
        return now
