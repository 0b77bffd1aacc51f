"""The DIMSE gateway keeps the date offset the site's registry recorded for a patient, as
``radcommons deid`` does (tests/deid/test_offset_migration.py): the images of a patient
de-identified before offsets had a minimum arrive again by C-STORE and must line up with
those sent before."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import pydicom

from radcommons.deid import DeidContext, Registry, date_offset_days, key_fingerprint, patient_pseudonym
from radcommons.deid.engine import PatientRecord
from radcommons.pipelines.gateway import Gateway, GatewayConfig, spooled_files
from serve_support import free_port

from deid_support import KEY, PATIENT_ID, make_ct, write


def test_the_gateway_keeps_a_recorded_small_offset(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with Registry(state, key_fingerprint(KEY)) as registry:
        registry.record([PatientRecord("SITE_A", PATIENT_ID, patient_pseudonym(KEY, "SITE_A", PATIENT_ID), 2)], [])
    old = write(make_ct(study_date="20210304"), tmp_path / "pacs" / "old.dcm")
    new = write(make_ct(patient_id="OTHER-1", study_uid="1.2.3.77", series_uid="1.2.3.78", sop_uid="1.2.3.79",
                        study_date="20210304"), tmp_path / "pacs" / "new.dcm")
    port = free_port()
    gateway = Gateway(GatewayConfig("RCGW", port, DeidContext(KEY, "SITE_A", review_pixels=False), state,
                                    host="127.0.0.1", quiet_seconds=3600))
    gateway.start()
    try:
        store = subprocess.run(["storescu", "-aec", "RCGW", "127.0.0.1", str(port), str(old), str(new)],
                               capture_output=True, text=True, timeout=120)
        assert store.returncode == 0, store.stdout + store.stderr
    finally:
        gateway.stop()
    dates = {str(ds.PatientID): str(ds.StudyDate)
             for ds in (pydicom.dcmread(p, stop_before_pixels=True) for p in spooled_files(state / "gateway"))}
    derived = date_offset_days(KEY, "SITE_A", "OTHER-1")
    assert dates == {patient_pseudonym(KEY, "SITE_A", PATIENT_ID): "20210306",
                     patient_pseudonym(KEY, "SITE_A", "OTHER-1"): _shifted("20210304", derived)}


def _shifted(day: str, offset: int) -> str:
    return (dt.datetime.strptime(day, "%Y%m%d").date() + dt.timedelta(days=offset)).strftime("%Y%m%d")
