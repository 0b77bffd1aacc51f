"""Who reads what through DICOMweb: researchers see open projects only, never sequestered ones.

Anything outside the readable projects answers exactly as if it did not exist: QIDO leaves it
out, WADO (instances, metadata, rendered, frames) answers 404. No token: 401.
"""

from __future__ import annotations


import httpx
import pydicom
import pytest
import requests
from dicomweb_client import DICOMwebClient
from dicomweb_support import DicomwebCommons, fresh_copy, structured_report, uids


JPEG_BASELINE = "1.2.840.10008.1.2.4.50"


def client(commons: DicomwebCommons, user: str) -> DICOMwebClient:
    return DICOMwebClient(url=commons.url, headers={"Authorization": f"Bearer {commons.token(user)}"})


def _paths(item) -> list[str]:
    base = f"/studies/{item.study_uid}"
    series = pydicom.dcmread(item.path, stop_before_pixels=True).SeriesInstanceUID
    instance = f"{base}/series/{series}/instances/{item.sop_uid}"
    return [base, f"{base}/metadata", f"{base}/series/{series}", f"{base}/series/{series}/metadata", instance,
            f"{instance}/metadata", f"{instance}/rendered", f"{instance}/frames/1", f"{instance}/frames/1/rendered"]


@pytest.mark.parametrize("user", ["reader", "seq-researcher", "stower"])
def test_sequestered_is_never_readable(dicomweb_commons: DicomwebCommons, user: str) -> None:
    dw = client(dicomweb_commons, user)
    # At least the open studies (the STOW-RS tests may have stored more into an open project, when
    # they ran first), never a sequestered one.
    open_studies = {i.study_uid for i in dicomweb_commons.open_instances}
    sequestered = dicomweb_commons.sequestered_instances
    hidden = sequestered[0]
    for found in (set(uids(dw.search_for_studies(), "0020000D")), set(uids(dw.search_for_series(), "0020000D"))):
        assert open_studies <= found and not found & {i.study_uid for i in sequestered}
    instances = set(uids(dw.search_for_instances(), "00080018"))
    assert {i.sop_uid for i in dicomweb_commons.open_instances} <= instances
    assert not instances & {i.sop_uid for i in sequestered}
    assert dw.search_for_studies(search_filters={"StudyInstanceUID": hidden.study_uid}) == []
    assert dw.search_for_studies(search_filters={"PatientID": hidden.patient_id}) == []
    assert dw.search_for_series(study_instance_uid=hidden.study_uid) == []
    assert dw.search_for_instances(study_instance_uid=hidden.study_uid) == []
    headers = {"Authorization": f"Bearer {dicomweb_commons.token(user)}"}
    with httpx.Client(base_url=dicomweb_commons.url, headers=headers, timeout=30) as http:
        for path in _paths(hidden):
            response = http.get(path)
            assert response.status_code == 404, path
            assert response.json()["error"]["code"] == "not_found"
    with pytest.raises(requests.HTTPError) as refused:
        dw.retrieve_study(hidden.study_uid)
    assert refused.value.response.status_code == 404


def test_curator_reads_sequestered(dicomweb_commons: DicomwebCommons) -> None:
    hidden = dicomweb_commons.sequestered_instances[0]
    dw = client(dicomweb_commons, "curator")
    assert hidden.study_uid in uids(dw.search_for_studies(), "0020000D")
    assert {ds.SOPInstanceUID for ds in dw.retrieve_study(hidden.study_uid)} >= {hidden.sop_uid}


def test_no_token_and_no_agreement(dicomweb_commons: DicomwebCommons) -> None:
    item = dicomweb_commons.open_instances[0]
    with httpx.Client(base_url=dicomweb_commons.url, timeout=30) as http:
        for path in ["/studies", "/series", "/instances", *_paths(item)]:
            response = http.get(path)
            assert response.status_code == 401, path
            assert response.headers["www-authenticate"] == "Bearer"
        assert http.post("/studies", content=b"", headers={"Content-Type": "multipart/related; boundary=x"}
                         ).status_code == 401
        bad = http.get("/studies", headers={"Authorization": "Bearer rc_not-a-token"})
        assert bad.status_code == 401 and bad.json()["error"]["code"] == "invalid_token"
        late = http.get("/studies", headers={"Authorization": f"Bearer {dicomweb_commons.token('no-dua')}"})
        assert late.status_code == 403 and late.json()["error"]["code"] == "dua_required"


def test_reads_are_audited(dicomweb_commons: DicomwebCommons) -> None:
    """Every DICOMweb read is in the audit log, as the research API's are (docs/API.md, "Audit"): a
    search with its query and result count, a retrieve with what it named, its project and how many
    instances it covered; a refused read of a sequestered study leaves no event naming it."""
    from radcommons.store.index import make_engine
    from radcommons.store.index.audit import search_events

    user = "seq-researcher"
    engine = make_engine(dicomweb_commons.server.db_url)
    before = {e["id"] for e in search_events(engine, user=user, action="dicomweb.")}
    item, hidden = dicomweb_commons.open_instances[0], dicomweb_commons.sequestered_instances[0]
    study = [i for i in dicomweb_commons.open_instances if i.study_uid == item.study_uid]
    dw = client(dicomweb_commons, user)
    found = dw.search_for_series(search_filters={"Modality": "CT"})
    assert len(dw.retrieve_study(item.study_uid)) == len(study)
    headers = {"Authorization": f"Bearer {dicomweb_commons.token(user)}"}
    with httpx.Client(base_url=dicomweb_commons.url, headers=headers, timeout=30) as http:
        assert http.get(f"{_paths(item)[4]}/thumbnail").status_code == 200
        assert http.get(f"/studies/{hidden.study_uid}/metadata").status_code == 404
    try:
        events = [e for e in search_events(engine, user=user, action="dicomweb.") if e["id"] not in before]
    finally:
        engine.dispose()
    searches = [e for e in events if e["action"] == "dicomweb.search"]
    assert [(e["target"], e["records"], e["detail"]["query"]) for e in searches] == [("series", len(found),
                                                                                      "Modality=CT")]
    retrieves = {(e["target"], e["records"], e["project_id"], e["detail"]["path"])
                 for e in events if e["action"] == "dicomweb.retrieve"}
    assert retrieves == {(item.study_uid, len(study), "Open-A1", f"/studies/{item.study_uid}"),
                         (item.sop_uid, 1, "Open-A1", f"{_paths(item)[4]}/thumbnail")}
    assert all(e["client"].startswith("127.0.0.1:") for e in events)
    assert not [e for e in events if hidden.study_uid in str(e)]


def _store_report(commons: DicomwebCommons, user: str) -> str:
    """A structured report (no pixel data) stored by STOW-RS into Stow-A1; its instance path."""
    ds = structured_report(commons)
    assert "FailedSOPSequence" not in client(commons, user).store_instances([ds])
    return f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"


def test_refused_reads_are_not_audited_as_retrieved(dicomweb_commons: DicomwebCommons) -> None:
    """Only a read that returns content is a ``dicomweb.retrieve``: a report's /rendered or /thumbnail (404:
    no image), a frame that does not exist (404) and an Accept header nothing can be sent in (406) found the
    instance but returned nothing, and leave no event; the same instance read successfully leaves one."""
    from radcommons.store.index import make_engine
    from radcommons.store.index.audit import search_events

    user = "stower"
    report = _store_report(dicomweb_commons, user)
    image = dicomweb_commons.open_instances[0]
    image_path = _paths(image)[4]
    engine = make_engine(dicomweb_commons.server.db_url)
    try:
        def retrieved(before: set[int]) -> list[str]:
            return [e["detail"]["path"] for e in search_events(engine, user=user, action="dicomweb.retrieve")
                    if e["id"] not in before]

        before = {e["id"] for e in search_events(engine, user=user, action="dicomweb.")}
        jpeg_only = f'multipart/related; type="application/dicom"; transfer-syntax={JPEG_BASELINE}'
        octet_jpeg = f'multipart/related; type="application/octet-stream"; transfer-syntax={JPEG_BASELINE}'
        refused = [(report + "/rendered", {}, 404), (report + "/thumbnail", {}, 404),
                   (report + "/frames/1/rendered", {}, 404), (image_path + "/frames/999", {}, 404),
                   (image_path + "/frames/999/rendered", {}, 404), (image_path + "/frames/999/thumbnail", {}, 404),
                   (f"/studies/{image.study_uid}", {"Accept": "application/pdf"}, 406),
                   (image_path, {"Accept": jpeg_only}, 406), (image_path + "/frames/1", {"Accept": octet_jpeg}, 406),
                   (image_path + "/bulkdata/7FE00010", {"Accept": octet_jpeg}, 406)]
        headers = {"Authorization": f"Bearer {dicomweb_commons.token(user)}"}
        with httpx.Client(base_url=dicomweb_commons.url, headers=headers, timeout=30) as http:
            for path, extra, status in refused:
                response = http.get(path, headers=extra)
                assert response.status_code == status, (path, response.text)
            assert retrieved(before) == []
            for path in (report, report + "/metadata", image_path + "/rendered", image_path + "/thumbnail",
                         image_path + "/frames/1"):
                response = http.get(path)
                assert response.status_code == 200, (path, response.text)
                assert response.content
        found = retrieved(before)
        assert found == [image_path + "/frames/1", image_path + "/thumbnail", image_path + "/rendered",
                         report + "/metadata", report]  # newest first
    finally:
        engine.dispose()


def test_a_retrieve_whose_first_object_cannot_be_read_is_not_audited(dicomweb_commons: DicomwebCommons) -> None:
    """A retrieve is streamed, and was recorded as a ``dicomweb.retrieve`` before its first byte: when the
    first instance's object could not be read (missing from the object store), the answer was a 200 whose
    body broke before any content, and the log named a read that returned nothing. The first part is now
    read before the answer starts: such a read is an error answer and leaves no event."""
    from sqlalchemy import select

    from radcommons.store.index import make_engine, node_tables
    from radcommons.store.index.audit import search_events

    user = "stower"
    ds = fresh_copy(dicomweb_commons)
    assert "FailedSOPSequence" not in client(dicomweb_commons, user).store_instances([ds])
    engine = make_engine(dicomweb_commons.server.db_url)
    store, kept = dicomweb_commons.store, None
    try:
        instance = node_tables()["instance"]
        with engine.connect() as conn:
            object_id = conn.execute(select(instance.c.object_id)
                                     .where(instance.c.sop_instance_uid == ds.SOPInstanceUID)).scalar_one()
        stored_path = store._path(store.key(object_id))
        kept = store.fs.cat_file(stored_path)
        store.fs.rm(stored_path)  # lost from the store (this test's own instance; put back at the end)
        before = {e["id"] for e in search_events(engine, user=user, action="dicomweb.")}
        headers = {"Authorization": f"Bearer {dicomweb_commons.token(user)}"}
        series = f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        with httpx.Client(base_url=dicomweb_commons.url, headers=headers, timeout=30) as http:
            for path in (f"/studies/{ds.StudyInstanceUID}", series, f"{series}/instances/{ds.SOPInstanceUID}"):
                try:
                    response = http.get(path)
                    status, body = response.status_code, response.content
                except httpx.HTTPError as error:  # the body broke off
                    status, body = 200, str(error).encode()
                assert status != 200, (path, body[:200])
                # the commons' fault, said without the store's location (it was a 400 naming the path)
                assert status == 500 and response.json()["error"]["code"] == "stored_file_unavailable", body[:300]
                assert object_id in response.json()["error"]["message"], body[:300]
                assert str(dicomweb_commons.server.store_dir) not in response.text, body[:300]
            # a search still answers, from the index: one lost file made every QIDO-RS search a 500
            found = http.get("/studies", params={"StudyInstanceUID": ds.StudyInstanceUID},
                             headers={"Accept": "application/dicom+json"})
            assert found.status_code == 200, found.text[:300]
            assert [s["0020000D"]["Value"] for s in found.json()] == [[ds.StudyInstanceUID]]
            assert "1 stored file(s) could not be read" in found.headers.get("Warning", ""), found.headers
        events = [e for e in search_events(engine, user=user, action="dicomweb.retrieve") if e["id"] not in before]
        assert events == [], events
    finally:
        if kept is not None:  # the commons is shared with the module's other tests
            store.fs.pipe_file(stored_path, kept)
        engine.dispose()
