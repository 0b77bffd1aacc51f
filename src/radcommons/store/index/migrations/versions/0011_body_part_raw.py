"""body_part_examined_raw: Body Part Examined as sent, next to its normalised term.

imaging_study and series stored DICOM Body Part Examined as sent (Chest, THORAX and chest were
three facet values); indexing now normalises it (radcommons.harmonize.normalize_body_part) and
keeps the raw value here. Rows indexed before keep their value, copied here as their raw value.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 05:30:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision: str = '0011'
down_revision: Union[str, Sequence[str], None] = '0010'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

TABLES = ('imaging_study', 'series')


def upgrade() -> None:
    """Upgrade schema."""
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('body_part_examined_raw', sa.String(length=64), nullable=True))
        op.execute(f'UPDATE {table} SET body_part_examined_raw = body_part_examined '
                   'WHERE body_part_examined IS NOT NULL')


def downgrade() -> None:
    """Downgrade schema.

    A plain DROP COLUMN (SQLite >= 3.35 has it): batch mode would copy each table and drop the
    original, which SQLite's foreign keys refuse while series and instances refer to its rows.
    """
    for table in TABLES:
        op.drop_column(table, 'body_part_examined_raw')
