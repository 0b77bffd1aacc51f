"""Helpers of the research API tests: a commons server with data of known availability.

The de-identified synthetic site of tests/server (3 patients) is split by patient into an
**open** project (``Open-X``), a **restricted** one (``Restricted-X``) and a **sequestered**
one (``Seq-X``), ingested with the pipeline of ``radcommons ingest --availability``.

Users (role, grants, data use agreement):

=================  ===========  ==========================  ====
name               role         grants                      DUA
=================  ===========  ==========================  ====
admin              admin        -                           no (not needed)
curator            curator      -                           no (not needed)
uploader           contributor  Open-A1                     no
contrib            contributor  Seq-X (its own project)     yes
reader             researcher   -                           no
researcher         researcher   -                           yes
granted            researcher   Restricted-X, Seq-X         yes
=================  ===========  ==========================  ====
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "server"))

from commons_fixtures import SITE, Commons, Instance, instances_of, make_commons  # noqa: E402,F401

from radcommons.pipelines.ingest import ingest_tree  # noqa: E402
from radcommons.store.index import make_engine  # noqa: E402
from radcommons.store.index.accounts import add_user, create_token, get_user  # noqa: E402
from radcommons.store.index.dua import accept  # noqa: E402
from radcommons.store.objects import ObjectStore  # noqa: E402

OPEN, RESTRICTED, SEQUESTERED = "Open-X", "Restricted-X", "Seq-X"
AVAILABILITY = {OPEN: "open", RESTRICTED: "restricted", SEQUESTERED: "sequestered"}
#: Which projects each user may read (what every test checks against).
READS: dict[str | None, set[str]] = {
    None: set(), "reader": set(), "uploader": set(),
    "researcher": {OPEN}, "contrib": {OPEN}, "granted": {OPEN, RESTRICTED},
    "curator": {OPEN, RESTRICTED, SEQUESTERED}, "admin": {OPEN, RESTRICTED, SEQUESTERED},
}
USERS = tuple(READS)


@dataclass
class ResearchCommons:
    server: Commons
    instances: dict[str, list[Instance]]
    object_ids: dict[str, list[str]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.server.url

    def headers(self, user: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.server.tokens[user]}"} if user else {}

    def token_file(self, user: str, path: Path) -> Path:
        """``user``'s token in a file readable only by its owner (as `--token-file` wants it)."""
        path.write_text(self.server.tokens[user])
        path.chmod(0o600)
        return path

    def secrets_of(self, project: str) -> set[str]:
        """Strings that must never appear in an answer to someone who may not read ``project``."""
        found = {project}
        for item in self.instances[project]:
            found |= {item.sop_uid, item.study_uid, item.patient_id}
        return found | set(self.object_ids[project])


def build(root: Path, db_url: str, tree: Path) -> ResearchCommons:
    instances = instances_of(tree)
    patients = sorted({i.patient_id for i in instances})
    split = {OPEN: patients[0], RESTRICTED: patients[1], SEQUESTERED: patients[2]}
    by_project = {p: [i for i in instances if i.patient_id == pid] for p, pid in split.items()}
    server = make_commons(root, db_url)
    engine = make_engine(db_url)
    try:
        store = ObjectStore(str(server.store_dir))
        for project, items in by_project.items():
            folder = root / "in" / project
            folder.mkdir(parents=True)
            for n, item in enumerate(items):
                shutil.copyfile(item.path, folder / f"{n:04d}.dcm")
            report = ingest_tree(folder, engine=engine, store=store, project=project, site_id=SITE,
                                 availability=AVAILABILITY[project], dataset=f"{SITE}_{project}", workers=1)
            assert report.count("indexed") == len(items)
        add_user(engine, "contrib", "contributor", site_id=SITE, projects=[SEQUESTERED])
        add_user(engine, "researcher", "researcher")
        add_user(engine, "granted", "researcher", projects=[RESTRICTED, SEQUESTERED])
        for name in ("contrib", "researcher", "granted"):
            server.tokens[name] = create_token(engine, name)[0]
            accept(engine, get_user(engine, name).id, name)
    finally:
        engine.dispose()
    commons = ResearchCommons(server, by_project)
    commons.object_ids = {p: [hashlib.sha256(i.path.read_bytes()).hexdigest() for i in items]
                          for p, items in by_project.items()}
    return commons




@contextlib.contextmanager
def serving(root: Path, db_url: str, tree: Path) -> Iterator[ResearchCommons]:
    """:func:`build`, stopped when the block ends."""
    commons = build(root, db_url, tree)
    try:
        yield commons
    finally:
        commons.server.stop()
