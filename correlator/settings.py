"""Settings: ``data/default.toml`` < site TOML < ``FURUI_*`` environment variables.

Every setting is documented in ``data/default.toml``; the model below types and validates
them, including the invariants between them, when they are loaded.
"""

from __future__ import annotations

import ipaddress
import tomllib
from importlib import resources
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from correlator.errors import ConfigError

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class NetworkSettings(BaseModel):
    """Which addresses are the site's own."""

    model_config = _FROZEN

    internal: tuple[str, ...] = Field(description="CIDR networks treated as internal.")
    trust_zeek_local: bool = Field(description="Honour Zeek's local_orig/local_resp.")
    community_id_seed: int = Field(ge=0, le=65535, description="Community ID seed.")

    @field_validator("internal")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for cidr in value:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError as error:
                raise ValueError(f"{cidr!r} is not a network: {error}") from error
        return value


class IngestSettings(BaseModel):
    """Bounds on reading."""

    model_config = _FROZEN

    block_bytes: int = Field(ge=4096, description="Bytes of log parsed as one unit.")
    max_line_bytes: int = Field(ge=4096, description="Longest line accepted.")
    flush_rows: int = Field(ge=1, description="Events buffered before a store commit.")


class StoreSettings(BaseModel):
    """The embedded DuckDB store."""

    model_config = _FROZEN

    path: Path = Field(description="DuckDB file.")
    quarantine: str = Field(description="Quarantine NDJSON file; empty: next to the store.")
    memory_limit: str = Field(description="DuckDB memory ceiling, e.g. 1GB.")
    threads: int = Field(ge=0, description="DuckDB threads; 0 means one per core.")

    @property
    def quarantine_path(self) -> Path:
        """Where quarantined records are written."""
        if self.quarantine:
            return Path(self.quarantine)
        return self.path.with_name(f"{self.path.stem}-quarantine.ndjson")


class ElasticsearchSettings(BaseModel):
    """The Elasticsearch cluster of ``furui run`` and ``furui ship``."""

    model_config = _FROZEN

    urls: tuple[str, ...] = Field(min_length=1, description="Node URLs.")
    api_key: SecretStr = Field(description="API key (id:key base64, or the encoded form).")
    username: str = Field(description="User for basic authentication.")
    password: SecretStr = Field(description="Password for basic authentication.")
    ca_certs: str = Field(description="CA certificate file (PEM) for TLS.")
    verify_certs: bool = Field(description="Verify the server's TLS certificate.")
    request_timeout: float = Field(gt=0, description="Seconds per request.")
    max_retries: int = Field(ge=0, description="Retries on connection errors and overload.")
    layout: Literal["auto", "elastic-agent", "filebeat", "security-onion", "furui"] = Field(
        description="Layout of the source indices."
    )
    source_indices: tuple[str, ...] = Field(description="Index patterns read by furui run.")
    events_prefix: str = Field(description="Prefix of the indices furui ship writes.")
    findings_index: str = Field(description="Index of findings.")
    incidents_index: str = Field(description="Index of incidents.")
    state_index: str = Field(description="Index of checkpoints.")
    replicas: int = Field(ge=0, description="Replicas of the indices Furui creates.")
    page_size: int = Field(ge=1, le=10000, description="Documents per page read.")
    bulk_size: int = Field(ge=1, description="Documents per bulk request.")
    lag_seconds: int = Field(ge=0, description="Read up to this long before now.")
    poll_seconds: int = Field(gt=0, description="Polling interval of --follow.")
    checkpoint_seconds: float = Field(ge=0, description="Interval of checkpoint saves.")

    @field_validator("events_prefix", "findings_index", "incidents_index", "state_index")
    @classmethod
    def _index_name(cls, value: str) -> str:
        # Elasticsearch's rules for index (and template) names
        if (
            not value
            or value != value.lower()
            or value[0] in "-_+."
            or any(c in value for c in ' "*\\<|,>/?#:')
        ):
            raise ValueError(
                f"{value!r} is not a valid index name (lower case, no spaces or "
                '* \\ / ? " < > | , # :, not starting with - _ + .)'
            )
        return value

    @model_validator(mode="after")
    def _one_kind_of_credentials(self) -> ElasticsearchSettings:
        if self.api_key.get_secret_value() and self.username:
            raise ValueError("give an api_key or a username and password, not both")
        if self.username and not self.password.get_secret_value():
            raise ValueError("username given without a password")
        return self


class CorrelationSettings(BaseModel):
    """How findings become incidents."""

    model_config = _FROZEN

    window_seconds: int = Field(gt=0, description="Incident window length in seconds.")
    inbound_factor: float = Field(ge=0, le=1, description="Weight of attacks from outside.")
    max_references: int = Field(ge=1, description="Evidence references kept per rule.")


class RulesSettings(BaseModel):
    """The heuristic rule engine (docs/rules.md)."""

    model_config = _FROZEN

    enabled: bool = Field(description="Run the heuristic rules (ruleset furui).")
    paths: tuple[str, ...] = Field(description="Site rule folders, read besides the pack.")
    min_maturity: Literal["experimental", "production"] = Field(
        description="Least maturity of a rule that runs."
    )
    disabled: tuple[str, ...] = Field(description="Rule ids that never run.")
    allowlist: str = Field(description="Allowlist TOML file; empty: none.")
    max_evidence: int = Field(ge=1, le=1000, description="Event ids kept per finding.")
    lateness_seconds: int = Field(ge=0, description="How late events may arrive.")
    max_groups: int = Field(ge=1000, description="Groups or terms kept per rule kind.")
    max_timestamps: int = Field(ge=4, description="Connection times kept per beacon.")
    max_distinct: int = Field(ge=2, description="Distinct values counted per group.")
    max_steps: int = Field(ge=1, description="Events kept per sequence key and step.")
    settle_seconds: int = Field(
        ge=0, description="How long absence verdicts wait for companions past `after`."
    )
    max_pending: int = Field(ge=1000, description="Absence events waiting for a verdict.")


class MlSettings(BaseModel):
    """The flow classifier and the optional novelty signal (docs/model.md)."""

    model_config = _FROZEN

    enabled: bool = Field(
        description="Score Zeek conn flows with the model; false runs without ML, and "
        "incidents then record furui.model = disabled."
    )
    path: str = Field(description="Model bundle folder; empty: the bundle shipped in Furui.")
    expected_version: str = Field(
        pattern=r"^\d{4}\.(0[1-9]|1[0-2])\.[1-9]\d*$",
        description="The only bundle version accepted (CalVer YYYY.MM.N).",
    )
    weight: float = Field(gt=0, le=1, description="Finding score = 100 × probability × weight.")
    novelty_path: str = Field(
        description="Novelty bundle fitted on this site's traffic; empty: no novelty signal."
    )
    novelty_weight: float = Field(
        gt=0, le=1, description="Finding score = 100 × anomaly score × novelty_weight."
    )


class Settings(BaseSettings):
    """All of Furui's settings."""

    model_config = SettingsConfigDict(
        env_prefix="FURUI_", env_nested_delimiter="__", frozen=True, extra="forbid"
    )
    site_file: ClassVar[Path | None] = None

    network: NetworkSettings
    ingest: IngestSettings
    store: StoreSettings
    elasticsearch: ElasticsearchSettings
    correlation: CorrelationSettings
    ml: MlSettings
    rules: RulesSettings

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Order the layers: explicit values, environment, site file, packaged defaults.

        No ``.env`` file and no secrets directory: credentials come from the environment.
        """
        del dotenv_settings, file_secret_settings
        default = resources.files("correlator.data").joinpath("default.toml")
        with resources.as_file(default) as default_path:
            sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
            if cls.site_file is not None:
                sources.append(TomlConfigSettingsSource(settings_cls, toml_file=cls.site_file))
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=default_path))
        return tuple(sources)


def load_settings(site_file: Path | None = None, **overrides: object) -> Settings:
    """Load settings from the packaged defaults, a site file and the environment.

    Args:
        site_file: a TOML file with site values (any subset of ``data/default.toml``).
        overrides: values that win over every layer (the command line's options).

    Raises:
        ConfigError: the site file is missing or a value is invalid; the message names it.
    """
    if site_file is not None and not site_file.is_file():
        raise ConfigError(f"{site_file}: no such settings file")
    Settings.site_file = site_file
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{site_file}: not valid TOML: {error}") from error
    except ValidationError as error:
        where = site_file or "settings"
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
        )
        raise ConfigError(f"{where}: {problems}") from error
    finally:
        Settings.site_file = None
