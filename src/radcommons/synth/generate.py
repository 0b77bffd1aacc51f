"""Orchestration: a whole multi-site synthetic export written to disk.

:func:`generate` draws the population, then for each site writes its DICOM
studies (:mod:`radcommons.synth.cr`, :mod:`~radcommons.synth.ct`,
:mod:`~radcommons.synth.us`) where :mod:`radcommons.synth.layout` says, its
clinical files (:mod:`radcommons.synth.clinical`) and, on request, the defects
of real exports (:mod:`radcommons.synth.defects`). Output under ``OUT``::

    OUT/synth_manifest.json       counts per site, seed and options
    OUT/phi_manifest.json         with --phi: every planted identifier (see radcommons.synth.phi)
    OUT/defects_manifest.json     with --defects: every defect and its path
    OUT/site_a/<study folders>    DICOM files, layout style by site
    OUT/site_a/clinical/          clinical files, format by site

Everything is a function of (sites, patients, seed, small, defects, phi): the
same arguments give byte-identical files.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from radcommons.dicom.uid import random_uid
from radcommons.durable import write_atomic
from radcommons.errors import UserError
from radcommons.synth import clinical, cr, ct, layout, phantom, us
from radcommons.synth.defects import write_defects
from radcommons.synth.dicom_writers import SeriesContext, StudyContext, write_part10
from radcommons.synth.identifiers import (
    PatientIds,
    SiteDevice,
    SiteIds,
    patient_ids,
    site_device,
    site_ids,
    study_ids,
)
from radcommons.synth.phi import (
    MARKER_REGEX,
    PHI_MANIFEST_FORMAT,
    MarkerRegistry,
    find_markers,
    retained_values,
    scan_dataset,
)
from radcommons.synth.population import Patient, SiteProfile, Study, build_population, child_rng
from radcommons.synth.vendors import DEVICES, private_blocks

SYNTH_MANIFEST_FORMAT = "radcommons.synth.manifest/1"
MAX_SITES = 26
MAX_PATIENTS = 10_000

_HISTORY = (
    "SOB, fever x3 days. r/o COVID PNA",
    "Cough, hypoxia. Eval for pneumonia",
    "Chest pain, tachycardia",
    "Follow-up of pulmonary opacities",
    "Line placement check",
    "Dyspnea on exertion",
)
_REASONS = ("r/o pneumonia", "COVID-19 suspected", "hypoxia", "follow-up", "pre-op")


@dataclass
class SiteSummary:
    folder: str
    institution: str
    patients: int = 0
    studies: int = 0
    series: int = 0
    instances: int = 0
    modalities: dict[str, int] = field(default_factory=dict)
    layout_style: int = 0
    clinical_format: str = ""
    clinical_files: list[str] = field(default_factory=list)


@dataclass
class Manifest:
    """What :func:`generate` wrote (also written as ``synth_manifest.json``)."""

    out: str
    seed: int
    small: bool
    phi: bool
    defects: bool
    sites: list[SiteSummary]
    files: list[str] = field(default_factory=list)  # every DICOM file written, relative POSIX paths

    @property
    def patients(self) -> int:
        return sum(s.patients for s in self.sites)

    @property
    def studies(self) -> int:
        return sum(s.studies for s in self.sites)

    @property
    def series(self) -> int:
        return sum(s.series for s in self.sites)

    @property
    def instances(self) -> int:
        return sum(s.instances for s in self.sites)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": SYNTH_MANIFEST_FORMAT,
            "seed": self.seed,
            "small": self.small,
            "phi": self.phi,
            "defects": self.defects,
            "totals": {
                "sites": len(self.sites),
                "patients": self.patients,
                "studies": self.studies,
                "series": self.series,
                "instances": self.instances,
            },
            "sites": [asdict(s) for s in self.sites],
        }


_MANIFESTS = ("synth_manifest.json", "phi_manifest.json", "defects_manifest.json")


def earlier_output(out: Path) -> list[Path]:
    """The entries of ``out`` that an earlier ``radcommons synth`` wrote (its manifests and the
    site folders its manifest names), or a :class:`UserError` when ``out`` holds anything else:
    ``--force`` replaces a synth output, never files of the user's that were put beside it."""
    manifest_path = out / "synth_manifest.json"
    hint = "--force only replaces an earlier `radcommons synth` output; choose another folder"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{out} is not empty and holds no synth_manifest.json", hint) from None
    except (OSError, ValueError) as error:
        raise UserError(f"{manifest_path} cannot be read ({error})", hint) from None
    if not isinstance(manifest, dict) or manifest.get("format") != SYNTH_MANIFEST_FORMAT:
        raise UserError(f"{manifest_path} is not the manifest of a `radcommons synth` output", hint)
    sites = {str(site.get("folder")) for site in manifest.get("sites", []) if isinstance(site, dict)}
    known = set(_MANIFESTS) | {name for name in sites if name and "/" not in name and name not in (".", "..")}
    others = sorted(child.name for child in out.iterdir() if child.name not in known)
    if others:
        raise UserError(f"{out} holds {len(others)} entr{'y' if len(others) == 1 else 'ies'} that synth did not "
                        f"write: {', '.join(others[:5])}{' ...' if len(others) > 5 else ''}",
                        "move them away first, or choose another folder")
    return sorted(out / name for name in known if (out / name).exists() or (out / name).is_symlink())


def check_arguments(out: Path, sites: int, patients: int, force: bool) -> list[Path]:
    """Raise :class:`UserError` for arguments that cannot give a corpus; return what ``--force``
    will remove (:func:`earlier_output`)."""
    if not 1 <= sites <= MAX_SITES:
        raise UserError(f"--sites must be between 1 and {MAX_SITES}, got {sites}")
    if not 1 <= patients <= MAX_PATIENTS:
        raise UserError(f"--patients must be between 1 and {MAX_PATIENTS}, got {patients}")
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} exists and is not a folder", "give a new or empty folder for the output")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise UserError(
                f"{out} is not empty",
                "give a new or empty folder, or --force to replace an earlier synth output there",
            )
        return earlier_output(out)
    return []


def _clear(entries: list[Path]) -> None:
    for child in entries:
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def _dicom_date(day: Any) -> str:
    return day.strftime("%Y%m%d")


def _time(hour: int, minute: int, second: int) -> str:
    return f"{hour:02d}{minute:02d}{second:02d}"


class _SiteWriter:
    """Writes one site's studies; holds the site's devices and counters."""

    def __init__(self, out: Path, seed: int, site: SiteProfile, registry: MarkerRegistry, small: bool,
                 phi_files: dict[str, Any] | None, summary: SiteSummary, manifest: Manifest) -> None:
        self.out = out
        self.seed = seed
        self.site = site
        self.registry = registry
        self.small = small
        self.phi_files = phi_files
        self.summary = summary
        self.manifest = manifest
        self.rng = child_rng(seed, 10, site.index)
        self.ids: SiteIds = site_ids(site, registry, self.rng)
        # One or two installed devices per modality; stations and serials are made once.
        self.devices: dict[str, list[SiteDevice]] = {}
        for modality, choices in DEVICES.items():
            count = 1 + int(self.rng.integers(0, 2))
            picks = self.rng.choice(len(choices), size=count, replace=False)
            self.devices[modality] = [site_device(site, choices[int(i)], n + 1, registry, self.rng) for n, i in enumerate(picks)]
        self.study_counter = 0

    # -- one file ---------------------------------------------------------
    def _write(self, ds: Dataset, rel: PurePosixPath, clean: tuple[str, ...], pixel_text: tuple[str, ...] = ()) -> None:
        path = self.out / self.site.folder / rel
        write_part10(ds, path)
        relative = str(PurePosixPath(self.site.folder) / rel)
        self.manifest.files.append(relative)
        self.summary.instances += 1
        if self.phi_files is None:
            return
        scan = scan_dataset(ds, self.registry)
        planted = list(scan.planted)
        for marker in find_markers(relative):
            planted.append({"marker": marker, "kind": self.registry.kind_of(marker), "where": "filename"})
        for line in pixel_text:
            for marker in find_markers(line):
                planted.append({"marker": marker, "kind": self.registry.kind_of(marker), "where": "pixels", "text": line})
        self.phi_files[relative] = {
            "sop_class_uid": str(ds.SOPClassUID),
            "planted": planted,
            "uids": scan.uids,
            "dates": scan.dates,
            "times": scan.times,
            "retain": retained_values(ds, clean),
        }

    # -- one study --------------------------------------------------------
    def study(self, patient: Patient, pids: PatientIds, study: Study, prior_uid: str) -> str:
        site = self.site
        rng = child_rng(self.seed, 3, site.index, patient.index, study.index)
        uid_rng = child_rng(self.seed, 4, site.index, patient.index, study.index)
        sids = study_ids(site, self.ids, study, self.study_counter, self.registry, rng)
        self.study_counter += 1
        installed = self.devices[study.modality]
        sdev = installed[int(rng.integers(len(installed)))]
        device = sdev.device
        study_uid = random_uid(uid_rng)
        date = _dicom_date(study.day)
        time = _time(study.hour, study.minute, study.second)

        # Free text as people type it; now and then an identifier in a description.
        description = study.description
        roll = rng.random()
        if roll < 0.06:
            description = f"{description[: 64 - len(pids.family) - 1]} {pids.family}"
        elif roll < 0.10:
            description = f"{description[: 64 - len(pids.mrn) - 1]} {pids.mrn}"
        history = _HISTORY[int(rng.integers(len(_HISTORY)))]
        referring_family = sids.referring.split("^")[0]
        additional_history = f"{history}. Results to Dr. {referring_family} ph {pids.phone}"
        requested = study.description
        if rng.random() < 0.4:
            requested = f"{study.description} for {pids.given.title()} {pids.family}"
        comments = f"Contact {pids.phone}. EMPI {pids.enterprise_id}" if rng.random() < 0.5 else ""
        opacities = phantom.covid_opacities(rng) if study.covid_active else ()
        device_patient_text = f"{pids.pn()} {pids.mrn}"

        ctx = StudyContext(
            patient_name=pids.pn(),
            patient_id=pids.mrn,
            issuer_of_patient_id=f"{site.label}HOSP",
            other_patient_id=pids.enterprise_id,
            birth_date=_dicom_date(patient.birth_date),
            sex=patient.dicom_sex,
            age=f"{min(patient.age_on(study.day), 999):03d}Y",
            size_m=f"{patient.height_m:.2f}",
            weight_kg=f"{patient.weight_kg:.1f}",
            address=pids.address,
            phone=pids.phone,
            patient_comments=comments,
            additional_history=additional_history[:10240],
            study_uid=study_uid,
            study_date=date,
            study_time=time,
            study_id=sids.study_id,
            accession=sids.accession,
            referring_physician=sids.referring,
            reading_physician=sids.reading,
            description=description,
            clean_description=study.description,
            requested_procedure_id=sids.requested_procedure_id,
            requested_procedure_description=requested[:64],
            scheduled_step_id=sids.scheduled_step_id,
            reason_for_request=_REASONS[int(rng.integers(len(_REASONS)))],
            prior_study_uid=prior_uid,
            institution=self.ids.institution,
            institution_address=self.ids.address,
            department=self.ids.department,
            station=sdev.station,
            serial=sdev.serial,
            operator=self.ids.operators[int(rng.integers(len(self.ids.operators)))],
            performing_physician=sids.reading,
            device=device,
            private_blocks=private_blocks(
                device, patient_text=device_patient_text, station=sdev.station, serial=sdev.serial,
                operator=self.ids.operators[0],
            ),
            implicit_vr=site.layout_style == 2,
            character_set="ISO_IR 100" if site.index % 2 else "",
        )
        folder = layout.study_folder(
            site.layout_style, patient_index=patient.index, family=pids.family, given=pids.given,
            mrn=pids.mrn, study_index=study.index, study_date=date, description=description,
            accession=sids.accession,
        )
        self.summary.studies += 1
        self.summary.modalities[study.modality] = self.summary.modalities.get(study.modality, 0) + 1
        writer = {"CR": self._radiographs, "DX": self._radiographs, "CT": self._ct, "US": self._us}[study.modality]
        writer(patient, pids, study, ctx, folder, rng, uid_rng, opacities)
        return study_uid

    def _series(self, ctx: StudyContext, number: int, modality: str, description: str, minutes: int,
                uid_rng: np.random.Generator, rng: np.random.Generator, pids: PatientIds,
                study: Study, comments: str = "") -> SeriesContext:
        typed = description
        if rng.random() < 0.05:
            typed = f"{description} {pids.family}"[:64]
        start = datetime(study.day.year, study.day.month, study.day.day, study.hour, study.minute, study.second)
        moment = start + timedelta(minutes=minutes)
        return SeriesContext(
            uid=random_uid(uid_rng),
            number=number,
            modality=modality,
            description=typed,
            clean_description=description,
            date=moment.strftime("%Y%m%d"),
            time=moment.strftime("%H%M%S"),
            body_part="CHEST",
            image_comments=comments,
        )

    def _path(self, folder: PurePosixPath, series: SeriesContext, series_index: int, in_study: int,
              in_series: int, sop_uid: str) -> PurePosixPath:
        return folder / layout.instance_name(
            self.site.layout_style, series_number=series.number, series_description=series.description,
            series_index=series_index, instance_in_study=in_study, instance_in_series=in_series,
            sop_instance_uid=sop_uid,
        )

    def _radiographs(self, patient: Patient, pids: PatientIds, study: Study, ctx: StudyContext,
                     folder: PurePosixPath, rng: np.random.Generator, uid_rng: np.random.Generator,
                     opacities: tuple[phantom.Opacity, ...]) -> None:
        # CR readers of this site write MONOCHROME1; DX detectors mostly MONOCHROME2, some MONOCHROME1.
        mono1 = self.site.monochrome1 if study.modality == "CR" else rng.random() < 0.2
        labels = {"PA": "CHEST PA", "AP": "CHEST AP PORTABLE" if study.portable else "CHEST AP", "LL": "CHEST LAT"}
        for n, view in enumerate(study.views, start=1):
            comment = ""
            if rng.random() < 0.3:
                comment = f"Pt {pids.comma()} MRN {pids.mrn} {'portable' if study.portable else 'upright'}"
            series = self._series(ctx, n, study.modality, labels[view], 2 * n, uid_rng, rng, pids, study, comment)
            sop_uid = random_uid(uid_rng)
            ds = cr.radiograph(ctx, series, view, sop_uid, 1, monochrome1=mono1, small=self.small,
                               opacities=opacities, rng=rng)
            self._write(ds, self._path(folder, series, n, n, 1, sop_uid), (ctx.clean_description, series.clean_description))
            self.summary.series += 1

    def _ct(self, patient: Patient, pids: PatientIds, study: Study, ctx: StudyContext,
            folder: PurePosixPath, rng: np.random.Generator, uid_rng: np.random.Generator,
            opacities: tuple[phantom.Opacity, ...]) -> None:
        geo = ct.geometry(self.small, random_uid(uid_rng), rng)
        hu = ct.hu_volume(geo, opacities, rng)
        soft, lung = ctx.device.kernels
        plans = [(2, soft, f"Axial {geo.thickness:g}mm {soft}", hu)]
        if rng.random() < 0.4 or self.small:
            sharp = hu + rng.normal(0.0, 25.0, size=hu.shape).astype(np.float32)
            plans.append((3, lung, f"Lung {geo.thickness:g}mm {lung}", sharp))
        in_study = 0
        for series_index, (number, kernel, label, volume) in enumerate(plans, start=1):
            stored = ct.to_stored(volume)
            comment = f"{pids.comma()} {pids.mrn}" if rng.random() < 0.2 else ""
            series = self._series(ctx, number, "CT", label, 3 + number, uid_rng, rng, pids, study, comment)
            for index in range(len(geo.z_phantom)):
                in_study += 1
                sop_uid = random_uid(uid_rng)
                seconds = int(series.time[4:6]) + index
                slice_time = f"{series.time[:4]}{min(seconds, 59):02d}"
                ds = ct.ct_slice(ctx, series, geo, index, stored, sop_uid, kernel=kernel, time=slice_time)
                self._write(ds, self._path(folder, series, series_index, in_study, index + 1, sop_uid),
                            (ctx.clean_description, series.clean_description))
            self.summary.series += 1
        if study.with_dose_report:
            series = self._series(ctx, 999, "CT", "Dose Report", 12, uid_rng, rng, pids, study)
            sop_uid = random_uid(uid_rng)
            lines = (
                "Dose Report",
                f"Patient Name: {pids.comma()}",
                f"Patient ID: {pids.mrn}",
                f"Accession Number: {ctx.accession}",
                f"Exam Date: {study.day.strftime('%b %d %Y')}",
                f"Exam Description: {study.description[:40]}",
                f"Total Exam DLP: {rng.uniform(150, 650):.2f} mGy-cm",
                f"CTDIvol: {rng.uniform(4, 14):.2f} mGy",
            )
            ds = us.dose_screen(ctx, series, sop_uid, lines=lines, burned_in_flag=self.site.burned_in_flag,
                                small=self.small)
            in_study += 1
            self._write(ds, self._path(folder, series, len(plans) + 1, in_study, 1, sop_uid),
                        (ctx.clean_description, series.clean_description), lines)
            self.summary.series += 1

    def _us(self, patient: Patient, pids: PatientIds, study: Study, ctx: StudyContext,
            folder: PurePosixPath, rng: np.random.Generator, uid_rng: np.random.Generator,
            opacities: tuple[phantom.Opacity, ...]) -> None:
        series = self._series(ctx, 1, "US", "LUNG", 1, uid_rng, rng, pids, study)
        banner = (
            f"{pids.comma()}  ID:{pids.mrn}",
            f"{self.ids.institution[:40]}  {study.day.strftime('%m/%d/%Y')} {ctx.study_time[:2]}:{ctx.study_time[2:4]}",
        )
        frames = 2 if self.small else int(rng.integers(2, 5))
        b_lines = int(rng.integers(3, 6)) if study.covid_active else 0
        for n in range(1, frames + 1):
            sop_uid = random_uid(uid_rng)
            ds = us.ultrasound(ctx, series, sop_uid, n, banner=banner, burned_in_flag=self.site.burned_in_flag,
                               small=self.small, b_lines=b_lines, rng=rng)
            self._write(ds, self._path(folder, series, 1, n, n, sop_uid),
                        (ctx.clean_description, series.clean_description), banner)
        self.summary.series += 1


def generate(
    out: Path,
    sites: int,
    patients: int,
    seed: int,
    *,
    small: bool = False,
    defects: bool = False,
    phi: bool = False,
    force: bool = False,
) -> Manifest:
    """Write a synthetic multi-site export under ``out`` and return what was written.

    Raises :class:`~radcommons.errors.UserError` for bad arguments (no sites or
    patients, ``out`` a file, or a non-empty folder without ``force``).
    """
    out = Path(out).absolute()
    _clear(check_arguments(out, sites, patients, force))
    out.mkdir(parents=True, exist_ok=True)

    population = build_population(seed, sites, patients)
    # Named before anything is written, so that a run killed half way leaves an output that
    # `--force` may replace (it was refused as files synth did not write); the final manifest
    # replaces this one.
    write_atomic(out / "synth_manifest.json", json.dumps({
        "format": SYNTH_MANIFEST_FORMAT, "complete": False, "sites": [{"folder": s.folder} for s in population.sites],
    }, indent=1) + "\n")
    registry = MarkerRegistry(enabled=phi)
    phi_files: dict[str, Any] | None = {} if phi else None
    manifest = Manifest(out=str(out), seed=seed, small=small, phi=phi, defects=defects, sites=[])
    mrn_cache: dict[str, str] = {}
    defect_entries: list[dict[str, Any]] = []

    for site, site_patients in zip(population.sites, population.patients, strict=True):
        summary = SiteSummary(site.folder, site.institution, layout_style=site.layout_style)
        manifest.sites.append(summary)
        writer = _SiteWriter(out, seed, site, registry, small, phi_files, summary, manifest)
        identities: list[clinical.ClinicalIdentity] = []
        for patient in site_patients:
            pids = patient_ids(site, patient, registry, mrn_cache)
            identities.append(clinical.ClinicalIdentity(pids.mrn, pids.family, pids.given))
            summary.patients += 1
            prior = ""
            for study in patient.studies:
                prior = writer.study(patient, pids, study, prior)
        style = clinical.style_for(site.clinical_style)
        summary.clinical_format = style.extension.lstrip(".")
        written = clinical.write_clinical(out / site.folder / "clinical", site_patients, identities, style)
        summary.clinical_files = [str(PurePosixPath(p.relative_to(out).as_posix())) for p in written]
        if defects:
            defect_entries.extend(
                write_defects(out, site.folder, [f for f in manifest.files if f.startswith(site.folder + "/")],
                              style, site_patients, identities, child_rng(seed, 20, site.index))
            )

    if phi_files is not None:
        for entry in defect_entries:
            source = entry.get("copy_of")
            if source and source in phi_files and entry["kind"] in ("duplicate_instance", "dicomdir"):
                copy = json.loads(json.dumps(phi_files[source]))
                copy["planted"] = [p for p in copy["planted"] if p["where"] != "filename"]
                copy["defect"] = entry["kind"]
                phi_files[entry["path"]] = copy
        phi_manifest = {
            "format": PHI_MANIFEST_FORMAT,
            "seed": seed,
            "marker_regex": MARKER_REGEX,
            "markers": {m.marker: {"kind": m.kind, "value": m.value, "site": m.site} for m in registry.markers.values()},
            "files": phi_files,
        }
        (out / "phi_manifest.json").write_text(json.dumps(phi_manifest, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    if defects:
        (out / "defects_manifest.json").write_text(
            json.dumps({"format": "radcommons.synth.defects/1", "seed": seed, "defects": defect_entries}, indent=1) + "\n",
            encoding="utf-8",
        )
    write_atomic(out / "synth_manifest.json", json.dumps(manifest.to_json(), indent=1) + "\n")
    return manifest
