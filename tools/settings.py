"""Where and on which ports the local stack runs, read from ``SPM_*`` environment variables.

A settings class of its own (not the product's ``streams.settings``) so the stack tooling
starts even while the product does not import, and the product carries no stack knobs. The
variables share the ``SPM_`` prefix with the product's so one environment configures both:
``SPM_WEB_PORT`` is the worker port the stack's Prometheus scrapes.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
#: Every part of the stack listens on loopback only.
HOST = "127.0.0.1"


class StackSettings(BaseSettings):
    """Settings of the local stack (Kafka KRaft, Prometheus, Alertmanager)."""

    model_config = SettingsConfigDict(env_prefix="SPM_", env_file=None, extra="ignore")

    var_dir: Path = Field(REPO_ROOT / "var", description="Data, logs and pid files of the stack.")
    cache_dir: Path = Field(REPO_ROOT / ".cache", description="Maven-resolved Kafka jars.")
    kafka_port: int = Field(29092, description="Kafka broker listener on 127.0.0.1.")
    kafka_controller_port: int = Field(29093, description="KRaft controller listener.")
    prometheus_port: int = Field(29090, description="Prometheus on 127.0.0.1.")
    alertmanager_port: int = Field(29094, description="Alertmanager on 127.0.0.1.")
    stack_start_timeout: float = Field(90.0, description="Seconds to wait for each part.")
    web_port: int = Field(26066, description="Worker port Prometheus scrapes (SPM_WEB_PORT).")

    @property
    def kafka_bootstrap(self) -> str:
        """The broker's address for clients (the product's ``SPM_KAFKA_BOOTSTRAP``)."""
        return f"{HOST}:{self.kafka_port}"


@lru_cache
def get_stack_settings() -> StackSettings:
    """The process-wide stack settings (tests build their own ``StackSettings``)."""
    return StackSettings()
