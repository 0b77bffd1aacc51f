"""Site clinical data files, the way each site's systems export them.

Every site has the same content (patients, COVID-19 tests, encounters,
breathing support, conditions, medications) with real calendar dates and MRNs,
but its own format, column names, date format and spelling of values:

* style 0, CSV, ISO dates: ``demographics.csv`` (MRN, PatientName, DOB, Sex,
  Race, Ethnicity, Zip), ``covid_tests.csv`` (MRN, TestDate, TestMethod,
  Result), ``encounters.csv`` (MRN, EncounterType, AdmitDate, ICUAdmitDate,
  ICUDischargeDate, DischargeDate), ``breathing_support.csv`` (MRN, StartDate,
  EndDate, SupportType), ``conditions.csv`` (MRN, ICD10, Condition,
  OnsetDate), ``medications.csv`` (MRN, Medication, StartDate, EndDate).
* style 1, TSV, MM/DD/YYYY dates, sex as F/M/U: ``patients.tsv`` (mrn,
  last_name, first_name, birth_date, gender, race, ethnic_group, zip_code),
  ``sars_cov2_tests.tsv`` (mrn, collection_date, method, result_text),
  ``visits.tsv`` (mrn, visit_type, admission_date, icu_in, icu_out,
  discharge_date), ``resp_support.tsv`` (mrn, start_date, stop_date, device),
  ``diagnoses.tsv`` (mrn, dx_code, dx_name, dx_date), ``meds.tsv`` (mrn,
  drug_name, start_date, stop_date).
* style 2, one workbook ``clinical_export.xlsx`` with real Excel dates, sheets
  Demographics (Medical Record Number, Patient Name, Date of Birth, Sex, Race,
  Ethnicity, ZIP Code), COVID Tests (Medical Record Number, Specimen Date, Test
  Type, Result), Encounters (Medical Record Number, Encounter Type, Admission
  Date, ICU Admission Date, ICU Discharge Date, Discharge Date), Breathing
  Support (Medical Record Number, Start Date, End Date, Support Type),
  Conditions (Medical Record Number, ICD-10 Code, Description, Onset Date),
  Medications (Medical Record Number, Medication, Start Date, End Date).

"Unknown" and "Unknown/Declined" appear where MIDRC's ingest later writes
"Not Reported".
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from radcommons.synth.population import Patient

TABLES = ("demographics", "covid_tests", "encounters", "breathing_support", "conditions", "medications")


@dataclass(frozen=True)
class ClinicalStyle:
    """How one site names and formats its clinical exports."""

    extension: str  # ".csv", ".tsv" or ".xlsx"
    file_names: dict[str, str]  # table -> file (or sheet) name
    columns: dict[str, tuple[str, ...]]
    date_format: str | None  # strftime pattern; None keeps real dates (Excel)
    sex: dict[str, str]
    not_reported: str


STYLES: tuple[ClinicalStyle, ...] = (
    ClinicalStyle(
        ".csv",
        {t: t for t in TABLES},
        {
            "demographics": ("MRN", "PatientName", "DOB", "Sex", "Race", "Ethnicity", "Zip"),
            "covid_tests": ("MRN", "TestDate", "TestMethod", "Result"),
            "encounters": ("MRN", "EncounterType", "AdmitDate", "ICUAdmitDate", "ICUDischargeDate", "DischargeDate"),
            "breathing_support": ("MRN", "StartDate", "EndDate", "SupportType"),
            "conditions": ("MRN", "ICD10", "Condition", "OnsetDate"),
            "medications": ("MRN", "Medication", "StartDate", "EndDate"),
        },
        "%Y-%m-%d",
        {"Female": "Female", "Male": "Male", "Not Reported": "Unknown"},
        "Unknown",
    ),
    ClinicalStyle(
        ".tsv",
        {
            "demographics": "patients",
            "covid_tests": "sars_cov2_tests",
            "encounters": "visits",
            "breathing_support": "resp_support",
            "conditions": "diagnoses",
            "medications": "meds",
        },
        {
            "demographics": ("mrn", "last_name", "first_name", "birth_date", "gender", "race", "ethnic_group", "zip_code"),
            "covid_tests": ("mrn", "collection_date", "method", "result_text"),
            "encounters": ("mrn", "visit_type", "admission_date", "icu_in", "icu_out", "discharge_date"),
            "breathing_support": ("mrn", "start_date", "stop_date", "device"),
            "conditions": ("mrn", "dx_code", "dx_name", "dx_date"),
            "medications": ("mrn", "drug_name", "start_date", "stop_date"),
        },
        "%m/%d/%Y",
        {"Female": "F", "Male": "M", "Not Reported": "U"},
        "Unknown/Declined",
    ),
    ClinicalStyle(
        ".xlsx",
        {
            "demographics": "Demographics",
            "covid_tests": "COVID Tests",
            "encounters": "Encounters",
            "breathing_support": "Breathing Support",
            "conditions": "Conditions",
            "medications": "Medications",
        },
        {
            "demographics": ("Medical Record Number", "Patient Name", "Date of Birth", "Sex", "Race", "Ethnicity", "ZIP Code"),
            "covid_tests": ("Medical Record Number", "Specimen Date", "Test Type", "Result"),
            "encounters": ("Medical Record Number", "Encounter Type", "Admission Date", "ICU Admission Date",
                           "ICU Discharge Date", "Discharge Date"),
            "breathing_support": ("Medical Record Number", "Start Date", "End Date", "Support Type"),
            "conditions": ("Medical Record Number", "ICD-10 Code", "Description", "Onset Date"),
            "medications": ("Medical Record Number", "Medication", "Start Date", "End Date"),
        },
        None,
        {"Female": "Female", "Male": "Male", "Not Reported": "Unknown"},
        "Unknown",
    ),
)


@dataclass(frozen=True)
class ClinicalIdentity:
    """A patient's identifiers as the site's clinical systems hold them (marked in ``--phi`` mode)."""

    mrn: str
    family: str
    given: str


def style_for(index: int) -> ClinicalStyle:
    return STYLES[index % len(STYLES)]


def table_rows(
    patients: list[Patient], identities: list[ClinicalIdentity], style: ClinicalStyle
) -> dict[str, list[list[Any]]]:
    """Rows per table, dates still as :class:`datetime.date` (formatted when written)."""
    rows: dict[str, list[list[Any]]] = {t: [] for t in TABLES}

    def reported(value: str) -> str:
        return style.not_reported if value == "Not Reported" else value

    for patient, ident in zip(patients, identities, strict=True):
        if style.extension == ".tsv":
            name_cells: list[Any] = [ident.family, ident.given]
        else:
            name_cells = [f"{ident.family}, {ident.given}" if style.extension == ".xlsx" else f"{ident.family}^{ident.given}"]
        rows["demographics"].append(
            [ident.mrn, *name_cells, patient.birth_date, style.sex[patient.sex],
             reported(patient.race), reported(patient.ethnicity), patient.zip5]
        )
        for test in patient.tests:
            rows["covid_tests"].append([ident.mrn, test.day, test.method, test.result])
        for enc in patient.encounters:
            rows["encounters"].append([ident.mrn, enc.kind, enc.admit, enc.icu_admit, enc.icu_discharge, enc.discharge])
        for support in patient.breathing:
            rows["breathing_support"].append([ident.mrn, support.start, support.end, support.kind])
        for cond in patient.conditions:
            rows["conditions"].append([ident.mrn, cond.code, cond.name, cond.onset])
        for med in patient.medications:
            rows["medications"].append([ident.mrn, med.name, med.start, med.end])
    return rows


def _text(value: Any, date_format: str) -> str:
    if value is None:
        return ""
    if isinstance(value, date):
        return value.strftime(date_format)
    return str(value)


def write_clinical(
    folder: Path,
    patients: list[Patient],
    identities: list[ClinicalIdentity],
    style: ClinicalStyle,
) -> list[Path]:
    """Write a site's clinical files into ``folder``; return the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = table_rows(patients, identities, style)
    written: list[Path] = []
    if style.extension == ".xlsx":
        written.append(_write_workbook(folder / "clinical_export.xlsx", rows, style))
        return written
    delimiter = "\t" if style.extension == ".tsv" else ","
    fmt = style.date_format or "%Y-%m-%d"
    for table in TABLES:
        path = folder / f"{style.file_names[table]}{style.extension}"
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, delimiter=delimiter, lineterminator="\n")
            writer.writerow(style.columns[table])
            writer.writerows([_text(v, fmt) for v in row] for row in rows[table])
        written.append(path)
    return written


def _write_workbook(path: Path, rows: dict[str, list[list[Any]]], style: ClinicalStyle) -> Path:
    from openpyxl import Workbook

    workbook = Workbook()
    workbook.remove(workbook.active)
    for table in TABLES:
        sheet = workbook.create_sheet(style.file_names[table])
        sheet.append(list(style.columns[table]))
        for row in rows[table]:
            sheet.append(row)
            for cell in sheet[sheet.max_row]:
                if isinstance(cell.value, date):
                    cell.number_format = "mm/dd/yyyy"
    # Fixed document properties: openpyxl would otherwise stamp the current time (not reproducible).
    stamp = datetime(2024, 1, 1)
    workbook.properties.created = stamp
    workbook.properties.modified = stamp
    workbook.properties.creator = "radcommons synth"
    workbook.save(path)
    _normalise_zip_times(path)
    return path


def _normalise_zip_times(path: Path) -> None:
    """Rewrite the .xlsx zip with fixed member times and modification stamp so the file is byte-identical across runs."""
    import zipfile

    with zipfile.ZipFile(path) as source:
        members = [(info, source.read(info.filename)) for info in source.infolist()]
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as target:
        for info, data in members:
            if info.filename == "docProps/core.xml":
                # openpyxl stamps the save time into dcterms:modified whatever we set.
                data = re.sub(rb"(<dcterms:modified[^>]*>)[^<]*", rb"\g<1>2024-01-01T00:00:00Z", data)
            fixed = zipfile.ZipInfo(info.filename, date_time=(2024, 1, 1, 0, 0, 0))
            fixed.compress_type = zipfile.ZIP_DEFLATED
            fixed.external_attr = 0o600 << 16
            target.writestr(fixed, data)

