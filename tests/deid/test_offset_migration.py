"""Date offsets of 30 to 365 days, and the patients recorded before the minimum keep theirs.

A site that de-identified patients when offsets could be 1 day has those offsets in its
registry: the images of such a patient sent again, or later, and the patient's clinical
study year must move by the recorded offset, not by the one derived now.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pydicom
import pytest

from radcommons import parallel
from radcommons.clinical import load_mapping
from radcommons.deid import (
    DeidContext,
    Registry,
    date_offset_days,
    deidentify_tree,
    key_fingerprint,
    load_profile,
    patient_pseudonym,
    read_key_file,
)
from radcommons.deid.dates import MAX_OFFSET_DAYS, MIN_OFFSET_DAYS
from radcommons.deid.engine import PatientRecord
from radcommons.pipelines.contribute import ContributeRequest, prepare

from deid_support import KEY, PATIENT_ID, make_ct, write

RADCOMMONS = [str(Path(sys.executable).parent / "radcommons")]
ALLOWED = set(range(-MAX_OFFSET_DAYS, -MIN_OFFSET_DAYS + 1)) | set(range(MIN_OFFSET_DAYS, MAX_OFFSET_DAYS + 1))
NEW_PATIENT = "OTHER-1"


def _offset_before_the_minimum(key: bytes, site: str, patient_id: str) -> int:
    """The derivation as it was before offsets had a minimum (-365..-1, 1..365), copied as it was."""
    message = b"radcommons/date-offset\x00" + site.encode("utf-8") + b"\x00" + patient_id.encode("utf-8")
    number = int.from_bytes(hmac.new(key, message, hashlib.sha256).digest()[:8], "big")
    step = number % 730
    return step - 365 if step < 365 else step - 364


def test_offsets_are_30_to_365_days_either_way_and_uniform() -> None:
    offsets = [date_offset_days(KEY, "SITE_A", f"MRN{i:06d}") for i in range(40_000)]
    assert set(offsets) == ALLOWED  # every allowed offset occurs, nothing else (no 0, no -2, no 400)
    counts = Counter(offsets)
    assert 0.47 < sum(o < 0 for o in offsets) / len(offsets) < 0.53  # both signs, as often
    expected = len(offsets) / len(ALLOWED)  # about 60 per offset
    assert max(counts.values()) < 2 * expected and min(counts.values()) > expected / 2
    # the second draw of the patients whose first draw was under 30 days does not pile up anywhere
    near = sum(counts[d] + counts[-d] for d in range(30, 60))
    far = sum(counts[d] + counts[-d] for d in range(336, 366))
    assert abs(near - far) < 0.1 * far
    # Known answers for this key: MRN000001 keeps its first draw; MRN000002's first draw (+26 days) was
    # under the minimum, so its second draw decides. A change to the derivation would move them.
    assert [date_offset_days(KEY, "SITE_A", f"MRN00000{n}") for n in (1, 2)] == [-200, -322]
    assert date_offset_days(KEY, "SITE_A", "MRN000001") != date_offset_days(KEY, "SITE_B", "MRN000001") or \
        date_offset_days(KEY, "SITE_A", "MRN000002") != date_offset_days(KEY, "SITE_B", "MRN000002")


def test_an_earlier_offset_of_30_days_or_more_is_derived_again() -> None:
    """A patient whose earlier offset was 30 days or more gets it again without the registry; only
    the 8% under 30 days are drawn again (and those only the registry can keep)."""
    redrawn = 0
    for i in range(20_000):
        before, now = _offset_before_the_minimum(KEY, "S", f"P{i}"), date_offset_days(KEY, "S", f"P{i}")
        if abs(before) >= MIN_OFFSET_DAYS:
            assert now == before
        else:
            redrawn += 1
            assert abs(now) >= MIN_OFFSET_DAYS
    assert 0.07 < redrawn / 20_000 < 0.09  # 58 of the 730 earlier offsets


def _source(root: Path, study_date: str = "20210304") -> Path:
    """Two patients: PATIENT_ID (two studies) and a new one."""
    write(make_ct(study_date=study_date), root / "old/IM1.dcm")
    write(make_ct(study_uid="1.2.3.8", series_uid="1.2.3.81", sop_uid="1.2.3.9", study_date="20210401"),
          root / "old/IM2.dcm")
    write(make_ct(patient_id=NEW_PATIENT, patient_name="ROE^JANE", study_uid="1.2.3.77", series_uid="1.2.3.78",
                  sop_uid="1.2.3.79", study_date=study_date), root / "new/IM1.dcm")
    return root


def _recorded_before(state: Path, key: bytes, site: str, offset: int) -> None:
    """The registry of a site that de-identified PATIENT_ID when its offset could be under 30 days."""
    with Registry(state, key_fingerprint(key)) as registry:
        registry.record([PatientRecord(site, PATIENT_ID, patient_pseudonym(key, site, PATIENT_ID), offset)], [])


def _outputs(dst: Path) -> dict[str, list[pydicom.Dataset]]:
    """The de-identified files by pseudonymous Patient ID."""
    found: dict[str, list[pydicom.Dataset]] = {}
    for path in sorted(dst.rglob("*.dcm")):
        ds = pydicom.dcmread(path)
        found.setdefault(str(ds.PatientID), []).append(ds)
    return found


def _shifted(day: str, offset: int) -> str:
    return (dt.datetime.strptime(day, "%Y%m%d").date() + dt.timedelta(days=offset)).strftime("%Y%m%d")


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(RADCOMMONS + args, cwd=cwd, capture_output=True, text=True, timeout=600)


def test_radcommons_deid_keeps_a_recorded_small_offset_and_derives_a_new_patients(tmp_path: Path) -> None:
    _source(tmp_path / "src")
    assert _run(["keygen", "site.key"], tmp_path).returncode == 0
    key = read_key_file(tmp_path / "site.key")
    _recorded_before(tmp_path / "state", key, "S1", 2)
    run = _run(["deid", "src", "dst", "--site", "S1", "--key-file", "site.key", "--state-dir", "state",
                "--workers", "1"], tmp_path)
    assert run.returncode == 0, run.stderr
    outputs = _outputs(tmp_path / "dst")
    old = sorted(outputs[patient_pseudonym(key, "S1", PATIENT_ID)], key=lambda ds: ds.StudyDate)
    assert [ds.StudyDate for ds in old] == ["20210306", "20210403"]  # +2, as the images sent before
    assert all(ds.AcquisitionDateTime.startswith(ds.StudyDate) and ds.ContentDate == ds.StudyDate for ds in old)
    [new] = outputs[patient_pseudonym(key, "S1", NEW_PATIENT)]
    derived = date_offset_days(key, "S1", NEW_PATIENT)
    assert abs(derived) >= MIN_OFFSET_DAYS and new.StudyDate == _shifted("20210304", derived)
    with Registry(tmp_path / "state", key_fingerprint(key)) as registry:
        assert registry.patient("S1", PATIENT_ID).date_offset_days == 2
        assert registry.patient("S1", NEW_PATIENT).date_offset_days == derived


def test_two_machines_with_the_same_key_give_a_new_patient_the_same_offset(tmp_path: Path) -> None:
    """Separate state directories, one of which recorded PATIENT_ID before the minimum: the new
    patient's outputs are the same bytes on both; PATIENT_ID keeps -3 only where it was recorded."""
    _source(tmp_path / "src")
    assert _run(["keygen", "site.key"], tmp_path).returncode == 0
    key = read_key_file(tmp_path / "site.key")
    _recorded_before(tmp_path / "state-a", key, "S1", -3)
    for machine in ("a", "b"):
        run = _run(["deid", "src", f"dst-{machine}", "--site", "S1", "--key-file", "site.key", "--state-dir",
                    f"state-{machine}", "--workers", "1"], tmp_path)
        assert run.returncode == 0, run.stderr
    new = patient_pseudonym(key, "S1", NEW_PATIENT)
    made = {machine: {p.relative_to(tmp_path / f"dst-{machine}"): p.read_bytes()
                      for p in (tmp_path / f"dst-{machine}").rglob("*.dcm") if pydicom.dcmread(p).PatientID == new}
            for machine in ("a", "b")}
    assert len(made["a"]) == 1 and made["a"] == made["b"]
    old = patient_pseudonym(key, "S1", PATIENT_ID)
    assert min(ds.StudyDate for ds in _outputs(tmp_path / "dst-a")[old]) == "20210301"
    assert min(ds.StudyDate for ds in _outputs(tmp_path / "dst-b")[old]) == _shifted(
        "20210304", date_offset_days(key, "S1", PATIENT_ID))


def test_spawned_workers_keep_the_recorded_offset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The recorded offsets travel with the context to worker processes."""
    monkeypatch.setattr(parallel, "CALLER_WORKS", False)
    _source(tmp_path / "src")
    _recorded_before(tmp_path / "state", KEY, "SITE_A", 1)
    context = DeidContext(KEY, "SITE_A", load_profile("default"), review_pixels=False)
    report = deidentify_tree(tmp_path / "src", tmp_path / "dst", context, state_dir=tmp_path / "state", workers=2)
    assert report.counts()["deidentified"] == 3
    old = _outputs(tmp_path / "dst")[patient_pseudonym(KEY, "SITE_A", PATIENT_ID)]
    assert sorted(ds.StudyDate for ds in old) == ["20210305", "20210402"]


def test_a_contribution_shifts_images_and_study_year_by_the_recorded_offset(tmp_path: Path) -> None:
    """The contribution pathway (what ``radcommons contribute`` runs): the images and the clinical
    study year of a recorded patient move by the registry's offset. The study is dated so that the
    recorded offset and the derived one put it in different years."""
    derived = date_offset_days(KEY, "SITE_A", PATIENT_ID)
    # derived > 0: Dec 20 + 5 days stays in 2021, + derived (30 or more) is 2022; derived < 0: the mirror
    study_date, recorded = ("20211220", 5) if derived > 0 else ("20220110", -5)
    src = _source(tmp_path / "export", study_date)
    clinical = src / "clinical" / "demographics.csv"
    clinical.parent.mkdir()
    clinical.write_text(f"MRN,Sex\n{PATIENT_ID},M\n{NEW_PATIENT},F\n")
    state = tmp_path / "state"
    _recorded_before(state, KEY, "SITE_A", recorded)
    request = ContributeRequest(
        src=src, clinical=(clinical,), site="SITE_A", project="Open-T1",
        context=DeidContext(KEY, "SITE_A", review_pixels=False), state_dir=state, mapping=load_mapping(),
        dataset="SITE_A_TEST", workers=1,
    )
    plan = prepare(request)
    assert plan.errors == []
    studies = {r["study_uid"]: r for r in plan.clinical["imaging_study"]}
    pseudonym = patient_pseudonym(KEY, "SITE_A", PATIENT_ID)
    staged = [s for s in plan.staged if s.pseudonym == pseudonym]
    first = next(s for s in staged if s.study_date == _shifted(study_date, recorded))
    assert all(s.date_offset_days == recorded for s in staged)
    assert studies[first.study_uid]["study_year"] == int(first.study_date[:4])
    assert studies[first.study_uid]["study_year"] != (
        dt.datetime.strptime(study_date, "%Y%m%d").date() + dt.timedelta(days=derived)).year
    new = next(s for s in plan.staged if s.pseudonym == patient_pseudonym(KEY, "SITE_A", NEW_PATIENT))
    assert new.date_offset_days == date_offset_days(KEY, "SITE_A", NEW_PATIENT)
    assert new.study_date == _shifted(study_date, new.date_offset_days)
    assert studies[new.study_uid]["study_year"] == int(new.study_date[:4])
