"""case_day0: the day 0 of a case whose days_to_study an ingest derived from its images alone.

Table defined in radcommons.store.index.system. Each ingest counted a case's studies from the
first study of that run, so a study of the same patient ingested by a later run was counted from
another day (a later study got days_to_study 0 again, an earlier one too). The first run that
derives a case's days now records the shifted StudyDate it counts from; later runs keep it.
Cases derived before this revision have no row: their next ingest records its first study.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 17:30:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision: str = '0014'
down_revision: Union[str, Sequence[str], None] = '0013'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('case_day0',
    sa.Column('case_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('study_date', sa.String(length=8), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['case.id'], name=op.f('fk_case_day0_case_id_case'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('case_id', name=op.f('pk_case_day0'))
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table('case_day0')
