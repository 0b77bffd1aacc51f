"""The versioned data dictionary: node types, properties, links, file validation and docs.

The dictionary is declared in YAML (``radcommons/dictionary/schema``) and loaded
into frozen dataclasses::

    >>> from radcommons.dictionary import load_dictionary
    >>> dictionary = load_dictionary()
    >>> dictionary["case"].get("sex").enum
    ('Female', 'Male', 'Not Reported')

This package is pure domain code: it imports no storage or HTTP library.
:mod:`radcommons.store.index` builds the database tables from it.
"""

from __future__ import annotations

from radcommons.dictionary.loader import SCHEMA_DIR, load_dictionary
from radcommons.dictionary.model import (
    LINK_COLUMN_SUFFIX,
    NOT_REPORTED,
    TYPE_COLUMN,
    Category,
    Dictionary,
    Link,
    NodeType,
    Property,
    PropertyType,
)
from radcommons.dictionary.validate import (
    Problem,
    ValidatedFile,
    node_from_filename,
    validate_file,
    validate_file_results,
    validate_files,
    validate_records,
)

__all__ = [
    "LINK_COLUMN_SUFFIX",
    "NOT_REPORTED",
    "SCHEMA_DIR",
    "TYPE_COLUMN",
    "Category",
    "Dictionary",
    "Link",
    "NodeType",
    "Problem",
    "Property",
    "PropertyType",
    "ValidatedFile",
    "load_dictionary",
    "node_from_filename",
    "validate_file",
    "validate_file_results",
    "validate_files",
    "validate_records",
]
