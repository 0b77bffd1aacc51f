"""submission_file.base_version: the study version a sender built a study's manifest on.

A sender that completes a study with what the commons holds of it (the gateway: the instances of
the study's latest version that it does not replace) declares the version it read. The commit
versions the study only if that is still its latest version, in the transaction that makes the
new one; otherwise the study is refused (``changed_since_read``) and the sender sends it again.
NULL (every row declared before, and senders that declare no base): no check. 0: the sender read
no version of the study.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 13:30:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision: str = '0013'
down_revision: Union[str, Sequence[str], None] = '0012'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('submission_file', schema=None) as batch_op:
        batch_op.add_column(sa.Column('base_version', sa.Integer(), nullable=True))


def downgrade() -> None:
    """Downgrade schema (a plain DROP COLUMN, as 0011's: SQLite >= 3.35 has it)."""
    op.drop_column('submission_file', 'base_version')
