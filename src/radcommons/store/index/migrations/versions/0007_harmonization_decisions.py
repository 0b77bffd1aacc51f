"""Harmonization: curator decisions on study codes, and codes imported from the LOINC/RSNA Playbook.

Tables defined in radcommons.store.index.system (``harmonization_decision``,
``harmonization_code``) and used by radcommons.store.index.harmonization: a curator's decision
for a (modality, normalised study description) pair wins over the matcher, at indexing and for
the studies already indexed.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22 06:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision: str = '0007'
down_revision: Union[str, Sequence[str], None] = '0006'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('harmonization_decision',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('modality_key', sa.String(length=32), nullable=False),
    sa.Column('description_key', sa.String(length=256), nullable=False),
    sa.Column('modality', sa.String(length=64), nullable=False),
    sa.Column('description', sa.String(length=256), nullable=False),
    sa.Column('loinc_code', sa.String(length=16), nullable=True),
    sa.Column('loinc_long_common_name', sa.String(length=256), nullable=True),
    sa.Column('loinc_method', sa.String(length=64), nullable=True),
    sa.Column('loinc_system', sa.String(length=128), nullable=True),
    sa.Column('loinc_contrast', sa.String(length=64), nullable=True),
    sa.Column('decided_by', sa.String(length=128), nullable=False),
    sa.Column('decided_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_harmonization_decision')),
    sa.UniqueConstraint('modality_key', 'description_key',
                        name=op.f('uq_harmonization_decision_modality_key_description_key'))
    )
    op.create_table('harmonization_code',
    sa.Column('code', sa.String(length=16), nullable=False),
    sa.Column('long_common_name', sa.String(length=256), nullable=False),
    sa.Column('method', sa.String(length=64), nullable=True),
    sa.Column('system', sa.String(length=128), nullable=True),
    sa.Column('timing', sa.String(length=64), nullable=True),
    sa.Column('source', sa.String(length=256), nullable=True),
    sa.Column('imported_by', sa.String(length=128), nullable=True),
    sa.Column('imported_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.PrimaryKeyConstraint('code', name=op.f('pk_harmonization_code'))
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table('harmonization_code')
    op.drop_table('harmonization_decision')
