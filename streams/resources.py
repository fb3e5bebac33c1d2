"""The files the product reads besides its code: the event JSON Schema, the OpenAPI document of
the HTTP API and the migrations.

They live in the repository's top-level ``schemas/`` (the contract, reviewed as such) and are
installed as the data package ``streams.schemas`` (``package-dir`` in pyproject.toml). Reading
them through importlib.resources, never by a path relative to the code, makes a wheel, an
editable install and a Docker image find the same files.
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable

PACKAGE = "streams.schemas"
EVENT_SCHEMA = "event.v1.schema.json"
OPENAPI = "openapi.v1.json"
MIGRATIONS = "clickhouse"


def schemas() -> Traversable:
    """The shipped ``schemas/`` folder."""
    return files(PACKAGE)


def event_schema_text() -> str:
    """The CloudEvents v1 JSON Schema of input events, as text."""
    return (schemas() / EVENT_SCHEMA).read_text(encoding="utf-8")


def openapi_text() -> str:
    """The OpenAPI 3.1 document of the worker's HTTP API, as text."""
    return (schemas() / OPENAPI).read_text(encoding="utf-8")


def migration_files(folder: Traversable | None = None) -> list[Traversable]:
    """The ``*.sql`` files of ``folder`` (default: the shipped ClickHouse migrations), by name."""
    folder = schemas() / MIGRATIONS if folder is None else folder
    return sorted((f for f in folder.iterdir() if f.name.endswith(".sql")), key=lambda f: f.name)
