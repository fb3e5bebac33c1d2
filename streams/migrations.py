"""Ordered, idempotent ClickHouse schema migrations (``spm db migrate``).

Migrations are the files ``schemas/clickhouse/NNN_name.sql`` (package data, read through
``streams.resources``), applied in version order; each holds statements ending with ``;`` at
the end of a line. Applied versions are recorded in ``schema_migrations`` with a checksum, so a
second run applies nothing and an edited, already applied migration is refused instead of
silently diverging from databases that ran the original. Statements use ``IF NOT EXISTS``,
so a run interrupted halfway can simply be repeated.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib.resources.abc import Traversable

import structlog
from clickhouse_connect.driver import Client

from streams.resources import migration_files

CREATE_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations
(
    version    UInt32,
    name       String,
    checksum   String,
    applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY version
"""

_FILE_NAME = re.compile(r"^(\d+)_([a-z0-9_]+)\.sql$")
_STATEMENT_END = re.compile(r";[ \t]*$", re.MULTILINE)

log = structlog.get_logger(__name__)


class MigrationError(RuntimeError):
    """The migrations on disk contradict what the database has recorded."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def statements(self) -> list[str]:
        """The file's statements, without the ones that are only comments."""
        chunks = (chunk.strip() for chunk in _STATEMENT_END.split(self.sql))
        return [chunk for chunk in chunks if _has_code(chunk)]


def _has_code(chunk: str) -> bool:
    return any(line.strip() and not line.strip().startswith("--") for line in chunk.splitlines())


def load_migrations(directory: Traversable | None = None) -> list[Migration]:
    """The migrations in ``directory`` (default: the shipped ones), in version order
    (duplicate versions are an error)."""
    migrations: dict[int, Migration] = {}
    for path in migration_files(directory):
        match = _FILE_NAME.match(path.name)
        if match is None:
            raise MigrationError(f"{path.name}: migration files are named NNN_name.sql")
        version = int(match.group(1))
        if version in migrations:
            raise MigrationError(f"{path.name}: version {version} appears twice")
        migrations[version] = Migration(version, match.group(2), path.read_text(encoding="utf-8"))
    return [migrations[version] for version in sorted(migrations)]


def applied_versions(client: Client) -> dict[int, str]:
    """Recorded versions and their checksums (creates the record table when missing)."""
    client.command(CREATE_MIGRATIONS_TABLE)
    rows = client.query("SELECT version, checksum FROM schema_migrations FINAL").result_rows
    return {int(version): str(checksum) for version, checksum in rows}


def migrate(
    client: Client, *, directory: Traversable | None = None, target: int | None = None
) -> list[int]:
    """Apply the pending migrations up to ``target`` (default: all); return their versions."""
    applied = applied_versions(client)
    done: list[int] = []
    for migration in load_migrations(directory):
        if target is not None and migration.version > target:
            break
        recorded = applied.get(migration.version)
        if recorded is not None:
            if recorded != migration.checksum:
                raise MigrationError(
                    f"migration {migration.version}_{migration.name} was changed after it was"
                    " applied; add a new migration instead"
                )
            continue
        for statement in migration.statements:
            client.command(statement)
        client.insert(
            "schema_migrations",
            [(migration.version, migration.name, migration.checksum)],
            column_names=["version", "name", "checksum"],
        )
        log.info("clickhouse.migrated", version=migration.version, name=migration.name)
        done.append(migration.version)
    return done
