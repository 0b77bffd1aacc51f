"""The audit log refuses UPDATE and DELETE on SQLite too.

Revision 0004 made ``audit_event`` append-only on PostgreSQL with a trigger; on SQLite, the
embedded default, any client could still rewrite or delete who read what. Two triggers now
abort such a statement there as well, so the audit trail is append-only whatever the index.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 21:15:00

"""
from typing import Sequence, Union

from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0015'
down_revision: Union[str, Sequence[str], None] = '0014'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_STATEMENTS = {"audit_event_no_update": "UPDATE", "audit_event_no_delete": "DELETE"}


def upgrade() -> None:
    """Upgrade schema."""
    if op.get_bind().dialect.name == "sqlite":
        for name, statement in _STATEMENTS.items():
            op.execute(f"CREATE TRIGGER {name} BEFORE {statement} ON audit_event "
                       "BEGIN SELECT RAISE(ABORT, 'audit_event is append-only'); END")


def downgrade() -> None:
    """Downgrade schema."""
    if op.get_bind().dialect.name == "sqlite":
        for name in _STATEMENTS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
