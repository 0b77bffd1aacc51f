"""Body Part Examined of the rows indexed before 0011: normalised as indexing now does.

Revision 0011 kept the value as sent in body_part_examined_raw, but a study or series indexed
before it kept that value (Chest, THORAX, chest) in body_part_examined too, so it stayed a
facet value of its own beside the CHEST of every row indexed since. This revision gives each row
with a raw value the term indexing gives it (radcommons.harmonize.body_part_term, which
indexing's with_body_part calls: the normaliser's term, else the value as a DICOM Code String),
one UPDATE per range
of 5,000 ids (a CASE over the distinct raw values), and the same value to series_facts
(body_part_examined, imaging_study__body_part_examined); then, when a series changed, it recounts
series_facet_counts. A row already holding its term is not written; a blank raw value is left as
indexing leaves it.

Only imaging_study and series carry a body part. Sex, race and ethnicity were normalised by
the clinical conversion from the first revision on (no later migration added a normalised
column), so they have no such gap.

The SQL is frozen at this revision, as in 0006 and 0008: refresh_series_facts builds its rows
from the packaged (newest) schema, which a later revision may change.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 11:00:00

"""
from collections.abc import Iterator
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

from radcommons.harmonize import body_part_term  # the term indexing gives a raw value

# revision identifiers, used by Alembic.
revision: str = '0012'
down_revision: Union[str, Sequence[str], None] = '0011'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

#: Rows per UPDATE: a range of ids holding this many.
BATCH = 5000
#: Raw values per UPDATE (two bound parameters each).
VALUES = 500
#: The node tables carrying a body part, and the series_facts column holding each one's.
FACTS = {'imaging_study': 'imaging_study__body_part_examined', 'series': 'body_part_examined'}
#: The counted columns of series_facet_counts at this revision (as in 0009).
COUNTED = [
    'modality', 'body_part_examined', 'manufacturer', 'manufacturer_model_name', 'imaging_study__study_year',
    'case__sex', 'case__age_at_index', 'case__race', 'case__ethnicity',
]


def upgrade() -> None:
    """Upgrade schema."""
    conn = op.get_bind()
    if conn.dialect.name == 'postgresql':
        # Statistics for the joins below: without them (an index never analysed, as after a
        # bulk load) PostgreSQL joined each series to its study through the project's index.
        conn.execute(sa.text('ANALYZE imaging_study, series, series_facts'))
    facts = sa.table('series_facts', sa.column('series_id'), sa.column('project_id'),
                     sa.column('imaging_study_id'), *(sa.column(n, sa.String) for n in FACTS.values()))
    for name, fact_column in FACTS.items():
        node = _node(name)
        if not _normalise(conn, node):
            continue
        # The node's value into series_facts (a study's to its series of the same project only).
        join = (node.c.id == facts.c.series_id if name == 'series' else
                sa.and_(node.c.id == facts.c.imaging_study_id, node.c.project_id == facts.c.project_id))
        for ids in _ranges(conn, facts.c.series_id):
            found = node.c.body_part_examined
            conn.execute(sa.update(facts).where(ids, join, facts.c[fact_column].is_distinct_from(found))
                         .values({fact_column: found}))
        if fact_column in COUNTED:  # a study's body part is not counted
            keys = ', '.join(['project_id', *COUNTED])
            conn.execute(sa.text('DELETE FROM series_facet_counts'))
            conn.execute(sa.text(f'INSERT INTO series_facet_counts ({keys}, n) '
                                 f'SELECT {keys}, count(*) FROM series_facts GROUP BY {keys}'))


def _node(name: str) -> sa.TableClause:
    return sa.table(name, sa.column('id'), sa.column('project_id'), sa.column('body_part_examined', sa.String),
                    sa.column('body_part_examined_raw', sa.String))


def _normalise(conn: sa.Connection, table: sa.TableClause) -> int:
    """Give each row of ``table`` with a raw value the term indexing gives it; the rows changed."""
    raw, value = table.c.body_part_examined_raw, table.c.body_part_examined
    found = conn.execute(sa.select(raw).where(raw.is_not(None)).distinct()).scalars()
    terms = sorted((r, body_part_term(r)) for r in found if r.strip())  # a blank value stays as it is
    changed = 0
    for start in range(0, len(terms), VALUES):
        term = sa.case(dict(terms[start:start + VALUES]), value=raw, else_=value)
        for ids in _ranges(conn, table.c.id):
            changed += conn.execute(sa.update(table).where(ids, value.is_distinct_from(term))
                                    .values(body_part_examined=term)).rowcount
    return changed


def _ranges(conn: sa.Connection, key: sa.ColumnClause) -> Iterator[sa.ColumnElement[bool]]:
    """Conditions on ``key`` (a table's primary key) that split its rows into ranges of :data:`BATCH`."""
    last = None
    while True:
        after = sa.true() if last is None else key > last
        bound = conn.execute(sa.select(key).where(after).order_by(key).offset(BATCH - 1).limit(1)).scalar()
        if bound is None:
            yield after
            return
        yield sa.and_(after, key <= bound)
        last = bound


def downgrade() -> None:
    """Downgrade schema: nothing to undo.

    The values as sent stay in body_part_examined_raw (0011's downgrade removes them), and the
    code of 0011 normalises every row it indexes too: putting the old spellings back would only
    split the facet again.
    """
