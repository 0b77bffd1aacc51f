"""Site clinical data files converted to the data dictionary (at the site, before anything leaves).

Public API::

    >>> from radcommons.clinical import load_mapping, read_tables, convert_clinical
    >>> tables = read_tables(["clinical/"])                        # doctest: +SKIP
    >>> result = convert_clinical(tables, key=key, site="SITE_A",   # doctest: +SKIP
    ...                           project="Open-R1", studies=studies)
    >>> result.by_node()["case"][0]["age_at_index_gt89"]           # doctest: +SKIP
    'No'

* :func:`read_tables` - CSV, TSV and Excel workbooks (one table per sheet);
* :func:`load_mapping` / :class:`SiteMapping` - table, column and value recognition,
  extended by the site's mapping YAML;
* :func:`convert_clinical` -> :class:`Conversion` (records per node, :class:`Issue` list);
* :class:`ImagingStudy` - what the converter needs to know of each de-identified study.

Domain code: no storage, no HTTP. It uses :mod:`radcommons.deid` for pseudonyms and date
offsets (so clinical records and images name each patient the same way) and
:mod:`radcommons.dictionary` for validation.
"""

from __future__ import annotations

from radcommons.clinical.convert import (
    NODE_ORDER,
    ClinicalRecord,
    Day0,
    Conversion,
    ImagingStudy,
    Origin,
    convert_clinical,
)
from radcommons.clinical.issues import ERROR, NOTE, WARNING, Issue
from radcommons.clinical.mapping import SiteMapping, load_mapping, name_key
from radcommons.clinical.sources import SourceTable, read_file, read_tables
from radcommons.clinical.values import age_fields, normalise_enum, parse_date, zip3

__all__ = [
    "ERROR",
    "NODE_ORDER",
    "NOTE",
    "WARNING",
    "ClinicalRecord",
    "Day0",
    "Conversion",
    "ImagingStudy",
    "Issue",
    "Origin",
    "SiteMapping",
    "SourceTable",
    "age_fields",
    "convert_clinical",
    "load_mapping",
    "name_key",
    "normalise_enum",
    "parse_date",
    "read_file",
    "read_tables",
    "zip3",
]
