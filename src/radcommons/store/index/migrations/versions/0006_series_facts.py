"""series_facts: one row per series with its own, its study's and its case's facet columns.

Facet counts of series by case or study fields (case.sex, case.age_at_index) become one GROUP BY
over one narrow table instead of a join of every series to its case. Declared by
radcommons.store.index.facts (from the dictionary's facet properties) and kept in step by
IndexWriter.finish in the indexing transaction; this revision creates it and fills it from
the series already indexed (parents in another project are not copied).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22 05:55:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision: str = '0006'
down_revision: Union[str, Sequence[str], None] = '0005'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
#: The parents' facet columns (indexed, as they are in their own tables).
PARENT_COLUMNS = [
    'imaging_study__study_description',
    'imaging_study__body_part_examined',
    'imaging_study__days_to_study',
    'imaging_study__study_year',
    'imaging_study__age_at_imaging',
    'imaging_study__loinc_code',
    'imaging_study__loinc_long_common_name',
    'imaging_study__loinc_method',
    'imaging_study__loinc_system',
    'imaging_study__loinc_contrast',
    'case__index_event',
    'case__age_at_index',
    'case__age_at_index_gt89',
    'case__sex',
    'case__race',
    'case__ethnicity',
    'case__covid19_positive',
    'case__long_covid_diagnosis',
    'case__icu_indicator',
    'case__ventilator_indicator',
    'case__zip',
    'case__country_of_residence',
    'case__site_id',
]


def upgrade() -> None:
    """Upgrade schema."""
    facts = op.create_table(
        'series_facts',
        sa.Column('series_id', ID, autoincrement=False, nullable=False),
        sa.Column('project_id', sa.String(length=64), nullable=False),
        sa.Column('imaging_study_id', ID, nullable=True),
        sa.Column('modality', sa.String(length=64), nullable=True),
        sa.Column('series_description', sa.String(length=256), nullable=True),
        sa.Column('body_part_examined', sa.String(length=64), nullable=True),
        sa.Column('manufacturer', sa.String(length=128), nullable=True),
        sa.Column('manufacturer_model_name', sa.String(length=128), nullable=True),
        sa.Column('number_of_instances', sa.Integer(), nullable=True),
        sa.Column('lossy_image_compression', sa.String(length=64), nullable=True),
        sa.Column('view_position', sa.String(length=16), nullable=True),
        sa.Column('detector_type', sa.String(length=32), nullable=True),
        sa.Column('slice_thickness', sa.Double(), nullable=True),
        sa.Column('convolution_kernel', sa.String(length=64), nullable=True),
        sa.Column('contrast_bolus_agent', sa.String(length=128), nullable=True),
        sa.Column('magnetic_field_strength', sa.Double(), nullable=True),
        sa.Column('radiopharmaceutical', sa.String(length=128), nullable=True),
        sa.Column('imaging_study__study_description', sa.String(length=256), nullable=True),
        sa.Column('imaging_study__body_part_examined', sa.String(length=64), nullable=True),
        sa.Column('imaging_study__days_to_study', sa.Integer(), nullable=True),
        sa.Column('imaging_study__study_year', sa.Integer(), nullable=True),
        sa.Column('imaging_study__age_at_imaging', sa.Integer(), nullable=True),
        sa.Column('imaging_study__loinc_code', sa.String(length=16), nullable=True),
        sa.Column('imaging_study__loinc_long_common_name', sa.String(length=256), nullable=True),
        sa.Column('imaging_study__loinc_method', sa.String(length=64), nullable=True),
        sa.Column('imaging_study__loinc_system', sa.String(length=128), nullable=True),
        sa.Column('imaging_study__loinc_contrast', sa.String(length=64), nullable=True),
        sa.Column('case__index_event', sa.String(length=64), nullable=True),
        sa.Column('case__age_at_index', sa.Integer(), nullable=True),
        sa.Column('case__age_at_index_gt89', sa.String(length=64), nullable=True),
        sa.Column('case__sex', sa.String(length=64), nullable=True),
        sa.Column('case__race', sa.String(length=64), nullable=True),
        sa.Column('case__ethnicity', sa.String(length=64), nullable=True),
        sa.Column('case__covid19_positive', sa.String(length=64), nullable=True),
        sa.Column('case__long_covid_diagnosis', sa.String(length=64), nullable=True),
        sa.Column('case__icu_indicator', sa.String(length=64), nullable=True),
        sa.Column('case__ventilator_indicator', sa.String(length=64), nullable=True),
        sa.Column('case__zip', sa.String(length=3), nullable=True),
        sa.Column('case__country_of_residence', sa.String(length=64), nullable=True),
        sa.Column('case__site_id', sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(['series_id'], ['series.id'], name=op.f('fk_series_facts_series_id_series'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('series_id', name=op.f('pk_series_facts')),
    )
    op.create_index(op.f('ix_series_facts_imaging_study_id'), 'series_facts', ['imaging_study_id'], unique=False)
    op.create_index(op.f('ix_series_facts_project_id'), 'series_facts', ['project_id'], unique=False)
    for name in PARENT_COLUMNS:
        op.create_index(op.f(f'ix_series_facts_{name}'), 'series_facts', [name], unique=False)
    # The series indexed so far (the same statement as refresh_series_facts, frozen at this revision).
    names = [c.name for c in facts.columns]
    own = [n for n in names[3:] if '__' not in n]
    parent = [n for n in names[3:] if '__' in n]
    assert parent == PARENT_COLUMNS
    select = ', '.join(['s.id', 's.project_id', 's.imaging_study_id']
                       + [f's.{n}' for n in own]
                       + [('st.' if n.startswith('imaging_study__') else 'c.') + n.split('__', 1)[1] for n in parent])
    op.execute(sa.text(
        f'INSERT INTO series_facts ({", ".join(names)}) SELECT {select} FROM series s '
        'LEFT JOIN imaging_study st ON st.id = s.imaging_study_id AND st.project_id = s.project_id '
        'LEFT JOIN "case" c ON c.id = s.case_id AND c.project_id = s.project_id'
    ))


def downgrade() -> None:
    """Downgrade schema."""
    for name in PARENT_COLUMNS:
        op.drop_index(op.f(f'ix_series_facts_{name}'), table_name='series_facts')
    op.drop_index(op.f('ix_series_facts_project_id'), table_name='series_facts')
    op.drop_index(op.f('ix_series_facts_imaging_study_id'), table_name='series_facts')
    op.drop_table('series_facts')
