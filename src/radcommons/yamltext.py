"""Reading YAML (the data dictionary, profiles, mappings, enumerations): one safe loader.

libyaml's C loader where PyYAML was built with it (the common case): it parses the data
dictionary in a tenth of the pure-Python loader's time, which every command that opens the
index pays at start. Both build only plain data (``safe_load``).
"""

from __future__ import annotations

from typing import Any

import yaml

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(text: str) -> Any:
    """The plain data in ``text`` (raises :class:`yaml.YAMLError` on bad YAML)."""
    return yaml.load(text, Loader=_LOADER)  # noqa: S506 - a safe loader


__all__ = ["load_yaml"]
