"""``radcommons objects ...`` run as a real subprocess."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

DATA = b"DICM-cli-test" * 100
DIGEST = hashlib.sha256(DATA).hexdigest()


def test_put_ls_get_verify_default_store(run_cli, tmp_path: Path) -> None:
    (tmp_path / "a.dcm").write_bytes(DATA)
    (tmp_path / "b.dcm").write_bytes(DATA)

    put = run_cli("objects", "put", "a.dcm", "b.dcm")
    assert put.returncode == 0, put.stderr
    assert put.stdout.splitlines() == [
        f"{DIGEST}  {len(DATA)}  a.dcm",
        f"{DIGEST}  {len(DATA)}  b.dcm  (already stored)",
    ]
    # The default store is var/objects relative to the working directory.
    assert (tmp_path / "var/objects/sha256" / DIGEST[:2] / DIGEST[2:4] / DIGEST).read_bytes() == DATA

    ls = run_cli("objects", "ls")
    assert ls.stdout.splitlines() == [f"{DIGEST}  {len(DATA)}"]

    get = run_cli("objects", "get", DIGEST, "out/copy.dcm")
    assert get.returncode == 0, get.stderr
    assert (tmp_path / "out/copy.dcm").read_bytes() == DATA

    verify = run_cli("objects", "verify")
    assert verify.returncode == 0, verify.stderr
    assert "checked 1 object(s)" in verify.stderr and "0 bad" in verify.stderr


def test_verify_reports_corrupt_objects_and_exits_1(run_cli, tmp_path: Path) -> None:
    (tmp_path / "a.dcm").write_bytes(DATA)
    (tmp_path / "b.dcm").write_bytes(b"other")
    assert run_cli("objects", "put", "a.dcm", "b.dcm", "--store", "store").returncode == 0
    (tmp_path / "store/sha256" / DIGEST[:2] / DIGEST[2:4] / DIGEST).write_bytes(b"tampered")

    verify = run_cli("objects", "verify", "--store", "store")
    assert verify.returncode == 1
    assert verify.stdout.splitlines()[0].startswith(f"CORRUPT  {DIGEST}")
    assert len(verify.stdout.splitlines()) == 1
    assert "1 bad" in verify.stderr

    named = run_cli("objects", "verify", hashlib.sha256(b"other").hexdigest(), "--store", "store")
    assert named.returncode == 0

    get = run_cli("objects", "get", DIGEST, "out.dcm", "--store", "store")
    assert get.returncode == 2
    assert "corrupt" in get.stderr and DIGEST in get.stderr and "Traceback" not in get.stderr
    assert not (tmp_path / "out.dcm").exists()

    rm = run_cli("objects", "rm", DIGEST, "--store", "store")
    assert rm.returncode == 0 and rm.stdout.startswith("deleted")
    assert run_cli("objects", "verify", "--store", "store").returncode == 0


def test_verify_missing_named_object_exits_1(run_cli, tmp_path: Path) -> None:
    (tmp_path / "a.dcm").write_bytes(DATA)
    assert run_cli("objects", "put", "a.dcm").returncode == 0  # a store, without that object
    verify = run_cli("objects", "verify", "0" * 64)
    assert verify.returncode == 1
    assert verify.stdout.strip() == "MISSING  " + "0" * 64


def test_store_setting_from_environment(run_cli, tmp_path: Path) -> None:
    (tmp_path / "a.dcm").write_bytes(DATA)
    env = {"RADCOMMONS_OBJECT_STORE_URL": "elsewhere"}
    assert run_cli("objects", "put", "a.dcm", env=env).returncode == 0
    assert (tmp_path / "elsewhere/sha256").is_dir()
    assert not (tmp_path / "var").exists()


def test_s3_store_through_settings(run_cli, tmp_path: Path, s3_server) -> None:
    (tmp_path / "a.dcm").write_bytes(DATA)
    options = {
        "endpoint_url": s3_server.endpoint_url,
        "key": "testing",
        "secret": "testing",
        "client_kwargs": {"region_name": "us-east-1"},
    }
    env = {
        "RADCOMMONS_OBJECT_STORE_URL": f"s3://{s3_server.bucket}/cli",
        "RADCOMMONS_OBJECT_STORE_OPTIONS": json.dumps(options),
    }
    put = run_cli("objects", "put", "a.dcm", env=env)
    assert put.returncode == 0, put.stderr
    assert s3_server.keys("cli/") == [f"cli/sha256/{DIGEST[:2]}/{DIGEST[2:4]}/{DIGEST}"]
    assert run_cli("objects", "ls", env=env).stdout.split() == [DIGEST, str(len(DATA))]

    shown = run_cli("config", "show", "--json", env=env)
    assert json.loads(shown.stdout)["object_store_options"]["secret"] == "****"


def _assert_user_error(result, *needles: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stderr.startswith("error:")
    for needle in needles:
        assert needle in result.stderr


def test_missing_file(run_cli, tmp_path: Path) -> None:
    (tmp_path / "a.dcm").write_bytes(DATA)
    result = run_cli("objects", "put", "a.dcm", "missing.dcm")
    _assert_user_error(result, "file not found: missing.dcm")
    assert not (tmp_path / "var").exists()  # nothing stored when one argument is bad


def test_directory_as_file(run_cli, tmp_path: Path) -> None:
    (tmp_path / "scans").mkdir()
    _assert_user_error(run_cli("objects", "put", "scans"), "scans is a directory")


def test_bad_digests(run_cli) -> None:
    _assert_user_error(run_cli("objects", "get", "xyz", "out.dcm"), "not a valid SHA-256 digest: 'xyz'")
    _assert_user_error(run_cli("objects", "verify", "ABC"), "not a valid SHA-256 digest")
    _assert_user_error(run_cli("objects", "rm", "0" * 63), "not a valid SHA-256 digest")


def test_missing_object(run_cli, tmp_path: Path) -> None:
    (tmp_path / "a.dcm").write_bytes(DATA)
    assert run_cli("objects", "put", "a.dcm").returncode == 0
    _assert_user_error(run_cli("objects", "get", "0" * 64, "out.dcm"), "0" * 64, "not found")


@pytest.mark.parametrize("command", [["verify"], ["ls"], ["get", "0" * 64, "out.dcm"], ["rm", "0" * 64]])
def test_a_store_folder_that_does_not_exist_is_an_error(run_cli, command: list[str]) -> None:
    """verify said "checked 0 object(s): 0 bad" and ls printed nothing, exit 0: a mistyped path
    looked like an empty store."""
    _assert_user_error(run_cli("objects", *command, "--store", "no-such-store"), "no object store at",
                       "the folder does not exist")


def test_bad_store_url(run_cli, tmp_path: Path) -> None:
    (tmp_path / "a.dcm").write_bytes(DATA)
    _assert_user_error(run_cli("objects", "put", "a.dcm", "--store", "nosuch://x"), "cannot open object store")
