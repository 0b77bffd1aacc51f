"""series_facet_counts: series_facts pre-aggregated over its low-cardinality facet columns.

One row per (project, combination of the CUBE_FIELDS values) with its number of series, so a
facet whose field and filter name only those columns sums tens of thousands of rows instead of
counting a million. Declared by radcommons.store.index.facts (add_counts_table) and recomputed
per project by refresh_series_facts in the indexing transaction; this revision creates it and
fills it from series_facts.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-22 07:05:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision: str = '0008'
down_revision: Union[str, Sequence[str], None] = '0007'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

#: The counted columns of series_facts at this revision (radcommons.store.index.facts.CUBE_FIELDS).
COLUMNS = [
    ('modality', sa.String(length=64)),
    ('body_part_examined', sa.String(length=64)),
    ('manufacturer', sa.String(length=128)),
    ('manufacturer_model_name', sa.String(length=128)),
    ('imaging_study__study_year', sa.Integer()),
    ('case__sex', sa.String(length=64)),
    ('case__age_at_index', sa.Integer()),
    ('case__race', sa.String(length=64)),
    ('case__ethnicity', sa.String(length=64)),
]


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        'series_facet_counts',
        sa.Column('project_id', sa.String(length=64), nullable=False),
        *[sa.Column(name, type_, nullable=True) for name, type_ in COLUMNS],
        sa.Column('n', sa.BigInteger(), nullable=False),
    )
    op.create_index(op.f('ix_series_facet_counts_project_id'), 'series_facet_counts', ['project_id'], unique=False)
    keys = ', '.join(['project_id', *(name for name, _ in COLUMNS)])
    op.execute(sa.text(f'INSERT INTO series_facet_counts ({keys}, n) '
                       f'SELECT {keys}, count(*) FROM series_facts GROUP BY {keys}'))


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index(op.f('ix_series_facet_counts_project_id'), table_name='series_facet_counts')
    op.drop_table('series_facet_counts')
