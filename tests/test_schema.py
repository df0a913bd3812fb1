"""The table definitions the queries use (`store/schema.py`) match what the migrations
build, so a query never relies on an index or column that a migrated database lacks."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from aggregator.store import Store
from aggregator.store.schema import metadata


def test_migrated_database_matches_the_table_definitions(store: Store) -> None:
    with store._engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": False})
        differences = [
            diff
            for diff in compare_metadata(context, metadata)
            if not (
                isinstance(diff, tuple)
                and diff[0] == "remove_table"
                and diff[1].name == "alembic_version"
            )
        ]
    assert differences == []
