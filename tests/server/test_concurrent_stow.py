"""Concurrent writers into a commons that does not hold the project, dataset, study or series yet.

Every STOW-RS request creates (or finds) the same project, dataset, case, study and series rows;
done at once, a check-then-insert lets two requests insert the same row and one answers 500
(UNIQUE constraint). Here several threads store into one new study through a real server, on
SQLite and on PostgreSQL, and every request must succeed with every instance indexed once.
"""

from __future__ import annotations

import io
import threading
import uuid

from pathlib import Path

import httpx
import pydicom
from commons_fixtures import PROJECT, Commons, instances_of
from sqlalchemy import func, select

from radcommons.store.index import make_engine
from radcommons.store.index.schema import node_tables

REQUESTS = 6
PER_REQUEST = 2


def _uid() -> str:
    return f"2.25.{uuid.uuid4().int}"


def _multipart(datasets: list[pydicom.Dataset], boundary: str) -> bytes:
    body = io.BytesIO()
    for ds in datasets:
        encoded = io.BytesIO()
        ds.save_as(encoded, enforce_file_format=True)
        body.write(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode())
        body.write(encoded.getvalue())
        body.write(b"\r\n")
    body.write(f"--{boundary}--\r\n".encode())
    return body.getvalue()


def test_concurrent_stow_requests_into_a_new_study_all_succeed(commons: Commons, deid_tree: Path) -> None:
    # One instance copied with new UIDs: one patient, one new study and series, distinct instances.
    path = instances_of(deid_tree)[0].path
    study, series = _uid(), _uid()
    datasets = []
    for _ in range(REQUESTS * PER_REQUEST):
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = _uid()
        if "RequestAttributesSequence" in ds:
            del ds.RequestAttributesSequence  # it repeats the old Study Instance UID
        datasets.append(ds)
    boundary = uuid.uuid4().hex
    bodies = [_multipart(datasets[n * PER_REQUEST:(n + 1) * PER_REQUEST], boundary) for n in range(REQUESTS)]
    headers = {"Authorization": f"Bearer {commons.tokens['uploader']}", "Accept": "application/dicom+json",
               "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'}
    start = threading.Barrier(REQUESTS)
    answers: list[httpx.Response | BaseException] = [RuntimeError("not sent")] * REQUESTS

    def send(n: int) -> None:
        with httpx.Client(timeout=120) as http:
            start.wait()
            try:
                answers[n] = http.post(f"{commons.url}/dicomweb/studies", content=bodies[n], headers=headers)
            except BaseException as error:  # reported below, with the others
                answers[n] = error

    threads = [threading.Thread(target=send, args=(n,)) for n in range(REQUESTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180)
    statuses = [a.status_code if isinstance(a, httpx.Response) else repr(a) for a in answers]
    log = (commons.root / "server.log").read_text(errors="replace")
    assert statuses == [200] * REQUESTS, (statuses, [a.text[:300] for a in answers if isinstance(a, httpx.Response)],
                                          log[-3000:])
    assert "IntegrityError" not in log

    engine = make_engine(commons.db_url)
    try:
        tables = node_tables()
        with engine.connect() as conn:
            def count(node: str, **where: str) -> int:
                table = tables[node]
                query = select(func.count()).select_from(table).where(
                    *(table.c[k] == v for k, v in where.items()))
                return int(conn.execute(query).scalar_one())

            assert count("project", submitter_id=PROJECT) == 1
            assert count("imaging_study", study_uid=study) == 1
            assert count("series", series_uid=series) == 1
            assert count("case", project_id=PROJECT) == 1
            assert count("dataset", project_id=PROJECT) == 1
            uids = sorted(conn.execute(select(tables["instance"].c.sop_instance_uid)
                                       .where(tables["instance"].c.project_id == PROJECT)).scalars())
            assert uids == sorted(str(ds.SOPInstanceUID) for ds in datasets)
            number = conn.execute(select(tables["series"].c.number_of_instances)
                                  .where(tables["series"].c.series_uid == series)).scalar_one()
            assert number == REQUESTS * PER_REQUEST
    finally:
        engine.dispose()
