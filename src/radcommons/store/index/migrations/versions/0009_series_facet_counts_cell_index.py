"""series_facet_counts: one index over (project, combination) instead of project alone.

Indexing now adds each batch's change to the counts combination by combination
(radcommons.store.index.facts._apply_delta) instead of recounting the whole project; each
combination is found by equality or IS NULL on every counted column, which this index serves.
Its leading column is project_id, so it also serves what the single-column index did.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 04:40:00

"""
from typing import Sequence, Union

from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0009'
down_revision: Union[str, Sequence[str], None] = '0008'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

#: The counted columns of series_facts at this revision (radcommons.store.index.facts.CUBE_FIELDS).
COLUMNS = [
    'modality', 'body_part_examined', 'manufacturer', 'manufacturer_model_name', 'imaging_study__study_year',
    'case__sex', 'case__age_at_index', 'case__race', 'case__ethnicity',
]


def upgrade() -> None:
    """Upgrade schema."""
    op.create_index('ix_series_facet_counts_cell', 'series_facet_counts', ['project_id', *COLUMNS], unique=False)
    op.drop_index(op.f('ix_series_facet_counts_project_id'), table_name='series_facet_counts')


def downgrade() -> None:
    """Downgrade schema."""
    op.create_index(op.f('ix_series_facet_counts_project_id'), 'series_facet_counts', ['project_id'], unique=False)
    op.drop_index('ix_series_facet_counts_cell', table_name='series_facet_counts')
