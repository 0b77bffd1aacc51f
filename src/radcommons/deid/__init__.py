"""De-identification at the site: DICOM PS3.15 Annex E, table-driven.

Public API:

* :func:`deidentify_dataset` - one pydicom Dataset in memory (DIMSE gateway);
* :func:`deidentify_file` - one file into a destination tree;
* :func:`deidentify_tree` - a whole folder, in parallel, with a report and registry;
* :func:`check_deidentified` - the commons' server-side re-check of what arrives;
* :func:`patient_pseudonym` - for the contribution pathway, which must name the patient
  the same way; :func:`date_offset_days` - the derived date offset of a patient not yet in
  the registry (a recorded patient keeps the registry's: :mod:`radcommons.deid.dates`);
* :func:`load_profile`, :class:`DeidContext`, :func:`read_key_file`,
  :func:`generate_key_file`, :class:`Registry`.

Domain code: imports nothing from ``radcommons.store``, ``pipelines`` or ``cli``.
"""

from __future__ import annotations

from radcommons.deid.check import Finding, check_deidentified
from radcommons.deid.dates import date_offset_days
from radcommons.deid.engine import (
    DEIDENTIFIED,
    REJECTED,
    WITHHELD,
    DeidContext,
    DeidOutcome,
    PatientRecord,
    StudyRecord,
    deidentify_dataset,
)
from radcommons.deid.files import FileOutcome, deidentify_file
from radcommons.deid.keys import generate_key_file, key_fingerprint, read_key_file
from radcommons.deid.profile import Profile, load_profile, profile_names
from radcommons.deid.pseudonyms import patient_pseudonym
from radcommons.deid.registry import Registry, make_state_dir
from radcommons.deid.report import RunReport, report_stamp
from radcommons.deid.tree import deidentify_tree, default_state_dir
from radcommons.deid.uids import new_uid

__all__ = [
    "DEIDENTIFIED",
    "REJECTED",
    "WITHHELD",
    "DeidContext",
    "DeidOutcome",
    "FileOutcome",
    "Finding",
    "PatientRecord",
    "Profile",
    "Registry",
    "RunReport",
    "StudyRecord",
    "check_deidentified",
    "date_offset_days",
    "default_state_dir",
    "deidentify_dataset",
    "deidentify_file",
    "deidentify_tree",
    "generate_key_file",
    "key_fingerprint",
    "load_profile",
    "make_state_dir",
    "new_uid",
    "patient_pseudonym",
    "profile_names",
    "read_key_file",
    "report_stamp",
]
