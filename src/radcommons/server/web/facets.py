"""The explorer's facets: which fields, how a URL query string encodes the selection, and the filter.

Facets come from the data dictionary (properties marked ``facet: true``): a curated order of the
ones researchers ask for first (DOMAIN.md section 1), then every other faceted enumeration or
text property of case, study and series under "More filters". The selection lives in the query
string (``?case.sex=Female&series.modality=CT``), so a cohort is a shareable URL; values of one
facet are OR-ed, facets are AND-ed. Counts of each facet leave that facet's own selection out, so
a user can add a second value to a facet already filtered (the usual faceted-search behaviour).
"""

from __future__ import annotations

import re

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import Engine

from radcommons.dictionary import Dictionary, PropertyType, load_dictionary
from radcommons.errors import UserError
from radcommons.store.query import AGE_BINS, Bucket, facets
from radcommons.store.query.pages import as_expr

#: The value in URLs that stands for "no value recorded".
MISSING = "__missing__"

#: Tabs of the explorer: URL name, node type, title.
TABS: tuple[tuple[str, str, str], ...] = (
    ("cases", "case", "Cases"), ("studies", "imaging_study", "Studies"),
    ("series", "series", "Series"), ("files", "instance", "Files"),
)
TAB_NODES = {name: node for name, node, _ in TABS}


@dataclass(frozen=True)
class Facet:
    """One facet: the node whose records it counts, the field, a label, optional numeric bins."""

    node: str
    field: str
    label: str
    bins: tuple[float, ...] | None = None
    featured: bool = True

    @property
    def key(self) -> str:
        """Its name in URLs: ``case.sex``."""
        return f"{self.node}.{self.field}"

    def name_on(self, node: str) -> str:
        """The field as a query on ``node`` writes it (``sex`` on case, ``case.sex`` on series)."""
        return self.field if node == self.node else f"{self.node}.{self.field}"


#: The facets shown first, in this order (labels as researchers say them).
FEATURED: tuple[Facet, ...] = (
    Facet("series", "modality", "Modality"),
    Facet("imaging_study", "body_part_examined", "Body part"),
    Facet("imaging_study", "loinc_code", "LOINC code"),
    Facet("case", "sex", "Sex"),
    Facet("case", "age_at_index", "Age at index", bins=AGE_BINS),
    Facet("case", "race", "Race"),
    Facet("case", "ethnicity", "Ethnicity"),
    Facet("case", "covid19_positive", "COVID-19 positive"),
    Facet("visit", "visit_type", "Hospital visit type"),
    Facet("case", "icu_indicator", "ICU admission"),
    Facet("case", "ventilator_indicator", "Ventilator"),
    Facet("procedure", "breathing_support_type", "Breathing support"),
    Facet("case", "site_id", "Site"),
    Facet("series", "manufacturer", "Manufacturer"),
    Facet("case", "project_id", "Project"),
)
#: Nodes whose other faceted properties are offered under "More filters".
MORE_NODES = ("case", "imaging_study", "series")
#: Faceted properties that make poor filters (free numbers, identifiers, codes shown otherwise).
_SKIP = {"case.zip", "imaging_study.loinc_long_common_name", "imaging_study.study_description",
         "series.series_description"}
#: Values listed per facet (the largest); the rest are reachable through a narrower filter.
TOP_VALUES = 12


def all_facets(dictionary: Dictionary | None = None) -> tuple[Facet, ...]:
    """Featured facets, then the dictionary's other faceted enum/text properties of case, study, series."""
    dictionary = dictionary or load_dictionary()
    seen = {f.key for f in FEATURED}
    more = []
    for node in MORE_NODES:
        for prop in dictionary[node].properties:
            key = f"{node}.{prop.name}"
            if not prop.facet or key in seen or key in _SKIP:
                continue
            if prop.type not in (PropertyType.ENUM, PropertyType.STRING):
                continue
            more.append(Facet(node, prop.name, _label(prop.name), featured=False))
    return FEATURED + tuple(more)


def _label(name: str) -> str:
    return name.replace("_", " ").capitalize()


Selection = dict[str, list[str]]


#: Query parameters of the explorer that are not facets.
CONTROL_PARAMETERS = frozenset({"tab", "cursor", "saved"})


def parse_selection(params: Iterable[tuple[str, str]], known: Sequence[Facet],
                    left_out: list[str] | None = None) -> Selection:
    """The facet values selected in a query string. Unknown keys, empty values, for a binned
    facet anything but a bin label, and a value the field cannot have (``series.modality=CTT``)
    are left out, each alone (a link edited by hand is no reason to fail, nor to drop the rest),
    and listed in ``left_out`` as ``key=value`` (and why) so the page can say so: a filter
    dropped silently shows a larger cohort than the link promised."""
    by_key = {f.key: f for f in known}
    selection: Selection = {}
    for key, value in params:
        facet = by_key.get(key)
        if key in CONTROL_PARAMETERS or (facet is not None and value in selection.get(key, [])):
            continue
        if facet is None or not value or (facet.bins is not None and value != MISSING
                                          and not _BIN_LABEL.fullmatch(value)):
            if left_out is not None:
                left_out.append(f"{key}={value}"[:80])
            continue
        problem = _refused(facet, value)
        if problem:
            if left_out is not None:
                left_out.append(f"{key}={value}"[:80] + f": {problem}")
            continue
        selection.setdefault(key, []).append(value)
    return selection


def _refused(facet: Facet, value: str) -> str | None:
    """Why the query engine refuses ``value`` of ``facet`` (not one of its enumeration), else None.

    The engine's own check (parsing the facet's condition), so the page and the API agree."""
    try:
        as_expr(facet.node, facet_condition(facet, [value], facet.node))
    except UserError as error:
        return error.message.partition(": ")[2] or error.message  # without the filter path
    return None


#: A bin label as the facets write it: ``18-29``, ``90+``, ``<0`` (numbers of at most 9 digits).
_BIN_LABEL = re.compile(r"\d{1,9}-\d{1,9}|\d{1,9}\+|<\d{1,9}")


def query_string(selection: Mapping[str, Sequence[str]], **extra: str | None) -> str:
    """``selection`` (and ``extra`` parameters that are not None) as a query string, stable order."""
    pairs = [(key, value) for key in sorted(selection) for value in selection[key]]
    pairs += [(k, v) for k, v in extra.items() if v is not None]
    return urlencode(pairs)


def toggled(selection: Mapping[str, Sequence[str]], key: str, value: str) -> Selection:
    """``selection`` with ``value`` of ``key`` added, or removed when it was there."""
    out = {k: list(v) for k, v in selection.items()}
    values = out.setdefault(key, [])
    if value in values:
        values.remove(value)
    else:
        values.append(value)
    return {k: v for k, v in out.items() if v}


def _bin_condition(name: str, label: str) -> dict[str, Any]:
    """A bin label (``18-29``, ``90+``, ``<0``) as a range filter on ``name``."""
    if label.endswith("+"):
        return {">=": {name: int(label[:-1])}}
    if label.startswith("<"):
        return {"<": {name: int(label[1:])}}
    low, high = label.split("-", 1)
    return {"and": [{">=": {name: int(low)}}, {"<=": {name: int(high)}}]}


def facet_condition(facet: Facet, values: Sequence[str], node: str) -> dict[str, Any]:
    """The filter (on ``node`` records) of one facet's selected values (OR-ed)."""
    name = facet.name_on(node)
    parts: list[dict[str, Any]] = []
    plain = [v for v in values if v != MISSING]
    if facet.bins is not None:
        parts += [_bin_condition(name, v) for v in plain]
    elif plain:
        parts.append({"in": {name: plain}})
    if MISSING in values:
        parts.append({"is_null": name})
    return parts[0] if len(parts) == 1 else {"or": parts}


def to_filter(selection: Mapping[str, Sequence[str]], node: str, known: Sequence[Facet],
              exclude: str | None = None) -> dict[str, Any]:
    """The whole selection as one filter on ``node`` (``exclude``: leave that facet out)."""
    by_key = {f.key: f for f in known}
    parts = [facet_condition(by_key[key], values, node) for key, values in sorted(selection.items())
             if key in by_key and values and key != exclude]
    if not parts:
        return {}
    return parts[0] if len(parts) == 1 else {"and": parts}


@dataclass(frozen=True)
class FacetValue:
    """One value of a facet as the page shows it."""

    value: str
    label: str
    count: int | None
    selected: bool
    href: str


@dataclass(frozen=True)
class FacetView:
    facet: Facet
    values: list[FacetValue]
    #: What the counts count ("cases", "series"...).
    unit: str
    selected: bool

    @property
    def largest(self) -> int:
        """The largest shown count (bars are drawn relative to it)."""
        return max((v.count or 0 for v in self.values), default=0)


UNITS = {"case": "cases", "imaging_study": "studies", "series": "series", "instance": "files", "visit": "visits",
         "procedure": "procedures", "measurement": "tests"}


def facet_views(engine: Engine, selection: Selection, known: Sequence[Facet], *, projects: Sequence[str] | None,
                min_count: int | None, tab: str) -> list[FacetView]:
    """Every facet with its value counts under the rest of the selection, and toggle links."""
    views = []
    for facet in known:
        flt = to_filter(selection, facet.node, known, exclude=facet.key)
        bins = {facet.field: list(facet.bins)} if facet.bins else None
        found = facets(engine, facet.node, flt, [facet.field], bins=bins, projects=projects,
                       min_count=min_count, top=TOP_VALUES)[facet.field]
        chosen = selection.get(facet.key, [])
        values = [_value(b, facet, selection, chosen, tab) for b in found if b.count != 0 or _key(b) in chosen]
        # A selected value with no records left still shows, so it can be unticked.
        listed = {v.value for v in values}
        values += [_value(Bucket(v, 0), facet, selection, chosen, tab) for v in chosen if v not in listed]
        views.append(FacetView(facet, values, UNITS.get(facet.node, facet.node), bool(chosen)))
    return views


def _key(bucket: Bucket) -> str:
    return MISSING if bucket.value is None else str(bucket.value)


def _value(bucket: Bucket, facet: Facet, selection: Selection, chosen: Sequence[str], tab: str) -> FacetValue:
    key = _key(bucket)
    label = "Not recorded" if bucket.value is None else str(bucket.value)
    href = "/?" + query_string(toggled(selection, facet.key, key), tab=tab)
    return FacetValue(key, label, bucket.count, key in chosen, href)


def describe(selection: Mapping[str, Sequence[str]], known: Sequence[Facet], tab: str) -> list[dict[str, Any]]:
    """The selection in words, one entry per facet, each with a link that removes it."""
    by_key = {f.key: f for f in known}
    out = []
    for key, values in sorted(selection.items(), key=lambda kv: [f.key for f in known].index(kv[0])):
        facet = by_key[key]
        rest = {k: v for k, v in selection.items() if k != key}
        words = ["not recorded" if v == MISSING else v for v in values]
        out.append({"label": facet.label, "values": words, "remove": "/?" + query_string(rest, tab=tab)})
    return out
