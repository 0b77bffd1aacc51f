"""Normalising enumerated clinical and imaging values to the data dictionary's values.

Sites send "M", "male", "Unknown/Declined", "THORAX"; the commons stores "Male", "Not
Reported", "CHEST". Every answer keeps the raw value next to the normalised one
(:class:`Normalized`) so nothing a site sent is lost. The allowed values of enumerations
come from the data dictionary itself; body part examined uses the DICOM PS3.16 Annex L
Defined Terms. A site extends the built-in synonyms with a YAML file of the same shape::

    case.sex:
      "1": Male
      "2": Female
    body_part_examined:
      TORSO: CHEST

This is what the site-side clinical conversion calls::

    >>> normalizer = ValueNormalizer()
    >>> normalizer.normalize("case.sex", "F")
    Normalized(field='case.sex', value='Female', raw='F', method='synonym')
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from radcommons.dictionary import NOT_REPORTED, PropertyType, load_dictionary
from radcommons.errors import UserError
from radcommons.inputs import read_named_file
from radcommons.yamltext import load_yaml

#: The field name of DICOM Body Part Examined (imaging_study and series carry it).
BODY_PART = "body_part_examined"

_PUNCT = re.compile(r"[\s_\-/.,;:()]+")


@dataclass(frozen=True)
class Normalized:
    """A normalised value and the raw value it came from.

    ``method``: ``exact`` (already a dictionary value), ``case`` (differs only in case or
    spacing), ``synonym`` (built-in synonym), ``site`` (the site's mapping file),
    ``missing`` (blank raw value: Not Reported where allowed, else None) or ``unmapped``
    (not understood: ``value`` is None).
    """

    field: str
    value: str | None
    raw: str | None
    method: str

    @property
    def ok(self) -> bool:
        """True when the raw value was understood."""
        return self.value is not None


def _fold(text: str) -> str:
    """Match key: lower case, punctuation and spacing ignored ("Unknown / Declined" -> "unknown declined")."""
    return _PUNCT.sub(" ", text).strip().lower()


def _data(name: str) -> Any:
    text = resources.files("radcommons.harmonize").joinpath("data", name).read_text(encoding="utf-8")
    return load_yaml(text)


@lru_cache(maxsize=1)
def body_part_values() -> tuple[str, ...]:
    """DICOM PS3.16 Annex L Body Part Examined Defined Terms known here."""
    return tuple(_data("body_parts.yaml")["values"])


@lru_cache(maxsize=1)
def _builtin_synonyms() -> dict[str, dict[str, str]]:
    return {field: {str(k): str(v) for k, v in values.items()} for field, values in _data("enumerations.yaml").items()}


@lru_cache(maxsize=1)
def allowed_values() -> dict[str, tuple[str, ...]]:
    """Every enumeration field ("node.property") and its allowed values, plus body part."""
    dictionary = load_dictionary()
    out: dict[str, tuple[str, ...]] = {}
    for node in dictionary.nodes:
        for prop in node.properties:
            if prop.enum and prop.element_type is PropertyType.ENUM:
                out[f"{node.name}.{prop.name}"] = tuple(prop.enum)
    out[BODY_PART] = body_part_values()
    for node in dictionary.nodes:
        if node.get(BODY_PART) is not None:
            out[f"{node.name}.{BODY_PART}"] = body_part_values()
    return out


def _field_key(field: str) -> str:
    """Body part has one vocabulary wherever it sits ("series.body_part_examined" -> "body_part_examined")."""
    return BODY_PART if field.endswith("." + BODY_PART) else field


def load_site_mapping(path: Path | str) -> dict[str, dict[str, str]]:
    """Read and check a site mapping file: ``{field: {raw: dictionary value}}``."""
    path = Path(path)
    try:
        data = load_yaml(read_named_file(path).decode("utf-8"))
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text") from None
    except yaml.YAMLError as error:
        raise UserError(f"{path}: not valid YAML ({error})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of field -> {{raw value: dictionary value}}")
    allowed = allowed_values()
    out: dict[str, dict[str, str]] = {}
    for field, values in data.items():
        key = _field_key(str(field))
        if key not in allowed:
            raise UserError(
                f"{path}: unknown field {field!r}",
                "fields are node.property enumerations (e.g. case.sex) or body_part_examined",
            )
        if not isinstance(values, dict):
            raise UserError(f"{path}: field {field!r}: expected raw value: dictionary value pairs")
        for raw, value in values.items():
            if str(value) not in allowed[key]:
                raise UserError(
                    f"{path}: field {field!r}: {raw!r} maps to {value!r}, not an allowed value",
                    "allowed: " + ", ".join(allowed[key][:20]) + (" ..." if len(allowed[key]) > 20 else ""),
                )
        out.setdefault(key, {}).update({str(raw): str(value) for raw, value in values.items()})
    return out


class ValueNormalizer:
    """Normalise enumerated values; a site's mapping is consulted first."""

    def __init__(self, site_mapping: Mapping[str, Mapping[str, str]] | None = None) -> None:
        self._allowed = allowed_values()
        self._site = {
            _field_key(field): {_fold(raw): value for raw, value in values.items()}
            for field, values in (site_mapping or {}).items()
        }
        builtin = _builtin_synonyms()
        self._synonyms: dict[str, dict[str, str]] = {}
        for field, values in self._allowed.items():
            table: dict[str, str] = {}
            if NOT_REPORTED in values:
                table.update({_fold(k): v for k, v in builtin["_not_reported"].items()})
            if set(values) >= {"Yes", "No"}:
                table.update({_fold(k): v for k, v in builtin["_yes_no"].items()})
            table.update({_fold(k): v for k, v in builtin.get(_field_key(field), {}).items()})
            # A synonym is only kept when its target is allowed for this very field.
            self._synonyms[field] = {k: v for k, v in table.items() if v in values}

    @classmethod
    def from_file(cls, path: Path | str | None) -> ValueNormalizer:
        """A normalizer with the site mapping in ``path`` (none when ``path`` is None)."""
        return cls(load_site_mapping(path) if path else None)

    @property
    def fields(self) -> tuple[str, ...]:
        """The fields this normalizer knows."""
        return tuple(sorted(self._allowed))

    def normalize(self, field: str, raw: str | None) -> Normalized:
        """Normalise one raw value of ``field`` ("case.sex", "imaging_study.body_part_examined")."""
        key = _field_key(field) if _field_key(field) in self._allowed else field
        if key not in self._allowed:
            raise UserError(f"unknown enumeration field {field!r}", "known: " + ", ".join(self.fields))
        values = self._allowed[key]
        text = "" if raw is None else str(raw).strip()
        folded = _fold(text)
        site = self._site.get(_field_key(key), {})
        if folded in site:
            return Normalized(field, site[folded], raw, "site")
        if not folded:
            return Normalized(field, NOT_REPORTED if NOT_REPORTED in values else None, raw, "missing")
        # Synonyms come before exact values on purpose: Annex L has LUNG, but a chest
        # commons files lung exams under CHEST.
        synonyms = self._synonyms.get(key, {})
        if folded in synonyms:
            value = synonyms[folded]
            return Normalized(field, value, raw, "exact" if value == text else "synonym")
        if text in values:
            return Normalized(field, text, raw, "exact")
        for value in values:
            if _fold(value) == folded or _fold(value).replace(" ", "") == folded.replace(" ", ""):
                return Normalized(field, value, raw, "case")
        return Normalized(field, None, raw, "unmapped")


@lru_cache(maxsize=1)
def _default() -> ValueNormalizer:
    return ValueNormalizer()


def normalize_value(field: str, raw: str | None) -> Normalized:
    """Normalise with the built-in synonyms only."""
    return _default().normalize(field, raw)


def normalize_sex(raw: str | None) -> Normalized:
    """``M``/``male`` -> Male, ``F`` -> Female, ``O``/``Unknown``/blank -> Not Reported."""
    return normalize_value("case.sex", raw)


def normalize_race(raw: str | None) -> Normalized:
    """To the dictionary's race values (OMB 1997 as MIDRC uses them)."""
    return normalize_value("case.race", raw)


def normalize_ethnicity(raw: str | None) -> Normalized:
    """To Hispanic or Latino | Not Hispanic or Latino | Not Reported."""
    return normalize_value("case.ethnicity", raw)


def normalize_body_part(raw: str | None) -> Normalized:
    """To a DICOM PS3.16 Annex L Body Part Examined term ("Chest", "THORAX", "LUNG" -> CHEST)."""
    return normalize_value(BODY_PART, raw)


#: The longest body part term the index keeps (its body_part_examined column).
BODY_PART_TERM_LENGTH = 64


@lru_cache(maxsize=4096)  # every instance of a series asks for the same few values
def body_part_term(raw: str) -> str | None:
    """The commons' term for a Body Part Examined as sent: :func:`normalize_body_part`'s (Chest,
    THORAX -> CHEST), else the value as a DICOM Code String (upper case, spacing collapsed); None
    for a blank value. Indexing and migration 0012 (which re-normalised older rows) both use it."""
    return normalize_body_part(raw).value or " ".join(raw.split()).upper()[:BODY_PART_TERM_LENGTH] or None
