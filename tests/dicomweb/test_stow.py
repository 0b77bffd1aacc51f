"""STOW-RS (PS3.18 10.5): stored instances pass the same verification gate and indexing as submissions."""

from __future__ import annotations

import hashlib
import io
import uuid

import httpx
import pydicom
import pytest
import requests
from dicomweb_client import DICOMwebClient
from dicomweb_support import SEQUESTERED, STOW, DicomwebCommons, value

FAILED, REFERENCED, FAILURE_REASON, ERROR_COMMENT = "00081198", "00081199", "00081197", "00000902"


def client(commons: DicomwebCommons, user: str = "stower") -> DICOMwebClient:
    return DICOMwebClient(url=commons.url, headers={"Authorization": f"Bearer {commons.token(user)}"})


def new_uid() -> str:
    return f"2.25.{uuid.uuid4().int}"


def fresh_study(commons: DicomwebCommons, count: int = 3) -> list[pydicom.Dataset]:
    """Copies of open instances with new Study, Series and SOP Instance UIDs (a study never seen)."""
    study, series = new_uid(), new_uid()
    out = []
    for item in commons.open_instances[:count]:
        ds = pydicom.dcmread(item.path)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = new_uid()
        if "RequestAttributesSequence" in ds:
            del ds.RequestAttributesSequence  # it repeats the old Study Instance UID
        out.append(ds)
    return out


def encoded(ds: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def test_store_a_study_then_read_it_back(dicomweb_commons: DicomwebCommons) -> None:
    datasets = fresh_study(dicomweb_commons)
    study = datasets[0].StudyInstanceUID
    result = client(dicomweb_commons).store_instances(datasets)
    stored = [item.ReferencedSOPInstanceUID for item in result.ReferencedSOPSequence]
    assert sorted(stored) == sorted(ds.SOPInstanceUID for ds in datasets)
    assert "FailedSOPSequence" not in result
    assert all(item.RetrieveURL.endswith(f"/instances/{item.ReferencedSOPInstanceUID}")
               for item in result.ReferencedSOPSequence)
    mine = client(dicomweb_commons).search_for_studies(search_filters={"StudyInstanceUID": study})
    assert value(mine[0], "00201208") == [len(datasets)]
    back = client(dicomweb_commons).retrieve_study(study)
    assert sorted(ds.SOPInstanceUID for ds in back) == sorted(stored)
    # The bytes kept are the bytes sent (content-addressed: the object id is their sha256).
    for ds in datasets:
        assert dicomweb_commons.store.exists(hashlib.sha256(encoded(ds)).hexdigest())
    # Stow-A1 is restricted: a researcher without a grant does not see it.
    assert client(dicomweb_commons, "reader").search_for_studies(search_filters={"StudyInstanceUID": study}) == []
    again = client(dicomweb_commons).store_instances(datasets[:1], study_instance_uid=study)
    assert len(again.ReferencedSOPSequence) == 1 and again.RetrieveURL.endswith(f"/studies/{study}")
    # Another site's copy of the study (the same UIDs) is refused: it moved the study to that site's patient.
    with pytest.raises(requests.HTTPError) as other_site:
        client(dicomweb_commons, "curator").store_instances(datasets[:1], additional_params={"project": STOW,
                                                                                             "site": "SITE_B"})
    refused = pydicom.Dataset.from_json(other_site.value.response.json()).FailedSOPSequence[0]
    assert refused.FailureReason == 0x0124 and "belongs to site" in refused[0x00000902].value


def test_gate_failures_are_reported_and_quarantined(dicomweb_commons: DicomwebCommons) -> None:
    good, bad = fresh_study(dicomweb_commons, 2)
    del bad.PatientIdentityRemoved  # fails the verification gate
    headers = {"Authorization": f"Bearer {dicomweb_commons.token('stower')}"}
    boundary = "stow-test-boundary"
    body = b"".join(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + data + b"\r\n"
                    for data in (encoded(good), encoded(bad), b"not a DICOM file"))
    body += f"--{boundary}--\r\n".encode()
    response = httpx.post(f"{dicomweb_commons.url}/studies", content=body, timeout=60, headers={
        **headers, "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'})
    assert response.status_code == 202  # some stored, some failed
    assert response.headers["content-type"] == "application/dicom+json"
    answer = pydicom.Dataset.from_json(response.json())
    assert [i.ReferencedSOPInstanceUID for i in answer.ReferencedSOPSequence] == [good.SOPInstanceUID]
    failures = {i.get("ReferencedSOPInstanceUID", ""): i for i in answer.FailedSOPSequence}
    quarantined = failures[bad.SOPInstanceUID]
    assert quarantined.FailureReason == 0x0110
    assert "quarantined" in quarantined[0x00000902].value and "identity-not-removed" in quarantined[0x00000902].value
    assert failures[""].FailureReason == 0xC000  # not DICOM: no UID to report
    assert client(dicomweb_commons, "curator").search_for_instances(
        search_filters={"SOPInstanceUID": bad.SOPInstanceUID}) == []
    held = httpx.get(dicomweb_commons.server.url + "/api/v1/quarantine", params={"project": STOW}, timeout=30,
                     headers={"Authorization": f"Bearer {dicomweb_commons.token('curator')}"}).json()
    entry = next(h for h in held if h["sop_instance_uid"] == bad.SOPInstanceUID)
    assert entry["source"] == "stow" and "identity-not-removed" in entry["reason"]


def test_refusals(dicomweb_commons: DicomwebCommons) -> None:
    [one] = fresh_study(dicomweb_commons, 1)
    other = new_uid()
    with pytest.raises(requests.HTTPError) as mismatch:  # none stored: 409
        client(dicomweb_commons).store_instances([one], study_instance_uid=other)
    assert mismatch.value.response.status_code == 409
    failed = pydicom.Dataset.from_json(mismatch.value.response.json()).FailedSOPSequence[0]
    assert failed.FailureReason == 0xA900 and failed.ReferencedSOPInstanceUID == one.SOPInstanceUID
    for user, project, status in (("reader", None, 403), ("stower", "Open-A1", 403), ("uploader", "Stow-A1", 403),
                                  ("curator", None, 400)):
        with pytest.raises(requests.HTTPError) as refused:
            client(dicomweb_commons, user).store_instances(
                [one], additional_params={"project": project} if project else None)
        assert refused.value.response.status_code == status, (user, project)
    with pytest.raises(requests.HTTPError) as typo:  # a curator's mistyped project was created, open, at once
        client(dicomweb_commons, "curator").store_instances([one], additional_params={"project": "Stwo-A1",
                                                                                      "site": "SITE_A"})
    assert typo.value.response.status_code == 404 and "admin project add" in typo.value.response.text
    headers = {"Authorization": f"Bearer {dicomweb_commons.token('stower')}"}
    wrong_type = httpx.post(f"{dicomweb_commons.url}/studies", content=b"{}", timeout=30,
                            headers={**headers, "Content-Type": "application/json"})
    assert wrong_type.status_code == 415
    long_boundary = httpx.post(f"{dicomweb_commons.url}/studies", content=b"--x\r\n", timeout=30, headers={
        **headers, "Content-Type": f'multipart/related; type="application/dicom"; boundary="{"x" * 100000}"'})
    assert long_boundary.status_code == 400 and "1 to 70 characters" in long_boundary.text  # was a 500
    # The same instance already in another project is refused (UIDs belong to one project).
    curator = client(dicomweb_commons, "curator")
    taken = pydicom.dcmread(dicomweb_commons.open_instances[0].path)
    with pytest.raises(requests.HTTPError) as clash:
        curator.store_instances([taken], additional_params={"project": STOW, "site": "SITE_A"})
    assert pydicom.Dataset.from_json(clash.value.response.json()).FailedSOPSequence[0].FailureReason == 0x0124


def _post(commons: DicomwebCommons, parts: list[bytes], *, close: bool = True) -> httpx.Response:
    boundary = "stow-test-boundary"
    body = b"".join(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + data + b"\r\n"
                    for data in parts)
    if close:
        body += f"--{boundary}--\r\n".encode()
    return httpx.post(f"{commons.url}/studies", content=body, timeout=60, headers={
        "Authorization": f"Bearer {commons.token('stower')}",
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'})


def test_a_body_or_an_instance_cut_short_is_not_stored(dicomweb_commons: DicomwebCommons) -> None:
    """Both were stored and indexed as successes: a body without its closing boundary (its last
    part cut anywhere), and an instance whose pixel data ends early (its header reads well)."""
    whole, cut = fresh_study(dicomweb_commons, 2)
    data = encoded(cut)
    cut_short = _post(dicomweb_commons, [encoded(whole), data[:-100]], close=False)
    assert cut_short.status_code == 400 and "closing boundary" in cut_short.json()["error"]["message"], cut_short.text
    assert "send it again" in cut_short.json()["error"]["hint"]
    assert not dicomweb_commons.store.exists(hashlib.sha256(encoded(whole)).hexdigest())  # nothing of that request
    answer = _post(dicomweb_commons, [encoded(whole), data[:-100]])
    assert answer.status_code == 202, answer.text
    stored = pydicom.Dataset.from_json(answer.json())
    assert [i.ReferencedSOPInstanceUID for i in stored.ReferencedSOPSequence] == [whole.SOPInstanceUID]
    [failed] = stored.FailedSOPSequence
    assert failed.FailureReason == 0xC000 and "Pixel Data needs 100 more bytes" in failed[0x00000902].value
    assert not dicomweb_commons.store.exists(hashlib.sha256(data[:-100]).hexdigest())
    assert client(dicomweb_commons, "curator").search_for_instances(
        search_filters={"SOPInstanceUID": cut.SOPInstanceUID}) == []


def test_a_refusal_names_only_what_the_caller_may_read(dicomweb_commons: DicomwebCommons) -> None:
    """A refused instance's Error Comment used to name the sequestered project, or the other site,
    that holds its UIDs, to any contributor; now only to one who may read it there (a curator, or
    a contributor of that site granted that project), with the same Failure Reason."""
    from radcommons.store.index import make_engine
    from radcommons.store.index.accounts import add_user, create_token

    server = dicomweb_commons.server
    engine = make_engine(server.db_url)
    try:
        for name, site, projects in (("stow-b", "SITE_B", [STOW]), ("stow-a-seq", "SITE_A", [STOW, SEQUESTERED])):
            add_user(engine, name, "contributor", site_id=site, projects=projects)
            server.tokens[name] = create_token(engine, name)[0]
    finally:
        engine.dispose()

    def refusal(user: str, datasets: list[pydicom.Dataset]) -> pydicom.Dataset:
        with pytest.raises(requests.HTTPError) as refused:
            client(dicomweb_commons, user).store_instances(datasets, additional_params={"project": STOW})
        assert refused.value.response.status_code == 409
        failed = pydicom.Dataset.from_json(refused.value.response.json()).FailedSOPSequence[0]
        assert failed.FailureReason == 0x0124
        return failed[0x00000902].value

    sequestered = pydicom.dcmread(dicomweb_commons.sequestered_instances[0].path)
    for user in ("stower", "stow-b"):
        comment = refusal(user, [sequestered])
        assert comment == "its study or UIDs belong to data you cannot write to", comment
    assert refusal("stow-a-seq", [sequestered]) == f"its study or UIDs are already in project {SEQUESTERED}"
    mine = fresh_study(dicomweb_commons, 1)
    client(dicomweb_commons).store_instances(mine)  # SITE_A's study in Stow-A1
    comment = refusal("stow-b", mine)
    assert comment == "its study belongs to data you cannot write to" and "SITE_A" not in comment
