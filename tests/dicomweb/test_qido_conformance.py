"""QIDO-RS conformance fixes found by a sweep against a real ``radcommons serve`` (PS3.18 8.3.4, PS3.4 C.2.2.2).

Value lists (commas, backslashes, a repeated key), keys of a lower level, impossible times and
reversed ranges, bulk data as a key: every check goes through HTTP to the running server of
``dicomweb_commons`` (httpx, or dicomweb-client where it is the client whose behaviour matters),
as the researcher ``reader`` (open project only).
"""

from __future__ import annotations

import httpx
import pydicom
import pytest
from dicomweb_client import DICOMwebClient
from dicomweb_support import DicomwebCommons, uids


def http(commons: DicomwebCommons, user: str = "reader") -> httpx.Client:
    return httpx.Client(base_url=commons.url, timeout=60,
                        headers={"Authorization": f"Bearer {commons.token(user)}"})


def study_uids(answer: httpx.Response) -> set[str]:
    assert answer.status_code == 200, answer.text
    return set(uids(answer.json(), "0020000D"))


@pytest.fixture(scope="module")
def one(dicomweb_commons: DicomwebCommons) -> pydicom.Dataset:
    """An open instance, as ingested."""
    return pydicom.dcmread(dicomweb_commons.open_instances[0].path, stop_before_pixels=True)


# ---------------------------------------------------------------------- F1, F2: value lists in QIDO


def test_comma_separated_lists_match_like_backslash_lists(dicomweb_commons: DicomwebCommons) -> None:
    """OHIF's worklist sends ModalitiesInStudy=CT%2CCR for two modalities: it matched nothing (200 [])."""
    with http(dicomweb_commons) as client:
        modalities = sorted({m for item in client.get("/studies").json() for m in item["00080061"]["Value"]})
        assert len(modalities) >= 2, modalities
        first, second = modalities[:2]
        each = study_uids(client.get("/studies", params={"ModalitiesInStudy": first})) \
            | study_uids(client.get("/studies", params={"ModalitiesInStudy": second}))
        comma = study_uids(client.get(f"/studies?ModalitiesInStudy={first}%2C{second}"))
        backslash = study_uids(client.get(f"/studies?ModalitiesInStudy={first}%5C{second}"))
        assert comma == backslash == each and each
        patients = sorted({i.patient_id for i in dicomweb_commons.open_instances})[:2]
        by_patient = study_uids(client.get("/studies", params={"PatientID": ",".join(patients)}))
        assert by_patient == {i.study_uid for i in dicomweb_commons.open_instances if i.patient_id in patients}
        # In free text a comma is part of the value ("CHEST, PA"): not a list there.
        text = client.get("/studies", params={"StudyDescription": "CHEST, PA"})
        assert text.status_code == 200 and text.json() == []


def test_a_repeated_key_is_a_list_or_refused(dicomweb_commons: DicomwebCommons) -> None:
    """dicomweb-client sends a list as the key repeated: only the last value was kept, silently."""
    dw = DICOMwebClient(url=dicomweb_commons.url,
                        headers={"Authorization": f"Bearer {dicomweb_commons.token('reader')}"})
    with http(dicomweb_commons) as client:
        modalities = sorted({m for item in client.get("/studies").json() for m in item["00080061"]["Value"]})[:2]
        wanted = set().union(*(study_uids(client.get("/studies", params={"ModalitiesInStudy": m}))
                               for m in modalities))
        for order in (modalities, modalities[::-1]):
            found = dw.search_for_studies(search_filters={"ModalitiesInStudy": list(order)})
            assert set(uids(found, "0020000D")) == wanted
        twice = client.get("/studies?StudyDate=20200101-&StudyDate=-20201231")
        assert twice.status_code == 400 and "StudyDate is given more than once" in twice.json()["error"]["message"]


# ---------------------------------------------------------------------- decisions: lower-level keys, bad times


def test_lower_level_keys_and_impossible_times_are_refused(dicomweb_commons: DicomwebCommons,
                                                           one: pydicom.Dataset) -> None:
    """A series key in a study search returned every study (with only a Warning); StudyTime=25 and a
    reversed range matched nothing (200 [])."""
    with http(dicomweb_commons) as client:
        for path, params in (("/studies", {"Modality": "CT"}),
                             ("/studies", {"SeriesInstanceUID": one.SeriesInstanceUID}),
                             ("/series", {"SOPInstanceUID": one.SOPInstanceUID})):
            refused = client.get(path, params=params)
            assert refused.status_code == 400, (path, params, refused.text)
            assert next(iter(params)) in refused.json()["error"]["message"]
        assert client.get("/studies", params={"Modality": ""}).status_code == 200  # a return key: left out
        for params, words in (({"StudyTime": "25"}, "hours 25"), ({"StudyTime": "1261"}, "minutes 61"),
                              ({"StudyDate": "20200101-20191231"}, "ends before it starts")):
            refused = client.get("/studies", params=params)
            assert refused.status_code == 400 and words in refused.json()["error"]["message"], refused.text


# ---------------------------------------------------------------------- F8: bulk data in QIDO


def test_pixel_data_is_refused_as_a_qido_key(dicomweb_commons: DicomwebCommons) -> None:
    """Pixel Data came back as present and empty ({"vr": "OB"}); a match on it matched nothing."""
    with http(dicomweb_commons) as client:
        for path, params in (("/instances", {"includefield": "7FE00010", "limit": "1"}),
                             ("/studies", {"PixelData": "", "limit": "1"}),
                             ("/instances", {"7FE00010": "1"})):
            refused = client.get(path, params=params)
            assert refused.status_code == 400, (params, refused.text)
            assert "PixelData is bulk data" in refused.json()["error"]["message"]
        everything = client.get("/instances", params={"includefield": "all", "limit": "1"})
        assert everything.status_code == 200 and "7FE00010" not in everything.json()[0]
