"""The label table of an export: which columns, in which order, and the derived ones.

One row per exported file (image, frame or volume). Columns come from the index (case,
study, series) and the export itself (path, split, windowing). Annotation columns are left
out until annotations exist in the index.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: Case columns (demographics, COVID status), as (label column, instance-rooted index field).
CASE_FIELDS: tuple[tuple[str, str], ...] = (
    ("project_id", "project_id"),
    ("case_submitter_id", "case.submitter_id"),
    ("age_at_index", "case.age_at_index"),
    ("age_at_index_gt89", "case.age_at_index_gt89"),
    ("sex", "case.sex"),
    ("race", "case.race"),
    ("ethnicity", "case.ethnicity"),
    ("covid19_positive", "case.covid19_positive"),
    ("icu_indicator", "case.icu_indicator"),
    ("ventilator_indicator", "case.ventilator_indicator"),
    ("site_id", "case.site_id"),
)
#: Study columns, including COVID test timing and harmonized LOINC.
STUDY_FIELDS: tuple[tuple[str, str], ...] = (
    ("study_uid", "imaging_study.study_uid"),
    ("study_description", "imaging_study.study_description"),
    ("study_modality", "imaging_study.study_modality"),
    ("days_to_study", "imaging_study.days_to_study"),
    ("study_year", "imaging_study.study_year"),
    ("study_year_shifted", "imaging_study.study_year_shifted"),
    ("age_at_imaging", "imaging_study.age_at_imaging"),
    ("days_from_study_to_pos_covid_test", "imaging_study.days_from_study_to_pos_covid_test"),
    ("days_from_study_to_neg_covid_test", "imaging_study.days_from_study_to_neg_covid_test"),
    ("loinc_code", "imaging_study.loinc_code"),
    ("loinc_long_common_name", "imaging_study.loinc_long_common_name"),
)
#: Series columns.
SERIES_FIELDS: tuple[tuple[str, str], ...] = (
    ("series_uid", "series.series_uid"),
    ("modality", "series.modality"),
    ("series_description", "series.series_description"),
    ("body_part_examined", "series.body_part_examined"),
    ("manufacturer", "series.manufacturer"),
    ("manufacturer_model_name", "series.manufacturer_model_name"),
    ("view_position", "series.view_position"),
    ("slice_thickness", "series.slice_thickness"),
    ("convolution_kernel", "series.convolution_kernel"),
    ("kvp", "series.kvp"),
)
#: Instance columns (for dicom and png exports).
INSTANCE_FIELDS: tuple[tuple[str, str], ...] = (
    ("sop_instance_uid", "sop_instance_uid"),
    ("instance_number", "instance_number"),
    ("object_id", "object_id"),
    ("size", "size"),
)
INDEX_FIELDS = CASE_FIELDS + STUDY_FIELDS + SERIES_FIELDS + INSTANCE_FIELDS

#: Columns the export adds, per format.
EXPORT_COLUMNS: dict[str, tuple[str, ...]] = {
    "dicom": ("file", "split"),
    "nifti": ("file", "split", "stack", "shape", "voxel_spacing", "gantry_tilt_degrees", "irregular_spacing",
              "missing_slices", "warnings"),
    "png": ("file", "split", "frame", "bits", "window_source", "window_center", "window_width", "inverted"),
}

#: Age bins of the datasheet (DOMAIN.md section 6 strata).
AGE_BINS: tuple[tuple[int, int, str], ...] = (
    (0, 17, "0-17"), (18, 29, "18-29"), (30, 39, "30-39"), (40, 49, "40-49"), (50, 64, "50-64"),
    (65, 74, "65-74"), (75, 84, "75-84"), (85, 200, "85+"),
)


def age_bin(age: Any, gt89: Any = None) -> str:
    """The datasheet age bin of ``age_at_index`` (90+ is blanked in the index and flagged)."""
    if str(gt89 or "").lower() == "yes":
        return "85+"
    if age is None or age == "":
        return "Not Reported"
    for low, high, name in AGE_BINS:
        if low <= int(age) <= high:
            return name
    return "Not Reported"


def columns(format: str, *, instance_level: bool) -> list[str]:
    """Label-table columns of an export in ``format``."""
    index = [name for name, _ in CASE_FIELDS + STUDY_FIELDS + SERIES_FIELDS]
    if instance_level:
        index += [name for name, _ in INSTANCE_FIELDS]
    return ["file", "split", *index, *[c for c in EXPORT_COLUMNS[format] if c not in ("file", "split")]]


def stratum_value(row: Mapping[str, Any], field: str) -> str:
    """A row's value for stratification (``age_bin`` is derived; missing reads Not Reported)."""
    if field == "age_bin":
        return age_bin(row.get("age_at_index"), row.get("age_at_index_gt89"))
    value = row.get(field)
    return "Not Reported" if value in (None, "") else str(value)
