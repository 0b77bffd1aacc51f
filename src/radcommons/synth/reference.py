"""Reference distributions shipped as package data, and how they were derived.

Two small tables in ``radcommons/synth/data`` drive the realism of the
generator; nothing at run time reads the ``shared/ref`` folder.

* ``study_descriptions.tsv``: a verbatim copy of MIDRC's
  ``StudyDescriptions_Gen3.tsv`` (github.com/MIDRC/midrc_dicom_harmonization,
  commit dbcc5235, MIT licence; see ``data/README.md``): every
  (Modality, StudyDescription) pair in the MIDRC commons with its study count,
  i.e. the real long tail that sites send.
* ``demographics.json``: marginal frequencies of age, sex, race, ethnicity,
  COVID-19 status and 3-digit ZIP computed once by :func:`derive_demographics`
  from MIDRC's de-identified case export (github.com/MIDRC/MIDRC-REACT,
  commit b70ab4a0, Apache-2.0). Only counts are kept, never a record.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np

DEMOGRAPHICS_FORMAT = "radcommons.synth.demographics/1"


@dataclass(frozen=True)
class Distribution:
    """A categorical distribution: values and their (unnormalised) weights."""

    values: tuple[str, ...]
    weights: tuple[float, ...]

    def sample(self, rng: np.random.Generator) -> str:
        """Draw one value with probability proportional to its weight."""
        p = np.asarray(self.weights, dtype=float)
        return self.values[int(rng.choice(len(self.values), p=p / p.sum()))]


def _data_text(name: str) -> str:
    return resources.files("radcommons.synth").joinpath("data", name).read_text(encoding="utf-8")


@cache
def study_descriptions(modality: str) -> Distribution:
    """The real MIDRC StudyDescription long tail for one modality, weighted by study count.

    Only rows whose Modality is exactly ``modality`` are used (rows such as
    ``CR,DX`` describe studies with mixed modalities).
    """
    values: list[str] = []
    weights: list[float] = []
    for row in csv.DictReader(_data_text("study_descriptions.tsv").splitlines(), delimiter="\t"):
        description = (row["StudyDescription"] or "").strip()
        # (0008,1030) is LO: at most 64 characters, no backslash (the value delimiter),
        # and only the default repertoire since not every site declares a character set.
        usable = len(description) <= 64 and "\\" not in description and description.isascii()
        if row["Modality"] == modality and description and usable:
            values.append(description)
            weights.append(float(row["frequency"]))
    if not values:
        raise KeyError(f"no study descriptions for modality {modality!r}")
    return Distribution(tuple(values), tuple(weights))


@cache
def demographics() -> dict[str, Distribution]:
    """The shipped demographic marginals: keys ``age``, ``sex``, ``race``, ``ethnicity``, ``covid19_positive``, ``zip3``."""
    raw = json.loads(_data_text("demographics.json"))
    return {
        name: Distribution(tuple(counts), tuple(float(c) for c in counts.values()))
        for name, counts in raw["marginals"].items()
    }


def derive_demographics(tsv_paths: Iterable[Path]) -> dict[str, object]:
    """Compute the ``demographics.json`` content from MIDRC case-export TSV files.

    Ages are counted per year 0-89; cases flagged ``age_at_index_gt89 = Yes``
    (whose age MIDRC blanks) are counted under ``"90+"``.
    """
    paths = sorted(Path(p) for p in tsv_paths)
    counters: dict[str, Counter[str]] = {
        key: Counter() for key in ("age", "sex", "race", "ethnicity", "covid19_positive", "zip3")
    }
    cases = 0
    for path in paths:
        with path.open(encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle, delimiter="\t"):
                cases += 1
                if row.get("age_at_index_gt89") == "Yes":
                    counters["age"]["90+"] += 1
                elif row.get("age_at_index"):
                    counters["age"][str(int(float(row["age_at_index"])))] += 1
                for key in ("sex", "race", "ethnicity", "covid19_positive"):
                    counters[key][row.get(key) or "Not Reported"] += 1
                if row.get("zip"):
                    counters["zip3"][row["zip"]] += 1

    def ordered(counter: Counter[str], numeric: bool = False) -> dict[str, int]:
        if numeric:
            return {k: counter[k] for k in sorted(counter, key=lambda v: (v == "90+", int(v.rstrip("+"))))}
        return dict(sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])))

    return {
        "format": DEMOGRAPHICS_FORMAT,
        "provenance": (
            "Marginal counts derived by radcommons.synth.reference.derive_demographics from "
            "MIDRC-REACT data/midrc_data_download-2025-01-29_{0,1}.tsv "
            "(github.com/MIDRC/MIDRC-REACT commit b70ab4a00cc2e72ddfb3410e49b2278308f5a310, "
            "Apache-2.0): a de-identified MIDRC portal case export. Counts only, no records."
        ),
        "cases": cases,
        "source_files": [p.name for p in paths],
        "marginals": {
            "age": ordered(counters["age"], numeric=True),
            "sex": ordered(counters["sex"]),
            "race": ordered(counters["race"]),
            "ethnicity": ordered(counters["ethnicity"]),
            "covid19_positive": ordered(counters["covid19_positive"]),
            "zip3": ordered(counters["zip3"]),
        },
    }
