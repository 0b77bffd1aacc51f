"""The identifier values of sites, patients and studies, built once and reused everywhere.

Each value is made once (and marked once in ``--phi`` mode) and then appears in
every place a real export repeats it: header, sequences, free text, private
tags, paths, pixels. Lengths respect the VR of the attribute that holds them
(PS3.5 §6.2: SH 16, LO 64, PN 64 per component group).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from radcommons.synth import names
from radcommons.synth.phi import MarkerRegistry
from radcommons.synth.population import Patient, PersonName, SiteProfile, Study
from radcommons.synth.vendors import Device


@dataclass(frozen=True)
class PatientIds:
    """A patient's identifying values at their site."""

    family: str  # family name token, carries the name marker
    given: str
    middle: str
    mrn: str
    enterprise_id: str
    address: str
    phone: str

    def pn(self) -> str:
        return "^".join((self.family, self.given, self.middle)).rstrip("^")

    def comma(self) -> str:
        return f"{self.family}, {self.given}"


@dataclass(frozen=True)
class StudyIds:
    accession: str
    study_id: str
    requested_procedure_id: str
    scheduled_step_id: str
    referring: str  # PN
    reading: str  # PN


@dataclass(frozen=True)
class SiteDevice:
    device: Device
    station: str
    serial: str


@dataclass(frozen=True)
class SiteIds:
    institution: str
    address: str
    department: str
    operators: tuple[str, ...]  # PN
    radiologists: tuple[str, ...]  # PN
    referrers: tuple[str, ...]  # PN


def _person(rng: np.random.Generator) -> PersonName:
    pool = names.FEMALE_GIVEN + names.MALE_GIVEN
    return PersonName(
        names.FAMILY_NAMES[int(rng.integers(len(names.FAMILY_NAMES)))],
        pool[int(rng.integers(len(pool)))],
    )


def site_ids(site: SiteProfile, registry: MarkerRegistry, rng: np.random.Generator) -> SiteIds:
    """Institution, address and the staff whose names appear in the site's images."""
    tag = site.folder

    def staff(kind: str, count: int, prefix: str = "") -> tuple[str, ...]:
        people = []
        for _ in range(count):
            person = _person(rng)
            family = registry.mark(kind, person.family, site=tag, max_len=40)
            people.append(f"{family}^{person.given}^^{prefix}".rstrip("^"))
        return tuple(people)

    number = int(rng.integers(100, 9999))
    return SiteIds(
        institution=registry.mark("institution_name", site.institution, site=tag),
        address=registry.mark(
            "institution_address", f"{number} Hospital Way, {site.city}, {site.state} {site.zip3}{int(rng.integers(10, 99))}",
            site=tag,
        ),
        department=names.DEPARTMENTS[site.index % len(names.DEPARTMENTS)],
        operators=staff("operator_name", 3),
        radiologists=staff("physician_name", 2, "DR"),
        referrers=staff("physician_name", 4, "MD"),
    )


def site_device(site: SiteProfile, device: Device, number: int, registry: MarkerRegistry,
                rng: np.random.Generator) -> SiteDevice:
    """A scanner installed at the site: station name (SH 16) and serial number (LO 64)."""
    station = f"{site.label}{device.family[:4]}{number:02d}"
    return SiteDevice(
        device,
        registry.mark("station_name", station, site=site.folder, max_len=16),
        registry.mark("device_serial_number", f"{int(rng.integers(10**5, 10**8))}", site=site.folder),
    )


def patient_ids(site: SiteProfile, patient: Patient, registry: MarkerRegistry,
                mrn_cache: dict[str, str]) -> PatientIds:
    """The patient's identifiers; the same plain MRN string always gets the same marked value."""
    tag = site.folder
    family = registry.mark("patient_name", patient.name.family.replace(" ", ""), site=tag, max_len=40)
    if patient.mrn not in mrn_cache:
        mrn_cache[patient.mrn] = registry.mark("mrn", patient.mrn, site=tag)
    enterprise = registry.mark("other_patient_id", f"EMPI{patient.site:02d}{patient.index:05d}{patient.mrn[-3:]}", site=tag)
    address = registry.mark("patient_address", f"{patient.street}, {site.city.upper()}, {site.state} {patient.zip5}", site=tag)
    phone = registry.mark("patient_phone", patient.phone, site=tag, max_len=16)
    return PatientIds(family, patient.name.given, patient.name.middle, mrn_cache[patient.mrn], enterprise, address, phone)


def study_ids(site: SiteProfile, sids: SiteIds, study: Study, serial_number: int,
              registry: MarkerRegistry, rng: np.random.Generator) -> StudyIds:
    """Accession and order numbers (SH 16), and the physicians of one study."""
    tag = site.folder
    prefix = ("ACC", "A", "RAD")[site.index % 3]
    accession = registry.mark("accession_number", f"{prefix}{int(rng.integers(10**6, 10**7))}", site=tag, max_len=16)
    return StudyIds(
        accession=accession,
        study_id=registry.mark("study_id", f"{serial_number + 1000}", site=tag, max_len=16),
        requested_procedure_id=registry.mark("requested_procedure_id", f"RP{int(rng.integers(10**5, 10**6))}", site=tag, max_len=16),
        scheduled_step_id=registry.mark("scheduled_step_id", f"SPS{int(rng.integers(10**5, 10**6))}", site=tag, max_len=16),
        referring=sids.referrers[int(rng.integers(len(sids.referrers)))],
        reading=sids.radiologists[int(rng.integers(len(sids.radiologists)))],
    )
