"""Site clinical tables (real dates, MRNs) -> data dictionary records (day offsets, pseudonyms).

:func:`convert_clinical` is the whole conversion as one pure function:

1. each table is recognised from its file or sheet name, each column from its name
   (:class:`~radcommons.clinical.mapping.SiteMapping`); unknown ones are issues, because
   an unmapped column could hold anything, identifiers included, and is never sent;
2. each cell is read: dates parsed, enumerations normalised ("Unknown" -> "Not
   Reported"), ZIP codes cut to three digits (restricted areas -> "000"); names and
   other identifier columns are dropped;
3. each patient's MRN becomes the pseudonym the images got
   (:func:`radcommons.deid.patient_pseudonym` with the same key and site), and every
   date becomes days from the case's index event (first positive COVID-19 test, else
   first test, else first imaging study: configurable). Offsets from an index event are
   shift-invariant, so they agree with the shifted dates of the images; the only
   absolute value left, the study year, is shifted by the offset the study's images were
   shifted by (:attr:`ImagingStudy.date_offset_days`: the registry's for a patient already
   recorded there, never recomputed here), so it is the year of the images' StudyDate;
4. cross-references are checked (every imaging patient has a case, every study one
   patient, no clinical row without a case) and every record is validated against the
   data dictionary (:func:`radcommons.dictionary.validate_records`);
5. records with errors are left out, and so are the records that hang off a case that
   was left out; everything left out is explained by an :class:`Issue`.

No name, birth date or calendar date is in any record this returns.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from radcommons.clinical.issues import ERROR, NOTE, WARNING, Issue, from_problem
from radcommons.clinical.mapping import (
    COMBINED_PANEL,
    COUNTRY,
    DATE_FIELDS,
    DIAGNOSTIC,
    DROP,
    ENUM_FIELDS,
    IGNORE,
    MRN,
    SEROLOGY,
    TABLE_FIELDS,
    TABLE_NODES,
    VACCINATION,
    SiteMapping,
    load_mapping,
    name_key,
)
from radcommons.clinical.screen import FIX, KnownIdentifiers, code_system, screen_text
from radcommons.clinical.sources import SourceTable
from radcommons.clinical.values import (
    MAX_PLAUSIBLE_AGE,
    CellProblem,
    EnumReader,
    age_fields,
    country_code,
    day_first_format,
    is_blank,
    marker_problem,
    mrn_problem,
    parse_date,
    whole_years,
    zip3,
)
from radcommons.deid import patient_pseudonym
from radcommons.dictionary import NOT_REPORTED, Dictionary, load_dictionary, validate_records
from radcommons.dictionary.values import looks_like_date

#: Node types in the order records are sent (parents first).
NODE_ORDER = ("case", "imaging_study", "measurement", "visit", "procedure", "condition", "medication")
#: Columns a table cannot be read without.
REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "case": (),
    "measurement": ("test_date", "test_result"),
    "visit": ("admission_date",),
    "procedure": ("start_date",),
    "condition": ("condition_name",),
    "medication": ("medication_name",),
}
#: Free-text fields: sent as text, so checked for dates that would slip through.
TEXT_FIELDS = frozenset({"test_name", "condition_code", "condition_name", "medication_name", "medication_code"})
INDEX_EVENT_LABELS = {
    "positive_covid_test": "COVID-19 Test",
    "covid_test": "COVID-19 Test",
    "first_imaging_study": "First Imaging Study",
}
IMAGES = "images"
#: The index events in a sentence.
_EVENT_WORDS = {"positive_covid_test": "first positive COVID-19 test", "covid_test": "first COVID-19 test",
                "first_imaging_study": "first imaging study"}


@dataclass(frozen=True)
class ImagingStudy:
    """One de-identified study as the converter needs it (built from the deid outputs).

    ``patient_id`` and ``study_date`` are the originals, known only at the site: the
    Patient ID the pseudonym came from, and the real study date (the de-identified
    StudyDate minus the patient's offset). ``date_offset_days`` is that offset, the one the
    images were shifted by (the deid outcome's): required with a ``study_date``, whose
    study year is shifted by it.
    """

    patient_id: str
    study_uid: str  #: the de-identified Study Instance UID
    study_date: _dt.date | None = None
    description: str = ""
    modalities: tuple[str, ...] = ()
    body_part: str = ""
    #: What the site knows the study by, for its private report: the original Study Instance UID,
    #: the accession number and the exported files of this patient's images.
    original_uid: str = ""
    accession: str = ""
    files: tuple[str, ...] = ()
    date_offset_days: int | None = None

    def __post_init__(self) -> None:
        if self.study_date is not None and self.date_offset_days is None:
            raise ValueError(f"study {self.study_uid}: a study date needs the date offset its images were shifted by")


@dataclass(frozen=True)
class Day0:
    """A case's day 0: which index event (a key of :data:`INDEX_EVENT_LABELS`) and its real date.

    Private to the site (a calendar date). ``recorded`` names the contribution that made it the
    case's for good (the dataset whose commit carried the case), "" for one chosen by this conversion.
    """

    event: str
    date: _dt.date
    recorded: str = ""

    @property
    def label(self) -> str:
        return INDEX_EVENT_LABELS.get(self.event, self.event)

    def shown(self) -> str:
        """``the first imaging study of 2022-05-23``."""
        return f"the {_EVENT_WORDS.get(self.event, self.label)} of {self.date.isoformat()}"


@dataclass(frozen=True)
class Origin:
    """Where a record came from at the site (private: it names the site's files)."""

    file: str
    row: int | None = None
    columns: Mapping[str, str] = field(default_factory=dict)  #: record field -> site column


@dataclass(frozen=True)
class ClinicalRecord:
    """One data dictionary record ready to send, with its private origin."""

    node: str
    values: Mapping[str, Any]
    origin: Origin
    patient_id: str  #: the original MRN (private; never sent)

    @property
    def submitter_id(self) -> str:
        return str(self.values["submitter_id"])


@dataclass(frozen=True)
class Conversion:
    """The outcome: records that passed every check, and every issue (errors and notes)."""

    records: tuple[ClinicalRecord, ...]
    issues: tuple[Issue, ...]
    rejected: tuple[ClinicalRecord, ...] = ()  #: records converted but left out (see issues)
    rows_read: int = 0
    #: how the site's spellings of enumerated values were read: (field, as in the file, as sent) -> rows
    values_read: Mapping[tuple[str, str, str], int] = field(default_factory=dict)
    #: each sent case's day 0, by MRN: the recorded one (``day0`` of :func:`convert_clinical`) or the one chosen
    day0: Mapping[str, Day0] = field(default_factory=dict)

    def value_maps(self) -> list[dict[str, Any]]:
        """:attr:`values_read` as rows for the site's report, by field, most rows first: the raw
        value stays with the site (which keeps its files), the commons gets the dictionary's."""
        ordered = sorted(self.values_read.items(), key=lambda item: (item[0][0], -item[1], item[0][1]))
        return [{"field": name, "as_read": raw, "sent_as": sent, "rows": rows}
                for (name, raw, sent), rows in ordered]

    @property
    def errors(self) -> tuple[Issue, ...]:
        return tuple(i for i in self.issues if i.severity == ERROR)

    @property
    def ok(self) -> bool:
        return not self.errors

    def by_node(self) -> dict[str, list[dict[str, Any]]]:
        """The records to send, per node type, as plain dictionaries (parents first)."""
        grouped: dict[str, list[dict[str, Any]]] = {node: [] for node in NODE_ORDER}
        for record in self.records:
            grouped.setdefault(record.node, []).append(dict(record.values))
        return {node: rows for node, rows in grouped.items() if rows}

    def counts(self) -> dict[str, int]:
        return {node: len(rows) for node, rows in self.by_node().items()}


@dataclass(frozen=True)
class _Row:
    """One site row after reading its cells (dates still real)."""

    table: str
    mrn: str
    fields: Mapping[str, Any]
    origin: Origin


# --------------------------------------------------------------------------- reading tables


def _mrn(value: Any) -> str:
    # Excel stores an all-digit MRN as a number: 3698026.0 must read as "3698026".
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _read_table(
    table: SourceTable, mapping: SiteMapping, enums: EnumReader,
    issues: list[Issue], identifiers: list[tuple[str, tuple[str, ...]]], demographics_rows: dict[str, Origin],
    values_read: Counter[tuple[str, str, str]], rows_not_read: list[_RowNotRead],
) -> list[_Row]:
    """The rows of ``table`` that were read; ``rows_not_read`` gets each row of a patient that has an error
    of its own (a demographics row: ``demographics_rows``)."""
    if table.unread:
        why, _, fix = table.unread.partition("\n")
        issues.append(Issue(ERROR, "file_not_read", f"the file is not read, so its rows are not sent: {why}", fix,
                            table.label))
        return []
    kind = mapping.table_for(table.name)
    if kind == IGNORE:
        issues.append(Issue(NOTE, "ignored_table", f"table {table.name!r} is ignored (mapping: ignore)",
                            "nothing to do", table.label))
        return []
    if kind is None:
        issues.append(Issue(
            ERROR, "unknown_table",
            f"cannot tell what the {'sheet' if table.sheet else 'file'} {table.name!r} holds" + (
                ", a hidden sheet (right-click a sheet tab > Unhide shows it)" if table.hidden else ""),
            f"rename it, or add it to the mapping file: tables: {{{table.name!r}: <one of "
            f"{', '.join(TABLE_NODES)}, ignore>}}",
            table.label, value=table.name,
        ))
        return []
    # A refused sheet (a title above its header, merged cells...) is one error, sheet_not_read: its columns'
    # errors would be about a title or a wrong header. Its MRNs and dropped identifiers are still collected.
    refused = _refused(table, kind)
    found: list[Issue] = []  # the table's errors about its columns
    columns: dict[str, str] = {}
    dropped: list[str] = []
    unknown: list[str] = []
    for column in table.columns:
        name = mapping.field_for(kind, column)
        if name is None or (name not in TABLE_FIELDS[kind] and name not in (MRN, IGNORE, DROP)):
            if _is_age(column):
                found.append(Issue(ERROR, "unknown_column", f"unknown column {column!r} in a {kind} table: it is "
                                   "not sent, and the table cannot be checked", _AGE_FIX.format(kind=kind, column=column),
                                   table.label, 1, column, node=TABLE_NODES[kind]))
            else:
                unknown.append(column)
            continue
        if name == DROP:
            dropped.append(column)
        if name in (IGNORE, DROP):
            continue
        if name in columns.values():
            first = next(c for c, f in columns.items() if f == name)
            found.append(Issue(ERROR, "duplicate_column", f"columns {first!r} and {column!r} both hold {name}",
                               "map one of them to ignore in the mapping file", table.label, 1, column))
            continue
        columns[column] = name
    found.extend(_unknown_columns(table, kind, unknown))
    missing = [f for f in (MRN, *REQUIRED_FIELDS[kind]) if f not in columns.values()]
    if missing:
        found.append(Issue(
            ERROR, "missing_column",
            f"the {kind} table has no column for {', '.join(missing)}",
            "add the column to the export, or map its name in the mapping file (columns:)",
            table.label, 1, node=TABLE_NODES[kind],
        ))
    if not table.rows:
        found.append(Issue(WARNING, "empty_table", f"the {kind} table has a header but no rows: nothing of it is "
                           "sent", "nothing to do if there is no such record; else export the table again",
                           table.label, node=TABLE_NODES[kind]))
    issues.extend([refused] if refused is not None else found)
    if MRN not in columns.values() or (missing and refused is None):
        return []
    blocked = refused or _day_first(table, kind, columns, mapping)
    if blocked is not None and refused is None:
        issues.append(blocked)
    rows: list[_Row] = []
    mrn_column = next(c for c, f in columns.items() if f == MRN)
    tests = _TestNames(table, columns, mapping) if kind == "measurement" else None
    for number, cells in table.rows:
        # Every row's MRN and dropped identifiers (names, addresses), rejected rows' too: no text may hold them.
        problem = mrn_problem(cells.get(mrn_column))
        mrn = _mrn(cells.get(mrn_column) or "") if problem is None else ""
        identifiers.append((mrn, tuple(_shown(cells[c]) for c in dropped if not is_blank(cells.get(c)))))
        if kind == "case" and mrn:  # rejected or not: the patient's other rows can point at it
            demographics_rows.setdefault(mrn, Origin(table.label, number))
        if blocked is not None:
            continue  # its cells cannot be trusted: refused (merged...), or 08/01/2023 is 8 January or 1 August
        if tests is not None and not tests.is_covid19(number, cells):
            continue  # another test (Influenza A, CBC): not sent, its cells not read
        row = _read_row(table, kind, number, cells, columns, mapping, enums, issues, values_read, problem)
        if row is not None:
            rows.append(row)
        elif mrn and kind != "case":
            result = next((enums(f, cells[c]) for c, f in columns.items() if f == "test_result"
                           and not is_blank(cells.get(c))), None)
            rows_not_read.append(_RowNotRead(kind, mrn, Origin(table.label, number), _results(result)))
    if tests is not None:
        issues.extend(tests.issues())
    return rows


#: The measurement fields that name the test a row is of.
_TEST_NAMING = ("test_name", "test_code")


class _TestNames:
    """Which rows of a test table are COVID-19 tests, and the warnings that say which are not or are assumed.

    A table named "labs" or "tests" may hold any laboratory test; only a COVID-19 test may count toward a case's
    covid19_positive and its day 0 (the first positive test), or be sent as one: an influenza-positive patient
    is not COVID-19 positive. A row is a COVID-19 test when its test name or LOINC code says so
    (:meth:`SiteMapping.is_covid19_test`); a row of another named test is skipped (one warning per name), and so
    is a SARS-CoV-2 antibody test (by its name or its test method), a vaccination or a combined panel's one result
    (:meth:`SiteMapping.covid19_test_kind`): MIDRC's measurement records diagnostic tests, RT-PCR and antigen. A
    row that names no test (no such column, or its cell blank) is read as a COVID-19 test, as it always was: said
    once, unless the table's own name says it holds COVID-19 tests ("covid_tests")."""

    def __init__(self, table: SourceTable, columns: Mapping[str, str], mapping: SiteMapping) -> None:
        self.table = table
        self.mapping = mapping
        self.columns = [c for c, f in columns.items() if f in _TEST_NAMING]
        self.method = next((c for c, f in columns.items() if f == "test_method"), None)
        #: a test that is not a COVID-19 test, as (the column that says so, its value there, the test as the
        #: warning names it) -> its rows
        self.other: dict[tuple[str | None, str, str], list[int]] = {}
        #: SEROLOGY, VACCINATION or COMBINED_PANEL -> such a COVID-19 test, as ``other`` -> its rows (not read either)
        self.not_diagnostic: dict[str, dict[tuple[str | None, str, str], list[int]]] = {
            SEROLOGY: {}, VACCINATION: {}, COMBINED_PANEL: {}}
        self.assumed: list[int] = []  #: rows that name no test

    def is_covid19(self, number: int, cells: Mapping[str, Any]) -> bool:
        """Whether row ``number`` is read as a COVID-19 test. A row whose name cannot be trusted (a spreadsheet
        error in it, more fields than the header) is read, as one naming no test, for its own error."""
        if any(column not in self.table.known and not is_blank(cell) for column, cell in cells.items()):
            return True  # its cells sit under the wrong columns: its own error (extra_fields) says so
        names = [text for text in (self._text(cells, c) for c in self.columns) if text]
        method = self._text(cells, self.method)
        kind = self.mapping.covid19_test_kind(names, method)
        if kind == DIAGNOSTIC:
            if not names:
                self.assumed.append(number)
            return True
        column, value, shown = self.method, method, repr(method)  # a row naming no test: its method said serology
        if names:
            column, value = self.columns[0], " / ".join(names)
            shown = repr(value)
            if kind == SEROLOGY and self.mapping.covid19_test_kind(names) != SEROLOGY:
                # its method alone makes it an antibody test: the warning points at the method, naming the test too
                column, value, shown = self.method, method, f"{value!r} (test method {method!r})"
        found = self.other if kind is None else self.not_diagnostic[kind]
        found.setdefault((column, value, shown), []).append(number)
        return False

    @staticmethod
    def _text(cells: Mapping[str, Any], column: str | None) -> str:
        """The text of a cell that names the test (its spaces tidied), or "" for none: blank, or an error marker."""
        cell = cells.get(column) if column is not None else None
        return "" if is_blank(cell) or marker_problem(cell) is not None else " ".join(str(cell).split())

    def issues(self) -> list[Issue]:
        table, found = self.table, []
        column = self.columns[0] if self.columns else None
        for kind, names in ((None, self.other), *self.not_diagnostic.items()):
            code, why, fix = _SKIPPED_TESTS[kind]
            for (named_by, value, shown), numbers in names.items():
                found.append(Issue(
                    WARNING, code, f"{_rows_of(numbers)} of test {shown} {'is' if len(numbers) == 1 else 'are'} not "
                    f"read: {why}: not sent, nor counted toward the patient's covid19_positive or day 0",
                    fix.format(name=value.split(" / ")[0]), table.label, numbers[0], named_by, value, "measurement"))
        if self.assumed and not self.mapping.is_covid19_test(table.name):
            what = (f"{_rows_of(self.assumed)} name no test (their {column} is blank)" if column else
                    f"the file has no test name column (Test Name or LOINC): its {len(self.assumed)} row(s)")
            found.append(Issue(
                WARNING, "assumed_covid19_test",
                f"{what}, and are read as COVID-19 tests: each counts toward the patient's covid19_positive and day "
                "0, and is sent as a SARS-CoV-2 test", "nothing to do if they are all COVID-19 tests; if the file "
                "holds other tests too, export it with the test name (or LOINC code) of each row, or leave the "
                "others out", table.label, self.assumed[0] if column else None, column, node="measurement"))
        return found


#: Per kind of test row not read (None: not a COVID-19 test; see SiteMapping.covid19_test_kind): its warning's
#: code, why it is not read, and what to do ({name}: the test's name).
_SKIPPED_TESTS: dict[str | None, tuple[str, str, str]] = {
    None: ("not_a_covid19_test", "not a COVID-19 test (its name names no SARS-CoV-2 test)",
           "nothing to do if it is another test; if it is a COVID-19 test, add its name to the mapping file: "
           "covid19_tests: [{name!r}]"),
    SEROLOGY: ("covid19_serology_test",
               "a SARS-CoV-2 antibody (serology) test, which shows a past infection or a vaccination, not a current "
               "one, and MIDRC's measurement records diagnostic tests (RT-PCR, antigen)",
               "nothing to do; if it is in fact an RT-PCR or antigen test, export it under a name that says so (PCR, "
               "RNA, antigen) and no antibody word (antibody, Ab, IgG, IgM, IgA, serology) in its name or test method"),
    VACCINATION: ("covid19_vaccination", "a COVID-19 vaccination (immunization), not a test",
                  "nothing to do; if it is in fact a test, export it under a name without a vaccination word (vaccine, "
                  "vaccination, immunization, dose, booster)"),
    COMBINED_PANEL: ("combined_covid19_panel",
                     "a panel of SARS-CoV-2 and another pathogen (influenza, RSV...), whose one result may be of "
                     "either",
                     "export the panel's SARS-CoV-2 result on a row of its own, named for it; or, if this panel's "
                     "result is that of SARS-CoV-2, list its whole name in the mapping file: covid19_tests: "
                     "[{name!r}]"),
}


def _rows_of(numbers: Sequence[int]) -> str:
    """``row 3``, or ``4 rows (first: row 3)``."""
    return f"row {numbers[0]}" if len(numbers) == 1 else f"{len(numbers)} rows (first: row {numbers[0]})"


#: An age column ("Age", "Age at visit", "Patient Age"): no field holds it, and no mapping can make it one.
_AGE_FIX = ("the age at the index event is computed from the birth date, so that it is the age on day 0 and ages "
            "over 89 are flagged (never sent): map the birth date column (birth_date) of the demographics, and this "
            "one to ignore: columns: {{{kind}: {{{column!r}: ignore}}}}. Without birth dates, map it to ignore all "
            "the same: the cases are sent with no age and age_at_index_gt89 'Not Reported' (an age counted to "
            "another day than the index event would be sent as wrong)")


#: A name run together that starts with an age (AGEATINDEX, ageyears, age90), not a word that starts with
#: the letters (Agent, Agency, Agenda: a medication's agent is no age, and told to map a birth date).
_AGE_RUN_TOGETHER = re.compile(r"age(?:at|in|on|of|when|yrs?|years?|group|\d|$)")


def _is_age(column: str) -> bool:
    """Whether a column's name says it holds an age: a word "age" (Patient Age, AgeAtIndex, age_at_study)."""
    words = re.split(r"[^a-z0-9]+", re.sub(r"(?<=[a-z])(?=[A-Z])", " ", column).lower())
    return "age" in words or _AGE_RUN_TOGETHER.match(name_key(column)) is not None


#: Unknown columns of one table named one issue each, up to this many; more (an EHR dump of hundreds of
#: columns) are one issue listing them, rather than a report of hundreds of lines saying the same.
_UNKNOWN_COLUMNS_EACH = 5


def _unknown_columns(table: SourceTable, kind: str, unknown: list[str]) -> list[Issue]:
    """The errors for the ``unknown`` columns of ``table`` (a ``kind`` table): never sent, and the table
    cannot be checked, since an unmapped column could hold anything, identifiers included."""
    fields = f"fields: {', '.join(sorted(TABLE_FIELDS[kind]))}; or ignore, or drop for an identifier"
    if len(unknown) <= _UNKNOWN_COLUMNS_EACH:
        return [Issue(ERROR, "unknown_column",
                      f"unknown column {column!r} in a {kind} table: it is not sent, and the table cannot be checked",
                      f"add it to the mapping file: columns: {{{kind}: {{{column!r}: <field>}}}} ({fields})",
                      table.label, 1, column, node=TABLE_NODES[kind]) for column in unknown]
    return [Issue(ERROR, "unknown_column",
                  f"{len(unknown)} unknown columns in a {kind} table: they are not sent, and the table cannot be "
                  f"checked: {', '.join(repr(c) for c in unknown)}",
                  f"export only the columns the {kind} table needs (the MRN; {fields.split(';')[0]}), or map "
                  f"each column in the mapping file: columns: {{{kind}: {{{unknown[0]!r}: <field, ignore or drop>, ...}}}} "
                  "(ignore: a column that is not to be sent; drop: an identifier such as a name, address or phone "
                  "number, never sent and searched for in the values that are)",
                  table.label, 1, node=TABLE_NODES[kind])]


#: Said of the tables :func:`_not_read` names, whose rows may hold what a patient lacks.
_NOT_READ = "is not read (see its error), and may hold the patient's rows"


@dataclass(frozen=True)
class _RowNotRead:
    """A row of a patient that is not read, for an error of its own."""

    table: str
    mrn: str
    origin: Origin
    results: frozenset[str]  #: the test results it may hold: its result as read, or any (:func:`_results`)


#: The test results a table or row not read may hold, when its result is not read.
_ANY_RESULT = frozenset({"Positive", "Negative", "Indeterminate", NOT_REPORTED})


def _results(result: Any) -> frozenset[str]:
    """The test results a row not read may hold: its ``result`` as read, else any."""
    return frozenset({result}) if isinstance(result, str) else _ANY_RESULT


#: Per kind of table, its tables and rows that are not read: (label, the MRNs of its rows, None when not known,
#: the test results it may hold).
_NotRead = Mapping[str, Sequence[tuple[str, frozenset[str] | None, frozenset[str]]]]
#: The errors of a table none of whose rows is read: a file not read, a refused sheet (a title above its header,
#: merged cells...), a table not recognised, one without its MRN or another column it needs, dates day first.
_NOT_READ_CODES = frozenset({"file_not_read", "sheet_not_read", "unknown_table", "missing_column", "day_first_dates"})


def _not_read(tables: Sequence[SourceTable], mapping: SiteMapping, issues: Sequence[Issue],
              rows: Iterable[_RowNotRead]) -> _NotRead:
    """The tables whose rows are not read, each with its own error (:data:`_NOT_READ_CODES`), per kind of table
    they may be. A table not recognised counts only when a column is an MRN (a notes or README sheet holds no
    patient), as the kinds its other columns announce (all, when none does); a table mapped ignore never does.
    And the ``rows`` not read, each as a table of one patient."""
    blocked = _blocked(issues)
    found: dict[str, list[tuple[str, frozenset[str] | None, frozenset[str]]]] = defaultdict(list)
    for row in rows:
        found[row.table].append((f"{row.origin.file} row {row.origin.row}", frozenset({row.mrn}), row.results))
    for table in tables:
        kind = mapping.table_for(table.name)
        if table.label not in blocked or kind == IGNORE:
            continue
        kinds = [kind] if kind in TABLE_NODES else [
            k for k in TABLE_NODES if any(mapping.field_for(k, c) in TABLE_FIELDS[k] for c in table.columns)
        ] or list(TABLE_NODES)
        column = next((c for c in table.columns if mapping.field_for(kinds[0], c) == MRN), None)
        if column is None and kind not in TABLE_NODES:
            continue
        mrns = None if column is None else frozenset(
            _mrn(cells[column]) for _, cells in table.rows if not is_blank(cells.get(column)))
        for each in kinds:
            found[each].append((table.label, mrns, _ANY_RESULT))
    return found


def _blocked(issues: Iterable[Issue]) -> set[str | None]:
    """The labels of the tables none of whose rows is read."""
    return {issue.file for issue in issues if issue.code in _NOT_READ_CODES}


def _unread_for(not_read: _NotRead, kind: str, mrn: str, results: frozenset[str] | None = None) -> str:
    """The tables (and rows) of ``kind`` not read that may hold rows of ``mrn`` (all, when their MRNs are not
    known), only those that may hold a test of one of the ``results`` if given: three named at most."""
    labels = [label for label, mrns, may in not_read.get(kind, ())
              if (mrns is None or mrn in mrns) and (results is None or may & results)]
    if len(labels) > 3:
        return f"{', '.join(labels[:2])} and {len(labels) - 2} more"
    return " and ".join(labels)


def _not_read_fix(labels: str) -> str:
    return f"fix the error of {labels} and run again"


def _row_not_sent(origin: Origin, blocked: set[str | None]) -> tuple[str, str]:
    """Why a patient's demographics row at ``origin`` is not sent, and the fix: its own errors, or those of
    its table when none of the table's rows is read (``blocked``: :func:`_blocked`)."""
    if origin.file in blocked:
        return (f"({origin.file} row {origin.row}) is not read (see the error of {origin.file})",
                _not_read_fix(origin.file))
    return f"({origin.file} row {origin.row}) has errors", f"fix the errors of {origin.file} row {origin.row}"


def _refused(table: SourceTable, kind: str) -> Issue | None:
    """An error for a sheet that would be misread (:attr:`SourceTable.refused`: a title above its header,
    merged cells...), now that it is known to be converted: an ignored sheet's problems do not matter."""
    if not table.refused:
        return None
    why, _, fix = table.refused.partition("\n")
    return Issue(ERROR, "sheet_not_read", f"{why}; none of the sheet's rows is read", fix, table.label,
                 node=TABLE_NODES[kind])


def _day_first(table: SourceTable, kind: str, columns: Mapping[str, str], mapping: SiteMapping) -> Issue | None:
    """An error for the first date column of ``table`` whose dates are written day first, which
    the mapping's formats read month first where the day is 12 or less: a column of them would
    be sent with some of its dates wrong and no error (the table's rows are then not read)."""
    for column, name in columns.items():
        if name not in DATE_FIELDS:
            continue
        for number, cells in table.rows:
            swapped = day_first_format(cells.get(column), mapping.date_formats)
            if swapped is not None:
                return Issue(ERROR, "day_first_dates",
                             f"{column} holds dates written day first ({str(cells[column]).strip()!r}): where the "
                             "day is 12 or less they would be read month first, day and month swapped, without an "
                             "error; none of the table's rows is read",
                             f"add the format to the mapping file: date_formats: [\"{swapped}\"] (or write dates "
                             "as YYYY-MM-DD) and run again", table.label, number, column, _shown(cells[column]),
                             TABLE_NODES[kind])
    return None


def _read_row(
    table: SourceTable,
    kind: str,
    number: int,
    cells: Mapping[str, Any],
    columns: Mapping[str, str],
    mapping: SiteMapping,
    enums: EnumReader,
    issues: list[Issue],
    values_read: Counter[tuple[str, str, str]],
    mrn_checked: CellProblem | None,
) -> _Row | None:
    """The row's record fields, or None after adding its issues (``mrn_checked``: its MRN's :func:`mrn_problem`)."""
    values: dict[str, Any] = {}
    ok = True
    mrn = ""
    extra = [cell for column, cell in cells.items() if column not in table.known and not is_blank(cell)]
    if extra:  # the values after an unquoted delimiter sit under the wrong columns: none can be trusted
        issues.append(Issue(ERROR, "extra_fields", f"the row has {len(extra)} more field(s) than the header",
                            "quote the values that hold the delimiter (a comma in a name or a note), or remove "
                            "the extra fields", table.label, number, None, _shown(extra[0]), TABLE_NODES[kind]))
        ok = False
    for column, name in columns.items():
        cell = cells.get(column)
        if is_blank(cell) or name == "test_code":  # a LOINC code only tells a COVID-19 test (_TestNames): not sent
            continue
        if name == MRN:
            mrn = _mrn(cell)
            result: Any = mrn_checked
            if result is not None:
                issues.append(Issue(ERROR, result.code, result.message, result.fix, table.label, number, column,
                                    _shown(cell), TABLE_NODES[kind]))
                ok = False
            continue
        if name in DATE_FIELDS:
            result = marker_problem(cell) or parse_date(cell, mapping.date_formats)
            if name != "birth_date" and isinstance(result, _dt.date) and result > _dt.date.today():
                # a mistyped year (2099) would become a day offset decades away, sent as if true; a
                # birth date after the index event has its own message (two-digit years)
                result = CellProblem("future_date", f"{result.isoformat()} is after today",
                                     "correct the date in the source system (a mistyped year?) and export again")
        elif name in ENUM_FIELDS:
            result = enums(name, cell)
            if isinstance(result, CellProblem):  # "#N/A", "NaN": not a spelling to map
                result = marker_problem(cell) or result
            if isinstance(result, str):
                values_read[(name, " ".join(str(cell).split()), result)] += 1
            spelled = " ".join(str(cell).split()).lower()
            if result == NOT_REPORTED and spelled not in mapping.not_reported | {NOT_REPORTED.lower()}:
                # Not an "unknown" spelling, yet read as unknown (e.g. sex "X"): make it visible.
                issues.append(Issue(WARNING, "read_as_not_reported", f"{cell!r} is read as {NOT_REPORTED!r}",
                                    f"if it means something else, map it under values: {name} in the mapping file",
                                    table.label, number, column, str(cell), TABLE_NODES[kind]))
        elif name == "zip":
            result = marker_problem(cell) or zip3(cell, mapping.restricted_zip3)
        elif name != COUNTRY and marker_problem(cell) is not None:  # "NA" is Namibia's code
            result = marker_problem(cell)
        else:
            result = " ".join(str(cell).split())
            screened = screen_text(name, result)
            if screened is not None:  # named by its kind: the value is not repeated in the report
                issues.append(Issue(ERROR, screened.code, f"{column}: {screened.message}", screened.fix, table.label,
                                    number, column, None, TABLE_NODES[kind]))
                ok = False
                continue
            if looks_like_date(result):
                result = CellProblem("calendar_date", f"{result!r} holds a calendar date",
                                     "remove the date from the text in the source system")
            elif name == COUNTRY:
                result = country_code(result, mapping)
        if isinstance(result, CellProblem):
            issues.append(Issue(ERROR, result.code, result.message, result.fix, table.label, number, column,
                                _shown(cell), TABLE_NODES[kind], result.allowed))
            ok = False
        else:
            values[name] = result
    for column, name in columns.items():
        if name in REQUIRED_FIELDS[kind] and is_blank(cells.get(column)):  # blank, or the row was cut short
            issues.append(Issue(ERROR, "required", f"{column} is blank", "fill it in or remove the row",
                                table.label, number, column, "", TABLE_NODES[kind]))
            ok = False
    if not mrn:
        mrn_column = next(c for c, f in columns.items() if f == MRN)
        issues.append(Issue(ERROR, "required", "the MRN is blank", "fill in the patient's MRN",
                            table.label, number, mrn_column, "", TABLE_NODES[kind]))
        return None
    if not ok:
        return None
    return _Row(kind, mrn, values, Origin(table.label, number, {f: c for c, f in columns.items()}))


def _screen_known(
    rows: list[_Row], identifiers: list[tuple[str, tuple[str, ...]]], studies: Sequence[ImagingStudy],
    issues: list[Issue],
) -> list[_Row]:
    """Rows whose text holds none of the site's own MRNs or dropped names; an error for each other."""
    known = KnownIdentifiers([mrn for mrn, _ in identifiers] + [s.patient_id for s in studies],
                             [(mrn, names) for mrn, names in identifiers if names])
    kept: list[_Row] = []
    for row in rows:
        ok = True
        for name, value in row.fields.items():
            if name not in TEXT_FIELDS or not isinstance(value, str):
                continue
            found = known.find(row.mrn, value)
            if found:
                column = row.origin.columns.get(name, name)
                issues.append(Issue(ERROR, "identifier_in_text", f"{column}: the text holds {' and '.join(found)}",
                                    FIX, row.origin.file, row.origin.row, column, None, TABLE_NODES[row.table]))
                ok = False
        if ok:
            kept.append(row)
    return kept


def _shown(cell: Any) -> str:
    if isinstance(cell, (_dt.date, _dt.datetime)):
        return cell.isoformat()
    return str(cell)


# --------------------------------------------------------------------------- building records


def _site_names(studies: Sequence[ImagingStudy]) -> str:
    """How the site knows a study's images, patient by patient (for its private report)."""
    parts = []
    for study in studies:
        files = ", ".join(study.files[:3]) + (f" and {len(study.files) - 3} more" if len(study.files) > 3 else "")
        parts.append(f"patient {study.patient_id}" + (f" (files {files})" if files else ""))
    known = [f"original Study Instance UID {u}" for u in sorted({s.original_uid for s in studies} - {""})]
    known += [f"accession {a}" for a in sorted({s.accession for s in studies} - {""})]
    return "; ".join(parts) + (f" ({', '.join(known)})" if known else "")


_ZEROS = "the same number but for leading zeros, which a spreadsheet program drops from an MRN column read as numbers"
_ZEROS_FIX = ("format the MRN column as text in the spreadsheet and type the MRNs with their leading zeros (or "
              "export from the source system again), so that they match the images' Patient IDs")


def _by_digits(mrns: Iterable[str]) -> dict[str, list[str]]:
    """MRNs by what is left without their leading zeros ("0012345" and "12345" meet)."""
    found: dict[str, list[str]] = defaultdict(list)
    for mrn in mrns:
        found[mrn.lstrip("0")].append(mrn)
    return found


def _lost_zeros(mrn: str, known: Mapping[str, list[str]]) -> str | None:
    """The MRN of ``known`` (from :func:`_by_digits`) that ``mrn`` is but for leading zeros, if any."""
    return next((other for other in known.get(mrn.lstrip("0"), ()) if other != mrn and mrn.isdigit()), None)


def _days(when: _dt.date | None, index: _dt.date) -> int | None:
    return None if when is None else (when - index).days


#: The index events counted from a COVID-19 test.
_TEST_EVENTS = frozenset({"positive_covid_test", "covid_test"})


def _index_event(
    choices: Sequence[str], tests: Sequence[_Row], studies: Sequence[ImagingStudy]
) -> tuple[str, _dt.date] | None:
    """The first of ``choices`` the patient has (one of :data:`INDEX_EVENT_LABELS`), and its day."""
    for choice in choices:
        if choice == "positive_covid_test":
            days = [t.fields["test_date"] for t in tests if t.fields.get("test_result") == "Positive"]
        elif choice == "covid_test":
            days = [t.fields["test_date"] for t in tests]
        else:
            days = [s.study_date for s in studies if s.study_date is not None]
        if days:
            return choice, min(days)
    return None


def _day0_not_read(choices: Sequence[str], choice: str | None, unread: Mapping[str, str]) -> str:
    """The tables and rows not read (``unread``, as :func:`_patient_records` has them) that may hold the test
    of the patient's day 0: one that ``choices`` ranks before ``choice``, or an earlier one of ``choice``."""
    ranked = choices if choice is None else choices[: list(choices).index(choice) + 1]
    if "covid_test" in ranked:
        return unread.get("measurement", "")
    return unread.get("positive", "") if "positive_covid_test" in ranked else ""


#: The results of a test that may have been positive: Positive, and a result not known ("Unknown", "Pending").
_MAY_BE_POSITIVE = frozenset({"Positive", NOT_REPORTED})


def _covid_status(tests: Sequence[_Row], unread: bool = False) -> str:
    """Yes for a positive test; else No or Indeterminate, unless a test of the patient may have been positive:
    one of a result not known, or one ``unread`` (:data:`_MAY_BE_POSITIVE`)."""
    results = {t.fields.get("test_result") for t in tests}
    if "Positive" not in results and NOT_REPORTED in results:
        return NOT_REPORTED
    for status, answer in (("Positive", "Yes"), ("Negative", "No"), ("Indeterminate", "Indeterminate")):
        if status in results:
            return answer if answer == "Yes" or not unread else NOT_REPORTED
    return NOT_REPORTED


def _yes_no(found: bool, known: bool) -> str:
    return "Yes" if found else ("No" if known else NOT_REPORTED)


#: The visit fields that record an ICU stay: a visit table with neither cannot say that one happened.
_ICU_FIELDS = ("icu_admission_date", "icu_discharge_date")


def _icu_indicator(visits: Sequence[_Row], unread: bool) -> str:
    """Yes for an ICU stay (an ICU date, or a visit of type Intensive Care Unit); No only when every visit of
    the patient comes from a table with an ICU column and none may be ``unread``: a visit file without one
    says nothing about intensive care, and its inpatient stay may have been one."""
    found = any(v.fields.get("visit_type") == "Intensive Care Unit" or any(v.fields.get(f) for f in _ICU_FIELDS)
                for v in visits)
    recorded = all(any(f in v.origin.columns for f in _ICU_FIELDS) for v in visits)
    return _yes_no(found, bool(visits) and recorded and not unread)


def _ventilator_indicator(visits: Sequence[_Row], procedures: Sequence[_Row], support_read: bool,
                          unread: bool) -> str:
    """Yes for mechanical ventilation; No only when a breathing support table with the kind of support
    (``support_read``: :func:`_support_read`) was read, none may be ``unread``, and it says which kind each
    of the patient's supports was: a visit, a procedure of no stated kind (its column missing or blank)
    may have been a ventilation."""
    kinds = [p.fields.get("breathing_support_type", NOT_REPORTED) for p in procedures]
    known = bool(visits or procedures) and support_read and not unread and NOT_REPORTED not in kinds
    return _yes_no("Mechanical Ventilation" in kinds, known)


def _support_read(tables: Iterable[SourceTable], mapping: SiteMapping, blocked: set[str | None]) -> bool:
    """Whether a procedure table with a breathing support type column was read (``blocked``: :func:`_blocked`):
    only then can a patient with no ventilation in it be said not to have been ventilated."""
    return any(mapping.table_for(t.name) == "procedure" and t.label not in blocked
               and any(mapping.field_for("procedure", c) == "breathing_support_type" for c in t.columns)
               for t in tables)


def _numbered(node: str, case_id: str, records: list[tuple[dict[str, Any], _Row]]) -> list[tuple[dict[str, Any], _Row]]:
    """Give child records stable submitter_ids: ordered by content, not by file row order."""
    records.sort(key=lambda item: sorted((k, str(v)) for k, v in item[0].items()))
    for number, (values, _) in enumerate(records, start=1):
        values["submitter_id"] = f"{case_id}_{node}_{number:03d}"
    return records


def convert_clinical(
    tables: Iterable[SourceTable],
    *,
    key: bytes,
    site: str,
    project: str,
    studies: Iterable[ImagingStudy] = (),
    mapping: SiteMapping | None = None,
    dataset: str | None = None,
    dictionary: Dictionary | None = None,
    day0: Mapping[str, Day0] | None = None,
) -> Conversion:
    """Convert a site's clinical tables and its de-identified studies into dictionary records.

    ``key`` and ``site`` must be the ones the images were de-identified with, so that each
    MRN gets the pseudonym its images got. ``dataset`` (the submission batch's
    submitter_id), when given, is linked from every case. ``day0``: by MRN, the day 0 of each
    case the commons already holds (recorded by the site when an earlier contribution was
    committed): the case is counted from it whatever this contribution's data would choose,
    so that all of its data at the commons is counted from one day (a note says when they differ).
    """
    mapping = mapping or load_mapping()
    dictionary = dictionary or load_dictionary()
    issues: list[Issue] = []
    rows: list[_Row] = []
    tables = list(tables)
    enums = EnumReader(mapping, dictionary)
    identifiers: list[tuple[str, tuple[str, ...]]] = []
    demographics_rows: dict[str, Origin] = {}
    values_read: Counter[tuple[str, str, str]] = Counter()
    rows_not_read: list[_RowNotRead] = []  # the rows with an error of their own
    for table in tables:
        rows.extend(_read_table(table, mapping, enums, issues, identifiers, demographics_rows, values_read,
                                rows_not_read))
    studies = list(studies)
    screened = _screen_known(rows, identifiers, studies, issues)
    kept = {id(row) for row in screened}
    rows_not_read.extend(_RowNotRead(row.table, row.mrn, row.origin, _results(row.fields.get("test_result")))
                         for row in rows if id(row) not in kept)
    rows = screened
    # Tables whose rows are not read (a refused sheet, a file not read, an unknown table, dates day first...): a
    # patient missing from the rows that were read may be in them, and the fix is theirs, not "add the patient's
    # row" (or "remove this row"); nor may a case be counted from another day 0 than its tests there would give.
    not_read = _not_read(tables, mapping, issues, rows_not_read)

    demographics: dict[str, _Row] = {}
    conflicting: dict[str, _Row] = {}  #: MRN -> a demographics row another row of it disagrees with
    by_patient: dict[str, dict[str, list[_Row]]] = defaultdict(lambda: defaultdict(list))
    seen: dict[tuple[Any, ...], _Row] = {}  #: (MRN, table, fields) -> the first row with them
    for row in rows:
        if row.table == "case":
            earlier = demographics.get(row.mrn) or conflicting.get(row.mrn)
            if earlier is None:
                demographics[row.mrn] = row
                continue
            differ = sorted(f for f in set(earlier.fields) & set(row.fields) if earlier.fields[f] != row.fields[f])
            if differ:  # which row is right is not known: neither is sent
                shown = "; ".join(f"{row.origin.columns.get(f, f)} {_shown(row.fields[f])!r} here, "
                                  f"{_shown(earlier.fields[f])!r} there" for f in differ)
                issues.append(Issue(ERROR, "conflicting_rows", f"MRN {row.mrn!r} has another demographics row, "
                                    f"{earlier.origin.file} row {earlier.origin.row}, that disagrees: {shown}",
                                    f"keep one demographics row for the patient, with the right values (this row "
                                    f"or {earlier.origin.file} row {earlier.origin.row})", row.origin.file,
                                    row.origin.row, row.origin.columns.get(differ[0]), node="case"))
                conflicting[row.mrn] = demographics.pop(row.mrn, earlier)
                demographics_rows[row.mrn] = row.origin  # the patient's other rows point at the error
                continue
            # The same patient again, agreeing (a later row may add what the earlier left blank).
            issues.append(Issue(NOTE, "repeated", f"this demographics row repeats {earlier.origin.file} row "
                                f"{earlier.origin.row} for the same MRN, with no value that disagrees: they are "
                                "sent as one", "nothing to do if intended", row.origin.file, row.origin.row,
                                node="case"))
            if row.mrn in demographics:
                demographics[row.mrn] = _Row(row.table, row.mrn, {**earlier.fields, **row.fields}, row.origin)
        else:
            same = seen.setdefault((row.mrn, row.table, *sorted(row.fields.items(), key=lambda item: item[0])), row)
            if same is not row:  # it was sent twice, as two records of one event
                issues.append(Issue(NOTE, "duplicate_row", f"this row repeats {same.origin.file} row "
                                    f"{same.origin.row} exactly: it is sent once", "nothing to do if intended",
                                    row.origin.file, row.origin.row, node=TABLE_NODES[row.table]))
                continue
            by_patient[row.mrn][row.table].append(row)

    studies_by_patient: dict[str, list[ImagingStudy]] = defaultdict(list)
    owners: dict[str, set[str]] = defaultdict(set)
    for study in studies:
        owners[study.study_uid].add(study.patient_id)
        if study not in studies_by_patient[study.patient_id]:
            studies_by_patient[study.patient_id].append(study)
    shared = {uid for uid, patients in owners.items() if len(patients) > 1}
    for uid in sorted(shared):
        issues.append(Issue(ERROR, "study_two_patients",
                            f"study {uid} holds images of {len(owners[uid])} different patients: "
                            + _site_names([s for s in studies if s.study_uid == uid]),
                            "check the study in the PACS: its images must belong to one patient; "
                            "it is not sent", IMAGES, column="StudyInstanceUID", value=uid, node="imaging_study"))

    imaging_mrns = _by_digits(m for m in studies_by_patient if not m.startswith("study:"))
    for mrn in sorted(set(demographics) - set(studies_by_patient)):
        row = demographics[mrn]
        images = _lost_zeros(mrn, imaging_mrns)
        if images is None:  # sent, but said: a researcher finds no image of the patient
            issues.append(Issue(WARNING, "case_without_images", f"MRN {mrn!r} has no imaging study in this "
                                "contribution: the patient's clinical records are sent without images",
                                "nothing to do if the patient's studies were sent before or come later; else "
                                "export them with this batch (their Patient ID must be this MRN)", row.origin.file,
                                row.origin.row, row.origin.columns.get(MRN), mrn, "case"))
            continue
        # The images' patient under another MRN: sent, it would be a second patient without images.
        issues.append(Issue(ERROR, "mrn_lost_zeros", f"MRN {mrn!r} has no imaging study, but the images have "
                            f"Patient ID {images!r}: {_ZEROS}", _ZEROS_FIX, row.origin.file, row.origin.row,
                            row.origin.columns.get(MRN), mrn, "case"))
        demographics_rows[mrn] = row.origin
        del demographics[mrn]
    clinical_mrns = _by_digits([*demographics, *demographics_rows])
    blocked = _blocked(issues)
    records: list[ClinicalRecord] = []
    for mrn in sorted(set(by_patient) - set(demographics)):
        rejected = demographics_rows.get(mrn)
        for table_rows in by_patient[mrn].values():
            for row in table_rows:
                if rejected is not None:  # not "no row": the row is there, with an error of its own
                    why, fix = _row_not_sent(rejected, blocked)
                    issues.append(Issue(ERROR, "case_rejected", f"MRN {mrn!r}: the patient's demographics row "
                                        f"{why}, so this row is not sent", fix,
                                        row.origin.file, row.origin.row, row.origin.columns.get(MRN), mrn,
                                        TABLE_NODES[row.table]))
                    continue
                similar = _lost_zeros(mrn, clinical_mrns)
                unread_cases = _unread_for(not_read, "case", mrn)
                issues.append(Issue(ERROR, "orphan_row", f"MRN {mrn!r} has no row in the demographics" + (
                                    f", which has MRN {similar!r}: {_ZEROS}" if similar else
                                    f" that were read: {unread_cases} {_NOT_READ}" if unread_cases else ""),
                                    _ZEROS_FIX if similar else _not_read_fix(unread_cases) if unread_cases else
                                    "add the patient's demographics row, or remove this row",
                                    row.origin.file, row.origin.row, row.origin.columns.get(MRN), mrn,
                                    TABLE_NODES[row.table]))
    for mrn in sorted(set(studies_by_patient) - set(demographics)):
        shown = "(no Patient ID)" if mrn.startswith("study:") else mrn
        rejected = demographics_rows.get(mrn)
        if rejected is not None:
            why, fix = _row_not_sent(rejected, blocked)
            issues.append(Issue(ERROR, "case_rejected",
                                f"patient {shown} has {len(studies_by_patient[mrn])} imaging stud(ies) whose "
                                f"demographics row {why}: they are not sent", fix, IMAGES, column="PatientID",
                                value=shown, node="case"))
            continue
        similar = _lost_zeros(mrn, clinical_mrns)
        unread_cases = _unread_for(not_read, "case", mrn)
        issues.append(Issue(ERROR, "missing_case",
                            f"patient {shown} has {len(studies_by_patient[mrn])} imaging stud(ies) but no "
                            "demographics row" + (f"; the clinical files have MRN {similar!r}: {_ZEROS}"
                                                  if similar else f" among the rows read: {unread_cases} "
                                                  f"{_NOT_READ}" if unread_cases else ""),
                            _ZEROS_FIX if similar else _not_read_fix(unread_cases) if unread_cases else
                            "add the patient to the clinical demographics file; "
                            "their studies are not sent until then", IMAGES, column="PatientID", value=shown,
                            node="case"))

    chosen: dict[str, Day0] = {}
    support_read = _support_read(tables, mapping, blocked)
    for mrn in sorted(demographics):
        records.extend(_patient_records(
            mrn, demographics[mrn], by_patient.get(mrn, {}),
            [s for s in studies_by_patient.get(mrn, []) if s.study_uid not in shared],
            key=key, site=site, project=project, dataset=dataset, mapping=mapping, issues=issues,
            recorded=(day0 or {}).get(mrn), chosen=chosen, support_read=support_read,
            unread={**{kind: _unread_for(not_read, kind, mrn) for kind in ("measurement", "visit", "procedure")},
                    "positive": _unread_for(not_read, "measurement", mrn, frozenset({"Positive"})),
                    "status": _unread_for(not_read, "measurement", mrn, _MAY_BE_POSITIVE)},
        ))
    kept, rejected = _validate(records, dictionary, issues)
    sent = {r.patient_id for r in kept if r.node == "case"}
    return Conversion(tuple(kept), tuple(issues), tuple(rejected), rows_read=sum(len(t.rows) for t in tables),
                      values_read=dict(values_read), day0={m: d for m, d in chosen.items() if m in sent})


def _day0_kept(mrn: str, recorded: Day0, now: Day0, origin: Origin) -> Issue:
    """The note on a case whose data, alone, would now give another day 0 than the one recorded."""
    return Issue(NOTE, "day0_recorded",
                 f"MRN {mrn!r}: day 0 stays at {recorded.shown()}, the case's day 0 since "
                 f"{recorded.recorded or 'an earlier contribution'} was committed (this contribution alone would "
                 f"count from {now.shown()}), so that all of the case's data at the commons, sent before or now, is "
                 "counted from one day; anything before it gets negative days",
                 "nothing to do. To count the case from another day 0, everything of it at the commons must be "
                 "sent again counted from that day: contact the commons curators", origin.file, origin.row,
                 node="case")


def _patient_records(
    mrn: str,
    demographics: _Row,
    rows: Mapping[str, list[_Row]],
    studies: list[ImagingStudy],
    *,
    key: bytes,
    site: str,
    project: str,
    dataset: str | None,
    mapping: SiteMapping,
    issues: list[Issue],
    unread: Mapping[str, str],
    recorded: Day0 | None,
    chosen: dict[str, Day0],
    support_read: bool,
) -> list[ClinicalRecord]:
    """``unread``: per kind of table, the tables and rows not read that may hold the patient's, under
    "positive" those that may hold a positive test, under "status" those that may hold a test that may have
    been positive (:data:`_MAY_BE_POSITIVE`; see :func:`_not_read`). ``recorded``: the case's day 0
    the commons already counts from (its records are counted from it); ``chosen`` gets the day 0 used.
    ``support_read``: whether a table that records breathing support was read (:func:`_support_read`)."""
    case_id = patient_pseudonym(key, site, mrn)
    tests = rows.get("measurement", [])
    event = _index_event(mapping.index_event, tests, studies)
    if recorded is not None:
        if event is not None and event != (recorded.event, recorded.date):
            issues.append(_day0_kept(mrn, recorded, Day0(*event), demographics.origin))
        day0 = recorded  # known: a table not read can no longer move it (no index_event_not_read)
    elif event is None:
        unread_day0 = _day0_not_read(mapping.index_event, None, unread)
        issues.append(Issue(ERROR, "no_index_event",
                            f"MRN {mrn!r} has none of the index events {', '.join(mapping.index_event)}: "
                            "no day 0 to count from" + (f"; {unread_day0} {_NOT_READ}" if unread_day0 else ""),
                            _not_read_fix(unread_day0) if unread_day0 else "add the patient's COVID-19 tests or "
                            "imaging, or change index_event in the mapping file", demographics.origin.file,
                            demographics.origin.row, node="case"))
        return []
    else:
        day0 = Day0(*event)
        unread_day0 = _day0_not_read(mapping.index_event, day0.event, unread)
        if unread_day0:
            # Counted from the tests read, or from the first study, every offset would change once they are read.
            issues.append(Issue(ERROR, "index_event_not_read",
                                f"MRN {mrn!r}: day 0 is not known: {unread_day0} is not read (see its error) and may "
                                + ("hold an earlier COVID-19 test of the patient" if day0.event in _TEST_EVENTS else
                                   f"hold the patient's COVID-19 tests, which index_event puts before the "
                                   f"{day0.label.lower()}")
                                + "; nothing of the patient is sent, its studies included", _not_read_fix(unread_day0),
                                demographics.origin.file, demographics.origin.row, node="case"))
            return []
    chosen[mrn] = day0
    label, index = day0.label, day0.date
    info = demographics.fields
    birth = info.get("birth_date")
    if birth is not None and index is not None and birth > index:  # it gave age 0, silently
        issues.append(Issue(ERROR, "birth_after_index",
                            f"MRN {mrn!r}: the birth date is after the index event ({label})",
                            "check the birth date; a two-digit year (59) may have been read as 2059: write "
                            "years with four digits", demographics.origin.file, demographics.origin.row,
                            demographics.origin.columns.get("birth_date"), node="case"))
        return []
    if birth is not None and index is not None and whole_years(birth, index) > MAX_PLAUSIBLE_AGE:
        # a placeholder (1900-01-01) or a mistyped year: sent, it was an age over 89
        issues.append(Issue(ERROR, "implausible_birth_date",
                            f"MRN {mrn!r}: the birth date {birth.isoformat()} gives an age of "
                            f"{whole_years(birth, index)} at the index event ({label})",
                            "correct the birth date; when it is not known leave the cell empty (a placeholder "
                            "such as 1900-01-01 is not a birth date)", demographics.origin.file,
                            demographics.origin.row, demographics.origin.columns.get("birth_date"), node="case"))
        return []
    age, gt89 = age_fields(birth, index)
    visits = rows.get("visit", [])
    procedures = rows.get("procedure", [])
    case: dict[str, Any] = {
        "submitter_id": case_id,
        "project_id": project,
        "index_event": label,
        "age_at_index_gt89": gt89,
        "sex": info.get("sex", NOT_REPORTED),
        "race": info.get("race", NOT_REPORTED),
        "ethnicity": info.get("ethnicity", NOT_REPORTED),
        # A "No" (or "Indeterminate") only when no table or row that may say "Yes" is left unread, and the
        # tables read had the column that would have said it.
        "covid19_positive": _covid_status(tests, bool(unread.get("status"))),
        "icu_indicator": _icu_indicator(visits, bool(unread.get("visit"))),
        "ventilator_indicator": _ventilator_indicator(visits, procedures, support_read, bool(unread.get("procedure"))),
        "site_id": site,
    }
    if age is not None:
        case["age_at_index"] = age
    if "zip" in info:
        case["zip"] = info["zip"]
    country = info.get("country") or mapping.country
    if country:
        case["country_of_residence"] = country
    if dataset:
        case["dataset.submitter_id"] = dataset
    link = {"case.submitter_id": case_id}
    out = [ClinicalRecord("case", case, demographics.origin, mrn)]

    def days(when: _dt.date | None) -> int | None:
        return _days(when, index)

    pos = sorted(d for t in tests if t.fields.get("test_result") == "Positive" if (d := days(t.fields["test_date"])) is not None)
    neg = sorted(d for t in tests if t.fields.get("test_result") == "Negative" if (d := days(t.fields["test_date"])) is not None)
    for study in sorted(studies, key=lambda s: s.study_uid):
        values: dict[str, Any] = {"submitter_id": study.study_uid, "project_id": project, **link,
                                  "study_uid": study.study_uid}
        if study.description:
            values["study_description"] = study.description
        if study.modalities:
            values["study_modality"] = list(study.modalities)
        if study.body_part:
            values["body_part_examined"] = study.body_part
        if study.study_date is not None:
            day = days(study.study_date)
            values["days_to_study"] = day
            # The year is the only absolute element kept: shifted by the images' own offset.
            values["study_year"] = (study.study_date + _dt.timedelta(days=study.date_offset_days)).year
            values["study_year_shifted"] = True
            imaging_age, _ = age_fields(info.get("birth_date"), study.study_date)
            if imaging_age is not None:
                values["age_at_imaging"] = imaging_age
            if pos:
                values["days_from_study_to_pos_covid_test"] = [d - day for d in pos]
            if neg:
                values["days_from_study_to_neg_covid_test"] = [d - day for d in neg]
        out.append(ClinicalRecord("imaging_study", values, Origin(IMAGES, None, {}), mrn))

    children: dict[str, list[tuple[dict[str, Any], _Row]]] = defaultdict(list)
    for row in tests:
        f = row.fields
        values = {"test_method": f.get("test_method", NOT_REPORTED), "test_result_text": f["test_result"],
                  "days_to_test": days(f["test_date"]), "test_name": f.get("test_name", "SARS-CoV-2")}
        children["measurement"].append((values, row))
    for row in visits:
        f = row.fields
        values = {"visit_type": f.get("visit_type", NOT_REPORTED), "days_to_visit": days(f["admission_date"])}
        if values["visit_type"] in ("Inpatient", "Intensive Care Unit"):
            values["days_to_hospital_admission"] = days(f["admission_date"])
            values["days_to_hospital_discharge"] = days(f.get("discharge_date"))
        values["days_to_icu_admission"] = days(f.get("icu_admission_date"))
        values["days_to_icu_discharge"] = days(f.get("icu_discharge_date"))
        if f.get("discharge_date") is not None:
            values["length_of_stay"] = (f["discharge_date"] - f["admission_date"]).days
        if f.get("discharge_disposition"):
            values["discharge_disposition"] = f["discharge_disposition"]
        children["visit"].append((values, row))
    for row in procedures:
        f = row.fields
        support = f.get("breathing_support_type", NOT_REPORTED)
        # A procedure table holds breathing support, but one named "procedures" may hold any procedure: the row
        # is breathing support when it says which kind.
        values = {"procedure_type": "Breathing Support" if support != NOT_REPORTED else NOT_REPORTED,
                  "breathing_support_type": support,
                  "days_to_procedure_start": days(f["start_date"]), "days_to_procedure_end": days(f.get("end_date"))}
        children["procedure"].append((values, row))
    for row in rows.get("condition", []):
        f = row.fields
        values = {"condition_name": f["condition_name"], "days_to_condition_start": days(f.get("onset_date")),
                  "days_to_condition_end": days(f.get("end_date"))}
        if f.get("condition_code"):
            values["condition_code"] = f["condition_code"]
            values["condition_code_system"] = code_system(f["condition_code"])
        children["condition"].append((values, row))
    for row in rows.get("medication", []):
        f = row.fields
        values = {"medication_name": f["medication_name"], "days_to_medication_start": days(f.get("start_date")),
                  "days_to_medication_end": days(f.get("end_date"))}
        if f.get("medication_code"):
            values["medication_code"] = f["medication_code"]
        children["medication"].append((values, row))
    for node in ("measurement", "visit", "procedure", "condition", "medication"):
        cleaned = [({k: v for k, v in values.items() if v is not None}, row) for values, row in children[node]]
        for values, row in _numbered(node, case_id, cleaned):
            values.update({"project_id": project, **link})
            out.append(ClinicalRecord(node, values, row.origin, mrn))
    return out


# --------------------------------------------------------------------------- validation


def _validate(
    records: list[ClinicalRecord], dictionary: Dictionary, issues: list[Issue]
) -> tuple[list[ClinicalRecord], list[ClinicalRecord]]:
    """Validate per node type; drop failing records and the records under a dropped case."""
    bad: set[int] = set()
    for node in NODE_ORDER:
        indexed = [(i, r) for i, r in enumerate(records) if r.node == node]
        if not indexed:
            continue
        result = validate_records([dict(r.values) for _, r in indexed], node, dictionary, first_row=0)
        for problem in result.problems:
            if problem.row is None:
                continue
            index, record = indexed[problem.row]
            column = record.origin.columns.get(_source_field(problem.column or ""), None)
            issues.append(from_problem(problem, record.origin.file, record.origin.row, column))
            bad.add(index)
    dropped_cases = {records[i].submitter_id for i in bad if records[i].node == "case"}
    kept: list[ClinicalRecord] = []
    rejected: list[ClinicalRecord] = []
    for index, record in enumerate(records):
        if index in bad:
            rejected.append(record)
        elif record.node != "case" and record.values.get("case.submitter_id") in dropped_cases:
            issues.append(Issue(ERROR, "case_rejected", "left out because the patient's case record was rejected",
                                "fix the case's problems (see the issues of its demographics row)",
                                record.origin.file, record.origin.row, node=record.node))
            rejected.append(record)
        else:
            kept.append(record)
    return kept, rejected


#: Dictionary property -> the site field it came from (to name the site's column in issues).
_PROPERTY_FIELDS = {
    "sex": "sex", "race": "race", "ethnicity": "ethnicity", "zip": "zip", "age_at_index": "birth_date",
    "test_method": "test_method", "test_result_text": "test_result", "days_to_test": "test_date",
    "visit_type": "visit_type", "days_to_visit": "admission_date", "length_of_stay": "discharge_date",
    "breathing_support_type": "breathing_support_type", "condition_name": "condition_name",
    "condition_code": "condition_code", "medication_name": "medication_name",
    "days_to_hospital_admission": "admission_date", "days_to_hospital_discharge": "discharge_date",
    "days_to_icu_admission": "icu_admission_date", "days_to_icu_discharge": "icu_discharge_date",
    "days_to_procedure_start": "start_date", "days_to_procedure_end": "end_date",
    "days_to_condition_start": "onset_date", "days_to_condition_end": "end_date",
    "days_to_medication_start": "start_date", "days_to_medication_end": "end_date",
}


def _source_field(prop: str) -> str:
    return _PROPERTY_FIELDS.get(prop, prop)
