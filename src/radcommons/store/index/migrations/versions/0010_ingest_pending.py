"""ingest_pending: the studies an ingest indexed whose derived fields it has not yet written.

Table defined in radcommons.store.index.system. Each ingest batch adds its studies, named with
the run (host:pid), in the batch's transaction; the run's end writes their derived fields and
facet rows and removes them. A run killed half way leaves them, and the next ingest or server
start finishes them (radcommons.pipelines.indexing.finish_abandoned): facet counts used to stay
stale until the same ingest was run again.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 02:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision: str = '0010'
down_revision: Union[str, Sequence[str], None] = '0009'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('ingest_pending',
    sa.Column('study_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('run', sa.String(length=128), nullable=False),
    sa.Column('patient_id', sa.String(length=128), nullable=True),
    sa.Column('study_date', sa.String(length=8), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.ForeignKeyConstraint(['study_id'], ['imaging_study.id'], name=op.f('fk_ingest_pending_study_id_imaging_study'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('study_id', name=op.f('pk_ingest_pending'))
    )
    op.create_index(op.f('ix_ingest_pending_run'), 'ingest_pending', ['run'], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index(op.f('ix_ingest_pending_run'), table_name='ingest_pending')
    op.drop_table('ingest_pending')
