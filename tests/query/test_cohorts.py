"""Saved queries and frozen cohorts: immutable members, stable identifiers and hashes."""

from __future__ import annotations

import hashlib

import pytest

from radcommons.errors import UserError
from radcommons.store.query import (
    count,
    export_manifest,
    freeze,
    facets,
    get_cohort,
    list_cohorts,
    members,
    query,
    save_query,
    verify,
)

from .conftest import OPEN, Commons

FEMALE_CT = {"and": [{"=": {"sex": "Female"}}, {"=": {"series.modality": "CT"}}]}


def member_list(commons: Commons, identifier: str, node: str | None = None) -> list[tuple[str, str, str | None]]:
    return [(m.node, m.submitter_id, m.object_id)
            for batch in members(commons.engine, identifier, node=node) for m in batch]


def test_freeze_records_members_and_files(commons: Commons) -> None:
    cohort = freeze(commons.engine, node="case", filter=FEMALE_CT, name="women with CT", owner="alice",
                    projects=OPEN)
    assert cohort.frozen and cohort.identifier == f"rc-cohort-{cohort.content_hash[:12]}"  # type: ignore[index]
    assert cohort.member_count == 3 and cohort.instance_count == 5  # A1 (2 files), A3, B1 (CT + CR)
    assert [s for n, s, _ in member_list(commons, cohort.identifier, "case")] == ["A1", "A3", "B1"]  # type: ignore[arg-type]
    files = member_list(commons, cohort.identifier, "instance")  # type: ignore[arg-type]
    assert len(files) == 5 and all(o and len(o) == 64 for _, _, o in files)
    # The hash is the documented one: sorted "node\tproject\tsubmitter\tobject" lines.
    lines = sorted((m.node, m.project_id, m.submitter_id, m.object_id or "")
                   for batch in members(commons.engine, cohort.identifier) for m in batch)  # type: ignore[arg-type]
    text = "".join("\t".join(line) + "\n" for line in lines)
    assert hashlib.sha256(text.encode()).hexdigest() == cohort.content_hash
    assert verify(commons.engine, cohort.identifier)  # type: ignore[arg-type]


def test_a_frozen_cohort_never_changes_when_the_commons_grows(commons: Commons) -> None:
    cohort = freeze(commons.engine, node="case", filter=FEMALE_CT, name="women with CT", owner="alice", projects=OPEN)
    before = member_list(commons, cohort.identifier)  # type: ignore[arg-type]
    # New matching data: a new case, and a new CT file under a member case.
    new_case = commons.case("open-a", "A9", age=70, sex="Female")
    commons.study("open-a", new_case, "A9-st1", modalities=["CT"], day=0, series=[("CT", "SIEMENS")])
    commons.study("open-a", commons.ids["case"]["A1"], "A1-st2", modalities=["CT"], day=30, series=[("CT", "GE")])
    assert count(commons.engine, "case", FEMALE_CT, projects=OPEN) == 4  # the live query grew
    again = get_cohort(commons.engine, cohort.identifier)  # type: ignore[arg-type]
    assert again == cohort
    assert member_list(commons, cohort.identifier) == before  # type: ignore[arg-type]
    assert verify(commons.engine, cohort.identifier)  # type: ignore[arg-type]
    manifest = b"".join(export_manifest(commons.engine, "instance", {"in_cohort": cohort.identifier}, format="csv"))
    assert manifest.count(b"\n") == 1 + 5
    # Freezing the grown answer gives a new snapshot with another identifier.
    grown = freeze(commons.engine, node="case", filter=FEMALE_CT, name="women with CT v2", owner="alice",
                   projects=OPEN)
    assert grown.identifier != cohort.identifier and grown.member_count == 4 and grown.instance_count == 7


def test_same_members_same_identifier(commons: Commons) -> None:
    first = freeze(commons.engine, node="case", filter=FEMALE_CT, name="a", owner="alice", projects=OPEN)
    # Another filter with the same answer names the same content: the owner's snapshot again.
    same = {"in": {"submitter_id": ["A1", "A3", "B1"]}}
    again = freeze(commons.engine, node="case", filter=same, name="a2", owner="alice", projects=OPEN)
    assert again == first
    # Another owner gets a snapshot of its own (never alice's record), with the same content hash.
    second = freeze(commons.engine, node="case", filter=same, name="b", owner="bob", projects=OPEN)
    assert second.id != first.id and second.content_hash == first.content_hash
    assert (second.owner, second.name, second.filter) == ("bob", "b", same)
    assert second.identifier != first.identifier and second.identifier.startswith("rc-cohort-")  # type: ignore[union-attr]
    assert freeze(commons.engine, node="case", filter=same, name="b2", owner="bob", projects=OPEN) == second
    assert len(list_cohorts(commons.engine, frozen=True)) == 2


def test_saved_queries_freeze_later(commons: Commons) -> None:
    saved = save_query(commons.engine, "CT women", "case", FEMALE_CT, owner="alice", description="for a paper")
    assert not saved.frozen and saved.identifier is None
    snapshot = freeze(commons.engine, saved.id, owner="alice", projects=OPEN)
    assert snapshot.source_id == saved.id and snapshot.name == "CT women" and snapshot.filter == FEMALE_CT
    assert [c.id for c in list_cohorts(commons.engine, owner="alice")] == [snapshot.id, saved.id]
    assert [c.id for c in list_cohorts(commons.engine, frozen=False)] == [saved.id]
    with pytest.raises(UserError, match="saved query"):
        verify(commons.engine, saved.id)
    with pytest.raises(UserError, match="no cohort"):
        get_cohort(commons.engine, "rc-cohort-000000000000")
    with pytest.raises(UserError, match="has no field"):
        save_query(commons.engine, "bad", "case", {"=": {"sexx": "Female"}}, owner="alice")


def test_program_records_cannot_be_members(commons: Commons) -> None:
    """Freezing one was an IntegrityError (a member needs a project): a 500 through the API."""
    with pytest.raises(UserError, match="cannot hold program records"):
        freeze(commons.engine, node="program", filter={}, name="p", owner="alice", projects=OPEN)


def test_in_cohort_filters_and_non_imaging_cohorts(commons: Commons) -> None:
    cohort = freeze(commons.engine, node="measurement", filter={"=": {"test_result_text": "Positive"}}, name="pos",
                    owner="alice", projects=OPEN)
    assert cohort.instance_count == 0 and cohort.member_count == 4  # A1, A2, A3 (RT-PCR) and B1 (antigen)
    rows = query(commons.engine, "measurement", {"in_cohort": cohort.identifier}, fields=["submitter_id"],
                 sort=[("submitter_id", "asc")]).rows
    assert [r["submitter_id"] for r in rows] == ["A1-m1", "A2-m1", "A3-m1", "B1-m2"]
    # A name that is no frozen cohort (a typo) is refused: it selected nothing, an empty export.
    typo = {"in_cohort": cohort.identifier[:-1] + "x"}
    for run in (lambda: query(commons.engine, "measurement", typo), lambda: count(commons.engine, "measurement", typo),
                lambda: facets(commons.engine, "measurement", typo, ["test_result_text"]),
                lambda: freeze(commons.engine, node="measurement", filter=typo, name="t", owner="alice")):
        with pytest.raises(UserError, match="no frozen cohort"):
            run()
    # Members are read within the reader's projects.
    readable = [m.submitter_id for batch in members(commons.engine, cohort.identifier, projects=["open-b"])  # type: ignore[arg-type]
                for m in batch]
    assert readable == ["B1-m2"]
    with pytest.raises(UserError, match="no instances"):
        freeze(commons.engine, node="measurement", filter=None, name="x", owner="a", include_instances=True)
