"""The research API's main flow over HTTP, on SQLite and PostgreSQL: query, pages, facets, exports,
manifests, cohorts (freeze immutability), whole-index Parquet with DuckDB, the agreement, the audit log."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import duckdb
import httpx
import pyarrow.parquet as pq
import pydicom
import pytest
from database_support import pg_database
from research_support import OPEN, READS, RESTRICTED, SEQUESTERED, ResearchCommons, serving

from typer.testing import CliRunner

import radcommons
from radcommons.cli.app import app as cli
from radcommons.client import AuthenticationError, InvalidRequestError, PermissionDeniedError
from radcommons.errors import UserError
from radcommons.store.index import make_engine
from radcommons.store.index.facts import facts_table
from radcommons.store.query import facets


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def commons(request: pytest.FixtureRequest, research_commons: ResearchCommons, deid_tree: Path,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[ResearchCommons]:
    """The shared SQLite commons, or one on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield research_commons
        return
    with pg_database(request.getfixturevalue("pg_admin")) as url, \
            serving(tmp_path_factory.mktemp("research-pg"), url, deid_tree) as built:
        yield built


def client(commons: ResearchCommons, user: str | None) -> radcommons.Client:
    return radcommons.Client(commons.url, commons.server.tokens[user] if user else None, backoff=0.01, retries=2)


def test_query_pages_and_sort(commons: ResearchCommons) -> None:
    with client(commons, "granted") as c:
        every = list(c.rows("instance", fields=["sop_instance_uid", "project_id"], sort=["-sop_instance_uid"],
                            page_size=3))
        assert len(every) == len(commons.instances[OPEN]) + len(commons.instances[RESTRICTED])
        assert [r["sop_instance_uid"] for r in every] == sorted((r["sop_instance_uid"] for r in every), reverse=True)
        page = c.query("series", {"=": {"case.project_id": OPEN}}, fields=["series_uid", "case.sex"], limit=2,
                       count=True, facets=["modality"])
        assert page["fields"] == ["series_uid", "case.sex"] and len(page["rows"]) <= 2
        assert page["count"] >= len(page["rows"]) and "modality" in page["facets"]
        assert c.count("case") == 2
    with httpx.Client(base_url=commons.url + "/api/v1", headers=commons.headers("researcher")) as http:
        listed = http.get("/studies", params={"limit": 1, "fields": "study_uid,project_id", "sort": "-study_uid"})
        assert listed.status_code == 200 and listed.json()["next_cursor"]
        second = http.get("/studies", params={"limit": 1, "cursor": listed.json()["next_cursor"],
                                              "fields": "study_uid,project_id", "sort": "-study_uid"}).json()
        assert second["rows"][0]["study_uid"] < listed.json()["rows"][0]["study_uid"]


def test_bad_input_is_a_clear_error(commons: ResearchCommons) -> None:
    with httpx.Client(base_url=commons.url + "/api/v1", headers=commons.headers("researcher")) as http:
        wrong = http.post("/query/case", json={"filter": {"=": {"sexx": "Female"}}})
        assert wrong.status_code == 400 and "did you mean 'sex'" in wrong.json()["error"]["message"]
        node = http.post("/query/cases", json={})
        assert node.status_code == 422 and node.json()["error"]["fields"][0]["field"] == "path.node"
        limit = http.post("/query/case", json={"limit": 0})
        assert limit.status_code == 422 and "body.limit" in limit.json()["error"]["message"]
        cursor = http.post("/query/case", json={"cursor": "garbage"})
        assert cursor.status_code == 400


@pytest.mark.parametrize(("path", "body"), [
    ("/query/case", {"filters": {"=": {"sex": "Male"}}}),
    ("/query/case", {"sort": [{"field": "sex", "dir": "desc"}]}),
    ("/facets/case", {"fields": ["sex"], "filters": {"=": {"sex": "Male"}}}),
    ("/export/case", {"filters": {"=": {"sex": "Male"}}}),
    ("/manifest", {"filters": {"=": {"sex": "Male"}}}),
    ("/cohorts", {"name": "men", "node": "case", "filters": {"=": {"sex": "Male"}}, "freeze": True}),
    ("/exports", {"cohort": "rc-cohort-0123456789ab", "format": "png", "splits": "train=0.8,test=0.2"}),
])
def test_a_misspelt_field_of_a_body_is_refused(research_commons: ResearchCommons, path: str, body: dict) -> None:
    """A field a body does not have ("filters" for "filter") was ignored: the answer, the export or the
    frozen cohort held every readable record instead of the ones asked for. Now 422 naming it."""
    wrong = next(name for name in ("filters", "dir", "splits") if name in str(body))
    with httpx.Client(base_url=research_commons.url + "/api/v1", headers=research_commons.headers("researcher")) as http:
        answer = http.post(path, json=body)
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "validation_error" and wrong in error["message"], error
    assert any(f["field"].endswith(wrong) and f["message"] == "Extra inputs are not permitted" for f in error["fields"])


def test_facets_in_the_database(commons: ResearchCommons) -> None:
    with client(commons, "admin") as c:
        found = c.facets("series", ["modality", "case.age_at_index"], bins={"case.age_at_index": [0, 18, 65]})
    assert sum(b["count"] for b in found["case.age_at_index"]) == sum(b["count"] for b in found["modality"])
    assert [b["value"] for b in found["case.age_at_index"]][:3] == ["0-17", "18-64", "65+"]


def test_facets_from_series_facts_equal_the_node_tables(commons: ResearchCommons) -> None:
    """Ingest kept series_facts in step: each role's facets (fast path) equal the node tables' (reference)."""
    fields = ["modality", "manufacturer", "case.sex", "case.age_at_index", "imaging_study.study_description"]
    engine = make_engine(commons.server.db_url)
    try:
        with engine.connect() as connection:
            assert connection.execute(facts_table().select()).all(), "ingest wrote no series_facts rows"
        for user in ("researcher", "granted", "curator"):
            with client(commons, user) as c:
                found = c.facets("series", fields)
            reference = facets(engine, "series", None, fields, projects=READS[user], use_facts=False)
            assert {k: [[b.value, b.count] for b in v] for k, v in reference.items()} == \
                {k: [[b["value"], b["count"]] for b in v] for k, v in found.items()}, user
            counted = sum(b["count"] for b in found["modality"])
            assert counted == sum(len({pydicom.dcmread(i.path, stop_before_pixels=True).SeriesInstanceUID
                                       for i in commons.instances[p]}) for p in READS[user])
    finally:
        engine.dispose()


def test_exports_round_trip(commons: ResearchCommons, tmp_path: Path) -> None:
    with client(commons, "granted") as c:
        rows = list(c.rows("case", fields=["submitter_id", "project_id", "age_at_index"]))
        c.export("case", tmp_path / "cases.csv", fields=["submitter_id", "project_id", "age_at_index"])
        c.export("case", tmp_path / "cases.parquet", format="parquet",
                 fields=["submitter_id", "project_id", "age_at_index"])
        c.export("case", tmp_path / "cases.tsv", format="tsv")
    from_csv = list(csv.DictReader((tmp_path / "cases.csv").open()))
    assert [r["submitter_id"] for r in from_csv] == [r["submitter_id"] for r in rows]
    table = pq.read_table(tmp_path / "cases.parquet").to_pylist()
    assert table == rows
    assert {r["project_id"] for r in table} == {OPEN, RESTRICTED}
    assert "\t" in (tmp_path / "cases.tsv").read_text().splitlines()[0]


def test_manifest_and_objects(commons: ResearchCommons) -> None:
    with client(commons, "researcher") as c:
        manifest = c.manifest("case", {"=": {"project_id": OPEN}})
    assert {m["object_id"] for m in manifest} == set(commons.object_ids[OPEN])
    assert set(manifest[0]) >= {"object_id", "size", "study_uid", "series_uid", "sop_instance_uid"}
    digest, size = manifest[0]["object_id"], manifest[0]["size"]
    with httpx.Client(base_url=commons.url + "/api/v1", headers=commons.headers("researcher")) as http:
        whole = http.get(f"/objects/{digest}")
        assert whole.status_code == 200 and whole.headers["etag"] == f'"{digest}"'
        assert whole.headers["accept-ranges"] == "bytes" and int(whole.headers["content-length"]) == size
        part = http.get(f"/objects/{digest}", headers={"Range": "bytes=100-"})
        assert part.status_code == 206 and part.content == whole.content[100:]
        assert part.headers["content-range"] == f"bytes 100-{size - 1}/{size}"
        assert http.get(f"/objects/{digest}", headers={"Range": f"bytes={size}-"}).status_code == 416
        assert http.get(f"/objects/{commons.object_ids[SEQUESTERED][0]}").status_code == 404


def test_cohort_freeze_is_immutable(commons: ResearchCommons) -> None:
    with client(commons, "granted") as c:
        saved = c.save_cohort("granted cases", "case", {"in": {"project_id": [OPEN, RESTRICTED, SEQUESTERED]}})
        assert saved["frozen"] is False
        frozen = c.freeze(saved["id"])
        assert frozen["identifier"].startswith("rc-cohort-") and frozen["member_count"] == 2
        again = c.freeze(saved["id"])  # same members: the same snapshot
        assert again["identifier"] == frozen["identifier"]
        members = c.cohort_members(frozen["identifier"])
        assert {m["project_id"] for m in members} == {OPEN, RESTRICTED}
        read = c.cohort(frozen["identifier"])
        assert read["verified"] is True and read["content_hash"] == frozen["content_hash"]
        manifest = c.cohort_manifest(frozen["identifier"])
        assert len(manifest) == frozen["instance_count"]
        with pytest.raises(Exception) as refused:
            c.freeze(frozen["identifier"])
        assert getattr(refused.value, "status", None) in (409, 422)
    # The researcher without the restricted grant cannot see a snapshot holding restricted records.
    with client(commons, "researcher") as c, pytest.raises(Exception) as hidden:
        c.cohort(frozen["identifier"])
    assert getattr(hidden.value, "status", None) == 404


def test_index_parquet_with_duckdb(commons: ResearchCommons, tmp_path: Path) -> None:
    with client(commons, "granted") as c:
        path = c.index_parquet(tmp_path / "index.parquet")
    projects = {row[0] for row in duckdb.sql(f"select distinct project_id from '{path}'").fetchall()}
    assert projects == {OPEN, RESTRICTED}
    assert duckdb.sql(f"select count(*) from '{path}'").fetchall()[0][0] > 0


def test_agreement_flow_and_token_errors(commons: ResearchCommons) -> None:
    with client(commons, "reader") as c:
        with pytest.raises(PermissionDeniedError) as refused:
            c.query("case")
        assert refused.value.code == "dua_required" and "dua/accept" in refused.value.hint
        assert c.dua()["accepted"] is False
    with client(commons, None) as anonymous:
        assert anonymous.summary()["min_count"] == 10
        with pytest.raises(AuthenticationError):
            anonymous.query("case")
    with radcommons.Client(commons.url, "rc_not-a-token", retries=1) as bad, pytest.raises(AuthenticationError):
        bad.query("case")
    with client(commons, "researcher") as c, pytest.raises(InvalidRequestError):
        c.query("case", {"bogus": 1})


def test_a_token_string_is_checked_as_a_token_file_is(research_commons: ResearchCommons, tmp_path: Path) -> None:
    """``Client(url, open(path).read())`` kept the file's newline: every request failed, after all
    retries, as "cannot reach the commons"; ``Client(url, "rc_é")`` raised a bare UnicodeEncodeError."""
    saved = tmp_path / "token"
    saved.write_text(research_commons.server.tokens["researcher"] + "\n")
    with radcommons.Client(research_commons.url, saved.read_text(), retries=1) as c:
        assert c.count("case") == len({i.patient_id for i in research_commons.instances[OPEN]})
    for token, wrong in (("rc_é", "holds characters no token has"), ("rc_a b", "holds characters no token has"),
                         (" \n", "is empty")):
        with pytest.raises(UserError, match=f"the token given to the client {wrong}") as refused:
            radcommons.Client(research_commons.url, token)
        assert "token_file=PATH" in refused.value.hint


def test_audit_log(commons: ResearchCommons) -> None:
    with client(commons, "researcher") as c:
        c.query("case", limit=1)
    with httpx.Client(base_url=commons.url + "/api/v1", headers=commons.headers("admin")) as http:
        events = http.get("/admin/audit", params={"user": "researcher", "action": "research.query"}).json()
        assert events and events[0]["client"].startswith("127.0.0.1") and events[0]["records"] == 1
        assert http.get("/admin/audit", params={"action": "research."}).json()
        assert http.get("/admin/audit", params={"since": -1}).status_code == 422
    with httpx.Client(base_url=commons.url + "/api/v1", headers=commons.headers("curator")) as http:
        assert http.get("/admin/audit").status_code == 403
    done = CliRunner().invoke(cli, ["admin", "audit", "--user", "researcher", "--since", "1", "--action",
                                    "research.query", "--json", "--url", commons.server.db_url])
    assert done.exit_code == 0, done.output
    assert '"action": "research.query"' in done.output


def test_admin_project_commands(commons: ResearchCommons) -> None:
    def run(*args: str) -> str:
        done = CliRunner().invoke(cli, ["admin", *args, "--url", commons.server.db_url], env={"COLUMNS": "200"})
        assert done.exit_code == 0, done.output
        return done.output

    assert "restricted" in run("project", "add", "Later-R1", "--availability", "restricted")
    assert "Later-R1" in run("project", "grant", "researcher", "Later-R1")
    assert "Later-R1" in run("project", "list")
    assert "Later-R1" not in run("project", "grant", "researcher", "Later-R1", "--revoke")
    typo = CliRunner().invoke(cli, ["admin", "project", "grant", "researcher", "Latre-R1", "--url",
                                    commons.server.db_url])  # it granted a project that does not exist
    assert typo.exit_code != 0 and "no project Latre-R1" in str(typo.exception or typo.output)


def test_values_the_index_cannot_take_are_400_not_500(commons: ResearchCommons) -> None:
    """Each of these was a 500 with a traceback in the server's log (found by a sweep of the API)."""
    huge = 2**70
    with httpx.Client(base_url=commons.url + "/api/v1", headers=commons.headers("researcher"), timeout=60) as http:
        answers = {
            "a huge number in a filter": http.post("/query/case", json={"filter": {"=": {"age_at_index": huge}}}),
            "a huge submission id": http.get(f"/submissions/{huge}"),
            "a lone surrogate": http.post("/query/case", content=b'{"filter": {"=": {"submitter_id": "\\ud800"}}}',
                                          headers={"Content-Type": "application/json"}),
            "too many bins": http.post("/facets/case", json={"fields": ["age_at_index"],
                                                             "bins": {"age_at_index": list(range(100000))}}),
        }
        answers["an empty and"] = http.post("/query/case", json={"filter": {"and": []}})  # its hint was ""
        # "There was an error parsing the body", with no hint
        answers["JSON nested too deeply"] = http.post("/query/case", content=b"[" * 100000 + b"]" * 100000,
                                                      headers={"Content-Type": "application/json"})
    # a path parameter out of range is a validation error naming it (64481ab), as every other bad parameter
    too_big = answers.pop("a huge submission id")
    assert too_big.status_code == 422, too_big.text[:300]
    assert [f["field"] for f in too_big.json()["error"]["fields"]] == ["path.submission_id"]
    for what, answer in answers.items():
        assert answer.status_code == 400, (what, answer.status_code, answer.text[:300])
        assert answer.json()["error"]["hint"], what
    assert "nested too deeply" in answers["JSON nested too deeply"].json()["error"]["message"]
