"""Bringing a database's schema up to date: create what is missing, upgrade what is old.

Written once in portable SQL (``CREATE … IF NOT EXISTS``, ``DROP INDEX IF EXISTS``, ``ALTER
TABLE … DROP COLUMN``), for a driver's :meth:`~flywheel.storage.driver.Driver.migrate` to
call inside its transaction. Every step checks before it acts, so running it again (or on
a database already up to date) changes nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flywheel.storage.models import index_ddl

if TYPE_CHECKING:
    from flywheel.storage.db import Database

#: Indexes whose predicate named the retired ``jobs.deleted_at`` column (a soft delete no
#: code ever wrote): dropped with it, then recreated by :func:`create_schema` without it.
_DELETED_AT_INDEXES = ("idx_jobs_deleted_at", "jobs_ready", "jobs_parent_state", "jobs_state")


def create_schema(db: Database) -> None:
    """Create the tables, apply the upgrades, then create the indexes that do not exist yet."""
    db.pw.create_tables(list(db.models.values()), safe=True)
    drop_deleted_at(db)
    for statement in index_ddl():
        db.pw.execute_sql(statement)


def table_columns(db: Database, table: str) -> set[str]:
    """The column names ``table`` has now (read from an empty result, so any schema path works)."""
    cursor = db.pw.execute_sql(f"SELECT * FROM {table} WHERE 1 = 0")
    return {column[0] for column in cursor.description}


def drop_deleted_at(db: Database) -> None:
    """Remove ``jobs.deleted_at`` from a database created before it was retired.

    Indexes that mention the column go first: a database may refuse to drop a column an
    index still names (SQLite does), and the partial ones come back with their new predicate.
    """
    if "deleted_at" not in table_columns(db, "jobs"):
        return
    for name in _DELETED_AT_INDEXES:
        db.pw.execute_sql(f"DROP INDEX IF EXISTS {name}")
    db.pw.execute_sql("ALTER TABLE jobs DROP COLUMN deleted_at")
