"""DICOMweb conformance fixes found by a sweep against a real ``radcommons serve`` (PS3.18, RFC 9110).

Every check goes through HTTP to the running server of ``dicomweb_commons`` (httpx, or dicomweb-client
where it is the client whose behaviour matters). Reads use the researcher ``reader`` (open project
only); STOW uses ``stower`` (restricted Stow-A1, seen by no other read test).
"""

from __future__ import annotations

import io
import uuid

import httpx
import pydicom
import pytest
from dicomweb_client import DICOMwebClient
from dicomweb_support import DicomwebCommons, fresh_copy, multipart_parts
from PIL import Image

JPEG_BASELINE = "1.2.840.10008.1.2.4.50"


def http(commons: DicomwebCommons, user: str = "reader") -> httpx.Client:
    return httpx.Client(base_url=commons.url, timeout=60,
                        headers={"Authorization": f"Bearer {commons.token(user)}"})


@pytest.fixture(scope="module")
def one(dicomweb_commons: DicomwebCommons) -> pydicom.Dataset:
    """An open single-frame instance (native pixels, as ingested)."""
    return pydicom.dcmread(dicomweb_commons.open_instances[0].path)


def instance_path(ds: pydicom.Dataset) -> str:
    return f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"


# ---------------------------------------------------------------------- F3, F5: frames and retrieve Accept


def test_frames_in_a_syntax_not_offered_are_406(dicomweb_commons: DicomwebCommons, one: pydicom.Dataset) -> None:
    """Frames asked only as JPEG Baseline came back as native pixels under a 200."""
    frames = instance_path(one) + "/frames/1"
    with http(dicomweb_commons) as client:
        jpeg = client.get(frames, headers={
            "Accept": f'multipart/related; type="application/octet-stream"; transfer-syntax={JPEG_BASELINE}'})
        assert jpeg.status_code == 406, jpeg.status_code
        assert JPEG_BASELINE in jpeg.json()["error"]["message"]
        native = client.get(frames, headers={"Accept": 'multipart/related; type="application/octet-stream"; '
                                                       "transfer-syntax=1.2.840.10008.1.2.1"})
        assert native.status_code == 200
        [(_, data)] = multipart_parts(native.content, native.headers["content-type"])
        assert data == one.PixelData[: one.Rows * one.Columns * one.BitsAllocated // 8]
        any_syntax = client.get(frames, headers={"Accept": "multipart/related; type=application/octet-stream; "
                                                           "transfer-syntax=*"})  # OHIF's request
        assert any_syntax.status_code == 200


def test_a_406_for_the_media_type_names_the_accept(dicomweb_commons: DicomwebCommons, one: pydicom.Dataset) -> None:
    """It blamed the stored transfer syntax ('stored as 1.2.840.10008.1.2.1') for a wrong media type."""
    with http(dicomweb_commons) as client:
        for accept in ("text/html", "application/dicom+json"):
            refused = client.get(instance_path(one), headers={"Accept": accept})
            message = refused.json()["error"]["message"]
            assert refused.status_code == 406 and accept in message and "stored as" not in message


# ---------------------------------------------------------------------- F4: malformed path and query parameters


@pytest.mark.parametrize("method, path, words", [
    ("GET", "/studies/abc/metadata", "Study Instance UID 'abc'"),
    ("GET", "/studies/abc/series", "Study Instance UID 'abc'"),
    ("GET", "/studies/" + "1" * 70, "Study Instance UID"),
    ("POST", "/studies/abc", "Study Instance UID 'abc'"),
    ("GET", "{instance}/rendered?quality=0", "quality"),
    ("GET", "{instance}/frames/1,", "frame list '1,'"),
    ("GET", "/studies/{study}/series/x-y/instances/{sop}/rendered", "Series Instance UID 'x-y'"),
])
def test_malformed_parameters_are_400_with_what_they_must_be(dicomweb_commons: DicomwebCommons, one: pydicom.Dataset,
                                                             method: str, path: str, words: str) -> None:
    """They were 422 'validation_error' with a hint about a request body these requests do not have."""
    path = path.format(instance=instance_path(one), study=one.StudyInstanceUID, sop=one.SOPInstanceUID)
    with http(dicomweb_commons, "stower" if method == "POST" else "reader") as client:
        answer = client.request(method, path, headers={"Content-Type": 'multipart/related; boundary=x'}
                                if method == "POST" else None)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["code"] == "bad_request" and words in error["message"] and "body" not in error["hint"]


# ---------------------------------------------------------------------- F6, F7, F10: STOW


def _stow_body(ds: pydicom.Dataset, boundary: str = "b0undary") -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return (f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + buffer.getvalue()
            + f"\r\n--{boundary}--\r\n".encode())


def test_stow_messages_and_accept(dicomweb_commons: DicomwebCommons) -> None:
    ds = fresh_copy(dicomweb_commons)
    dicom = 'multipart/related; type="application/dicom"'
    with http(dicomweb_commons, "stower") as client:
        no_boundary = client.post("/studies", content=_stow_body(ds), headers={"Content-Type": dicom})
        assert no_boundary.status_code == 400  # was 415 'takes multipart/related, not multipart/related'
        assert "no boundary" in no_boundary.json()["error"]["message"]
        xml = client.post("/studies", content=_stow_body(ds), headers={
            "Content-Type": f"{dicom}; boundary=b0undary", "Accept": "application/dicom+xml"})
        assert xml.status_code == 406 and "application/dicom+xml" in xml.json()["error"]["message"]  # was JSON, 200
        other_study = f"2.25.{uuid.uuid4().int}"  # 2.25 + 39 digits: 'is not <UID>' was cut in the UID
        mismatch = client.post(f"/studies/{other_study}", content=_stow_body(ds), headers={
            "Content-Type": f"{dicom}; boundary=b0undary", "Accept": "application/json"})
        assert mismatch.status_code == 409 and mismatch.headers["content-type"] == "application/json"
        failed = pydicom.Dataset.from_json(mismatch.json()).FailedSOPSequence[0]
        comment = failed[0x00000902].value
        assert failed.FailureReason == 0xA900 and len(comment) <= 64
        assert "study in the URL" in comment and "2.25" not in comment


# ---------------------------------------------------------------------- F9: rendered parameters


def test_rendered_takes_the_accept_parameter_and_refuses_the_others(dicomweb_commons: DicomwebCommons,
                                                                    one: pydicom.Dataset) -> None:
    """?accept=image/png got a JPEG; viewport and annotation were ignored under a 200."""
    rendered = instance_path(one) + "/rendered"
    with http(dicomweb_commons) as client:
        png = client.get(rendered, params={"accept": "image/png"})
        assert png.status_code == 200 and png.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(png.content)).format == "PNG"
        preferred = client.get(rendered, headers={"Accept": "image/jpeg;q=0.5, image/png"})
        assert preferred.headers["content-type"] == "image/png"
        assert client.get(rendered, params={"accept": "image/gif"}).status_code == 406
        for name, value in (("viewport", "64,64"), ("annotation", "patient"), ("size", "1")):
            refused = client.get(rendered, params={name: value})
            assert refused.status_code == 400 and name in refused.json()["error"]["message"], refused.text


# ---------------------------------------------------------------------- F10: Accept parsing


def test_accept_is_parsed_as_media_ranges(dicomweb_commons: DicomwebCommons, one: pydicom.Dataset) -> None:
    """'application/jsonx' passed as JSON (substring match) and q=0 ('not acceptable') was ignored."""
    with http(dicomweb_commons) as client:
        for accept in ("application/jsonx", "application/dicom+json;q=0", "text/json"):
            refused = client.get("/studies", params={"limit": "1"}, headers={"Accept": accept})
            assert refused.status_code == 406, accept
        for accept, media in (("application/dicom+json; q=0.5", "application/dicom+json"),
                              ("application/json", "application/json"), ("*/*", "application/dicom+json")):
            taken = client.get("/studies", params={"limit": "1"}, headers={"Accept": accept})
            assert taken.status_code == 200 and taken.headers["content-type"] == media, accept
        refused = client.get(instance_path(one), headers={
            "Accept": 'multipart/related; type="application/dicom"; q=0'})
        assert refused.status_code == 406


# ---------------------------------------------------------------------- F11: Pixel Data as bulk data


def test_metadata_gives_pixel_data_as_a_working_bulkdata_uri(dicomweb_commons: DicomwebCommons,
                                                             one: pydicom.Dataset) -> None:
    """/metadata dropped Pixel Data, and /bulkdata answered the generic 404 'see /docs for the API'."""
    dw = DICOMwebClient(url=dicomweb_commons.url,
                        headers={"Authorization": f"Bearer {dicomweb_commons.token('reader')}"})
    metadata = dw.retrieve_instance_metadata(one.StudyInstanceUID, one.SeriesInstanceUID, one.SOPInstanceUID)
    pixels = metadata["7FE00010"]
    assert pixels["vr"] == ("OW" if one.BitsAllocated > 8 else "OB") and "Value" not in pixels
    # The URI is built from the request's Host, which dicomweb-client (requests) sends without the port
    # (docs/DICOMWEB.md): ask the same path of the test's server.
    path = pixels["BulkDataURI"].split("/dicomweb", 1)[1]
    assert path == instance_path(one) + "/bulkdata/7FE00010"
    assert dw.retrieve_bulkdata(dicomweb_commons.url + path) == [one.PixelData]
    with http(dicomweb_commons) as client:
        jpeg = client.get(path, headers={
            "Accept": f'multipart/related; type="application/octet-stream"; transfer-syntax={JPEG_BASELINE}'})
        assert jpeg.status_code == 406
        other = client.get(instance_path(one) + "/bulkdata/00100010")
        assert other.status_code == 404 and "BulkDataURI" in other.json()["error"]["hint"]
