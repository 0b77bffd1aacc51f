from dicomweb_client import DICOMwebClient


def test_smoke(dicomweb_commons):
    c = DICOMwebClient(url=dicomweb_commons.url, headers={"Authorization": "Bearer " + dicomweb_commons.token("admin")})
    studies = c.search_for_studies()
    import json
    print(json.dumps(studies[0], indent=1))
    print(len(studies))
    series = c.search_for_series()
    print(json.dumps(series[0], indent=1))
    inst = c.search_for_instances(fields=["all"], limit=1)
    print(json.dumps(inst[0])[:3000])
    uid = studies[0]["0020000D"]["Value"][0]
    ds = c.retrieve_study(uid)
    print(len(ds))
    md = c.retrieve_study_metadata(uid)
    print(len(md), list(md[0])[:5])
    assert 0
