"""Where and on which ports the local stack runs, read from ``SPM_*`` environment variables.

A settings class of its own (not the product's ``streams.settings``) so the stack tooling
starts even while the product does not import, and the product carries no stack knobs. The
variables share the ``SPM_`` prefix with the product's so one environment configures both:
``SPM_WEB_PORT`` is the worker port the stack's Prometheus scrapes.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, FilePath, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
#: Every part of the stack listens on loopback only.
HOST = "127.0.0.1"
StackPart = Literal["kafka", "alertmanager", "prometheus"]


class StackSettings(BaseSettings):
    """Settings of the local stack (Kafka KRaft, Prometheus, Alertmanager)."""

    model_config = SettingsConfigDict(env_prefix="SPM_", env_file=None, extra="ignore")

    var_dir: Path = Field(REPO_ROOT / "var", description="Data, logs and pid files of the stack.")
    cache_dir: Path = Field(REPO_ROOT / ".cache", description="Maven-resolved Kafka jars.")
    kafka_port: int = Field(29092, description="Kafka broker listener on 127.0.0.1.")
    kafka_controller_port: int = Field(29093, description="KRaft controller listener.")
    # A SASL_SSL listener besides the PLAINTEXT one, for trying the clients' transport security
    # against the real broker; off unless its port is set (tests make the keystore and user).
    kafka_sasl_ssl_port: int | None = Field(
        None, description="A SASL_SSL listener on 127.0.0.1 as well (needs the four below)."
    )
    kafka_ssl_keystore: FilePath | None = Field(
        None, description="PKCS12 keystore: the key and certificate of the SASL_SSL listener."
    )
    kafka_ssl_keystore_password: SecretStr | None = Field(None, description="Its password.")
    kafka_sasl_username: str | None = Field(
        None, description="The user SCRAM-SHA-256/512 and PLAIN accept (SPM_KAFKA_SASL_USERNAME)."
    )
    kafka_sasl_password: SecretStr | None = Field(None, description="Its password.")
    prometheus_port: int = Field(29090, description="Prometheus on 127.0.0.1.")
    alertmanager_port: int = Field(29094, description="Alertmanager on 127.0.0.1.")
    alertmanager_webhook_port: int = Field(
        29095,
        description="Port of the loopback Slack webhook the receivers post to (the live tests "
        "listen there); replaces the port of every receiver's api_url.",
    )
    stack_start_timeout: float = Field(90.0, description="Seconds to wait for each part.")
    stack_parts: frozenset[StackPart] = Field(
        frozenset({"kafka", "alertmanager", "prometheus"}),
        description="The parts this stack runs (JSON list); tests run a broker alone, or a "
        "Prometheus and Alertmanager of their own beside the shared broker.",
    )
    web_port: int = Field(26066, description="Worker port Prometheus scrapes (SPM_WEB_PORT).")

    @model_validator(mode="after")
    def _sasl_ssl_listener_is_whole(self) -> StackSettings:
        """A SASL_SSL listener without its keystore or user would only fail in the broker log."""
        needed = {
            "SPM_KAFKA_SSL_KEYSTORE": self.kafka_ssl_keystore,
            "SPM_KAFKA_SSL_KEYSTORE_PASSWORD": self.kafka_ssl_keystore_password,
            "SPM_KAFKA_SASL_USERNAME": self.kafka_sasl_username,
            "SPM_KAFKA_SASL_PASSWORD": self.kafka_sasl_password,
        }
        missing = [name for name, value in needed.items() if not value]
        if self.kafka_sasl_ssl_port is not None and missing:
            raise ValueError(f"SPM_KAFKA_SASL_SSL_PORT needs {', '.join(missing)}")
        return self

    @property
    def kafka_bootstrap(self) -> str:
        """The broker's address for clients (the product's ``SPM_KAFKA_BOOTSTRAP``)."""
        return f"{HOST}:{self.kafka_port}"


@lru_cache
def get_stack_settings() -> StackSettings:
    """The process-wide stack settings (tests build their own ``StackSettings``)."""
    return StackSettings()
