"""Structure and content of a small generated corpus."""

from __future__ import annotations

import csv
import hashlib
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
from pydicom import dcmread

from radcommons.synth.generate import generate
from radcommons.synth.population import build_population


def _digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path: Path) -> None:
    first = generate(tmp_path / "a", 3, 2, 42, small=True, phi=True, defects=True)
    generate(tmp_path / "b", 3, 2, 42, small=True, phi=True, defects=True)
    generate(tmp_path / "c", 3, 2, 43, small=True, phi=True, defects=True)
    a, b, c = _digest(tmp_path / "a"), _digest(tmp_path / "b"), _digest(tmp_path / "c")
    assert first.files and a == b
    assert a != c


def test_site_folders_counts_and_clinical_files(phi_corpus) -> None:
    out, manifest, _ = phi_corpus
    assert [s.folder for s in manifest.sites] == ["site_a", "site_b", "site_c"]
    written = json.loads((out / "synth_manifest.json").read_text())
    assert written["totals"]["instances"] == len(manifest.files) == manifest.instances
    assert written["seed"] == 11
    per_site = defaultdict(int)
    for relative in manifest.files:
        assert (out / relative).is_file()
        per_site[relative.split("/")[0]] += 1
    for site in manifest.sites:
        assert site.patients == 5
        assert per_site[site.folder] == site.instances
        assert {"CR", "DX", "CT", "US"} <= set(site.modalities)
    assert (out / "site_a/clinical/demographics.csv").is_file()
    assert (out / "site_b/clinical/patients.tsv").is_file()
    assert (out / "site_c/clinical/clinical_export.xlsx").is_file()
    with (out / "site_a/clinical/covid_tests.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert rows and set(rows[0]) == {"MRN", "TestDate", "TestMethod", "Result"}
    assert {r["TestMethod"] for r in rows} <= {"RT-PCR", "Rapid antigen test"}


def test_ct_geometry_and_hounsfield_units(phi_corpus) -> None:
    out, manifest, _ = phi_corpus
    series: dict[str, list] = defaultdict(list)
    for relative in manifest.files:
        ds = dcmread(out / relative)
        if ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2":
            series[ds.SeriesInstanceUID].append(ds)
    assert series
    for slices in series.values():
        slices.sort(key=lambda d: int(d.InstanceNumber))
        normal = np.cross(np.array(slices[0].ImageOrientationPatient[:3], float),
                          np.array(slices[0].ImageOrientationPatient[3:], float))
        positions = np.array([[float(v) for v in d.ImagePositionPatient] for d in slices])
        along = positions @ normal
        steps = np.abs(np.diff(along))
        assert np.allclose(steps, float(slices[0].SliceThickness), atol=1e-3)
        assert np.allclose(positions[:, :2], positions[0, :2])
        for d, z in zip(slices, along, strict=True):
            assert abs(float(d.SliceLocation) - z) < 1e-3
        assert len({d.FrameOfReferenceUID for d in slices}) == 1
        volume = np.stack([d.pixel_array * float(d.RescaleSlope) + float(d.RescaleIntercept) for d in slices])
        assert volume.min() <= -950  # air
        assert np.percentile(volume, 99.9) >= 500  # bone
        middle = volume[len(slices) // 2]
        lung = middle[(middle > -950) & (middle < -600)]  # lung parenchyma, not outside air
        assert lung.size > 0.05 * middle.size and -900 < float(np.median(lung)) < -700


def test_radiographs_have_both_photometric_interpretations(phi_corpus) -> None:
    out, manifest, _ = phi_corpus
    seen = set()
    for relative in manifest.files:
        ds = dcmread(out / relative, stop_before_pixels=True)
        if ds.Modality in ("CR", "DX") and ds.SOPClassUID.startswith("1.2.840.10008.5.1.4.1.1.1"):
            seen.add(ds.PhotometricInterpretation)
            assert ds.BitsStored == 12 and ds.ViewPosition in ("PA", "AP", "LL")
    assert seen == {"MONOCHROME1", "MONOCHROME2"}


def test_longitudinal_patients_and_mrn_collision() -> None:
    population = build_population(11, 3, 5)
    patients = [p for site in population.patients for p in site]
    longitudinal = [p for p in patients if len({s.day for s in p.studies}) >= 2]
    assert longitudinal
    for p in longitudinal:
        days = [s.day for s in p.studies]
        assert days == sorted(days)
    by_mrn = defaultdict(set)
    for p in patients:
        by_mrn[p.mrn].add((p.site, p.name))
    collisions = [v for v in by_mrn.values() if len({site for site, _ in v}) >= 2]
    assert collisions and all(len({name for _, name in v}) >= 2 for v in collisions)


def test_covid_positive_patients_have_a_positive_test_near_a_study() -> None:
    population = build_population(5, 3, 8)
    positives = [p for site in population.patients for p in site if p.covid19_positive]
    assert positives
    for p in positives:
        positive_days = [t.day for t in p.tests if t.result == "Positive"]
        assert positive_days
        assert min(abs((d - s.day).days) for d in positive_days for s in p.studies) <= 7


def test_study_descriptions_come_from_midrc_long_tail(phi_corpus) -> None:
    from radcommons.synth.reference import study_descriptions

    _, _, phi = phi_corpus
    known = set()
    for modality in ("CR", "DX", "CT", "US"):
        known |= set(study_descriptions(modality).values)
    words_ok = 0
    for entry in phi["files"].values():
        words = " ".join(entry["retain"]["description_words"])
        words_ok += any(" ".join(k.split()) in words for k in known)
    assert words_ok == len(phi["files"])
