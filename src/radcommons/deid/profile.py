"""De-identification profiles: Table E.1-1 columns selected by name, as plain data.

A profile is the Basic Application Level Confidentiality Profile plus a list of PS3.15
E.3 options, plus explicit per-attribute overrides. The shipped profiles live in
``data/profiles.json``:

* ``basic``: the Basic Profile alone (CID 7050 code 113100);
* ``default`` (alias ``research``): Basic + Retain Safe Private (113111) + Retain
  Patient Characteristics (113108) + Clean Descriptors (113105) + Retain Longitudinal
  Temporal Information Modified Dates (113107). Manufacturer and model are kept: they
  are not in Table E.1-1, so keeping them is not the Retain Device Identity Option,
  which would also keep serial numbers and station names; 113109 is *not* claimed.

A site layers its own overrides from a YAML or JSON file: a mapping of attribute
keyword or tag (``PatientWeight``, ``(0010,1030)``, ``00101030``) to an action letter.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Mapping

from pydicom.datadict import tag_for_keyword

from radcommons.deid.table import OPTIONS, Row
from radcommons.errors import UserError
from radcommons.inputs import read_input_text

#: Options the engine implements. The others (Retain UIDs, Full Dates, Clean Structured
#: Content, Clean Graphics) are refused rather than claimed without being done.
SUPPORTED_OPTIONS = (
    "retain_safe_private",
    "retain_device_identity",
    "retain_institution_identity",
    "retain_patient_characteristics",
    "clean_descriptors",
    "retain_long_modified_dates",
)
#: When two selected options both have a cell for a row, the later one here wins: dates
#: are shifted (C) even where a retain option would keep them (K).
_PRECEDENCE = {name: index for index, name in enumerate(SUPPORTED_OPTIONS)}

ACTIONS = frozenset({"X", "Z", "D", "K", "C", "U"})

#: What "C" (clean) means, by the option that asked for it.
CLEAN_KIND = {
    "retain_long_modified_dates": "dates",
    "retain_safe_private": "private",
    "clean_descriptors": "text",
    "retain_patient_characteristics": "text",
    "retain_device_identity": "text",
    "retain_institution_identity": "text",
}


@dataclass(frozen=True)
class Decision:
    """The action a profile takes for one Table E.1-1 row (before Type resolution)."""

    action: str  #: D, Z, X, K, C, U or a compound (X/Z, X/D, X/Z/D, Z/D, X/Z/U*)
    source: str  #: "basic", an option name, "profile" or "site"
    clean: str | None = None  #: for C: "dates", "text" or "private"


@dataclass(frozen=True)
class Profile:
    """A named profile: options plus overrides (tag -> action)."""

    name: str
    description: str
    options: tuple[str, ...]
    overrides: Mapping[int, str] = field(default_factory=dict)
    site_overrides: Mapping[int, str] = field(default_factory=dict)

    @property
    def shifts_dates(self) -> bool:
        """Dates are shifted per patient (Modified Dates option) rather than removed."""
        return "retain_long_modified_dates" in self.options

    @property
    def keeps_safe_private(self) -> bool:
        return "retain_safe_private" in self.options

    def decide(self, row: Row) -> Decision:
        """The action for ``row``: Basic Profile, then options, then overrides."""
        decision = Decision(row.basic, "basic")
        for option in sorted(
            (o for o in self.options if o in row.options), key=_PRECEDENCE.__getitem__
        ):
            action = row.options[option]
            decision = Decision(action, option, CLEAN_KIND.get(option) if action == "C" else None)
        return decision

    def override(self, tag: int) -> Decision | None:
        """An explicit override for ``tag`` (site first, then the profile's own)."""
        if tag in self.site_overrides:
            return Decision(self.site_overrides[tag], "site", "auto")
        if tag in self.overrides:
            return Decision(self.overrides[tag], "profile", "auto")
        return None

    def codes(self) -> list[tuple[str, str]]:
        """CID 7050 codes this profile applies (113101 is added per file by the engine)."""
        codes = [("113100", "Basic Application Confidentiality Profile")]
        for option in sorted(self.options, key=lambda o: int(OPTIONS[o][1])):
            codes.append((OPTIONS[option][1], OPTIONS[option][2]))
        return codes

    def with_site_overrides(self, overrides: Mapping[int, str]) -> "Profile":
        return replace(self, site_overrides=dict(overrides))


_TAG_TEXT = re.compile(r"^\(?\s*([0-9A-Fa-f]{4})\s*,?\s*([0-9A-Fa-f]{4})\s*\)?$")


def parse_tag(text: str) -> int:
    """``PatientWeight``, ``(0010,1030)``, ``0010,1030`` or ``00101030`` -> tag int."""
    match = _TAG_TEXT.match(text.strip())
    if match:
        return int(match.group(1) + match.group(2), 16)
    tag = tag_for_keyword(text.strip())
    if tag is None:
        raise UserError(
            f"unknown attribute {text!r} in the overrides",
            "use a DICOM keyword (PatientWeight) or a tag ((0010,1030))",
        )
    return tag


def _parse_overrides(raw: Mapping[str, str], where: str) -> dict[int, str]:
    result: dict[int, str] = {}
    for key, action in raw.items():
        action_text = str(action).strip().upper()
        if action_text not in ACTIONS:
            raise UserError(
                f"{where}: action {action!r} for {key!r} is not one of X, Z, D, K, C, U",
                "X remove, Z empty, D dummy, K keep, C clean (dates shifted, text cleaned), "
                "U replace UID",
            )
        result[parse_tag(str(key))] = action_text
    return result


@lru_cache(maxsize=1)
def _profile_data() -> dict[str, dict]:
    text = resources.files("radcommons.deid").joinpath("data/profiles.json").read_text("utf-8")
    return json.loads(text)


def profile_names() -> list[str]:
    """Names (and aliases) of the shipped profiles."""
    names = []
    for name, data in _profile_data().items():
        names.append(name)
        names.extend(data.get("aliases", []))
    return names


def load_profile(name: str = "default", overrides_file: Path | None = None) -> Profile:
    """The shipped profile ``name`` (or alias), with a site's overrides file layered on."""
    data = _profile_data()
    canonical = next(
        (key for key, value in data.items() if name == key or name in value.get("aliases", [])),
        None,
    )
    if canonical is None:
        raise UserError(
            f"unknown de-identification profile {name!r}",
            f"choose one of: {', '.join(profile_names())}",
        )
    spec = data[canonical]
    for option in spec["options"]:
        if option not in SUPPORTED_OPTIONS:  # pragma: no cover - shipped data is checked
            raise UserError(f"profile {canonical!r}: option {option!r} is not supported")
    profile = Profile(
        name=canonical,
        description=spec["description"],
        options=tuple(spec["options"]),
        overrides=_parse_overrides(spec.get("overrides", {}), f"profile {canonical}"),
    )
    if overrides_file is not None:
        profile = profile.with_site_overrides(read_overrides(overrides_file))
    return profile


def read_overrides(path: Path) -> dict[int, str]:
    """Read a site overrides file (YAML or JSON): ``{keyword-or-tag: action}``.

    The mapping may also sit under a top-level ``overrides`` key.
    """
    path = Path(path)
    try:
        text = read_input_text(path)
    except OSError as error:
        raise UserError(f"cannot read the overrides file {path}: {error.strerror}") from error
    try:
        if path.suffix.lower() == ".json":
            raw = json.loads(text)
        else:
            from radcommons.yamltext import load_yaml

            raw = load_yaml(text)
    except Exception as error:  # yaml and json raise different types
        raise UserError(f"the overrides file {path} is not valid YAML/JSON: {error}") from error
    if isinstance(raw, dict) and isinstance(raw.get("overrides"), dict):
        raw = raw["overrides"]
    if not isinstance(raw, dict):
        raise UserError(
            f"the overrides file {path} must hold a mapping of attribute to action",
            "example: {PatientWeight: X, \"(0008,1030)\": K}",
        )
    return _parse_overrides(raw, str(path))
