"""The same QIDO-RS questions to the commons and to Orthanc (with its DICOMweb plugin).

Both hold the open project's instances; the commons is asked as a researcher (who reads that
project only). For every question: the same matching UIDs, and the same values for every
attribute both return, apart from what the standard leaves to each server (docs/DICOMWEB.md):

* Retrieve URL (0008,1190): each server's own address;
* Instance Availability (0008,0056), Specific Character Set (0008,0005) and Timezone Offset:
  sent by one server and not the other;
* the order of the values of Modalities in Study (0008,0061), compared as sets.

Orthanc 1.10 with DICOMweb plugin 1.7 (Debian 12) does not percent-decode query values, so a
wildcard sent as ``%2A`` (as dicomweb-client sends it) matches nothing there: Orthanc is asked
with the characters unencoded (:func:`orthanc_search`), the commons through dicomweb-client.
"""

from __future__ import annotations

import httpx
import pydicom
import pytest
from dicomweb_client import DICOMwebClient
from dicomweb_support import DicomwebCommons, Orthanc, uids, value

#: Attributes whose values the standard leaves to each server.
SERVER_SPECIFIC = {"00081190", "00080056", "00080005", "00080201"}
KEYS = {"study": "0020000D", "series": "0020000E", "instance": "00080018"}
#: Asked of both so that more attributes are compared than the defaults they share.
FIELDS = {
    "study": ["StudyDate", "StudyTime", "StudyDescription", "PatientID", "PatientName", "PatientSex",
              "AccessionNumber", "ModalitiesInStudy", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances"],
    "series": ["Modality", "SeriesNumber", "SeriesDescription", "BodyPartExamined", "NumberOfSeriesRelatedInstances"],
    "instance": ["SOPClassUID", "InstanceNumber", "Rows", "Columns"],
}


def _compare(level: str, ours: list[dict], theirs: list[dict]) -> int:
    key = KEYS[level]
    assert sorted(uids(ours, key)) == sorted(uids(theirs, key))
    assert len(ours) == len(set(uids(ours, key)))
    by_uid = {value(item, key)[0]: item for item in theirs}
    compared = 0
    for item in ours:
        other = by_uid[value(item, key)[0]]
        for tag in (set(item) & set(other)) - SERVER_SPECIFIC:
            mine, reference = value(item, tag), value(other, tag)
            if tag == "00080061":
                mine, reference = sorted(mine), sorted(reference)
            assert [str(v) for v in mine] == [str(v) for v in reference], (level, tag)
            compared += 1
    return compared


class OrthancSearch:
    """QIDO-RS searches sent to Orthanc with the query characters unencoded (see the module docstring)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def _get(self, path: str, search_filters: dict | None, fields: list[str] | None) -> list[dict]:
        query = [f"{k}={v}" for k, v in (search_filters or {}).items()]
        query += [f"includefield={f}" for f in fields or []]
        response = httpx.get(f"{self.url}{path}?{'&'.join(query)}", timeout=30)
        assert response.status_code == 200, response.text
        return response.json() if response.content else []

    def search_for_studies(self, search_filters=None, fields=None) -> list[dict]:
        return self._get("/studies", search_filters, fields)

    def search_for_series(self, study_instance_uid=None, search_filters=None, fields=None) -> list[dict]:
        return self._get(f"/studies/{study_instance_uid}/series" if study_instance_uid else "/series",
                         search_filters, fields)

    def search_for_instances(self, study_instance_uid=None, series_instance_uid=None, search_filters=None,
                             fields=None) -> list[dict]:
        path = "/instances"
        if study_instance_uid:
            path = f"/studies/{study_instance_uid}" + (f"/series/{series_instance_uid}" if series_instance_uid
                                                       else "") + path
        return self._get(path, search_filters, fields)


@pytest.fixture(scope="module")
def pair(dicomweb_commons: DicomwebCommons, orthanc: Orthanc) -> tuple[DICOMwebClient, OrthancSearch]:
    ours = DICOMwebClient(url=dicomweb_commons.url,
                          headers={"Authorization": f"Bearer {dicomweb_commons.token('reader')}"})
    return ours, OrthancSearch(orthanc.dicomweb_url)


def _target(commons: DicomwebCommons) -> pydicom.Dataset:
    return pydicom.dcmread(commons.open_instances[-1].path, stop_before_pixels=True)


STUDY_QUERIES = [
    {},
    {"PatientID": "{PatientID}"},
    {"PatientID": "{PatientID_prefix}*"},
    {"StudyDate": "{StudyDate}"},
    {"StudyDate": "{year}0101-{year}1231"},
    {"StudyDate": "-{StudyDate}"},
    {"ModalitiesInStudy": "CR"},
    {"ModalitiesInStudy": "CT"},
    {"StudyDescription": "*CHEST*"},
    {"StudyInstanceUID": "{StudyInstanceUID}"},
    {"PatientName": "{PatientName}"},
]


def _fill(query: dict, ds) -> dict:
    values = {"PatientID": ds.PatientID, "PatientID_prefix": ds.PatientID[:5], "StudyDate": ds.StudyDate,
              "year": ds.StudyDate[:4], "StudyInstanceUID": ds.StudyInstanceUID, "PatientName": str(ds.PatientName)}
    return {k: v.format(**values) for k, v in query.items()}


@pytest.mark.parametrize("query", STUDY_QUERIES, ids=lambda q: ",".join(q) or "all")
def test_studies_match_orthanc(pair, dicomweb_commons: DicomwebCommons, query: dict) -> None:
    ours, orthanc = pair
    filters = _fill(query, _target(dicomweb_commons))
    mine = ours.search_for_studies(search_filters=filters, fields=FIELDS["study"])
    theirs = orthanc.search_for_studies(search_filters=filters, fields=FIELDS["study"])
    _compare("study", mine, theirs)
    if not query:
        assert len(mine) > 1


@pytest.mark.parametrize("query", [{}, {"Modality": "CT"}, {"Modality": "C?"}, {"SeriesNumber": "1"},
                                   {"SeriesDescription": "*PA*"}], ids=lambda q: ",".join(q) or "all")
def test_series_match_orthanc(pair, query: dict) -> None:
    ours, orthanc = pair
    compared = _compare("series", ours.search_for_series(search_filters=query, fields=FIELDS["series"]),
                        orthanc.search_for_series(search_filters=query, fields=FIELDS["series"]))
    assert compared > 0 or query


def test_scoped_searches_match_orthanc(pair, dicomweb_commons: DicomwebCommons) -> None:
    ours, orthanc = pair
    ds = _target(dicomweb_commons)
    _compare("series", ours.search_for_series(study_instance_uid=ds.StudyInstanceUID, fields=FIELDS["series"]),
             orthanc.search_for_series(study_instance_uid=ds.StudyInstanceUID, fields=FIELDS["series"]))
    _compare("instance", ours.search_for_instances(study_instance_uid=ds.StudyInstanceUID,
                                                   series_instance_uid=ds.SeriesInstanceUID, fields=FIELDS["instance"]),
             orthanc.search_for_instances(study_instance_uid=ds.StudyInstanceUID,
                                          series_instance_uid=ds.SeriesInstanceUID, fields=FIELDS["instance"]))
    compared = _compare("instance",
                        ours.search_for_instances(search_filters={"SOPClassUID": ds.SOPClassUID},
                                                  fields=FIELDS["instance"]),
                        orthanc.search_for_instances(search_filters={"SOPClassUID": ds.SOPClassUID},
                                                     fields=FIELDS["instance"]))
    assert compared > 0
