"""QIDO-RS searches (PS3.18 10.6) compiled to SQL over the index tables.

Matching, access filtering, ordering and paging run in the database, on the attributes the
index holds (:data:`INDEXED`). The index holds no calendar dates and none of the few other
study attributes that de-identification empties or replaces (Study Date and Time, Accession
Number, Patient's Name, ...: :data:`STUDY_HEADER`): those are read from the header of the
study's first instance (one per study, whatever the level), and any other attribute asked
with ``includefield`` from the row's own header (the series' first instance, the instance
itself at instance level), cached by content digest (:mod:`.headers`). A match on such an attribute is checked on that header after the indexed
conditions have narrowed the rows; Study Date is narrowed first by the indexed ``study_year``,
which is derived from the same (shifted) date.

Levels and their required return attributes: PS3.18 Table 10.6.3-3 (study), -4 (series),
-5 (instance). Results are ordered by when they were indexed (stable paging).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydicom import Dataset
from pydicom.datadict import tag_for_keyword
from sqlalchemy import ColumnElement, Select, and_, exists, false, func, select
from sqlalchemy.engine import Connection
from sqlalchemy.sql import FromClause

from radcommons.dicom.dicomweb_json import element_json, header_json, json_values, tag_key
from radcommons.dicom.qido import INTEGER_VRS, Match, QidoQuery, matches
from radcommons.errors import UserError
from radcommons.store.index import node_tables

LEVELS = ("study", "series", "instance")
#: Largest page answered; a bigger (or no) ``limit`` gets this many and a Warning header.
MAX_RESULTS = 1000


def _t(keyword: str) -> int:
    tag = tag_for_keyword(keyword)
    assert tag is not None, keyword
    return int(tag)


#: Attributes the index holds: tag -> (level, table, column).
INDEXED: dict[int, tuple[str, str, str]] = {
    _t("StudyInstanceUID"): ("study", "imaging_study", "study_uid"),
    _t("PatientID"): ("study", "case", "submitter_id"),
    _t("StudyDescription"): ("study", "imaging_study", "study_description"),
    _t("SeriesInstanceUID"): ("series", "series", "series_uid"),
    _t("Modality"): ("series", "series", "modality"),
    _t("SeriesNumber"): ("series", "series", "series_number"),
    _t("SeriesDescription"): ("series", "series", "series_description"),
    _t("BodyPartExamined"): ("series", "series", "body_part_examined"),
    _t("Manufacturer"): ("series", "series", "manufacturer"),
    _t("ManufacturerModelName"): ("series", "series", "manufacturer_model_name"),
    _t("SOPInstanceUID"): ("instance", "instance", "sop_instance_uid"),
    _t("SOPClassUID"): ("instance", "instance", "sop_class_uid"),
    _t("InstanceNumber"): ("instance", "instance", "instance_number"),
    _t("NumberOfFrames"): ("instance", "instance", "number_of_frames"),
    # Rows and Columns are kept per series (all images of a series share them in practice).
    _t("Rows"): ("instance", "series", "rows"),
    _t("Columns"): ("instance", "series", "columns"),
}
MODALITIES_IN_STUDY = _t("ModalitiesInStudy")
STUDY_SERIES, STUDY_INSTANCES = _t("NumberOfStudyRelatedSeries"), _t("NumberOfStudyRelatedInstances")
SERIES_INSTANCES = _t("NumberOfSeriesRelatedInstances")
RETRIEVE_URL, AVAILABILITY = _t("RetrieveURL"), _t("InstanceAvailability")
STUDY_DATE = _t("StudyDate")
#: Computed attributes: tag -> level.
COMPUTED: dict[int, str] = {MODALITIES_IN_STUDY: "study", STUDY_SERIES: "study", STUDY_INSTANCES: "study",
                            SERIES_INSTANCES: "series", RETRIEVE_URL: "study", AVAILABILITY: "study"}

#: What each level returns without being asked (PS3.18 Table 10.6.3-3, -4, -5).
DEFAULT_RETURN: dict[str, tuple[int, ...]] = {
    "study": tuple(_t(k) for k in (
        "StudyDate", "StudyTime", "AccessionNumber", "InstanceAvailability", "ModalitiesInStudy",
        "ReferringPhysicianName", "RetrieveURL", "PatientName", "PatientID", "PatientBirthDate", "PatientSex",
        "StudyInstanceUID", "StudyID", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances",
        "StudyDescription")),
    "series": tuple(_t(k) for k in (
        "Modality", "SeriesDescription", "SeriesNumber", "SeriesInstanceUID", "NumberOfSeriesRelatedInstances",
        "InstanceAvailability", "RetrieveURL", "StudyInstanceUID")),
    "instance": tuple(_t(k) for k in (
        "SOPClassUID", "SOPInstanceUID", "InstanceAvailability", "RetrieveURL", "InstanceNumber", "Rows",
        "Columns", "NumberOfFrames", "StudyInstanceUID", "SeriesInstanceUID")),
}
#: Study attributes the index does not hold: read from the study's first instance at every level.
STUDY_HEADER = frozenset(_t(k) for k in (
    "StudyDate", "StudyTime", "AccessionNumber", "ReferringPhysicianName", "PatientName", "PatientBirthDate",
    "PatientSex", "StudyID"))
#: Higher-level attributes added when the URL does not name the study (or series), PS3.18 10.6.3.3.
UNSCOPED_RETURN: dict[str, tuple[int, ...]] = {
    "study": tuple(t for t in DEFAULT_RETURN["study"] if t not in (RETRIEVE_URL, AVAILABILITY)),
    "series": tuple(_t(k) for k in ("Modality", "SeriesNumber", "SeriesDescription")),
}


def _rank(level: str) -> int:
    return LEVELS.index(level)


def attribute_level(tag: int) -> str | None:
    """The level of an attribute the index holds or computes; None for header attributes."""
    if tag in INDEXED:
        return INDEXED[tag][0]
    return COMPUTED.get(tag)


@dataclass(frozen=True)
class Scope:
    """What the URL names: ``/studies/{study}/series/{series}/instances``."""

    study_uid: str | None = None
    series_uid: str | None = None


@dataclass
class SearchResult:
    """The DICOM JSON objects of one page and the Warning headers to send with them."""

    items: list[dict[str, dict[str, Any]]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _glob_pattern(pattern: str) -> str:
    # SQLite GLOB is case-sensitive like DICOM string matching; "[" must be put in a class.
    return pattern.replace("[", "[[]")


def _like_pattern(pattern: str) -> str:
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def sql_match(column: Any, match: Match, dialect: str) -> ColumnElement[bool] | None:
    """The SQL condition of ``match`` on ``column``; None for universal matching."""
    if match.kind == "universal":
        return None
    values: list[Any] = list(match.values)
    if match.vr in INTEGER_VRS:
        values = [int(v) for v in values]
    if match.kind == "single":
        return column == values[0]  # type: ignore[no-any-return]
    if match.kind in ("list", "uid_list"):
        return column.in_(values)  # type: ignore[no-any-return]
    if match.kind == "wildcard":
        if dialect == "sqlite":
            return column.op("GLOB")(_glob_pattern(values[0]))  # type: ignore[no-any-return]
        return column.like(_like_pattern(values[0]), escape="\\")  # type: ignore[no-any-return]
    # A range on an indexed attribute: none of them is a date or time, so nothing matches.
    return false()


@dataclass
class _Plan:
    """The SQL of one search and what to do with its rows."""

    statement: Select[Any]
    header_matches: list[Match]
    returned: list[int]
    level_header: bool  # the row's own header (first instance of the study or series, or the instance)
    study_header: bool  # the study's first instance (below study level)


class Search:
    """One QIDO-RS search at ``level`` for a user who reads ``readable`` projects (None: all)."""

    def __init__(self, level: str, scope: Scope, query: QidoQuery, readable: set[str] | None, base_url: str,
                 dialect: str) -> None:
        self.level, self.scope, self.query, self.readable = level, scope, query, readable
        self.base_url, self.dialect = base_url.rstrip("/"), dialect
        self.tables = node_tables()
        self.warnings: list[str] = []

    # ------------------------------------------------------------------ what is visible

    def _visible(self, tag: int) -> bool:
        level = attribute_level(tag)
        return level is None or _rank(level) <= _rank(self.level)

    def _returned(self) -> list[int]:
        tags = list(DEFAULT_RETURN[self.level])
        if self.level != "study" and self.scope.study_uid is None:
            tags += UNSCOPED_RETURN["study"]
        if self.level == "instance" and self.scope.series_uid is None:
            tags += UNSCOPED_RETURN["series"]
        if self.query.include_all:
            tags += [t for t in INDEXED if self._visible(t)]
            tags += [t for t in COMPUTED if self._visible(t)]
        tags += [t for t in self.query.include if self._visible(t)]
        # Matching keys are returned too (PS3.18 10.6.3.3.1).
        tags += [m.tag for m in self.query.matches if self._visible(m.tag)]
        return list(dict.fromkeys(tags))

    # ------------------------------------------------------------------ SQL

    def _column(self, tag: int) -> Any:
        _, table, column = INDEXED[tag]
        return self.tables[table].c[column]

    def plan(self) -> _Plan:
        study, case, series, instance = (self.tables[n] for n in ("imaging_study", "case", "series", "instance"))
        source: FromClause
        if self.level == "study":
            source = study.outerjoin(case, case.c.id == study.c.case_id)
            order = [study.c.id]
        elif self.level == "series":
            source = series.join(study, study.c.id == series.c.imaging_study_id) \
                .outerjoin(case, case.c.id == study.c.case_id)
            order = [study.c.id, series.c.series_number, series.c.id]
        else:
            source = instance.join(series, series.c.id == instance.c.series_id) \
                .join(study, study.c.id == series.c.imaging_study_id).outerjoin(case, case.c.id == study.c.case_id)
            order = [series.c.id, instance.c.instance_number, instance.c.id]
        conditions: list[ColumnElement[bool]] = []
        if self.readable is not None:
            conditions.append(study.c.project_id.in_(sorted(self.readable)) if self.readable else false())
        if self.scope.study_uid is not None:
            conditions.append(study.c.study_uid == self.scope.study_uid)
        if self.scope.series_uid is not None:
            conditions.append(series.c.series_uid == self.scope.series_uid)

        header_matches: list[Match] = []
        ignored: list[str] = []
        lower: list[tuple[str, str]] = []
        for match in self.query.matches:
            level = attribute_level(match.tag)
            if level is not None and _rank(level) > _rank(self.level):
                # A series attribute in a study search: a hierarchical search has no such key (PS3.4
                # C.4.1.2.1); matching it is refused rather than ignored, which returned every study.
                # Empty (a return key), it is left out like a lower level includefield (PS3.18 10.6.3.3).
                if match.kind != "universal":
                    lower.append((match.keyword, level))
            elif match.tag in INDEXED:
                condition = sql_match(self._column(match.tag), match, self.dialect)
                if condition is not None:
                    conditions.append(condition)
            elif match.tag == MODALITIES_IN_STUDY:
                other = _alias("series", "modality_series")
                condition = sql_match(other.c.modality, match, self.dialect)
                if condition is not None:
                    conditions.append(exists(select(other.c.id).where(
                        other.c.imaging_study_id == study.c.id, condition)))
            elif match.tag in COMPUTED:
                if match.kind != "universal":
                    ignored.append(match.keyword)
            else:
                if match.kind != "universal":
                    header_matches.append(match)
                if match.tag == STUDY_DATE:
                    year = _year_condition(study.c.study_year, match)
                    if year is not None:
                        conditions.append(year)
        if lower:
            raise _lower_level_keys(self.level, lower)
        if ignored:
            self.warnings.append(f"299 radcommons: matching on {', '.join(ignored)} is not supported at the "
                                 f"{self.level} level; those keys were ignored")

        returned = self._returned()
        from_headers = [m.tag for m in header_matches] + [t for t in returned if attribute_level(t) is None]
        below_study = self.level != "study"
        study_header = below_study and any(t in STUDY_HEADER for t in from_headers)
        level_header = any(not (below_study and t in STUDY_HEADER) for t in from_headers) \
            or (self.query.include_all and self.level == "instance")
        columns: list[Any] = [study.c.study_uid.label("study_uid"), study.c.study_modality.label("study_modality")]
        if self.level != "study":
            columns.append(series.c.series_uid.label("series_uid"))
        if self.level == "instance":
            columns += [instance.c.sop_instance_uid.label("sop_instance_uid"),
                        instance.c.object_id.label("object_id")]
        for tag in INDEXED:
            if self._visible(tag) and tag in returned:
                columns.append(self._column(tag).label(f"a_{tag_key(tag)}"))
        if STUDY_SERIES in returned:
            columns.append(select(func.count(series.c.id)).where(series.c.imaging_study_id == study.c.id)
                           .correlate(study).scalar_subquery().label("n_series"))
        if STUDY_INSTANCES in returned:
            inner_series = _alias("series", "count_series")
            columns.append(select(func.count(instance.c.id))
                           .select_from(instance.join(inner_series, inner_series.c.id == instance.c.series_id))
                           .where(inner_series.c.imaging_study_id == study.c.id)
                           .correlate(study).scalar_subquery().label("n_study_instances"))
        if SERIES_INSTANCES in returned:
            columns.append(select(func.count(instance.c.id)).where(instance.c.series_id == series.c.id)
                           .correlate(series).scalar_subquery().label("n_series_instances"))
        if level_header and self.level != "instance":
            columns.append(self._first_instance(study.c.id if self.level == "study" else series.c.id,
                                                by_study=self.level == "study").label("object_id"))
        if study_header:
            columns.append(self._first_instance(study.c.id, by_study=True).label("study_object_id"))
        statement = select(*columns).select_from(source).where(*conditions).order_by(*order)
        return _Plan(statement, header_matches, returned, level_header, study_header)

    def _first_instance(self, parent: Any, *, by_study: bool) -> Any:
        """The object id of the first instance of a study (or series): whose header answers for it."""
        first = _alias("instance", "first_instance")
        first_series = _alias("series", "first_series")
        inner = select(first.c.object_id).select_from(first.join(first_series, first_series.c.id == first.c.series_id))
        inner = inner.where((first_series.c.imaging_study_id if by_study else first_series.c.id) == parent)
        inner = inner.order_by(first_series.c.series_number, first_series.c.id, first.c.instance_number, first.c.id)
        return inner.limit(1).scalar_subquery()

    # ------------------------------------------------------------------ rows to DICOM JSON

    def _url(self, row: Any) -> str:
        url = f"{self.base_url}/studies/{row.study_uid}"
        if self.level != "study":
            url += f"/series/{row.series_uid}"
        if self.level == "instance":
            url += f"/instances/{row.sop_instance_uid}"
        return url

    def _item(self, row: Any, returned: Sequence[int], own: Dataset | None,
              study: Dataset | None) -> dict[str, dict[str, Any]]:
        values: dict[int, Any] = {}
        from_own: list[int] = []
        from_study: list[int] = []
        for tag in returned:
            if tag in INDEXED:
                values[tag] = getattr(row, f"a_{tag_key(tag)}")
            elif tag == MODALITIES_IN_STUDY:
                values[tag] = sorted(row.study_modality or [])
            elif tag == STUDY_SERIES:
                values[tag] = row.n_series
            elif tag == STUDY_INSTANCES:
                values[tag] = row.n_study_instances
            elif tag == SERIES_INSTANCES:
                values[tag] = row.n_series_instances
            elif tag == RETRIEVE_URL:
                values[tag] = self._url(row)
            elif tag == AVAILABILITY:
                values[tag] = "ONLINE"
            elif tag in STUDY_HEADER and self.level != "study":
                from_study.append(tag)
            else:
                from_own.append(tag)
        out = {tag_key(t): element_json(t, v) for t, v in values.items()}
        for header, tags in ((own, from_own), (study, from_study)):
            if header is None:
                continue
            found = _tags_json(header, tags)
            for tag in tags:
                # Required return attributes are present even when empty (PS3.18 10.6.3.3).
                out[tag_key(tag)] = found.get(tag_key(tag), element_json(tag, None))
        if own is not None and self.query.include_all and self.level == "instance":
            for key, element in header_json(own).items():
                out.setdefault(key, element)
        return dict(sorted(out.items()))

    def _header_match(self, match: Match, own: Dataset | None, study: Dataset | None) -> bool:
        header = study if match.tag in STUDY_HEADER and self.level != "study" else own
        if header is None:
            return False
        return matches(match, json_values(_tags_json(header, [match.tag]).get(tag_key(match.tag))))

    def run(self, conn: Connection, header: Callable[[str], Dataset]) -> SearchResult:
        """Execute the search; ``header(object_id)`` reads a stored header (cached)."""
        plan = self.plan()
        asked = self.query.limit
        wanted = min(asked, MAX_RESULTS) if asked is not None else MAX_RESULTS
        result = SearchResult(warnings=self.warnings)
        if self.query.fuzzymatching:
            result.warnings.append("299 radcommons: fuzzymatching is not supported; only literal matching "
                                   "was performed")
        statement = plan.statement
        if not plan.header_matches:
            statement = statement.offset(self.query.offset).limit(wanted + 1)
        skipped = 0
        for row in conn.execute(statement):
            own = header(row.object_id) if plan.level_header and row.object_id else None
            study = header(row.study_object_id) if plan.study_header and row.study_object_id else None
            if plan.header_matches:
                if not all(self._header_match(m, own, study) for m in plan.header_matches):
                    continue
                if skipped < self.query.offset:
                    skipped += 1
                    continue
            if len(result.items) == wanted:
                if asked is not None and asked <= MAX_RESULTS:
                    break  # the client asked for this page size: no warning (PS3.18 8.3.4.4)
                result.warnings.append(f"299 radcommons: there are more than {wanted} matches; ask for the next "
                                       f"page with offset={self.query.offset + wanted}")
                break
            result.items.append(self._item(row, plan.returned, own, study))
        return result


def _lower_level_keys(level: str, keys: list[tuple[str, str]]) -> UserError:
    names = ", ".join(f"{name} ({of} level)" for name, of in keys)
    if level == "study":
        hint = ("find studies by modality with ModalitiesInStudy=CT, or search /series (or /instances) with "
                "that key and read the StudyInstanceUID of the results")
    else:
        hint = "search /instances with that key and read the SeriesInstanceUID of the results"
    return UserError(f"a {level} search matches {level} attributes and those above only, not {names}",
                     f"{hint}; see docs/DICOMWEB.md")


@functools.lru_cache(maxsize=None)
def _alias(table: str, name: str) -> FromClause:
    """A named alias of an index table, built once: an alias copies every column of its table, which
    profiling showed to be most of the time of building a search (reusing one in many statements is safe)."""
    return node_tables()[table].alias(name)


def _tags_json(header: Dataset, tags: Sequence[int]) -> dict[str, dict[str, Any]]:
    """:func:`header_json` of a few top-level ``tags``: looks them up instead of walking (and decoding) the
    whole header, which profiling showed to be most of a search's time when each row reads a header."""
    subset = Dataset()
    for tag in tags:
        if tag in header:
            subset.add(header[tag])
    return header_json(subset, tags)


def _year_condition(column: Any, match: Match) -> ColumnElement[bool] | None:
    """Narrow a Study Date match with the indexed study year (derived from the same date)."""

    def year(text: str) -> int | None:
        return int(text[:4]) if len(text) >= 4 and text[:4].isdigit() else None

    if match.kind == "single":
        found = year(match.values[0])
        return column == found if found is not None else None
    if match.kind == "range":
        low, high = year(match.low), year(match.high)
        parts = [column >= low] if low is not None else []
        if high is not None:
            parts.append(column <= high)
        return and_(*parts) if parts else None
    return None
