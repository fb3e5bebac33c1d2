"""All runtime configuration, read from ``SPM_*`` environment variables (pydantic-settings).

Every field has a documented default that works on a fresh clone with the local stack
(``make stack-up``); the README lists them. Nothing else in the code reads the environment.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, FilePath, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from streams.auth import ApiToken
from streams.engine.periods import PERIOD_TYPES

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Settings of the worker and the CLI."""

    # Errors name the variable, never its value: some values are secrets.
    model_config = SettingsConfigDict(
        env_prefix="SPM_", env_file=None, extra="ignore", hide_input_in_errors=True
    )

    # --- local data (the stack's ports and dirs are tools.settings) -----------------------
    # Relative to the working directory, not the code: an installed package has no repo.
    var_dir: Path = Field(
        default_factory=lambda: Path.cwd() / "var",
        description="Local data (Faust tables, chDB) unless data_dir / clickhouse_url are set.",
    )

    # --- Kafka and topics -----------------------------------------------------------------
    kafka_bootstrap: str = Field("127.0.0.1:29092", description="Bootstrap servers (host:port).")
    # Transport security of every Kafka client (streams.kafka_clients applies it).
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="Kafka security.protocol of every client."
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="SASL mechanism (SASL_* protocols)."
    )
    kafka_sasl_username: str | None = Field(None, description="SASL user name.")
    kafka_sasl_password: SecretStr | None = Field(None, description="SASL password.")
    kafka_ssl_cafile: FilePath | None = Field(
        None, description="PEM CA file the brokers' certificates are checked against (*SSL)."
    )
    app_id: str = Field("spm", description="Faust app id = consumer group and table prefix.")
    topic_prefix: str = Field("spm", description="Prefix of every topic name.")
    partitions: int = Field(4, description="Partitions of every topic the app creates.")
    data_dir: Path | None = Field(None, description="Faust data dir; default <var_dir>/worker.")
    web_host: str = Field("127.0.0.1", description="Worker web server (API, /metrics) host.")
    web_port: int = Field(26066, description="Worker web server port.")
    web_advertised_url: str | None = Field(
        None,
        description="URL other workers reach this worker's API at (default http://<web_host>:"
        "<web_port>); required when web_host is a wildcard such as 0.0.0.0.",
    )
    api_tokens: list[ApiToken] = Field(
        default_factory=list,
        description="API tokens as hashes, a JSON list of {name, sha256, scopes} (`spm token "
        "new` makes one); none: the API is open and web_host must be a loopback address.",
    )
    api_tokens_file: Path | None = Field(
        None, description="A JSON file with more tokens in the same form (e.g. a mounted secret)."
    )
    metrics_auth: bool = Field(False, description="/metrics needs a token with the read scope.")
    api_client_token: SecretStr | None = Field(
        None, description="The bearer token the CLI sends to a worker's API (spm replay --api)."
    )
    max_event_bytes: int = Field(65536, description="Messages larger than this are rejected.")
    strict_types: bool = Field(False, description="Reject event types no metric counts.")
    alert_interval: float = Field(60.0, description="Seconds between timer re-evaluations.")
    publish_interval: float = Field(
        5.0, description="Seconds a scope's progress/alert evaluation is coalesced over."
    )
    commit_interval: float = Field(1.0, description="Seconds between offset commits.")
    session_timeout: float = Field(
        10.0, description="Seconds without heartbeat before a worker's partitions move on."
    )
    batch_size: int = Field(5000, description="Messages the agent folds per batch.")
    batch_within: float = Field(0.1, description="Seconds the agent waits to fill a batch.")
    dedupe_window_days: int = Field(
        30, ge=1, description="Days (by arrival) an activity id is remembered for duplicates."
    )

    # --- organisation and engine rules ----------------------------------------------------
    timezone: str = Field("UTC", description="Organisation's IANA time zone.")
    fiscal_year_start_month: int = Field(1, ge=1, le=12, description="First month of the FY.")
    week_start: int = Field(0, ge=0, le=6, description="First day of week, 0=Monday.")
    base_currency: str = Field("USD", description="Currency of revenue figures.")
    business_days: bool = Field(False, description="Expected progress by business days.")
    holiday_country: str | None = Field(None, description="holidays country code, e.g. US.")
    catalog_path: Path | None = Field(None, description="Metric catalog YAML (default shipped).")
    rates_path: Path | None = Field(None, description="Currency rates CSV (default shipped).")
    behind_pace: float = Field(0.8, description="Pace below this is 'behind'.")
    at_risk_pace: float = Field(1.0, description="Pace below this is 'at_risk'.")
    min_elapsed: float = Field(0.1, description="No 'behind' before this period fraction.")

    # --- Prometheus series budget and celebrations (issue 13) ----------------------------
    metrics_exported: Annotated[list[str], NoDecode] = Field(
        ["revenue", "calls"],
        description="Catalog metrics whose value/target are exported to Prometheus (comma list).",
    )
    metrics_period_types: Annotated[list[str], NoDecode] = Field(
        ["month", "quarter"],
        description="Period types whose value/target are exported to Prometheus (comma list).",
    )
    stretch_attainment: float = Field(
        1.2, gt=1, description="Attainment celebrated as a stretch (1.2 = 120 % of the target)."
    )
    celebrate_period_types: Annotated[list[str], NoDecode] = Field(
        ["week", "month", "quarter", "year"],
        description="Period types whose 100 % / stretch crossings are celebrated (comma list).",
    )
    alertmanager_url: str = Field(
        "http://127.0.0.1:29094",
        description="Alertmanager the worker posts celebrations to; empty: none are posted.",
    )

    @field_validator(
        "metrics_exported", "metrics_period_types", "celebrate_period_types", mode="before"
    )
    @classmethod
    def _comma_list(cls, value: object) -> object:
        """``revenue,calls`` (or a JSON list) from the environment; "" is an empty list."""
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                return json.loads(value)
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("metrics_period_types", "celebrate_period_types")
    @classmethod
    def _known_period_types(cls, value: list[str]) -> list[str]:
        if unknown := sorted(set(value) - set(PERIOD_TYPES)):
            raise ValueError(f"unknown period types {unknown}; known: {', '.join(PERIOD_TYPES)}")
        return value

    # --- ClickHouse -----------------------------------------------------------------------
    clickhouse_url: str | None = Field(
        None, description="chdb:///path (default <var_dir>/clickhouse) or http://u:p@host:8123/db"
    )
    clickhouse_ca_file: FilePath | None = Field(
        None, description="PEM CA file an https:// server's certificate is checked against."
    )
    clickhouse_verify: bool = Field(
        True, description="Check an https:// server's certificate and host name."
    )
    history_sink: bool = Field(
        True, description="Run the ClickHouse sink inside the worker (false: `spm db sink`)."
    )
    sink_batch_rows: int = Field(5000, description="Sink flushes at this many rows...")
    sink_batch_seconds: float = Field(1.0, description="...or after this many seconds.")
    snapshot_interval: float = Field(60.0, description="Seconds between progress snapshots.")

    # --- producer (CLI, demo) -------------------------------------------------------------
    producer_linger_ms: int = Field(10, description="Producer waits this long to fill batches.")

    # --- HTTP ingest (POST /api/v1/events) ------------------------------------------------
    ingest_max_bytes: int = Field(
        1_048_576, ge=1, description="Request bodies larger than this are refused with 413."
    )
    ingest_max_events: int = Field(
        1000, ge=1, description="Events a batch request may carry (more: 413)."
    )
    ingest_timeout: float = Field(
        10.0, gt=0, description="Seconds to wait for Kafka's acknowledgement before a 503."
    )

    @model_validator(mode="after")
    def _transport_security_is_whole(self) -> Settings:
        """Refuse half-configured transport security at load: otherwise a client would fail
        at its first connection, or a forgotten protocol would silently connect in the clear."""
        protocol = f"SPM_KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol}"
        sasl = {
            "SPM_KAFKA_SASL_MECHANISM": self.kafka_sasl_mechanism,
            "SPM_KAFKA_SASL_USERNAME": self.kafka_sasl_username,
            "SPM_KAFKA_SASL_PASSWORD": self.kafka_sasl_password,
        }
        if self.kafka_security_protocol.startswith("SASL_"):
            if missing := [name for name, value in sasl.items() if not value]:
                raise ValueError(f"{protocol} needs {', '.join(missing)}")
        elif given := [name for name, value in sasl.items() if value]:
            raise ValueError(
                f"{', '.join(given)} set, but {protocol} uses no SASL (SASL_SSL or SASL_PLAINTEXT)"
            )
        if self.kafka_ssl_cafile and not self.kafka_security_protocol.endswith("SSL"):
            raise ValueError(f"SPM_KAFKA_SSL_CAFILE set, but {protocol} uses no TLS")
        https = urlsplit(self.clickhouse_dsn).scheme == "https"
        if self.clickhouse_ca_file and not https:
            raise ValueError("SPM_CLICKHOUSE_CA_FILE applies to an https:// SPM_CLICKHOUSE_URL")
        if self.clickhouse_ca_file and not self.clickhouse_verify:
            raise ValueError("SPM_CLICKHOUSE_CA_FILE set, but SPM_CLICKHOUSE_VERIFY=false")
        return self

    def topic(self, name: str) -> str:
        """Full topic name for a short name such as ``activity`` or ``activity.dlq``."""
        return f"{self.topic_prefix}.{name}"

    @property
    def advertised_url(self) -> str:
        return (self.web_advertised_url or f"http://{self.web_host}:{self.web_port}").rstrip("/")

    @property
    def worker_data_dir(self) -> Path:
        return self.data_dir or self.var_dir / "worker"

    @property
    def clickhouse_dsn(self) -> str:
        return self.clickhouse_url or f"chdb://{self.var_dir / 'clickhouse'}"


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings (tests build their own ``Settings``)."""
    return Settings()
