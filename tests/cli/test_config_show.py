"""``radcommons config show``: sources, precedence, masking, and bad values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def show(run_cli, **kwargs) -> dict:
    result = run_cli("config", "show", "--json", **kwargs)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def assert_config_error(result, *needles: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output
    assert result.stderr.startswith("error:")
    for needle in needles:
        assert needle in result.stderr, result.stderr


def test_defaults(run_cli) -> None:
    assert show(run_cli) == {
        "database_url": "sqlite:///var/radcommons.db",
        "object_store_url": "var/objects",
        "object_store_options": {},
        "secrets_dir": "var/secrets",
        "server_state_dir": "var/server",
        "workers": 0,
        "dask_scheduler": "",
        "export_retention_hours": 168.0,
    }


def test_table_output(run_cli) -> None:
    result = run_cli("config", "show")
    assert result.returncode == 0, result.stderr
    assert "configuration file: radcommons.toml (not present)" in result.stdout
    for name in ("database_url", "object_store_url", "workers", "sqlite:///var/radcommons.db"):
        assert name in result.stdout


def test_environment_variables(run_cli) -> None:
    values = show(
        run_cli,
        env={
            "RADCOMMONS_WORKERS": "4",
            "RADCOMMONS_OBJECT_STORE_URL": "s3://commons/objects",
            "RADCOMMONS_DASK_SCHEDULER": "tcp://10.0.0.1:8786",
        },
    )
    assert values["workers"] == 4
    assert values["object_store_url"] == "s3://commons/objects"
    assert values["dask_scheduler"] == "tcp://10.0.0.1:8786"


def test_toml_in_working_directory(run_cli, tmp_path: Path) -> None:
    (tmp_path / "radcommons.toml").write_text(
        'workers = 3\nobject_store_url = "s3://site-a/objects"\n'
        '[object_store_options]\nendpoint_url = "http://127.0.0.1:9000"\n'
    )
    values = show(run_cli)
    assert values["workers"] == 3
    assert values["object_store_url"] == "s3://site-a/objects"
    assert values["object_store_options"] == {"endpoint_url": "http://127.0.0.1:9000"}
    table = run_cli("config", "show")
    assert "configuration file: radcommons.toml\n" in table.stdout


def test_radcommons_config_points_elsewhere(run_cli, tmp_path: Path) -> None:
    (tmp_path / "radcommons.toml").write_text("workers = 3\n")
    other = tmp_path / "etc" / "site.toml"
    other.parent.mkdir()
    other.write_text("workers = 5\n")
    assert show(run_cli, env={"RADCOMMONS_CONFIG": str(other)})["workers"] == 5


def test_environment_wins_over_file(run_cli, tmp_path: Path) -> None:
    (tmp_path / "radcommons.toml").write_text('workers = 3\ndask_scheduler = "tcp://file:1"\n')
    values = show(run_cli, env={"RADCOMMONS_WORKERS": "7"})
    assert values["workers"] == 7
    assert values["dask_scheduler"] == "tcp://file:1"  # the file still supplies the rest


def test_passwords_are_masked(run_cli, tmp_path: Path) -> None:
    (tmp_path / "radcommons.toml").write_text(
        '[object_store_options]\nkey = "AKIAEXAMPLE"\nsecret = "s3cr3t-key"\n'
        'client_kwargs = { aws_session_token = "tok3n", region_name = "us-east-1" }\n'
    )
    env = {
        "RADCOMMONS_DATABASE_URL": "postgresql+psycopg://radcommons:hunter2@db.example:5432/commons",
        "RADCOMMONS_OBJECT_STORE_URL": "s3://AKIAEXAMPLE:s3cr3t-url@bucket/prefix",
    }
    for args in (("config", "show", "--json"), ("config", "show")):
        result = run_cli(*args, env=env)
        assert result.returncode == 0, result.stderr
        for secret in ("hunter2", "s3cr3t-key", "s3cr3t-url", "tok3n"):
            assert secret not in result.stdout + result.stderr
    values = show(run_cli, env=env)
    assert values["database_url"] == "postgresql+psycopg://radcommons:****@db.example:5432/commons"
    assert values["object_store_url"] == "s3://AKIAEXAMPLE:****@bucket/prefix"
    assert values["object_store_options"] == {
        "key": "****",
        "secret": "****",
        "client_kwargs": {"aws_session_token": "****", "region_name": "us-east-1"},
    }


def test_passwords_in_the_scheduler_and_endpoint_addresses_are_masked(run_cli) -> None:
    """'passwords and secrets masked', but a Dask address and an endpoint URL were shown whole."""
    env = {"RADCOMMONS_DASK_SCHEDULER": "tcp://u:hunter2@host:8786",
           "RADCOMMONS_OBJECT_STORE_OPTIONS": '{"client_kwargs": {"endpoint_url": "https://u:s3cr3t@x"}}'}
    values = show(run_cli, env=env)
    assert values["dask_scheduler"] == "tcp://u:****@host:8786"
    assert values["object_store_options"] == {"client_kwargs": {"endpoint_url": "https://u:****@x"}}


def test_store_options_that_are_not_json(run_cli) -> None:
    """An internal error ('SettingsError ... this is a bug') in every command."""
    assert_config_error(run_cli("config", "show", env={"RADCOMMONS_OBJECT_STORE_OPTIONS": "notjson"}),
                        "RADCOMMONS_OBJECT_STORE_OPTIONS", "is not JSON", "a JSON object")


def test_workers_above_the_limit(run_cli) -> None:
    """100000 workers hung a command starting processes; 10**23 was 'a number is out of range'."""
    for many in ("100000", "9" * 23):
        assert_config_error(run_cli("config", "show", env={"RADCOMMONS_WORKERS": many}), "workers",
                            "less than or equal to 256")


def test_an_empty_folder_setting_is_refused(run_cli) -> None:
    """RADCOMMONS_SECRETS_DIR="" became the current folder: key files and tokens were written there."""
    for name in ("RADCOMMONS_SECRETS_DIR", "RADCOMMONS_SERVER_STATE_DIR"):
        assert_config_error(run_cli("config", "show", env={name: ""}), "must name a folder, not be empty")


def test_password_in_query_is_masked(run_cli) -> None:
    url = "postgresql+psycopg://radcommons@db/commons?password=hunter2&sslmode=require"
    values = show(run_cli, env={"RADCOMMONS_DATABASE_URL": url})
    assert values["database_url"] == "postgresql+psycopg://radcommons@db/commons?password=****&sslmode=require"


def test_unsupported_database(run_cli) -> None:
    result = run_cli("config", "show", env={"RADCOMMONS_DATABASE_URL": "mysql://root:hunter2@db/x"})
    assert_config_error(result, "invalid configuration", "database_url", "sqlite:// or postgresql://")
    assert "hunter2" not in result.stderr  # the offending value is shown masked


@pytest.mark.parametrize("where", ["env", "file"])
def test_negative_workers(run_cli, tmp_path: Path, where: str) -> None:
    env = {}
    if where == "env":
        env["RADCOMMONS_WORKERS"] = "-1"
    else:
        (tmp_path / "radcommons.toml").write_text("workers = -1\n")
    result = run_cli("config", "show", env=env)
    assert_config_error(result, "workers", "greater than or equal to 0", "radcommons.toml")


def test_workers_not_a_number(run_cli) -> None:
    assert_config_error(run_cli("config", "show", env={"RADCOMMONS_WORKERS": "many"}), "workers", "many")


def test_unknown_key_in_toml(run_cli, tmp_path: Path) -> None:
    (tmp_path / "radcommons.toml").write_text("wokers = 4\n")
    assert_config_error(run_cli("config", "show"), "wokers", "unknown setting", "workers")


def test_invalid_toml_names_the_file(run_cli, tmp_path: Path) -> None:
    (tmp_path / "radcommons.toml").write_text("workers = [1,\ndatabase_url = sqlite\n")
    assert_config_error(run_cli("config", "show"), "radcommons.toml", "not valid TOML", "line")


def test_invalid_toml_named_by_radcommons_config(run_cli, tmp_path: Path) -> None:
    bad = tmp_path / "conf" / "broken.toml"
    bad.parent.mkdir()
    bad.write_text("this is not toml\n")
    result = run_cli("config", "show", env={"RADCOMMONS_CONFIG": str(bad)})
    assert_config_error(result, str(bad), "not valid TOML")


def test_radcommons_config_missing_file(run_cli, tmp_path: Path) -> None:
    result = run_cli("config", "show", env={"RADCOMMONS_CONFIG": str(tmp_path / "nope.toml")})
    assert_config_error(result, "nope.toml", "not found", "RADCOMMONS_CONFIG")


def test_config_is_a_directory(run_cli, tmp_path: Path) -> None:
    (tmp_path / "radcommons.toml").mkdir()
    assert_config_error(run_cli("config", "show"), "radcommons.toml", "is a directory")


def test_bad_configuration_reaches_other_commands_cleanly(run_cli, tmp_path: Path) -> None:
    (tmp_path / "radcommons.toml").write_text("workers = \n")
    assert_config_error(run_cli("objects", "ls"), "not valid TOML")
