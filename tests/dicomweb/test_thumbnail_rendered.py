"""WADO-RS thumbnails (PS3.18 10.4.1.1.4, Supplement 203) and study/series rendered (10.4.1.1.3).

Through HTTP to the real ``radcommons serve`` of ``dicomweb_commons`` (httpx, and dicomweb-client for
series ``/rendered``, the one of these calls it makes). Reads use the researcher ``reader`` (open project
only); the sequestered study must answer as the other WADO routes answer for it.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import numpy as np
import pydicom
import pytest
from dicomweb_client import DICOMwebClient
from dicomweb_support import DicomwebCommons, multipart_parts, structured_report
from PIL import Image



@dataclass(frozen=True)
class Stored:
    study: str
    series: str
    sop: str
    series_number: int
    instance_number: int
    rows: int
    columns: int
    frames: int


def _stored(items: list) -> list[Stored]:
    found = []
    for item in items:
        ds = pydicom.dcmread(item.path, stop_before_pixels=True)
        found.append(Stored(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, int(ds.SeriesNumber or 0),
                            int(ds.InstanceNumber or 0), int(ds.Rows), int(ds.Columns),
                            int(ds.get("NumberOfFrames", 1) or 1)))
    return found


@pytest.fixture(scope="module")
def study(dicomweb_commons: DicomwebCommons) -> list[Stored]:
    """The open study with the most instances, in series and instance order (as the index orders them)."""
    by_study: dict[str, list[Stored]] = {}
    for item in _stored(dicomweb_commons.open_instances):
        by_study.setdefault(item.study, []).append(item)
    chosen = max(by_study.values(), key=len)
    return sorted(chosen, key=lambda s: (s.series_number, s.instance_number))


@pytest.fixture(scope="module")
def http(dicomweb_commons: DicomwebCommons) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=dicomweb_commons.url, timeout=60,
                      headers={"Authorization": f"Bearer {dicomweb_commons.token('reader')}"}) as client:
        yield client


def series_of(study: list[Stored]) -> list[list[Stored]]:
    """The study's series (most instances first), each in instance order."""
    groups: dict[str, list[Stored]] = {}
    for item in study:
        groups.setdefault(item.series, []).append(item)
    return sorted(groups.values(), key=len, reverse=True)


def instance_path(item: Stored) -> str:
    return f"/studies/{item.study}/series/{item.series}/instances/{item.sop}"


def picture(response: httpx.Response, kind: str) -> Image.Image:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == f"image/{kind}"
    image = Image.open(io.BytesIO(response.content))
    assert image.format == kind.upper()
    return image


def fits(image: Image.Image, item: Stored, width: int, height: int) -> None:
    """Inside the box, touching it on one side (unless that would enlarge), aspect ratio kept."""
    assert image.width <= width and image.height <= height
    scale = min(1.0, width / item.columns, height / item.rows)
    assert abs(image.width - item.columns * scale) <= 1 and abs(image.height - item.rows * scale) <= 1


def test_thumbnails_at_every_level_are_the_representative_image(http: httpx.Client, study: list[Stored]) -> None:
    """A series shows its middle instance; the study its first series' (by Series Number)."""
    series = series_of(study)[0]
    middle = series[len(series) // 2]
    first_series = [s for s in study if s.series == study[0].series]
    first_middle = first_series[len(first_series) // 2]
    png = {"Accept": "image/png"}
    of_series = http.get(f"/studies/{middle.study}/series/{middle.series}/thumbnail", headers=png)
    of_middle = http.get(instance_path(middle) + "/thumbnail", headers=png)
    assert picture(of_series, "png") and of_series.content == of_middle.content
    of_study = http.get(f"/studies/{middle.study}/thumbnail", headers=png)
    assert of_study.content == http.get(instance_path(first_middle) + "/thumbnail", headers=png).content
    frame = http.get(instance_path(middle) + f"/frames/{middle.frames // 2 + 1}/thumbnail", headers=png)
    assert frame.content == of_middle.content
    # The default is JPEG, the accept query parameter replaces the header, as for /rendered (8.3.3.1).
    fits(picture(http.get(f"/studies/{middle.study}/thumbnail"), "jpeg"), first_middle, 256, 256)
    assert picture(http.get(instance_path(middle) + "/thumbnail", params={"accept": "image/png"},
                            headers={"Accept": "image/jpeg"}), "png")
    # The pixels are the rendered image's (same window, same inversion), shrunk only when larger.
    rendered = np.asarray(picture(http.get(instance_path(middle) + "/rendered", headers=png), "png"))
    thumbnail = np.asarray(Image.open(io.BytesIO(of_middle.content)))
    if max(middle.rows, middle.columns) <= 256:
        assert np.array_equal(thumbnail, rendered)
    else:
        assert max(thumbnail.shape[:2]) == 256


@pytest.fixture(scope="module")
def long_series(dicomweb_commons: DicomwebCommons) -> list[Stored]:
    """The series with the most instances in the test data (a CT of several slices), in instance order. Open
    and sequestered alike, read by the curator: which patient is sequestered varies by run (the pseudonyms
    come from a new key), and with it whether the open project holds a series of more than two instances."""
    groups: dict[str, list[Stored]] = {}
    for item in _stored(dicomweb_commons.open_instances + dicomweb_commons.sequestered_instances):
        groups.setdefault(item.series, []).append(item)
    chosen = sorted(max(groups.values(), key=len), key=lambda s: s.instance_number)
    assert len(chosen) >= 3, [len(g) for g in groups.values()]  # a first, a middle and a last instance
    return chosen


def test_series_thumbnail_is_the_middle_instance_not_the_first(dicomweb_commons: DicomwebCommons,
                                                               long_series: list[Stored]) -> None:
    """A series' thumbnail shows its middle instance, a slice through the body, not the first (nor the last):
    each of the three differs from the other two, so the check cannot pass on any instance."""
    first, middle, last = long_series[0], long_series[len(long_series) // 2], long_series[-1]
    assert middle not in (first, last)
    png = {"Accept": "image/png"}
    with httpx.Client(base_url=dicomweb_commons.url, timeout=60,
                      headers={"Authorization": f"Bearer {dicomweb_commons.token('curator')}"}) as client:
        of_series = client.get(f"/studies/{middle.study}/series/{middle.series}/thumbnail", headers=png)
        own = {item: client.get(instance_path(item) + "/thumbnail", headers=png) for item in (first, middle, last)}
    assert picture(of_series, "png") and all(picture(response, "png") for response in own.values())
    assert len({response.content for response in own.values()}) == 3  # three different slices
    assert of_series.content == own[middle].content
    assert of_series.content != own[first].content and of_series.content != own[last].content


def test_a_larger_image_is_shrunk_to_256(dicomweb_commons: DicomwebCommons) -> None:
    """Without a viewport the longest side is at most 256 pixels (the curator reads every project: the
    largest image of the test data is a 320 x 240 ultrasound)."""
    item = max(_stored(dicomweb_commons.open_instances + dicomweb_commons.sequestered_instances),
               key=lambda s: max(s.rows, s.columns))
    assert max(item.rows, item.columns) > 256 and item.rows != item.columns
    with httpx.Client(base_url=dicomweb_commons.url, timeout=60,
                      headers={"Authorization": f"Bearer {dicomweb_commons.token('curator')}"}) as client:
        fits(picture(client.get(instance_path(item) + "/thumbnail"), "jpeg"), item, 256, 256)
        fits(picture(client.get(instance_path(item) + "/thumbnail", params={"viewport": "100,100"}), "jpeg"),
             item, 100, 100)


def test_viewport_is_fitted_with_its_aspect_ratio(http: httpx.Client, study: list[Stored]) -> None:
    item = series_of(study)[0][0]
    path = instance_path(item) + "/thumbnail"
    for width, height in ((16, 16), (item.columns // 2, 8), (9, item.rows // 3)):
        fits(picture(http.get(path, params={"viewport": f"{width},{height}"}), "jpeg"), item, width, height)
    only_width = picture(http.get(path, params={"viewport": "12,"}, headers={"Accept": "image/png"}), "png")
    assert only_width.width == 12 and abs(only_width.height - item.rows * 12 / item.columns) <= 1
    larger = picture(http.get(path, params={"viewport": f"{item.columns * 3},{item.rows * 3}"}), "jpeg")
    assert larger.size == (item.columns, item.rows)  # never enlarged
    for bad in ("0,10", "a,b", ",", "10", "10,10,0,0,5,5", "10,-1"):
        refused = http.get(path, params={"viewport": bad})
        assert refused.status_code == 400 and "viewport" in refused.json()["error"]["message"], (bad, refused.text)
    twice = http.get(path, params=[("viewport", "8,8"), ("viewport", "9,9")])
    assert twice.status_code == 400


def test_unsupported_media_types_and_parameters(http: httpx.Client, study: list[Stored]) -> None:
    item = study[0]
    series = f"/studies/{item.study}/series/{item.series}"
    for path in (f"/studies/{item.study}/thumbnail", series + "/thumbnail", instance_path(item) + "/thumbnail",
                 instance_path(item) + "/frames/1/thumbnail", series + "/rendered", f"/studies/{item.study}/rendered"):
        for accept in ("image/gif", "video/mp4", "application/pdf", 'multipart/related; type="application/dicom"'):
            refused = http.get(path, headers={"Accept": accept})
            assert refused.status_code == 406, (path, accept)
            assert refused.json()["error"]["code"] == "not_acceptable"
    for name, value in (("window", "40,400"), ("quality", "50"), ("annotation", "patient")):  # not thumbnail ones
        refused = http.get(instance_path(item) + "/thumbnail", params={name: value})
        assert refused.status_code == 400 and name in refused.json()["error"]["message"]
    refused = http.get(series + "/rendered", params={"viewport": "8,8"})  # as for an instance's /rendered
    assert refused.status_code == 400 and "viewport" in refused.json()["error"]["message"]


def test_unknown_uids_and_frames_are_404(http: httpx.Client, study: list[Stored]) -> None:
    item = study[0]
    unknown = "1.2.3.4.5.6.7.8.9"
    for path in (f"/studies/{unknown}/thumbnail", f"/studies/{unknown}/rendered",
                 f"/studies/{item.study}/series/{unknown}/thumbnail", f"/studies/{item.study}/series/{unknown}/rendered",
                 f"/studies/{item.study}/series/{item.series}/instances/{unknown}/thumbnail"):
        missing = http.get(path)
        assert missing.status_code == 404, path
        assert missing.json()["error"]["code"] == "not_found" and "you may read" in missing.json()["error"]["message"]
    no_frame = http.get(instance_path(item) + f"/frames/{item.frames + 1}/thumbnail")
    assert no_frame.status_code == 404 and "does not exist" in no_frame.json()["error"]["message"]


def test_series_rendered_has_a_part_per_instance(dicomweb_commons: DicomwebCommons, http: httpx.Client,
                                                 study: list[Stored]) -> None:
    """dicomweb-client's retrieve_series_rendered asks image/jpeg: multipart/related of JPEG parts."""
    series = series_of(study)[0]
    dw = DICOMwebClient(url=dicomweb_commons.url,
                        headers={"Authorization": f"Bearer {dicomweb_commons.token('reader')}"})
    body = dw.retrieve_series_rendered(series[0].study, series[0].series, media_types=("image/jpeg",))
    boundary = body.split(b"\r\n", 1)[0][2:].decode()
    parts = multipart_parts(body, f"multipart/related; boundary={boundary}")
    assert len(parts) == len(series)
    for (headers, content), item in zip(parts, series):
        assert headers["content-type"] == "image/jpeg" and int(headers["content-length"]) == len(content)
        assert headers["content-location"].endswith(instance_path(item) + "/rendered")
        assert Image.open(io.BytesIO(content)).size == (item.columns, item.rows)
        assert content == http.get(instance_path(item) + "/rendered").content  # the instance's own /rendered
    response = http.get(f"/studies/{series[0].study}/series/{series[0].series}/rendered")
    assert response.headers["content-type"].startswith('multipart/related; type="image/jpeg"; boundary=')
    windowed = http.get(f"/studies/{series[0].study}/series/{series[0].series}/rendered", params={"window": "100,50"})
    assert windowed.status_code == 200 and windowed.content != response.content


def test_study_rendered_as_png_parts(http: httpx.Client, study: list[Stored]) -> None:
    response = http.get(f"/studies/{study[0].study}/rendered", headers={"Accept": 'multipart/related; type="image/png"'})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith('multipart/related; type="image/png"')
    assert response.headers.get("transfer-encoding") == "chunked"  # streamed, not built whole first
    parts = multipart_parts(response.content, response.headers["content-type"])
    assert len(parts) == len(study) > 1
    for (headers, content), item in zip(parts, study):
        assert headers["content-type"] == "image/png"
        assert headers["content-location"].endswith(instance_path(item) + "/rendered")
        own = http.get(instance_path(item) + "/rendered", headers={"Accept": "image/png"})
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(content))), np.asarray(Image.open(io.BytesIO(own.content))))


def test_access_is_that_of_the_other_wado_routes(dicomweb_commons: DicomwebCommons) -> None:
    """A sequestered study answers as GET /studies/{study} does for the same user (404 not_found); the
    curator reads it; no token is 401 and no agreement 403, as everywhere."""
    hidden = _stored(dicomweb_commons.sequestered_instances)[0]
    paths = [f"/studies/{hidden.study}/thumbnail", f"/studies/{hidden.study}/rendered",
             f"/studies/{hidden.study}/series/{hidden.series}/thumbnail",
             f"/studies/{hidden.study}/series/{hidden.series}/rendered",
             instance_path(hidden) + "/thumbnail", instance_path(hidden) + "/frames/1/thumbnail"]
    for user, expected in (("reader", 404), ("seq-researcher", 404), ("stower", 404), ("no-dua", 403),
                           ("curator", 200)):
        with httpx.Client(base_url=dicomweb_commons.url, timeout=60,
                          headers={"Authorization": f"Bearer {dicomweb_commons.token(user)}"}) as client:
            retrieve = client.get(f"/studies/{hidden.study}")
            assert retrieve.status_code == expected, user
            for path in paths:
                response = client.get(path)
                assert response.status_code == expected, (user, path)
                if expected != 200:
                    assert response.json()["error"]["code"] == retrieve.json()["error"]["code"], (user, path)
    with httpx.Client(base_url=dicomweb_commons.url, timeout=60) as anonymous:
        for path in paths:
            assert anonymous.get(path).status_code == 401, path


def test_a_series_without_an_image_is_404(dicomweb_commons: DicomwebCommons) -> None:
    """A series of documents (here a structured report stored by STOW-RS into Stow-A1) has no thumbnail and
    nothing to render: 404 saying so, in the API's error body."""
    ds = structured_report(dicomweb_commons)
    stower = DICOMwebClient(url=dicomweb_commons.url,
                            headers={"Authorization": f"Bearer {dicomweb_commons.token('stower')}"})
    stored = stower.store_instances([ds])
    assert "FailedSOPSequence" not in stored
    with httpx.Client(base_url=dicomweb_commons.url, timeout=60,
                      headers={"Authorization": f"Bearer {dicomweb_commons.token('stower')}"}) as client:
        series = f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        instance = f"{series}/instances/{ds.SOPInstanceUID}"
        assert client.get(series + "/metadata").status_code == 200  # it is there, and readable
        for path in (f"/studies/{ds.StudyInstanceUID}/thumbnail", series + "/thumbnail", instance + "/thumbnail",
                     series + "/rendered", f"/studies/{ds.StudyInstanceUID}/rendered", instance + "/rendered",
                     instance + "/frames/1/rendered"):  # the instance's own /rendered: was 422
            missing = client.get(path)
            assert missing.status_code == 404, path
            assert missing.json()["error"]["code"] == "not_found" and "no image" in missing.json()["error"]["message"]
