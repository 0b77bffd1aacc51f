"""Fixtures for object store tests: one store per kind (local folder, memory://, s3 on a moto server)."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from radcommons.store.objects import ObjectStore

BUCKET = "radcommons-test"
S3_CREDENTIALS = {"key": "testing", "secret": "testing"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class S3Server:
    """A running moto S3 server with one bucket."""

    endpoint_url: str
    bucket: str

    def storage_options(self) -> dict[str, object]:
        return {
            "endpoint_url": self.endpoint_url,
            **S3_CREDENTIALS,
            "client_kwargs": {"region_name": "us-east-1"},
            # Each store gets its own s3fs instance, so no test sees another's listing cache.
            "skip_instance_cache": True,
        }

    def client(self):  # boto3 client for looking behind the store's back
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=S3_CREDENTIALS["key"],
            aws_secret_access_key=S3_CREDENTIALS["secret"],
            region_name="us-east-1",
        )

    def keys(self, prefix: str) -> list[str]:
        listing = self.client().list_objects_v2(Bucket=self.bucket, Prefix=prefix)
        return sorted(item["Key"] for item in listing.get("Contents", []))

    def pending_uploads(self, prefix: str) -> list[str]:
        listing = self.client().list_multipart_uploads(Bucket=self.bucket, Prefix=prefix)
        return [item["Key"] for item in listing.get("Uploads", [])]


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        s3 = S3Server(f"http://127.0.0.1:{port}", BUCKET)
        s3.client().create_bucket(Bucket=BUCKET)
        yield s3
    finally:
        server.stop()


@dataclass(frozen=True)
class StoreCase:
    """A fresh, empty store and the means to tamper with it directly."""

    kind: str
    store: ObjectStore
    prefix: str  # local: folder; memory: path; s3: key prefix in the bucket
    s3: S3Server | None = None

    def raw_keys(self) -> list[str]:
        """Every file under the store root, relative to it, seen without the ObjectStore."""
        if self.kind == "local":
            root = Path(self.prefix)
            return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
        if self.kind == "memory":
            fs = self.store.fs
            return sorted(p[len(self.prefix) + 1 :] for p in fs.find(self.prefix))
        assert self.s3 is not None
        return [key[len(self.prefix) + 1 :] for key in self.s3.keys(self.prefix + "/")]

    def overwrite(self, key: str, data: bytes) -> None:
        """Replace the bytes of a stored object behind the store's back."""
        if self.kind == "local":
            path = Path(self.prefix, key)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        elif self.kind == "memory":
            self.store.fs.pipe_file(f"{self.prefix}/{key}", data)
        else:
            assert self.s3 is not None
            self.s3.client().put_object(Bucket=self.s3.bucket, Key=f"{self.prefix}/{key}", Body=data)


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
