"""Fixtures for object store tests: one store per kind (local folder, memory://, s3 on a moto server)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from radcommons.store.objects import ObjectStore
from objects_support import BUCKET, S3Server, StoreCase
from serve_support import free_port


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        s3 = S3Server(f"http://127.0.0.1:{port}", BUCKET)
        s3.client().create_bucket(Bucket=BUCKET)
        yield s3
    finally:
        server.stop()


@pytest.fixture(params=["local", "memory", "s3"])
def case(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreCase]:
    name = uuid.uuid4().hex
    if request.param == "local":
        root = tmp_path / "objects"
        yield StoreCase("local", ObjectStore(str(root)), str(root))
    elif request.param == "memory":
        store = ObjectStore(f"memory://{name}")
        yield StoreCase("memory", store, f"/{name}")
        store.fs.rm(f"/{name}", recursive=True) if store.fs.exists(f"/{name}") else None
    else:
        s3: S3Server = request.getfixturevalue("s3_server")
        prefix = f"{s3.bucket}/{name}"
        store = ObjectStore(f"s3://{prefix}", **s3.storage_options())
        yield StoreCase("s3", store, name, s3)
