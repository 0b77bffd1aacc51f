"""QIDO-RS (PS3.18 10.6) against the commons with dicomweb-client: levels, matching, paging."""

from __future__ import annotations

from collections import defaultdict

import httpx
import pydicom
import pytest
from dicomweb_client import DICOMwebClient
from dicomweb_support import DicomwebCommons, uids, value

STUDY_REQUIRED = ["00080020", "00080030", "00080050", "00080056", "00080061", "00080090", "00081190", "00100010",
                  "00100020", "00100030", "00100040", "0020000D", "00200010", "00201206", "00201208"]
SERIES_REQUIRED = ["00080060", "0008103E", "00200011", "0020000E", "00201209", "00081190"]
INSTANCE_REQUIRED = ["00080016", "00080018", "00081190", "00200013", "00280010", "00280011"]


class WithoutStowStudies(DICOMwebClient):
    """The admin's view less the studies the STOW-RS tests stored (into Stow-A1, which the admin sees too):
    what these tests compare with the ingested truth, whichever test file ran first."""

    def __init__(self, commons: DicomwebCommons) -> None:
        super().__init__(url=commons.url, headers={"Authorization": f"Bearer {commons.token('admin')}"})
        stower = DICOMwebClient(url=commons.url, headers={"Authorization": f"Bearer {commons.token('stower')}"})
        ingested = {i.study_uid for i in commons.open_instances + commons.sequestered_instances}
        self.stored_by_stow = set(uids(stower.search_for_studies(), "0020000D")) - ingested

    def _kept(self, results: list[dict]) -> list[dict]:
        return [item for item in results if value(item, "0020000D")[0] not in self.stored_by_stow]

    def search_for_studies(self, *args, **kwargs) -> list[dict]:
        return self._kept(super().search_for_studies(*args, **kwargs))

    def search_for_series(self, *args, **kwargs) -> list[dict]:
        return self._kept(super().search_for_series(*args, **kwargs))

    def search_for_instances(self, *args, **kwargs) -> list[dict]:
        return self._kept(super().search_for_instances(*args, **kwargs))


def client(commons: DicomwebCommons, user: str = "admin") -> DICOMwebClient:
    if user == "admin":
        return WithoutStowStudies(commons)
    return DICOMwebClient(url=commons.url, headers={"Authorization": f"Bearer {commons.token(user)}"})


@pytest.fixture(scope="module")
def truth(dicomweb_commons: DicomwebCommons) -> list[pydicom.Dataset]:
    """Headers of every ingested instance, read from the files (what the answers must agree with)."""
    items = dicomweb_commons.open_instances + dicomweb_commons.sequestered_instances
    return [pydicom.dcmread(i.path, stop_before_pixels=True) for i in items]


def test_study_level_required_attributes_and_counts(dicomweb_commons: DicomwebCommons, truth) -> None:
    studies = client(dicomweb_commons).search_for_studies()
    by_study: dict[str, list[pydicom.Dataset]] = defaultdict(list)
    for ds in truth:
        by_study[ds.StudyInstanceUID].append(ds)
    assert sorted(uids(studies, "0020000D")) == sorted(by_study)
    for item in studies:
        assert all(tag in item for tag in STUDY_REQUIRED), set(STUDY_REQUIRED) - set(item)
        members = by_study[value(item, "0020000D")[0]]
        first = members[0]
        assert value(item, "00201208") == [len(members)]
        assert value(item, "00201206") == [len({ds.SeriesInstanceUID for ds in members})]
        assert sorted(value(item, "00080061")) == sorted({ds.Modality for ds in members})
        assert value(item, "00100020") == [first.PatientID]
        assert value(item, "00080020") == [first.StudyDate]  # the shifted date, as in the files
        assert value(item, "00081190")[0].endswith(f"/dicomweb/studies/{first.StudyInstanceUID}")
        assert "Value" not in item["00080050"]  # Accession Number: emptied by de-identification


def test_series_and_instance_levels(dicomweb_commons: DicomwebCommons, truth) -> None:
    dw = client(dicomweb_commons)
    series = dw.search_for_series()
    assert sorted(uids(series, "0020000E")) == sorted({ds.SeriesInstanceUID for ds in truth})
    assert all(all(tag in item for tag in SERIES_REQUIRED) for item in series)
    study = truth[0].StudyInstanceUID
    in_study = dw.search_for_series(study_instance_uid=study)
    assert sorted(uids(in_study, "0020000E")) == sorted({ds.SeriesInstanceUID for ds in truth
                                                         if ds.StudyInstanceUID == study})
    instances = dw.search_for_instances()
    assert sorted(uids(instances, "00080018")) == sorted(ds.SOPInstanceUID for ds in truth)
    assert all(all(tag in item for tag in INSTANCE_REQUIRED) for item in instances)
    one = truth[0]
    scoped = dw.search_for_instances(study_instance_uid=one.StudyInstanceUID, series_instance_uid=one.SeriesInstanceUID)
    assert sorted(uids(scoped, "00080018")) == sorted(ds.SOPInstanceUID for ds in truth
                                                      if ds.SeriesInstanceUID == one.SeriesInstanceUID)
    item = next(i for i in scoped if value(i, "00080018") == [one.SOPInstanceUID])
    assert value(item, "00280010") == [one.Rows] and value(item, "00080016") == [one.SOPClassUID]


@pytest.mark.parametrize("filters, expected", [
    ({"PatientID": "{patient}"}, lambda ds, t: ds.PatientID == t.PatientID),
    ({"PatientID": "{patient_prefix}*"}, lambda ds, t: ds.PatientID.startswith(t.PatientID[:4])),
    ({"PatientID": "{patient_wild}"}, lambda ds, t: ds.PatientID == t.PatientID),
    ({"StudyDate": "{date}"}, lambda ds, t: ds.StudyDate == t.StudyDate),
    ({"StudyDate": "{year}0101-{year}1231"}, lambda ds, t: ds.StudyDate[:4] == t.StudyDate[:4]),
    ({"StudyDate": "-{date}"}, lambda ds, t: ds.StudyDate <= t.StudyDate),
    ({"ModalitiesInStudy": "CT"}, None),
    ({"StudyDescription": "*CHEST*"}, lambda ds, t: "CHEST" in str(ds.get("StudyDescription", ""))),
    ({"StudyInstanceUID": "{two_studies}"}, None),
    ({"PatientName": "{patient_lower}"}, lambda ds, t: ds.PatientID == t.PatientID),  # PN: case-insensitive
    ({"AccessionNumber": "X*"}, lambda ds, t: False),
])
def test_study_matching(dicomweb_commons: DicomwebCommons, truth, filters, expected) -> None:
    target = truth[-1]
    studies = sorted({ds.StudyInstanceUID for ds in truth})
    values = {"patient": target.PatientID, "patient_prefix": target.PatientID[:4],
              "patient_wild": target.PatientID[:3] + "?" + target.PatientID[4:], "date": target.StudyDate,
              "year": target.StudyDate[:4], "two_studies": ",".join(studies[:2]),
              "patient_lower": str(target.PatientName).lower()}
    search = {k: v.format(**values) for k, v in filters.items()}
    found = uids(client(dicomweb_commons).search_for_studies(search_filters=search), "0020000D")
    if "ModalitiesInStudy" in filters:
        want = {ds.StudyInstanceUID for ds in truth if any(o.Modality == "CT" for o in truth
                                                            if o.StudyInstanceUID == ds.StudyInstanceUID)}
    elif "StudyInstanceUID" in filters:
        want = set(studies[:2])
    else:
        want = {ds.StudyInstanceUID for ds in truth if expected(ds, target)}
    assert sorted(found) == sorted(want)
    assert len(found) == len(set(found))


def test_series_and_instance_matching(dicomweb_commons: DicomwebCommons, truth) -> None:
    dw = client(dicomweb_commons)
    ct = uids(dw.search_for_series(search_filters={"Modality": "CT"}), "0020000E")
    assert sorted(ct) == sorted({ds.SeriesInstanceUID for ds in truth if ds.Modality == "CT"})
    first = uids(dw.search_for_series(search_filters={"SeriesNumber": 1}), "0020000E")
    assert sorted(first) == sorted({ds.SeriesInstanceUID for ds in truth if ds.SeriesNumber == 1})
    desc = uids(dw.search_for_series(search_filters={"00080060": "C?"}), "0020000E")  # a tag, and ? on CS
    assert sorted(desc) == sorted({ds.SeriesInstanceUID for ds in truth if len(ds.Modality) == 2
                                   and ds.Modality.startswith("C")})
    target = truth[0]
    by_class = uids(dw.search_for_instances(search_filters={"SOPClassUID": target.SOPClassUID}), "00080018")
    assert sorted(by_class) == sorted(ds.SOPInstanceUID for ds in truth if ds.SOPClassUID == target.SOPClassUID)
    by_patient = uids(dw.search_for_instances(search_filters={"PatientID": target.PatientID, "InstanceNumber": 1}),
                      "00080018")
    assert sorted(by_patient) == sorted(ds.SOPInstanceUID for ds in truth
                                        if ds.PatientID == target.PatientID and ds.InstanceNumber == 1)


def test_includefield_limit_offset(dicomweb_commons: DicomwebCommons, truth) -> None:
    dw = client(dicomweb_commons)
    everything = uids(dw.search_for_studies(), "0020000D")
    pages = []
    for offset in range(0, len(everything), 4):
        pages += uids(dw.search_for_studies(limit=4, offset=offset), "0020000D")
    assert pages == everything  # a stable order: pages neither repeat nor skip
    assert dw.search_for_studies(offset=len(everything)) == []
    with_age = dw.search_for_studies(fields=["PatientAge", "00081030"], limit=2)
    assert all("00101010" in item and "00081030" in item for item in with_age)
    target = truth[0]
    full = dw.search_for_instances(search_filters={"SOPInstanceUID": target.SOPInstanceUID}, fields=["all"])
    assert len(full) == 1
    assert value(full[0], "00101010") == [target.PatientAge] and "7FE00010" not in full[0]
    series = dw.search_for_series(fields=["BodyPartExamined", "Manufacturer"], limit=3)
    assert all("00180015" in item and "00080070" in item for item in series)


def test_fuzzy_empty_and_bad_requests(dicomweb_commons: DicomwebCommons) -> None:
    headers = {"Authorization": f"Bearer {dicomweb_commons.token('admin')}"}
    with httpx.Client(base_url=dicomweb_commons.url, headers=headers, timeout=30) as http:
        none = http.get("/studies", params={"PatientID": "NOBODY"})
        assert none.status_code == 200 and none.json() == []
        assert none.headers["content-type"] == "application/dicom+json"
        fuzzy = http.get("/studies", params={"fuzzymatching": "true", "limit": "1"})
        assert fuzzy.status_code == 200 and "fuzzymatching" in fuzzy.headers["warning"]
        assert http.get("/studies", params={"fuzzymatching": "false"}).status_code == 200
        bad = http.get("/studies", params={"NoSuchAttribute": "x"})
        assert bad.status_code == 400 and "NoSuchAttribute" in bad.json()["error"]["message"]
        assert http.get("/studies", params={"limit": "-1"}).status_code == 400
        assert http.get("/series", params={"SeriesNumber": "one"}).status_code == 400
        assert http.get("/studies", params={"StudyDate": "abc-def"}).status_code == 400  # matched nothing: 200 []
        lower = http.get("/studies", params={"Modality": "CT", "limit": "1"})  # returned every study, with a Warning
        assert lower.status_code == 400 and "Modality" in lower.json()["error"]["message"]
