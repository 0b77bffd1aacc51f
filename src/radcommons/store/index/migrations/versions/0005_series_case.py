"""Dictionary 1.1.0: series carry their case (``series.case_id``), copied from their study.

Facet counts of series by case fields (sex, age, COVID status) then join series to case
directly instead of through imaging_study, which is what a faceted UI asks all the time.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 04:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision: str = '0005'
down_revision: Union[str, Sequence[str], None] = '0004'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('series') as batch:
        batch.add_column(sa.Column('case_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True))
        batch.create_foreign_key(op.f('fk_series_case_id_case'), 'case', ['case_id'], ['id'])
        batch.create_index(op.f('ix_series_case_id'), ['case_id'], unique=False)
    op.execute(sa.text(
        'UPDATE series SET case_id = (SELECT imaging_study.case_id FROM imaging_study '
        'WHERE imaging_study.id = series.imaging_study_id)'
    ))
    op.execute(sa.text("UPDATE dictionary_version SET version = '1.1.0'"))


def downgrade() -> None:
    """Downgrade schema."""
    op.execute(sa.text("UPDATE dictionary_version SET version = '1.0.0'"))
    with op.batch_alter_table('series') as batch:
        batch.drop_index(op.f('ix_series_case_id'))
        batch.drop_constraint(op.f('fk_series_case_id_case'), type_='foreignkey')
        batch.drop_column('case_id')
