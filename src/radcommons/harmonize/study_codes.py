"""The harmonized study code fields of an imaging study, as the index records them.

One matcher over the built-in curated table is built per process (building it ranks the
codes' names once); every study then costs one lookup. Only answers at or above the
threshold are recorded; the others stay empty and reach the review queue.
"""

from __future__ import annotations

import functools

from radcommons.harmonize.matcher import Matcher
from radcommons.harmonize.tables import builtin_table


@functools.lru_cache(maxsize=1)
def builtin_matcher() -> Matcher:
    """The matcher over MIDRC's curated table shipped with the package."""
    return Matcher(builtin_table())


def study_code_fields(modality: str, description: str) -> dict[str, str]:
    """``loinc_*`` values of the data dictionary's imaging_study for one (Modality, StudyDescription).

    Empty when the description is empty or no answer reaches the confidence threshold.
    """
    if not description.strip():
        return {}
    match = builtin_matcher().match(modality, description)
    if not match.accepted:
        return {}
    info = match.info or builtin_matcher().codes.get(match.code)
    fields = {"loinc_code": match.code, "loinc_long_common_name": match.long_common_name}
    if info is not None:
        fields.update(loinc_method=info.method, loinc_system=info.system, loinc_contrast=info.timing)
    return {name: value for name, value in fields.items() if value}
