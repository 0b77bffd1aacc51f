"""An index on the audit log's target and time.

``radcommons admin submission list`` finds each submission's last activity as the newest audit
event naming it (``target = 'submission N'``): without an index that was a scan of the whole
audit log, which only grows. ``(target, at)`` answers it from the index alone.

Plain ``CREATE INDEX`` on both databases (no batch table rebuild on SQLite): the append-only
triggers on ``audit_event`` (0004 on PostgreSQL, 0015 on SQLite) are left as they are.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 23:40:00

"""
from typing import Sequence, Union

from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0016'
down_revision: Union[str, Sequence[str], None] = '0015'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_NAME = "ix_audit_event_target_at"


def upgrade() -> None:
    """Upgrade schema."""
    op.create_index(_NAME, "audit_event", ["target", "at"], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index(_NAME, table_name="audit_event")
