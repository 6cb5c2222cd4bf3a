"""SQLite's own SQL, in one place: what the rest of the store would say differently on another database.

The other modules write SQL that PostgreSQL reads the same way and ask this one for the rest:
connecting and the pragmas, the write transaction that takes its lock up front, the schema version
and the change counter, upserts, two-argument min/max, null-safe equality, looking up many keys
with one parameter, and index hints. A PostgreSQL store uses the sibling module dialect_pg for
the connection, the write lock, the schema version and the change counter; the statements built
here stay SQLite's text, and broker.store.pg_sql translates them (placeholders, min/max, IS ?, the
JSON key lookup, index hints) when a PostgreSQL connection runs them. The migrations in `schema`
are SQLite DDL as released (a released migration is never edited): PostgreSQL has schema_pg.
"""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Iterable

from broker.store.errors import StoreError

__all__ = ["BEGIN_READ", "BEGIN_WRITE", "Connection", "Error", "connect", "data_version", "greatest",
           "indexed_by", "key_list", "least", "null_safe_equal", "prepare_writer", "rows_by_keys",
           "schema_version", "set_durable", "set_schema_version", "upsert"]

Error = sqlite3.Error  # everything the driver raises; the store turns it into StoreError
Connection = sqlite3.Connection

BUSY_TIMEOUT_S = 10.0
# IMMEDIATE takes the write lock up front, so another process cannot make a
# transaction fail half-way through on lock upgrade.
BEGIN_WRITE = "BEGIN IMMEDIATE"
BEGIN_READ = "BEGIN"


def connect(path: Path) -> Connection:
    db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
    # synchronous is per connection: FULL fsyncs the WAL at every commit, which is
    # what "stored before acked" means across a power cut.
    db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA cache_size=-65536")  # 64 MiB: the hot end of the indexes stays in memory
    db.execute("PRAGMA temp_store=MEMORY")
    return db


def prepare_writer(db: Connection, path: Path) -> None:
    """Settings of the connection that writes: WAL, and how often the WAL is checkpointed."""
    if db.execute("PRAGMA journal_mode=WAL").fetchone()[0].lower() != "wal":
        raise StoreError(f"store {path}: the filesystem does not support WAL mode")
    # A batch from many devices dirties hundreds of index pages. Checkpointing
    # every ~40 MB instead of every 4 MB writes a hot page back once, not
    # several times (10-20 % more events/s); the size limit trims the file after.
    db.execute("PRAGMA wal_autocheckpoint=10000")
    db.execute("PRAGMA journal_size_limit=67108864")


def set_durable(db: Connection, durable: bool) -> None:
    """durable=False: commits are not fsynced one by one (WAL with NORMAL stays consistent)."""
    db.execute("PRAGMA synchronous=FULL" if durable else "PRAGMA synchronous=NORMAL")


def schema_version(db: Connection) -> int:
    return db.execute("PRAGMA user_version").fetchone()[0]


def set_schema_version(db: Connection, version: int) -> None:
    db.execute(f"PRAGMA user_version = {int(version)}")  # part of the open transaction


def data_version(db: Connection) -> int:
    """A number that changes when another connection commits: the ingest caches compare it."""
    return db.execute("PRAGMA data_version").fetchone()[0]


def upsert(table: str, columns: Iterable[str], key: Iterable[str], updates: str) -> str:
    """INSERT one row; if `key` is taken, apply `updates` (they may read `excluded.<column>`)."""
    columns = tuple(columns)
    return (f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
            f" ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}")


def least(a: str, b: str) -> str:
    return f"min({a}, {b})"


def greatest(a: str, b: str) -> str:
    return f"max({a}, {b})"


def null_safe_equal(column: str) -> str:
    """`column` equals the parameter, NULL matching NULL."""
    return f"{column} IS ?"


def rows_by_keys(table: str, key: tuple[str, ...], columns: str) -> str:
    """SELECT `columns` (prefixed "t.") of the rows whose `key` is one of a list passed as one parameter.

    The parameter is `key_list(keys)`. One query for a whole batch: a lookup per key costs twice as much.
    """
    match = " AND ".join(f"t.{column} = k.value ->> {i}" for i, column in enumerate(key))
    return f"SELECT {columns} FROM json_each(?) AS k JOIN {table} AS t ON {match}"


def key_list(keys: Iterable[tuple]) -> str:
    return json.dumps(list(keys))


def indexed_by(table: str, index: str) -> str:
    """`table`, read through `index`: the planner would otherwise pick the wrong one."""
    return f"{table} INDEXED BY {index}"
