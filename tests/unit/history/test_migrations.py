"""Schema migrations on real chDB: idempotent, recorded, and path-independent."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from importlib.resources import as_file
from pathlib import Path

import pytest
from clickhouse_connect.driver import Client

from streams.migrations import MigrationError, load_migrations, migrate
from streams.resources import MIGRATIONS, schemas
from tools.settings import REPO_ROOT

from .conftest import insert_twice
from .test_queries import snapshot

DESCRIBE_TABLES = """
SELECT name, engine, partition_key, sorting_key, primary_key, as_select, create_table_query
FROM system.tables WHERE database = currentDatabase() ORDER BY name
"""
DESCRIBE_COLUMNS = """
SELECT table, position, name, type, default_kind, default_expression, comment,
       is_in_partition_key, is_in_sorting_key, is_in_primary_key, compression_codec
FROM system.columns WHERE database = currentDatabase() ORDER BY table, position
"""


def describe(client: Client) -> dict[str, object]:
    return {
        "tables": client.query(DESCRIBE_TABLES).result_rows,
        "columns": client.query(DESCRIBE_COLUMNS).result_rows,
        "versions": client.query(
            "SELECT version, name, checksum FROM schema_migrations FINAL ORDER BY version"
        ).result_rows,
    }


def test_every_migration_file_is_found_in_order() -> None:
    files = sorted(p.name for p in (REPO_ROOT / "schemas" / MIGRATIONS).glob("*.sql"))
    versions = [m.version for m in load_migrations()]
    assert versions == sorted(versions) and len(versions) == len(files) >= 2
    assert all(m.statements for m in load_migrations())


def test_migrating_twice_leaves_one_schema(ch: Client) -> None:
    once = describe(ch)
    assert migrate(ch) == []
    assert describe(ch) == once
    assert ch.command("SELECT count() FROM schema_migrations") == len(load_migrations())
    tables = {row[0] for row in once["tables"]}  # type: ignore[union-attr]
    expected = {"activity_events", "rejected_events", "progress_snapshots", "alerts"}
    expected |= {"quota_history", "roster_history", "daily_totals", "daily_totals_mv"}
    expected |= {"credits", "reconciliations"}
    expected |= {"current_figures", "losing_copies", "counted_events"}
    assert expected | {"schema_migrations"} == tables


def test_fresh_and_upgraded_databases_are_equal(
    open_chdb: Callable[[Path], Client], tmp_path: Path
) -> None:
    latest = load_migrations()[-1].version
    fresh = open_chdb(tmp_path / "fresh")
    assert migrate(fresh) == [m.version for m in load_migrations()]
    fresh_schema = describe(fresh)

    upgraded = open_chdb(tmp_path / "upgraded")
    assert migrate(upgraded, target=latest - 1) == [
        m.version for m in load_migrations() if m.version < latest
    ]
    insert_twice(upgraded, "progress_snapshots", [snapshot("rep", "r1", "calls", "2026-11")])
    assert migrate(upgraded) == [latest]
    assert describe(upgraded) == fresh_schema


def test_a_changed_applied_migration_is_refused(ch: Client, tmp_path: Path) -> None:
    copy = tmp_path / "schemas"
    with as_file(schemas() / MIGRATIONS) as shipped:
        shutil.copytree(shipped, copy)
    assert migrate(ch, directory=copy) == []
    first = sorted(copy.glob("*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited after release\n")
    with pytest.raises(MigrationError, match="changed after it was applied"):
        migrate(ch, directory=copy)


def test_badly_named_migration_is_refused(tmp_path: Path) -> None:
    (tmp_path / "1-init.sql").write_text("SELECT 1;\n")
    with pytest.raises(MigrationError, match=r"NNN_name\.sql"):
        load_migrations(tmp_path)


def test_comment_only_chunks_are_not_statements(tmp_path: Path) -> None:
    (tmp_path / "001_two.sql").write_text(
        "-- heading;\nCREATE TABLE a (x UInt8) ENGINE = Memory;\n\n-- between\n"
        "SELECT 'a;b'\n  ;\n-- trailing comment\n"
    )
    (migration,) = load_migrations(tmp_path)
    assert [s.splitlines()[-1] for s in migration.statements] == [
        "CREATE TABLE a (x UInt8) ENGINE = Memory",
        "SELECT 'a;b'",
    ]
