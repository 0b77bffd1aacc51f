"""Data use agreement acceptances; the audit log refuses UPDATE and DELETE on PostgreSQL.

Table defined in radcommons.store.index.system (``dua_acceptance``). On PostgreSQL a trigger
makes ``audit_event`` append-only in the database itself, whatever the client.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 03:30:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision: str = '0004'
down_revision: Union[str, Sequence[str], None] = '0003'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_APPEND_ONLY = """
CREATE OR REPLACE FUNCTION radcommons_audit_append_only() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION 'audit_event is append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_event_append_only BEFORE UPDATE OR DELETE ON audit_event
  FOR EACH ROW EXECUTE FUNCTION radcommons_audit_append_only();
"""


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('dua_acceptance',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('user_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('version', sa.String(length=32), nullable=False),
    sa.Column('accepted_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.Column('client', sa.String(length=128), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['user.id'], name=op.f('fk_dua_acceptance_user_id_user'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dua_acceptance')),
    sa.UniqueConstraint('user_id', 'version', name=op.f('uq_dua_acceptance_user_id_version'))
    )
    with op.batch_alter_table('dua_acceptance', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dua_acceptance_user_id'), ['user_id'], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_APPEND_ONLY)


def downgrade() -> None:
    """Downgrade schema."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_event_append_only ON audit_event")
        op.execute("DROP FUNCTION IF EXISTS radcommons_audit_append_only()")
    with op.batch_alter_table('dua_acceptance', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dua_acceptance_user_id'))
    op.drop_table('dua_acceptance')
