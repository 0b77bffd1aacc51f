"""WADO-RS (PS3.18 10.4) with dicomweb-client: instances as stored, metadata, rendered, frames."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest
from dicomweb_client import DICOMwebClient
from dicomweb_support import DicomwebCommons, multipart_parts
from PIL import Image


def client(commons: DicomwebCommons, user: str = "reader") -> DICOMwebClient:
    return DICOMwebClient(url=commons.url, headers={"Authorization": f"Bearer {commons.token(user)}"})


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def study(dicomweb_commons: DicomwebCommons) -> list:
    """The open study with the most instances."""
    by_study: dict[str, list] = {}
    for item in dicomweb_commons.open_instances:
        by_study.setdefault(item.study_uid, []).append(item)
    return max(by_study.values(), key=len)


def test_retrieve_study_series_instance(dicomweb_commons: DicomwebCommons, study) -> None:
    dw = client(dicomweb_commons)
    datasets = dw.retrieve_study(study[0].study_uid)
    assert sorted(ds.SOPInstanceUID for ds in datasets) == sorted(i.sop_uid for i in study)
    one = pydicom.dcmread(study[0].path, stop_before_pixels=True)
    series = dw.retrieve_series(one.StudyInstanceUID, one.SeriesInstanceUID)
    assert {ds.SeriesInstanceUID for ds in series} == {one.SeriesInstanceUID}
    instance = dw.retrieve_instance(one.StudyInstanceUID, one.SeriesInstanceUID, one.SOPInstanceUID)
    assert instance.SOPInstanceUID == one.SOPInstanceUID and "PixelData" in instance


def test_retrieved_bytes_are_the_stored_objects(dicomweb_commons: DicomwebCommons, study) -> None:
    """Every part is the object store's content, byte for byte (sha256 = the object id)."""
    headers = {"Authorization": f"Bearer {dicomweb_commons.token('reader')}",
               "Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'}
    response = httpx.get(f"{dicomweb_commons.url}/studies/{study[0].study_uid}", headers=headers, timeout=60)
    assert response.status_code == 200
    parts = multipart_parts(response.content, response.headers["content-type"])
    digests = sorted(hashlib.sha256(content).hexdigest() for _, content in parts)
    assert digests == sorted(sha256(i.path) for i in study)
    assert all(dicomweb_commons.store.exists(d) for d in digests)
    assert all(h["content-type"].startswith("application/dicom; transfer-syntax=") for h, _ in parts)
    # Explicit VR Little Endian is stored, so the default (no transfer-syntax) sends the same bytes.
    plain = httpx.get(f"{dicomweb_commons.url}/studies/{study[0].study_uid}", timeout=60,
                      headers={**headers, "Accept": 'multipart/related; type="application/dicom"'})
    assert sorted(hashlib.sha256(c).hexdigest() for _, c in multipart_parts(
        plain.content, plain.headers["content-type"])) == digests
    jpeg_only = httpx.get(f"{dicomweb_commons.url}/studies/{study[0].study_uid}", timeout=60, headers={
        **headers, "Accept": 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.50'})
    assert jpeg_only.status_code == 406 and jpeg_only.json()["error"]["code"] == "not_acceptable"


def test_metadata_levels(dicomweb_commons: DicomwebCommons, study) -> None:
    dw = client(dicomweb_commons)
    one = pydicom.dcmread(study[0].path, stop_before_pixels=True)
    metadata = dw.retrieve_study_metadata(one.StudyInstanceUID)
    assert sorted(m["00080018"]["Value"][0] for m in metadata) == sorted(i.sop_uid for i in study)
    assert all(m["7FE00010"]["BulkDataURI"].endswith("/bulkdata/7FE00010") and "Value" not in m["7FE00010"]
               for m in metadata)  # Pixel Data as bulk data (test_dicomweb_conformance reads it)
    series = dw.retrieve_series_metadata(one.StudyInstanceUID, one.SeriesInstanceUID)
    assert {m["0020000E"]["Value"][0] for m in series} == {one.SeriesInstanceUID}
    instance = dw.retrieve_instance_metadata(one.StudyInstanceUID, one.SeriesInstanceUID, one.SOPInstanceUID)
    ds = pydicom.Dataset.from_json(instance)  # dicomweb-client unpacks the one-item array
    assert ds.PatientID == one.PatientID and ds.StudyDate == one.StudyDate and ds.Rows == one.Rows
    auth = {"Authorization": f"Bearer {dicomweb_commons.token('reader')}"}
    xml = httpx.get(f"{dicomweb_commons.url}/studies/{one.StudyInstanceUID}/metadata", timeout=30,
                    headers={**auth, "Accept": "multipart/related; type=application/dicom+xml"})
    assert xml.status_code == 406 and "application/dicom+json" in xml.json()["error"]["hint"]  # was JSON, 200
    assert httpx.get(f"{dicomweb_commons.url}/studies/{one.StudyInstanceUID}/metadata", timeout=30,
                     headers={**auth, "Accept": "application/*"}).status_code == 200


def _expected_display(ds: pydicom.Dataset) -> np.ndarray:
    """The test's own reading of PS3.3 C.11: rescale, linear window, MONOCHROME1 inverted."""
    values = ds.pixel_array.astype(float) * float(ds.get("RescaleSlope", 1)) + float(ds.get("RescaleIntercept", 0))
    center, width = float(np.ravel([ds.WindowCenter])[0]), float(np.ravel([ds.WindowWidth])[0])
    unit = np.clip((values - (center - 0.5)) / (width - 1) + 0.5, 0, 1)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        unit = 1 - unit
    return unit * 255


def test_rendered_png_and_jpeg(dicomweb_commons: DicomwebCommons) -> None:
    dw = client(dicomweb_commons)
    images = [(i, pydicom.dcmread(i.path)) for i in dicomweb_commons.open_instances]
    mono1 = next((i, ds) for i, ds in images if ds.PhotometricInterpretation == "MONOCHROME1" and "WindowWidth" in ds)
    item, ds = mono1
    series = ds.SeriesInstanceUID
    png = dw.retrieve_instance_rendered(item.study_uid, series, item.sop_uid, media_types=("image/png",))
    picture = np.asarray(Image.open(io.BytesIO(png)))
    assert picture.shape == (ds.Rows, ds.Columns) and picture.dtype == np.uint8
    expected = _expected_display(ds)
    assert np.abs(picture.astype(float) - expected).max() <= 1.0
    # Inverted: where the stored value is highest, the picture is darkest.
    raw = ds.pixel_array
    assert picture[raw == raw.max()].mean() < picture[raw == raw.min()].mean()
    jpeg = dw.retrieve_instance_rendered(item.study_uid, series, item.sop_uid, media_types=("image/jpeg",))
    assert Image.open(io.BytesIO(jpeg)).format == "JPEG"
    headers = {"Authorization": f"Bearer {dicomweb_commons.token('reader')}", "Accept": "image/png"}
    base = f"{dicomweb_commons.url}/studies/{item.study_uid}/series/{series}/instances/{item.sop_uid}"
    frame = httpx.get(base + "/frames/1/rendered", headers=headers, timeout=30)
    assert frame.status_code == 200 and frame.content == png
    assert httpx.get(base + "/frames/2/rendered", headers=headers, timeout=30).status_code == 404
    windowed = httpx.get(base + "/rendered", params={"window": "100,50"}, headers=headers, timeout=30)
    assert windowed.status_code == 200 and windowed.content != png
    assert httpx.get(base + "/rendered", headers={**headers, "Accept": "image/gif"}, timeout=30).status_code == 406
    for window in ("nan,nan", "inf,1", ","):  # NaN rendered an image; "," was float('')'s own message
        refused = httpx.get(base + "/rendered", params={"window": window}, headers=headers, timeout=30)
        assert refused.status_code == 400 and "window" in refused.json()["error"]["message"], (window, refused.text)


def test_frames(dicomweb_commons: DicomwebCommons, study) -> None:
    one = pydicom.dcmread(study[0].path)
    [frame] = client(dicomweb_commons).retrieve_instance_frames(one.StudyInstanceUID, one.SeriesInstanceUID,
                                                                one.SOPInstanceUID, frame_numbers=[1])
    assert frame == one.PixelData[: one.Rows * one.Columns * one.BitsAllocated // 8]
