"""Effective configuration: environment variables, then ``radcommons.toml``, then defaults.

Every setting can be given as an environment variable ``RADCOMMONS_<NAME>``
(for example ``RADCOMMONS_DATABASE_URL``) or as a key in a ``radcommons.toml``
file in the working directory (or the file named by ``RADCOMMONS_CONFIG``).
Environment variables win over the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

MASK = "****"


def config_file() -> Path:
    """The TOML file settings are read from (it need not exist)."""
    return Path(os.environ.get("RADCOMMONS_CONFIG", "radcommons.toml"))


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
    workers: int = Field(default=0, ge=0, description="Parallel workers; 0 means one per core.")
    dask_scheduler: str = Field(
        default="", description="Address of a Dask scheduler (tcp://host:8786); empty for a local cluster."
    )

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
            TomlConfigSettingsSource(settings_cls, toml_file=config_file()),
        )

    def masked(self) -> dict[str, Any]:
        """The settings as plain data with passwords and secrets replaced by ``****``."""
        data = self.model_dump(mode="json")
        data["database_url"] = mask_url_password(self.database_url)
        data["object_store_url"] = mask_url_password(self.object_store_url)
        return data


def mask_url_password(url: str) -> str:
    """``scheme://user:secret@host/x`` -> ``scheme://user:****@host/x``; other strings unchanged."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:{MASK}@{parts.hostname}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def load_settings() -> Settings:
    """Read the effective settings, raising :class:`pydantic.ValidationError` on bad values."""
    return Settings()
