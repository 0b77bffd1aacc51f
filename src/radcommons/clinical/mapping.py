"""The site mapping: how a site's clinical export is read (tables, columns, values, rules).

The default mapping (``data/default_mapping.yaml``) knows the usual names; a site adds
its own in a YAML file of the same format, merged over the default::

    tables:            # file or sheet name -> table (case, measurement, visit, procedure,
      Lab Results: measurement          #   condition, medication, ignore)
    columns:           # per table (or "all"): column -> field (or ignore / drop)
      case: {Pt Gender: sex}
    values:            # per field: site value -> dictionary value
      sex: {X: Not Reported}
    not_reported: [declined to answer]
    covid19_tests: [Resp Panel 2]       # test names (or LOINC codes) that are COVID-19 tests
    serology_tests: [Anti-S]            # words (or LOINC codes) that make one an antibody test
    other_pathogens: [Strep A]          # words that make one a combined panel of other pathogens
    vaccinations: [inoculation]         # words that make one a vaccination, not a test
    date_formats: ["%d.%m.%Y"]
    index_event: [positive_covid_test, first_imaging_study]
    country: US
    restricted_zip3: ["123"]            # added to the shipped HIPAA list

Names are compared by :func:`name_key` (lower case, letters and digits only), so
"ICD-10 Code", "icd10code" and "ICD 10 CODE" are one name.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from radcommons.errors import UserError
from radcommons.inputs import read_input_text
from radcommons.yamltext import load_yaml

#: Tables a site file can hold, with the dictionary node each becomes.
TABLE_NODES: dict[str, str] = {
    "case": "case",
    "measurement": "measurement",
    "visit": "visit",
    "procedure": "procedure",
    "condition": "condition",
    "medication": "medication",
}
IGNORE = "ignore"
DROP = "drop"
MRN = "mrn"

#: Fields each table understands (besides mrn, ignore and drop).
TABLE_FIELDS: dict[str, frozenset[str]] = {
    "case": frozenset({"birth_date", "sex", "race", "ethnicity", "zip", "country"}),
    # test_code (a LOINC code) is read only to tell a COVID-19 test from another: the dictionary has no field for it.
    "measurement": frozenset({"test_date", "test_method", "test_result", "test_name", "test_code"}),
    "visit": frozenset(
        {"visit_type", "admission_date", "icu_admission_date", "icu_discharge_date", "discharge_date",
         "discharge_disposition"}
    ),
    "procedure": frozenset({"start_date", "end_date", "breathing_support_type"}),
    "condition": frozenset({"condition_code", "condition_name", "onset_date", "end_date"}),
    "medication": frozenset({"medication_name", "start_date", "end_date", "medication_code"}),
}
#: Fields that hold calendar dates (parsed, then turned into day offsets; never sent).
DATE_FIELDS = frozenset(
    {"birth_date", "test_date", "admission_date", "icu_admission_date", "icu_discharge_date", "discharge_date",
     "start_date", "end_date", "onset_date"}
)
#: Fields whose values are enumerations of the dictionary (normalised through ``values``).
ENUM_FIELDS: dict[str, tuple[str, str]] = {
    # field: (node, dictionary property)
    "sex": ("case", "sex"),
    "race": ("case", "race"),
    "ethnicity": ("case", "ethnicity"),
    "test_method": ("measurement", "test_method"),
    "test_result": ("measurement", "test_result_text"),
    "visit_type": ("visit", "visit_type"),
    "discharge_disposition": ("visit", "discharge_disposition"),
    "breathing_support_type": ("procedure", "breathing_support_type"),
}
#: The free-text field whose site spellings map to a code through ``values`` ("USA" -> US), as
#: enumerations do: the dictionary's country_of_residence is an ISO 3166-1 alpha-2 code.
COUNTRY = "country"
INDEX_EVENTS = ("positive_covid_test", "covid_test", "first_imaging_study")

_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def name_key(name: str) -> str:
    """A name reduced to lower-case letters and digits: how names are compared."""
    return _NON_ALNUM.sub("", str(name).lower())


def _words(name: str) -> str:
    """A name as space-separated lower-case words (``sars_cov2_tests`` -> ``sars cov2 tests``)."""
    return " ".join(w for w in _NON_ALNUM.split(str(name).lower()) if w)


@dataclass(frozen=True)
class SiteMapping:
    """How one site's clinical files are read; see the module docstring for the YAML."""

    tables: Mapping[str, str]  #: words of a name -> table
    columns: Mapping[str, Mapping[str, str]]  #: table or "all" -> name_key(column) -> field
    values: Mapping[str, Mapping[str, str]]  #: field -> lower-cased site value -> dictionary value
    not_reported: frozenset[str]  #: lower-cased spellings of "unknown"
    date_formats: tuple[str, ...]
    index_event: tuple[str, ...]
    country: str
    restricted_zip3: frozenset[str]
    restricted_zip3_source: str = ""
    #: name_key of the names and codes that make a test a COVID-19 test (``covid19_tests``)
    covid19_tests: tuple[str, ...] = ()
    #: name_key of the whole test names the site's own mapping file lists in ``covid19_tests``
    site_covid19_tests: frozenset[str] = frozenset()
    #: words (:func:`_words`) or LOINC codes that make a COVID-19 test an antibody test (``serology_tests``)
    serology_tests: tuple[str, ...] = ()
    #: words of the pathogens besides SARS-CoV-2 that a combined panel names (``other_pathogens``)
    other_pathogens: tuple[str, ...] = ()
    #: words that make a COVID-19 "test" a vaccination (``vaccinations``)
    vaccinations: tuple[str, ...] = ()
    sources: tuple[str, ...] = field(default=())  #: the files it was read from
    #: :meth:`covid19_test_kind` by its arguments: the mapping does not change once loaded
    _kinds: dict[tuple[str, ...], str | None] = field(default_factory=dict, init=False, repr=False, compare=False)

    def table_for(self, name: str) -> str | None:
        """The table a file or sheet name announces (longest matching name wins), or None."""
        words = f" {_words(name)} "
        key = name_key(name)
        best: tuple[int, str] | None = None
        for pattern, table in self.tables.items():
            if key == name_key(pattern) or f" {pattern} " in words:
                if best is None or len(pattern) > best[0]:
                    best = (len(pattern), table)
        return best[1] if best else None

    def field_for(self, table: str, column: str) -> str | None:
        """The field a column of ``table`` holds (site entries first), or None when unknown."""
        key = name_key(column)
        for scope in (table, "all"):
            found = self.columns.get(scope, {}).get(key)
            if found:
                return found
        return None

    def is_covid19_test(self, name: str) -> bool:
        """Whether a test's name (or LOINC code) says it is a COVID-19 test: it contains one of ``covid19_tests``,
        compared by :func:`name_key`; a code (digits only) must not run into other digits ("94500-6" is not
        in "194500-67"), nor a name that ends in a digit ("SARS-2" is not in "SARS 2003" nor in "SARS/229E")."""
        key = name_key(name)
        return any(_code_in(name, known) if _is_code(known) else _key_in(key, known) for known in self.covid19_tests)

    def covid19_test_kind(self, names: Sequence[str], method: str = "") -> str | None:
        """What a test's names (its name, its LOINC code or both) and its test ``method`` say of it: None for a test
        of something else, :data:`SEROLOGY` for a SARS-CoV-2 antibody test, :data:`VACCINATION` for a COVID-19
        vaccination, :data:`COMBINED_PANEL` for one result of SARS-CoV-2 and another pathogen, else
        :data:`DIAGNOSTIC`. No names (a row that names no test) is read as a COVID-19 test, as the conversion reads
        such a row.

        MIDRC's measurement node records diagnostic tests (test_method RT-PCR or Rapid antigen test): an antibody
        shows a past infection or a vaccination, not a current infection, so it never counts, whether its name or
        its method ("Serology", "IgG") says so; a vaccination ("COVID-19 Vaccine", "SARS-CoV-2 vaccine dose 1") is
        no test at all; and a single result of "SARS-CoV-2 + Influenza A/B" does not say which virus it is of, so
        the panel counts only when the site's mapping file lists its whole name in ``covid19_tests``. Words match
        whole words ("Ab" is not in "Lab", and "Ag", an antigen, is no antibody); a code must stand alone, as in
        :meth:`is_covid19_test`.

        Remembered per names and method: a lab export has some 100k rows of a few dozen test names, and each new
        name costs some 50 searches of it."""
        key = (*names, method)
        if key not in self._kinds:
            self._kinds[key] = self._test_kind(tuple(names), method)
        return self._kinds[key]

    def _words_of(self, name: str) -> str:
        """The words of ``name`` between spaces (:func:`_words`), with those of a glued name after them
        (:func:`_unglued`): "SARSCOV2IGG" and "IGGCOVID19" are antibody tests, "COVID19FLUPCR" a combined panel."""
        words = _words(name).split()
        terms = (*self.serology_tests, *self.vaccinations, *self.other_pathogens, *_GLUED_DIAGNOSTIC)
        vocabulary = {term.replace(" ", ""): term for term in terms if not _is_code(term)}
        covid19_keys = [key for key in self.covid19_tests if not _is_code(key)]
        glued = [_strains(pieces, self.other_pathogens) for word in words
                 for pieces in _unglued(word, covid19_keys, vocabulary)]
        return f" {' '.join([*words, *(piece for pieces in glued for piece in pieces)])} "

    def _test_kind(self, names: tuple[str, ...], method: str) -> str | None:
        """:meth:`covid19_test_kind`, worked out."""
        name = " / ".join(names)
        serology_code = any(_is_code(t) and _code_in(name, t) for t in self.serology_tests)
        if names and not (serology_code or self.is_covid19_test(name)):
            return None
        words, method_words = self._words_of(name), self._words_of(method)
        if serology_code or any(_names(text, spaced, t) for text, spaced in ((name, words), (method, method_words))
                                for t in self.serology_tests):
            return SEROLOGY
        if any(_names(name, words, t) for t in self.vaccinations):
            return VACCINATION
        if (any(_names(name, words, t) for t in self.other_pathogens)
                and not self.site_covid19_tests.intersection(name_key(n) for n in names)):
            return COMBINED_PANEL
        return DIAGNOSTIC


#: What :meth:`SiteMapping.covid19_test_kind` says of a COVID-19 test.
DIAGNOSTIC, SEROLOGY, VACCINATION, COMBINED_PANEL = "diagnostic", "serology", "vaccination", "combined panel"


def _is_code(term: str) -> bool:
    """Whether a :func:`_terms` entry is a LOINC code (its digit groups as words: ``94500-6`` -> ``94500 6``)."""
    return term.replace(" ", "").isdigit()


def _key_in(key: str, known: str) -> bool:
    """Whether the :func:`name_key` ``key`` holds the name key ``known``, a final digit of ``known`` not running
    into more digits: "sars2" is in "sars2pcr", not in "sars2003" (SARS-CoV-1, 2003) nor "sars229e"."""
    if not known[-1:].isdigit():
        return known in key
    return re.search(rf"{re.escape(known)}(?!\d)", key) is not None


def _code_in(name: str, code: str) -> bool:
    """Whether ``name`` holds the LOINC ``code`` (:func:`_is_code`), its digit groups joined by any separator or
    none, and not run into other digits: "94500-6" is in "COVID-19 94500-6" and "94500 6", not in "194500-67".
    Compared on the name as written: :func:`name_key` would run "COVID-19" into the code that follows it."""
    pattern = r"[^a-z0-9]*".join(re.escape(group) for group in code.split())
    return re.search(rf"(?<!\d){pattern}(?!\d)", str(name).lower()) is not None


def _names(name: str, words: str, term: str) -> bool:
    """Whether ``name`` holds ``term`` (a :func:`_terms` entry): a code as :func:`_code_in` finds it; words as whole
    words of ``words`` (:meth:`SiteMapping._words_of` the name), so that "Ab" is not found in "Lab" nor "Flu" in
    "Fluid"."""
    if _is_code(term):
        return _code_in(name, term)
    return f" {term} " in words


#: Words a name run together may hold after its SARS-CoV-2 name ("SARSCOV2PCR", "Covid19Ag"), besides those of
#: ``serology_tests``, ``vaccinations`` and ``other_pathogens``: a glued run is read as words only when all of it is.
_GLUED_DIAGNOSTIC = ("pcr", "rtpcr", "rt", "rna", "naa", "naat", "ag", "antigen", "rapid", "test", "poc", "qual")
#: The longest glued run cut into words (longer ones are no test name's).
_GLUED_MAX = 40


def _unglued(word: str, covid19_keys: Sequence[str], vocabulary: Mapping[str, str]) -> list[list[str]]:
    """The runs of words glued in one ``word``, each as its words: the run after a SARS-CoV-2 name ("covid19igg" ->
    "igg", "sarscov2flupcr" -> "flu", "pcr") or after the 2 or 19 that ends one ("SARS-CoV-2IgM": "2igm" -> "igm";
    not the 1 of "ORF 1ab", a gene), the run before the name ("iggcovid19" -> "igg", "fluabcovid19" -> "flu",
    "ab"), or a word of no SARS-CoV-2 name ("FLUAB COVID-19": "flu", "ab"); a run only when all of it is words of
    ``vocabulary`` (its keys, without spaces -> the words), else none ("covid19abbott": "Abbott" is no "Ab";
    "labcovid": "Lab" none either)."""
    found = [(word.index(key), word.index(key) + len(key)) for key in covid19_keys if key in word]
    digits = word[:len(word) - len(word.lstrip("0123456789"))]
    if found:
        after = word[max(end for _, end in found):].lstrip("0123456789")
        before = word[:min(start for start, _ in found)]
    elif digits:
        after, before = (word[len(digits):] if digits in ("2", "19") else ""), ""
    else:
        after, before = "", word
    runs = (_cut(run, vocabulary) if len(run) <= _GLUED_MAX else None for run in (before, after))
    return [run for run in runs if run]


def _strains(words: list[str], pathogens: Collection[str]) -> list[str]:
    """Glued ``words`` (:func:`_unglued`) without an "ab" right after a pathogen's name: "FLUAB" is as much
    influenza A and B (a flu A/B panel) as a flu antibody. Neither is a diagnostic COVID-19 test: read as the panel
    its pathogen makes it (``combined_covid19_panel``), which a site may still name in ``covid19_tests``."""
    return [w for i, w in enumerate(words) if not (w == "ab" and i and words[i - 1] in pathogens)]


def _cut(run: str, vocabulary: Mapping[str, str]) -> list[str] | None:
    """``run`` cut wholly into keys of ``vocabulary`` (the longest first), as their words, or None."""
    if not run:
        return []
    for end in range(len(run), 0, -1):
        if run[:end] in vocabulary:
            rest = _cut(run[end:], vocabulary)
            if rest is not None:
                return [vocabulary[run[:end]], *rest]
    return None


def _load_yaml(path: Path | None, text: str | None = None) -> dict[str, Any]:
    where = str(path) if path is not None else "the default mapping"
    try:
        data = load_yaml(text if text is not None else read_input_text(path))  # type: ignore[arg-type]
    except FileNotFoundError as error:
        raise UserError(f"mapping file {path} not found", "give the path of the site's mapping YAML") from error
    except OSError as error:
        raise UserError(f"cannot read the mapping file {path}: {error.strerror or error}") from error
    except UnicodeDecodeError as error:
        raise UserError(f"cannot read the mapping file {path}: {error}") from error
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise UserError(f"the mapping file {where} is not valid YAML{line}: {getattr(error, 'problem', error)}",
                        "fix the YAML syntax (indentation, quotes, colons)") from error
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"the mapping file {where} must be a YAML mapping (key: value), not a list or text")
    unknown = set(data) - {"version", "tables", "columns", "values", "not_reported", "covid19_tests", "serology_tests",
                           "other_pathogens", "vaccinations", "date_formats", "index_event", "country",
                           "restricted_zip3"}
    if unknown:
        raise UserError(
            f"the mapping file {where} has unknown section(s): {', '.join(sorted(unknown))}",
            "known sections: tables, columns, values, not_reported, covid19_tests, serology_tests, other_pathogens, "
            "vaccinations, date_formats, index_event, country, restricted_zip3",
        )
    return data


def _merge_tables(target: dict[str, str], section: Any, where: str) -> None:
    if not isinstance(section, dict):
        raise UserError(f"{where}: 'tables' must map names to tables")
    for left, right in section.items():
        # Two spellings: table -> [names] (the default) or name -> table (a site's quick entry).
        if isinstance(right, list):
            table, names = str(left), [str(n) for n in right]
        else:
            table, names = str(right), [str(left)]
        if table not in TABLE_NODES and table != IGNORE:
            raise UserError(f"{where}: unknown table {table!r} in 'tables'",
                            f"tables: {', '.join(TABLE_NODES)}, {IGNORE}")
        for name in names:
            target[_words(name)] = table


def _merge_columns(target: dict[str, dict[str, str]], section: Any, where: str) -> None:
    if not isinstance(section, dict):
        raise UserError(f"{where}: 'columns' must map tables to {{column: field}}")
    for table, entries in section.items():
        table = str(table)
        if table not in TABLE_NODES and table != "all":
            raise UserError(f"{where}: unknown table {table!r} in 'columns'", f"tables: all, {', '.join(TABLE_NODES)}")
        if not isinstance(entries, dict):
            raise UserError(f"{where}: columns.{table} must map columns to fields")
        allowed = {MRN, IGNORE, DROP} | (
            set().union(*TABLE_FIELDS.values()) if table == "all" else set(TABLE_FIELDS[table])
        )
        scope = target.setdefault(table, {})
        for left, right in entries.items():
            # Two spellings again: field -> [columns] (the default) or column -> field.
            if isinstance(right, list):
                field_name, columns = str(left), [str(c) for c in right]
            else:
                field_name, columns = str(right), [str(left)]
            if field_name not in allowed:
                raise UserError(f"{where}: unknown field {field_name!r} for table {table!r} in 'columns'",
                                f"fields: {', '.join(sorted(allowed))}")
            for column in columns:
                scope[name_key(column)] = field_name


def _merge_values(target: dict[str, dict[str, str]], section: Any, where: str) -> None:
    if not isinstance(section, dict):
        raise UserError(f"{where}: 'values' must map fields to {{site value: dictionary value}}")
    for field_name, entries in section.items():
        if field_name not in ENUM_FIELDS and field_name != COUNTRY:
            raise UserError(f"{where}: values for unknown field {field_name!r}",
                            f"fields with values: {', '.join([*ENUM_FIELDS, COUNTRY])}")
        if not isinstance(entries, dict):
            raise UserError(f"{where}: values.{field_name} must map site values to dictionary values")
        scope = target.setdefault(str(field_name), {})
        for site_value, value in entries.items():
            # A country is an ISO 3166-1 alpha-2 code (the dictionary's country_of_residence).
            scope[str(site_value).strip().lower()] = (_country(value, where, f"values.{COUNTRY}.{site_value}")
                                                      if field_name == COUNTRY else str(value))


def _restricted_default() -> tuple[frozenset[str], str]:
    text = resources.files("radcommons.clinical").joinpath("data/restricted_zip3.yaml").read_text("utf-8")
    data = load_yaml(text)
    return frozenset(str(z) for z in data["restricted_zip3"]), str(data["source"])


def _zip3_list(value: Any, where: str) -> set[str]:
    if not isinstance(value, list) or not all(re.fullmatch(r"\d{3}", str(z)) for z in value):
        raise UserError(f"{where}: 'restricted_zip3' must be a list of three-digit strings, e.g. [\"036\"]",
                        "quote each value so YAML keeps the leading zeros")
    return {str(z) for z in value}


def _string_list(data: dict[str, Any], key: str, where: str) -> list[Any]:
    """The list under ``key`` (a single value counts as a list of one), else a UserError."""
    value = data.get(key, [])
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return [value]
    if not isinstance(value, list) or any(isinstance(item, (dict, list)) for item in value):
        raise UserError(f"{where}: '{key}' must be a list of values",
                        f"e.g. {key}:\n  - first\n  - second")
    return value


def _terms(data: dict[str, Any], section: str, where: str, example: str) -> list[str]:
    """The names of one test-name section of a mapping document (``covid19_tests``: :func:`name_key` keys; the
    others, and a LOINC code in any section, as :func:`_words`), else a UserError: a name without a letter or digit
    ("-") would be contained in every name, and make every test one of them."""
    terms = []
    for value in _string_list(data, section, where):
        key = name_key(str(value))
        if not key:
            raise UserError(f"{where}: {str(value)!r} in {section!r} has no letter or digit",
                            f"list test names or LOINC codes, e.g. {section}: {example}")
        # a code keeps its digit groups (words), so that it is found beside other digits (:func:`_code_in`)
        terms.append(_words(str(value)) if key.isdigit() else key if section == "covid19_tests" else _words(str(value)))
    return terms


def _date_format(value: Any, where: str) -> str:
    """A strptime format that reads a whole date back (``%d.%m.%Y``), else a UserError: one that
    cannot ('%Q', 5, '%H') was taken and never matched, or matched the wrong day."""
    text = str(value)
    sample = _dt.date(2001, 2, 3)
    try:
        read = _dt.datetime.strptime(sample.strftime(text), text).date()
    except ValueError:
        read = None
    if read != sample:
        raise UserError(f"{where}: {text!r} in 'date_formats' is not a date format that reads day, month and year",
                        "use strptime directives, e.g. date_formats: [\"%d.%m.%Y\", \"%m/%d/%Y\"]")
    return text


def _country(value: Any, where: str, key: str = "'country'") -> str:
    """An ISO 3166-1 alpha-2 code (upper case), or "" for none: ``5`` or a list was sent as text."""
    if value in (None, ""):
        return ""
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z]{2}", value.strip()):
        raise UserError(f"{where}: {key} must be a two-letter ISO 3166-1 code, not {value!r}", "e.g. country: US")
    return value.strip().upper()


def load_mapping(path: str | Path | None = None) -> SiteMapping:
    """The default mapping, with the site's mapping file ``path`` (if any) merged over it.

    Raises :class:`UserError` naming the file and the section for anything it cannot use.
    """
    default_text = resources.files("radcommons.clinical").joinpath("data/default_mapping.yaml").read_text("utf-8")
    documents = [("the default mapping", _load_yaml(None, default_text))]
    if path is not None:
        documents.append((str(path), _load_yaml(Path(path))))
    tables: dict[str, str] = {}
    columns: dict[str, dict[str, str]] = {}
    values: dict[str, dict[str, str]] = {}
    not_reported: set[str] = set()
    covid19_tests: list[str] = []
    site_covid19_tests: set[str] = set()
    serology_tests: list[str] = []
    other_pathogens: list[str] = []
    vaccinations: list[str] = []
    date_formats: list[str] = []
    index_event: tuple[str, ...] = INDEX_EVENTS
    country = ""
    restricted, source = _restricted_default()
    restricted = set(restricted)
    for where, data in documents:
        _merge_tables(tables, data.get("tables", {}), where)
        _merge_columns(columns, data.get("columns", {}), where)
        _merge_values(values, data.get("values", {}), where)
        not_reported |= {str(v).strip().lower() for v in _string_list(data, "not_reported", where)}
        named = _terms(data, "covid19_tests", where, '["Resp Panel 2", 94500-6]')
        covid19_tests += named
        if data is not documents[0][1]:
            # a site's own whole name: its combined panel counts (covid19_test_kind)
            site_covid19_tests |= {name_key(t) for t in named}
        serology_tests += _terms(data, "serology_tests", where, '[Anti-S, 94563-4]')
        other_pathogens += _terms(data, "other_pathogens", where, '["Strep A"]')
        vaccinations += _terms(data, "vaccinations", where, '[inoculation]')
        # A site's date formats are tried before the default ones (its own spelling first).
        date_formats = [_date_format(f, where) for f in _string_list(data, "date_formats", where)] + date_formats
        if "index_event" in data:
            chosen = data["index_event"]
            chosen = [chosen] if isinstance(chosen, str) else chosen
            if not isinstance(chosen, list) or not chosen or any(c not in INDEX_EVENTS for c in chosen):
                raise UserError(f"{where}: 'index_event' must be a list of: {', '.join(INDEX_EVENTS)}",
                                "the first one a case has becomes its day 0")
            index_event = tuple(chosen)
        if "country" in data:
            country = _country(data["country"], where)
        if "restricted_zip3" in data:
            restricted |= _zip3_list(data["restricted_zip3"], where)
    return SiteMapping(
        tables=tables,
        columns=columns,
        values=values,
        not_reported=frozenset(not_reported),
        date_formats=tuple(dict.fromkeys(date_formats)),
        index_event=index_event,
        country=country,
        restricted_zip3=frozenset(restricted),
        restricted_zip3_source=source,
        covid19_tests=tuple(dict.fromkeys(covid19_tests)),
        site_covid19_tests=frozenset(site_covid19_tests),
        serology_tests=tuple(dict.fromkeys(serology_tests)),
        other_pathogens=tuple(dict.fromkeys(other_pathogens)),
        vaccinations=tuple(dict.fromkeys(vaccinations)),
        sources=tuple(where for where, _ in documents),
    )
