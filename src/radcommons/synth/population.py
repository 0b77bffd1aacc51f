"""Sites, patients, their imaging studies and clinical timelines, as plain dataclasses.

Everything here is drawn from a :class:`numpy.random.Generator` seeded from
the corpus seed and the entity's position (site index, patient index), so one
patient's draws do not shift when another patient changes. Demographics follow
MIDRC's real case marginals (:mod:`radcommons.synth.reference`); study
descriptions follow MIDRC's real long tail, by frequency.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np

from radcommons.synth import names
from radcommons.synth.reference import demographics, study_descriptions

FIRST_DAY = date(2020, 3, 1)
LAST_DAY = date(2023, 6, 30)


def child_rng(seed: int, *path: int) -> np.random.Generator:
    """A generator for one entity: independent streams from ``SeedSequence([seed, *path])``."""
    return np.random.default_rng(np.random.SeedSequence([seed, *path]))


@dataclass(frozen=True)
class PersonName:
    """A person's name parts; the formats below are how different systems write it."""

    family: str
    given: str
    middle: str = ""
    prefix: str = ""

    def dicom(self) -> str:
        """PN value (PS3.5 §6.2.1): family^given^middle^prefix, trailing empties dropped."""
        return "^".join((self.family, self.given, self.middle, self.prefix)).rstrip("^")

    def comma(self) -> str:
        """``FAMILY, GIVEN`` as RIS and clinical systems print it."""
        return f"{self.family}, {self.given}"

    def natural(self) -> str:
        """``Given Family`` as a person types it."""
        return f"{self.given.title()} {self.family.title()}"

    def token(self) -> str:
        """``FAMILY_GIVEN`` for a folder name."""
        return f"{self.family}_{self.given}".replace(" ", "")


@dataclass(frozen=True)
class SiteProfile:
    """One contributing institution and the habits of its exports."""

    index: int
    folder: str  # e.g. "site_a"
    label: str  # e.g. "A"
    institution: str
    city: str
    state: str
    zip3: str
    layout_style: int  # 0, 1, 2: see radcommons.synth.layout
    clinical_style: int  # 0 CSV, 1 TSV, 2 XLSX: see radcommons.synth.clinical
    mrn_style: int
    monochrome1: bool  # its CR readers write MONOCHROME1
    burned_in_flag: bool  # its US/SC writers set BurnedInAnnotation YES (else leave it absent)


@dataclass(frozen=True)
class Study:
    """One imaging study as planned (series and instances are made when written)."""

    index: int
    modality: str  # CR, DX, CT or US
    day: date
    hour: int
    minute: int
    second: int
    description: str
    covid_active: bool  # the lungs show COVID-19 opacities on this day
    portable: bool
    views: tuple[str, ...]  # CR/DX: "PA", "AP", "LL"; CT/US: ()
    with_dose_report: bool  # CT: a secondary-capture dose screen follows the axial series


@dataclass(frozen=True)
class CovidTest:
    day: date
    method: str  # "RT-PCR" | "Rapid antigen test"
    result: str  # "Positive" | "Negative" | "Indeterminate"


@dataclass(frozen=True)
class Encounter:
    kind: str  # "Inpatient" | "Emergency" | "Outpatient"
    admit: date
    discharge: date
    icu_admit: date | None = None
    icu_discharge: date | None = None


@dataclass(frozen=True)
class BreathingSupport:
    start: date
    end: date
    kind: str


@dataclass(frozen=True)
class Condition:
    code: str  # ICD-10-CM
    name: str
    onset: date


@dataclass(frozen=True)
class Medication:
    name: str
    start: date
    end: date


@dataclass(frozen=True)
class Patient:
    """A synthetic person at one site, with everything a site system knows about them."""

    site: int
    index: int
    mrn: str
    name: PersonName
    birth_date: date
    age_at_index: int
    sex: str  # MIDRC values: Female | Male | Not Reported
    race: str
    ethnicity: str
    covid19_positive: bool
    zip5: str
    street: str
    phone: str
    height_m: float
    weight_kg: float
    studies: tuple[Study, ...]
    tests: tuple[CovidTest, ...] = ()
    encounters: tuple[Encounter, ...] = ()
    breathing: tuple[BreathingSupport, ...] = ()
    conditions: tuple[Condition, ...] = ()
    medications: tuple[Medication, ...] = ()

    @property
    def dicom_sex(self) -> str:
        """(0010,0040) Patient's Sex: M, F or O (PS3.3 C.7.1.1)."""
        return {"Female": "F", "Male": "M"}.get(self.sex, "O")

    def age_on(self, day: date) -> int:
        years = day.year - self.birth_date.year
        if (day.month, day.day) < (self.birth_date.month, self.birth_date.day):
            years -= 1
        return years


@dataclass
class Population:
    sites: list[SiteProfile] = field(default_factory=list)
    patients: list[list[Patient]] = field(default_factory=list)  # per site


def site_profile(index: int) -> SiteProfile:
    """The export habits of site ``index``: styles cycle so every few sites differ from each other."""
    institution, city, state = names.INSTITUTIONS[index % len(names.INSTITUTIONS)]
    letter = string.ascii_lowercase[index % 26] + ("" if index < 26 else str(index // 26))
    zip3 = "941" if state == "CA" else "190"
    return SiteProfile(
        index=index,
        folder=f"site_{letter}",
        label=letter.upper(),
        institution=institution,
        city=city,
        state=state,
        zip3=zip3,
        layout_style=index % 3,
        clinical_style=index % 3,
        mrn_style=index % 3,
        monochrome1=index % 2 == 0,
        burned_in_flag=index % 2 == 1,
    )


def make_mrn(style: int, rng: np.random.Generator) -> str:
    """A site-local MRN: 8 digits with leading zeros, ``E`` + 7 digits, or 7 digits."""
    digits = int(rng.integers(0, 10_000_000))
    if style == 0:
        return f"{int(rng.integers(0, 100_000_000)):08d}"
    if style == 1:
        return f"E{digits:07d}"
    return f"{digits % 9_000_000 + 1_000_000:07d}"


def _random_day(rng: np.random.Generator, start: date, end: date) -> date:
    return start + timedelta(days=int(rng.integers(0, (end - start).days + 1)))


_MODALITY_WEIGHTS = {"CR": 0.42, "DX": 0.40, "CT": 0.14, "US": 0.04}
_CONDITIONS = (
    ("I10", "Essential (primary) hypertension"),
    ("E11.9", "Type 2 diabetes mellitus without complications"),
    ("J44.9", "Chronic obstructive pulmonary disease, unspecified"),
    ("J45.909", "Unspecified asthma, uncomplicated"),
    ("E66.9", "Obesity, unspecified"),
    ("N18.3", "Chronic kidney disease, stage 3"),
    ("I50.9", "Heart failure, unspecified"),
)
_COVID_MEDICATIONS = ("Dexamethasone", "Remdesivir", "Enoxaparin", "Tocilizumab", "Baricitinib")
_OTHER_MEDICATIONS = ("Azithromycin", "Ceftriaxone", "Albuterol", "Lisinopril", "Metformin", "Atorvastatin")


def _views(modality: str, description: str, rng: np.random.Generator) -> tuple[str, tuple[str, ...], bool]:
    text = description.upper()
    portable = "PORT" in text or "AP" in text.split() or "BEDSIDE" in text
    if modality not in ("CR", "DX"):
        return description, (), portable
    if "2" in text or "LAT" in text or "TWO" in text:
        return description, ("PA", "LL"), False
    if portable:
        return description, ("AP",), True
    return description, (("PA",) if rng.random() < 0.6 else ("AP",)), portable


def plan_study(
    index: int, modality: str, day: date, covid_active: bool, rng: np.random.Generator
) -> Study:
    """One study: a description drawn by frequency from MIDRC's real long tail for the modality."""
    description = study_descriptions(modality).sample(rng)
    description, views, portable = _views(modality, description, rng)
    return Study(
        index=index,
        modality=modality,
        day=day,
        hour=int(rng.integers(0, 24)),
        minute=int(rng.integers(0, 60)),
        second=int(rng.integers(0, 60)),
        description=description,
        covid_active=covid_active,
        portable=portable,
        views=views,
        with_dose_report=modality == "CT" and rng.random() < 0.7,
    )


def make_patient(seed: int, site: SiteProfile, index: int) -> Patient:
    """One patient with demographics, studies and a clinical timeline consistent with them."""
    rng = child_rng(seed, 1, site.index, index)
    marginals = demographics()
    sex = marginals["sex"].sample(rng)
    age_text = marginals["age"].sample(rng)
    age = int(rng.integers(90, 100)) if age_text == "90+" else int(age_text)
    race = marginals["race"].sample(rng)
    ethnicity = marginals["ethnicity"].sample(rng)
    positive = marginals["covid19_positive"].sample(rng) == "Yes"
    zip3 = site.zip3 if rng.random() < 0.85 else marginals["zip3"].sample(rng)

    given_pool = names.FEMALE_GIVEN if sex == "Female" else names.MALE_GIVEN
    if sex == "Not Reported":
        given_pool = names.FEMALE_GIVEN + names.MALE_GIVEN
    name = PersonName(
        family=names.FAMILY_NAMES[int(rng.integers(len(names.FAMILY_NAMES)))],
        given=given_pool[int(rng.integers(len(given_pool)))],
        middle=names.MIDDLE_INITIALS[int(rng.integers(len(names.MIDDLE_INITIALS)))] if rng.random() < 0.5 else "",
    )

    # Timeline: an index day, then 1-5 studies. COVID-positive patients are imaged
    # around their infection (daily portables while admitted), others months apart.
    index_day = _random_day(rng, FIRST_DAY, LAST_DAY - timedelta(days=120))
    n_studies = int(rng.choice([1, 2, 3, 4, 5], p=[0.25, 0.3, 0.25, 0.12, 0.08]))
    offsets = [0]
    for _ in range(n_studies - 1):
        step = int(rng.integers(1, 4)) if positive and rng.random() < 0.6 else int(rng.integers(20, 400))
        offsets.append(offsets[-1] + step)
    days = [index_day + timedelta(days=o) for o in offsets]
    # Exports end at the collection cut-off; later follow-ups are simply not there yet.
    days = [d for d in days if d <= LAST_DAY + timedelta(days=540)]
    modalities = list(_MODALITY_WEIGHTS)
    probs = np.array(list(_MODALITY_WEIGHTS.values()))
    studies = []
    infection = index_day - timedelta(days=int(rng.integers(0, 4)))
    for i, day in enumerate(days):
        modality = modalities[int(rng.choice(len(modalities), p=probs / probs.sum()))]
        active = positive and 0 <= (day - infection).days <= 28
        studies.append(plan_study(i, modality, day, active, rng))

    birth_date = index_day - timedelta(days=age * 365 + int(rng.integers(0, 365)))
    height = float(np.clip(rng.normal(1.63 if sex == "Female" else 1.76, 0.08), 1.2, 2.1)) if age >= 16 else 1.0 + age * 0.04
    weight = float(np.clip(rng.normal(76 if sex == "Female" else 88, 18), 30, 200)) if age >= 16 else 10 + age * 3.0

    tests: list[CovidTest] = []
    encounters: list[Encounter] = []
    breathing: list[BreathingSupport] = []
    medications: list[Medication] = []
    conditions: list[Condition] = []
    if positive:
        tests.append(CovidTest(infection + timedelta(days=int(rng.integers(0, 3))), "RT-PCR", "Positive"))
        if rng.random() < 0.3:
            tests.append(CovidTest(infection - timedelta(days=int(rng.integers(1, 3))), "Rapid antigen test",
                                   "Positive" if rng.random() < 0.7 else "Indeterminate"))
        if rng.random() < 0.4:
            tests.append(CovidTest(infection + timedelta(days=int(rng.integers(10, 20))), "RT-PCR", "Negative"))
        conditions.append(Condition("U07.1", "COVID-19", infection))
        if rng.random() < 0.65:
            admit = infection + timedelta(days=int(rng.integers(0, 3)))
            discharge = admit + timedelta(days=int(rng.integers(3, 21)))
            icu = rng.random() < 0.35
            icu_admit = admit + timedelta(days=int(rng.integers(0, 3))) if icu else None
            icu_discharge = min(discharge, icu_admit + timedelta(days=int(rng.integers(2, 10)))) if icu_admit else None
            encounters.append(Encounter("Inpatient", admit, discharge, icu_admit, icu_discharge))
            breathing.append(BreathingSupport(admit, admit + timedelta(days=int(rng.integers(1, 6))), "Supplemental Oxygen"))
            if icu_admit and icu_discharge:
                kind = ("Mechanical Ventilation", "High Flow Nasal Cannula", "Non-invasive Ventilation")[int(rng.integers(3))]
                breathing.append(BreathingSupport(icu_admit, icu_discharge, kind))
            for med in _COVID_MEDICATIONS[: int(rng.integers(1, 4))]:
                medications.append(Medication(med, admit, admit + timedelta(days=int(rng.integers(3, 10)))))
        else:
            encounters.append(Encounter("Emergency", infection, infection))
    else:
        for study in studies:
            if rng.random() < 0.5:
                tests.append(CovidTest(study.day - timedelta(days=int(rng.integers(0, 3))),
                                       ("RT-PCR", "Rapid antigen test")[int(rng.integers(2))], "Negative"))
        encounters.append(Encounter("Emergency" if rng.random() < 0.5 else "Outpatient", days[0], days[0]))
        if rng.random() < 0.3:
            medications.append(Medication(_OTHER_MEDICATIONS[int(rng.integers(len(_OTHER_MEDICATIONS)))],
                                          days[0], days[0] + timedelta(days=int(rng.integers(1, 30)))))
    for code, label in _CONDITIONS:
        if rng.random() < 0.15 + 0.004 * age:
            conditions.append(Condition(code, label, birth_date + timedelta(days=int(365 * min(age, 40 + rng.integers(0, 30))))))

    digits = rng.integers(0, 10, size=7)
    area = "415" if site.state == "CA" else "215"
    return Patient(
        site=site.index,
        index=index,
        mrn=make_mrn(site.mrn_style, rng),
        name=name,
        birth_date=birth_date,
        age_at_index=age,
        sex=sex,
        race=race,
        ethnicity=ethnicity,
        covid19_positive=positive,
        zip5=f"{zip3}{int(rng.integers(0, 100)):02d}",
        street=f"{int(rng.integers(1, 9999))} {names.STREETS[int(rng.integers(len(names.STREETS)))]}",
        phone=f"{area}-555-{''.join(str(d) for d in digits[:4])}",
        height_m=round(height, 2),
        weight_kg=round(weight, 1),
        studies=tuple(studies),
        tests=tuple(sorted(tests, key=lambda t: t.day)),
        encounters=tuple(encounters),
        breathing=tuple(breathing),
        conditions=tuple(conditions),
        medications=tuple(medications),
    )


def _ensure(patients: list[Patient], modality: str, which: int, seed: int, site: int) -> list[Patient]:
    """Make sure a site has at least one study of ``modality`` (small corpora must cover every writer)."""
    if any(s.modality == modality for p in patients for s in p.studies) or not patients:
        return patients
    rng = child_rng(seed, 2, site, which)
    target = patients[which % len(patients)]
    last = target.studies[-1]
    new = plan_study(len(target.studies), modality, last.day + timedelta(days=1), last.covid_active, rng)
    if modality == "CT":
        new = Study(**{**new.__dict__, "with_dose_report": True})
    patients[which % len(patients)] = Patient(**{**target.__dict__, "studies": target.studies + (new,)})
    return patients


def build_population(seed: int, n_sites: int, n_patients: int) -> Population:
    """Sites and patients for a corpus; MRN collisions across sites are planted on purpose.

    Each site has at least one CT (with dose report), one US and one CR/DX study,
    and at least one COVID-positive and one negative patient when it has two or more.
    """
    population = Population()
    for s in range(n_sites):
        site = site_profile(s)
        patients = [make_patient(seed, site, i) for i in range(n_patients)]
        if n_patients >= 2:
            flags = [p.covid19_positive for p in patients]
            if all(flags) or not any(flags):
                # Re-draw a patient with the flipped status by trying further indexes.
                want = not flags[0]
                for extra in range(n_patients, n_patients + 200):
                    candidate = make_patient(seed, site, extra)
                    if candidate.covid19_positive == want:
                        patients[-1] = Patient(**{**candidate.__dict__, "index": n_patients - 1})
                        break
        patients = _ensure(patients, "CT", 0, seed, s)
        patients = _ensure(patients, "US", 1, seed, s)
        patients = _ensure(patients, "CR", 2, seed, s)
        patients = _ensure(patients, "DX", 3, seed, s)
        population.sites.append(site)
        population.patients.append(patients)
    # Real collision: the same MRN string at two sites, for different people.
    if n_sites >= 2 and n_patients >= 1:
        for s in range(1, n_sites, 2):
            donor = population.patients[s - 1][0]
            target = population.patients[s][-1]
            population.patients[s][-1] = Patient(**{**target.__dict__, "mrn": donor.mrn})
    return population
