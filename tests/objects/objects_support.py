"""The object store tests' helpers: a moto S3 server handle and a store under test (one module,
imported by the conftest and the tests, so no test imports ``conftest`` by name)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from radcommons.store.objects import ObjectStore

BUCKET = "radcommons-test"
S3_CREDENTIALS = {"key": "testing", "secret": "testing"}


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
