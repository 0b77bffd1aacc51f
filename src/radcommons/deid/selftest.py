"""The PHI self-test: score a de-identified synthetic corpus in the MIDI-B vocabulary.

``radcommons synth OUT --phi`` plants marker strings (``PHIMARK-nnnnnn``) in every
identifying value and lists them, with every original UID and date and the values
research needs kept, in ``OUT/phi_manifest.json`` (format
``radcommons.synth.phi_manifest/1``). After ``radcommons deid OUT DST``, :func:`score`
walks every output file, byte by byte and element by element (nested and private
included), and counts passes and failures per check, as the MIDI-B benchmark (MICCAI
2024) does:

* ``text_removed``: a planted marker is nowhere in the output file or its path;
* ``text_retained``: sex, age (capped 090Y), size, weight, manufacturer, model, modality
  and the clinical words of the descriptions are still there;
* ``date_shifted``: every original date is gone from its element, and all dates of one
  patient moved by the same number of days (intervals kept);
* ``uid_changed``: no original UID string is anywhere in the output;
* ``uid_consistent``: one original UID became one new UID in every file;
* ``patid_consistent``: one patient (site + Patient ID) has one pseudonym, different
  patients have different ones;
* ``pixels_hidden``: burned-in text was cleaned (or the file withheld);
* ``pixels_retained``: other images kept their Pixel Data byte for byte.

Withheld files count as passes for the "removed" checks (nothing was released) and
are listed; rejected files are skipped (the corpus' deliberate defects).
"""

from __future__ import annotations

import datetime as _dt
import json
import re
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pydicom
from pydicom.dataset import Dataset

from radcommons.deid.dates import normalise_age

CATEGORIES = (
    "text_removed",
    "text_retained",
    "date_shifted",
    "uid_changed",
    "uid_consistent",
    "patid_consistent",
    "pixels_hidden",
    "pixels_retained",
)
MARKER = re.compile(r"PHIMARK-[0-9]{6}")
_SEGMENT = re.compile(r"\(([0-9A-Fa-f]{4}),([0-9A-Fa-f]{4})\)(?:\[(\d+)\])?")
_RETAIN_KEYS = ("PatientSex", "PatientAge", "PatientSize", "PatientWeight", "Manufacturer",
                "ManufacturerModelName", "Modality")


@dataclass
class CategoryScore:
    passed: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)

    def add(self, ok: bool, what: str) -> None:
        if ok:
            self.passed += 1
        else:
            self.failed += 1
            if len(self.failures) < 50:
                self.failures.append(what)

    @property
    def total(self) -> int:
        return self.passed + self.failed

    @property
    def percent(self) -> float:
        return 100.0 * self.passed / self.total if self.total else 100.0


@dataclass
class SelfTestScore:
    categories: dict[str, CategoryScore] = field(default_factory=lambda: {c: CategoryScore() for c in CATEGORIES})
    files_scored: int = 0
    withheld: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)

    @property
    def passed(self) -> int:
        return sum(c.passed for c in self.categories.values())

    @property
    def total(self) -> int:
        return sum(c.total for c in self.categories.values())

    @property
    def percent(self) -> float:
        return 100.0 * self.passed / self.total if self.total else 100.0

    def render(self) -> str:
        lines = [f"PHI self-test: {self.files_scored} files scored, {len(self.withheld)} withheld, "
                 f"{len(self.rejected)} rejected"]
        for name, category in self.categories.items():
            lines.append(f"  {name:<17} {category.passed:>6}/{category.total:<6} {category.percent:6.2f}%")
        lines.append(f"  {'overall':<17} {self.passed:>6}/{self.total:<6} {self.percent:6.2f}%")
        return "\n".join(lines)


def element_at(ds: Dataset, path: str):
    """The element at a manifest tag path like ``(0040,0275)[0].(0008,0050)``, or None."""
    current: Any = ds
    segments = _SEGMENT.findall(path)
    for index, (group, element, item) in enumerate(segments):
        tag = int(group + element, 16)
        if not isinstance(current, Dataset) or tag not in current:
            return None
        data_element = current[tag]
        if index == len(segments) - 1:
            return data_element
        if item == "" or data_element.VR != "SQ":
            return None
        items = data_element.value or []
        if int(item) >= len(items):
            return None
        current = items[int(item)]
    return None


def _value_text(element) -> str:
    if element is None or element.value is None:
        return ""
    value = element.value
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return str(value)


def _read(path: Path, stop_before_pixels: bool = False) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path, force=True, stop_before_pixels=stop_before_pixels)


def _as_date(text: str) -> _dt.date | None:
    match = re.match(r"^(\d{4})(\d{2})(\d{2})", text.strip())
    if not match:
        return None
    try:
        return _dt.date(*map(int, match.groups()))
    except ValueError:
        return None


def score(
    manifest: dict[str, Any],
    src_root: Path,
    dst_root: Path,
    report: dict[str, Any],
    *,
    ocr_hidden: Callable[[Dataset, list[str]], bool] | None = None,
) -> SelfTestScore:
    """Score the de-identified output of a ``synth --phi`` corpus.

    ``report`` is the JSON report of the ``deid`` run (labels relative to ``src_root``);
    ``ocr_hidden(ds, texts)`` may confirm by OCR that burned-in texts are unreadable.
    """
    result = SelfTestScore()
    cats = result.categories
    entries = {entry["input"]: entry for entry in report["files"]}
    uid_map: dict[str, set[str]] = defaultdict(set)
    patient_pseudonyms: dict[tuple[str, str], set[str]] = defaultdict(set)
    patient_deltas: dict[tuple[str, str], set[int]] = defaultdict(set)

    for relpath, info in sorted(manifest.get("files", {}).items()):
        entry = entries.get(relpath)
        if entry is None:
            cats["text_removed"].add(False, f"{relpath}: missing from the report")
            continue
        if entry["outcome"] == "rejected":
            result.rejected.append(relpath)
            continue
        planted = info.get("planted", [])
        if entry["outcome"] == "withheld":
            result.withheld.append(relpath)
            for plant in planted:
                category = "pixels_hidden" if plant.get("where") == "pixels" else "text_removed"
                cats[category].add(True, "")
            continue
        out_path = Path(dst_root) / entry["output"]
        raw = out_path.read_bytes()
        text = raw.decode("latin-1")
        out_ds = _read(out_path)
        result.files_scored += 1
        site = relpath.split("/")[0]
        source = _read(Path(src_root) / relpath, stop_before_pixels=True)
        patient = (site, str(source.get("PatientID", "")))
        patient_pseudonyms[patient].add(str(out_ds.get("PatientID", "")))

        pixel_texts = []
        for plant in planted:
            marker = plant["marker"]
            where = plant.get("where")
            if where == "pixels":
                pixel_texts.append(plant.get("text", ""))
                continue
            ok = marker not in text and marker not in entry["output"]
            cats["text_removed"].add(ok, f"{relpath}: {marker} ({plant.get('kind')}) at {plant.get('path', where)}")
        if pixel_texts:
            hidden = bool(entry.get("pixels_cleaned"))
            if hidden and ocr_hidden is not None:
                hidden = ocr_hidden(out_ds, pixel_texts)
            cats["pixels_hidden"].add(hidden, f"{relpath}: burned-in text not cleaned")
        elif "PixelData" in out_ds and not entry.get("pixels_cleaned"):
            original = _read(Path(src_root) / relpath)
            same = bytes(original.PixelData) == bytes(out_ds.PixelData)
            cats["pixels_retained"].add(same, f"{relpath}: Pixel Data changed")

        for path, uid in info.get("uids", {}).items():
            cats["uid_changed"].add(uid not in text, f"{relpath}: original UID at {path} survives")
            element = element_at(out_ds, path)
            if element is not None and _value_text(element):
                uid_map[uid].add(_value_text(element))

        for path, date in info.get("dates", {}).items():
            element = element_at(out_ds, path)
            value = _value_text(element)
            cats["date_shifted"].add(date not in value, f"{relpath}: date at {path} not shifted")
            before, after = _as_date(date), _as_date(value)
            if before and after and element is not None and element.VR in ("DA", "DT"):
                patient_deltas[patient].add((after - before).days)

        retain = info.get("retain", {})
        for keyword in _RETAIN_KEYS:
            if keyword not in retain:
                continue
            expected = str(retain[keyword])
            if keyword == "PatientAge":
                expected = normalise_age(expected) or ""
            got = _value_text(out_ds[keyword] if keyword in out_ds else None)
            if keyword in ("PatientSize", "PatientWeight"):
                try:
                    ok = abs(float(got) - float(expected)) < 1e-6
                except ValueError:
                    ok = False
            else:
                ok = got.strip() == expected.strip()
            cats["text_retained"].add(ok, f"{relpath}: {keyword} {expected!r} became {got!r}")
        descriptions = " ".join(
            _value_text(out_ds[k] if k in out_ds else None)
            for k in ("StudyDescription", "SeriesDescription", "ProtocolName", "RequestedProcedureDescription")
        ).upper()
        for word in retain.get("description_words", []):
            cats["text_retained"].add(
                re.search(r"(?<![A-Z0-9])" + re.escape(word.upper()) + r"(?![A-Z0-9])", descriptions) is not None,
                f"{relpath}: description word {word!r} lost",
            )

    for uid, new in sorted(uid_map.items()):
        cats["uid_consistent"].add(len(new) == 1, f"{uid} became {len(new)} different UIDs")
    owners: dict[str, tuple[str, str]] = {}
    for patient, pseudonyms in sorted(patient_pseudonyms.items()):
        ok = len(pseudonyms) == 1
        for pseudonym in pseudonyms:
            other = owners.setdefault(pseudonym, patient)
            ok = ok and other == patient
        cats["patid_consistent"].add(ok, f"patient {patient[0]}/#{hash(patient[1]) % 10000}: pseudonyms not consistent")
    for patient, deltas in sorted(patient_deltas.items()):
        cats["date_shifted"].add(
            len(deltas) == 1 and 0 not in deltas, f"patient at {patient[0]}: dates moved by {sorted(deltas)} days"
        )
    return result


def score_paths(src_root: Path, dst_root: Path, report_path: Path, **kwargs) -> SelfTestScore:
    """:func:`score` reading ``phi_manifest.json`` from ``src_root`` and the report file."""
    manifest = json.loads((Path(src_root) / "phi_manifest.json").read_text(encoding="utf-8"))
    report = json.loads(Path(report_path).read_text(encoding="utf-8"))
    return score(manifest, src_root, dst_root, report, **kwargs)


def combine_reports(parts: list[tuple[str, str, dict[str, Any]]]) -> dict[str, Any]:
    """One report from several ``deid`` runs (one per site folder).

    ``parts``: ``(input prefix, output prefix, report)``; the prefixes are the site's
    folder under the synth root and its output folder under the destination root.
    """
    files = []
    for in_prefix, out_prefix, report in parts:
        for entry in report["files"]:
            entry = dict(entry)
            entry["input"] = f"{in_prefix}/{entry['input']}" if in_prefix else entry["input"]
            if entry.get("output"):
                entry["output"] = f"{out_prefix}/{entry['output']}" if out_prefix else entry["output"]
            files.append(entry)
    return {"files": files}
