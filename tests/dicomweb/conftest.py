"""Fixtures of the DICOMweb tests: one commons server with ingested data, and Orthanc beside it.

``dicomweb_commons`` (once per session and worker): the de-identified synthetic site of
tests/server is split by patient into an **open** project (``Open-A1``) and a **sequestered**
one (``Seq-A1``, the last patient), ingested with the same pipeline as ``radcommons ingest``;
``no-dua`` is the only researcher who has not accepted the data use agreement.
``Stow-A1`` is a restricted project that only the ``stower`` contributor stores into, so
STOW tests never change what the other tests read.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "server"))

from commons_fixtures import SITE, Instance, instances_of, make_commons  # noqa: E402,F401
from dicomweb_support import OPEN, SEQUESTERED, STOW, DicomwebCommons, Orthanc, start_orthanc  # noqa: E402

from radcommons.pipelines.indexing import IndexWriter  # noqa: E402
from radcommons.pipelines.ingest import ingest_tree  # noqa: E402
from radcommons.store.index import make_engine  # noqa: E402
from radcommons.store.index.accounts import add_user, create_token  # noqa: E402
from radcommons.store.objects import ObjectStore  # noqa: E402


def _copy(instances: list[Instance], target: Path) -> Path:
    for index, item in enumerate(instances):
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(item.path, target / f"{index:04d}.dcm")
    return target


@pytest.fixture(scope="session")
def dicomweb_commons(deid_tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DicomwebCommons]:
    root = tmp_path_factory.mktemp("dicomweb-commons")
    instances = instances_of(deid_tree)
    patients = sorted({i.patient_id for i in instances})
    sequestered = [i for i in instances if i.patient_id == patients[-1]]
    open_ = [i for i in instances if i.patient_id != patients[-1]]
    server = make_commons(root, f"sqlite:///{root / 'index.db'}")
    try:
        engine = make_engine(server.db_url)
        store = ObjectStore(str(server.store_dir))
        for project, items, availability in ((OPEN, open_, "open"), (SEQUESTERED, sequestered, "sequestered")):
            report = ingest_tree(_copy(items, root / "in" / project), engine=engine, store=store, project=project,
                                 site_id=SITE, availability=availability, dataset=f"{SITE}_DW")
            assert report.count("indexed") == len(items), [o for o in report.outcomes if o.status != "indexed"]
        with engine.begin() as conn:
            IndexWriter(STOW, f"{SITE}_STOW", "test").ensure_project(conn, availability="restricted")
        add_user(engine, "stower", "contributor", site_id=SITE, projects=[STOW])
        add_user(engine, "seq-researcher", "researcher", projects=[SEQUESTERED])  # a grant never opens sequestered
        add_user(engine, "no-dua", "researcher")
        for name in ("stower", "seq-researcher", "no-dua"):
            server.tokens[name] = create_token(engine, name)[0]
        engine.dispose()
        for name in ("reader", "stower", "seq-researcher"):  # everyone but no-dua accepts the agreement
            accepted = httpx.post(server.url + "/api/v1/dua/accept", timeout=30,
                                  headers={"Authorization": f"Bearer {server.tokens[name]}"})
            assert accepted.status_code == 200, accepted.text
        yield DicomwebCommons(server, open_, sequestered)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def orthanc(dicomweb_commons: DicomwebCommons, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    """Orthanc with its DICOMweb plugin, holding the same instances as the open project."""
    with start_orthanc(tmp_path_factory.mktemp("orthanc")) as server:
        for item in dicomweb_commons.open_instances:
            server.upload(item.path)
        yield server
