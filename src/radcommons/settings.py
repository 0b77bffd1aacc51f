"""Effective configuration: environment variables, then ``radcommons.toml``, then defaults.

Every setting can be given as an environment variable ``RADCOMMONS_<NAME>``
(for example ``RADCOMMONS_DATABASE_URL``) or as a key in a ``radcommons.toml``
file in the working directory (or the file named by ``RADCOMMONS_CONFIG``).
Environment variables win over the file.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import Field, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from radcommons.errors import UserError
from radcommons.parallel import MAX_WORKERS

MASK = "****"

# Query parameters and storage options whose values are secrets (matched as substrings).
_SECRET_NAMES = ("password", "passwd", "secret", "token", "signature", "credential")
# Storage-option names that are secrets although they do not say so (s3fs ``key``).
_SECRET_EXACT = {"key", "access_key", "aws_access_key_id"}


def config_file() -> Path:
    """The TOML file settings are read from (it need not exist unless named by ``RADCOMMONS_CONFIG``)."""
    return Path(os.environ.get("RADCOMMONS_CONFIG") or "radcommons.toml")


def _toml_source(settings_cls: type[BaseSettings]) -> PydanticBaseSettingsSource:
    """The TOML settings source, turning an unreadable or invalid file into a :class:`UserError`."""
    path = config_file()
    named = bool(os.environ.get("RADCOMMONS_CONFIG"))
    if named and not path.exists():
        raise UserError(
            f"configuration file {path} not found (named by RADCOMMONS_CONFIG)",
            hint="fix RADCOMMONS_CONFIG, or unset it to use ./radcommons.toml",
        )
    if path.is_dir():
        raise UserError(
            f"configuration file {path} is a directory",
            hint="point RADCOMMONS_CONFIG at a TOML file",
        )
    try:
        return TomlConfigSettingsSource(settings_cls, toml_file=path)
    except tomllib.TOMLDecodeError as error:
        raise UserError(
            f"configuration file {path} is not valid TOML: {error}",
            hint='each setting is a line `name = value`, strings in quotes, e.g. workers = 4 '
            'or database_url = "sqlite:///var/radcommons.db"',
        ) from error
    except UnicodeDecodeError as error:
        raise UserError(
            f"configuration file {path} is not UTF-8 text: {error}",
            hint="save it as UTF-8",
        ) from error
    except OSError as error:
        raise UserError(
            f"cannot read configuration file {path}: {error.strerror or error}",
            hint="check that it exists and is readable",
        ) from error


class Settings(BaseSettings):
    """The settings of one RadCommons installation (site side or commons side)."""

    model_config = SettingsConfigDict(env_prefix="RADCOMMONS_", extra="forbid")

    database_url: str = Field(
        default="sqlite:///var/radcommons.db",
        description="SQLAlchemy URL of the index: sqlite:///PATH (embedded) or "
        "postgresql+psycopg://USER@HOST/DB (production).",
    )
    object_store_url: str = Field(
        default="var/objects",
        description="Where files are stored: a local folder or any fsspec URL "
        "(s3://bucket/prefix, gs://..., memory://...).",
    )
    secrets_dir: Path = Field(
        default=Path("var/secrets"),
        description="Folder for key files and tokens; never inside a data export.",
    )
    object_store_options: dict[str, Any] = Field(
        default_factory=dict,
        description="fsspec storage options for the object store, e.g. for S3 "
        '{"endpoint_url": "http://127.0.0.1:9000"} (credentials are better left to '
        "AWS_* variables or ~/.aws).",
    )
    server_state_dir: Path = Field(
        default=Path("var/server"),
        description="The server's own state (upload spools); must survive restarts.",
    )
    workers: int = Field(default=0, ge=0, le=MAX_WORKERS, description="Parallel workers; 0 means one per core.")
    dask_scheduler: str = Field(
        default="", description="Address of a Dask scheduler (tcp://host:8786); empty for a local cluster."
    )
    export_retention_hours: float = Field(
        default=168, ge=0, description="Hours the server keeps a finished export's files for its researcher "
        "(0: until the export is deleted)."
    )

    @field_validator("secrets_dir", "server_state_dir", mode="before")
    @classmethod
    def _named_folder(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():  # Path("") is the current folder
            raise ValueError("must name a folder, not be empty")
        return value

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        scheme = value.split(":", 1)[0]
        if not scheme.startswith(("sqlite", "postgresql")):
            raise ValueError(
                f"database_url must start with sqlite:// or postgresql://, got {scheme!r}"
            )
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            _toml_source(settings_cls),
        )

    def masked(self) -> dict[str, Any]:
        """The settings as plain data with passwords and secrets replaced by ``****``."""
        data = self.model_dump(mode="json")
        data["database_url"] = mask_url_password(self.database_url)
        data["object_store_url"] = mask_url_password(self.object_store_url)
        data["object_store_options"] = mask_options(data["object_store_options"])
        data["dask_scheduler"] = mask_url_password(self.dask_scheduler)
        return data


def _is_secret_name(name: str, exact: bool = True) -> bool:
    lowered = name.lower()
    return (exact and lowered in _SECRET_EXACT) or any(part in lowered for part in _SECRET_NAMES)


def mask_options(options: Any) -> Any:
    """Storage options with secret values (``secret``, ``key``, ``token``, ...) replaced by ``****``, recursively."""
    if isinstance(options, dict):
        return {
            name: MASK if _is_secret_name(str(name)) and value not in (None, "") else mask_options(value)
            for name, value in options.items()
        }
    if isinstance(options, list):
        return [mask_options(value) for value in options]
    if isinstance(options, str):  # an endpoint URL with user:password@
        return mask_url_password(options)
    return options


def mask_url_password(url: str) -> str:
    """``scheme://user:secret@host/x`` -> ``scheme://user:****@host/x``; other strings unchanged.

    Secret query parameters (``?password=...``, ``?X-Amz-Signature=...``) are masked
    too. The host part is kept as written (case, brackets, port).
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    changed = False
    netloc = parts.netloc
    userinfo, at, hostport = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.split(':', 1)[0]}:{MASK}@{hostport}"
        changed = True
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        # Not the bare ``key`` rule here: libpq's ``sslkey`` is a path, not a secret.
        if any(_is_secret_name(name, exact=False) for name, _ in pairs):
            query = urlencode(
                [(name, MASK if _is_secret_name(name, exact=False) else value) for name, value in pairs],
                safe="*",
            )
            changed = True
    if not changed:
        return url
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def load_settings() -> Settings:
    """Read the effective settings.

    Raises :class:`pydantic.ValidationError` on bad values and
    :class:`~radcommons.errors.UserError` when the configuration file cannot be read.
    """
    try:
        return Settings()
    except SettingsError as error:  # a complex setting (a JSON object) whose text is not JSON
        found = re.search(r'field "(\w+)"', str(error))
        name = found.group(1) if found else "object_store_options"  # the one setting that is a JSON object
        raise UserError(f"RADCOMMONS_{name.upper()} (or {name} in {config_file()}) is not JSON: "
                        f"{error.__cause__ or error}",
                        f'{name} is a JSON object, e.g. RADCOMMONS_{name.upper()}=\'{{"endpoint_url": '
                        '"http://127.0.0.1:9000"}\'') from None
