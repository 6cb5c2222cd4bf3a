"""PostgreSQL's side of broker/store/dialect.py: the same names, for a store at "postgresql://...".

The connection (`Connection`) gives the store the part of sqlite3's surface it uses: execute and
executemany with "?" statements (translated once each by broker.store.pg_sql), fetchone/fetchall,
rowcount, in_transaction, rows of Python ints and floats (never Decimal: PostgreSQL's sum of a
bigint column is numeric).

Writes are serialized across every process using the database: a write transaction
(`BEGIN_WRITE`) takes one transaction-scoped advisory lock before anything else, which is what
SQLite's BEGIN IMMEDIATE gives. The store's read-modify-write steps (exactly-once inserts, rollup
counts, ticket and queue numbers, held events) then stay correct with several service instances,
at READ COMMITTED: each statement after the lock sees every commit made before it. The cost: one
instance's batch waits for another's commit, so the instances share one writer's throughput (a
batch of 500 events holds the lock for tens of milliseconds); reads never wait. docs/store.md.

SQLite's data_version says "another connection committed": here every write transaction bumps a
counter in hailong_store, and a connection that finds it moved by someone else counts that.
"""
from __future__ import annotations

import re
from decimal import Decimal
from typing import Iterable

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus
from psycopg.types.numeric import NumericBinaryLoader, NumericLoader

from broker.store.errors import StoreError
from broker.store.pg_sql import translate

__all__ = ["BEGIN_READ", "BEGIN_WRITE", "Connection", "Error", "IntegrityError", "STORE_LOCK", "connect",
           "data_version", "is_url", "prepare_writer", "redacted", "schema_version", "set_durable",
           "set_schema_version"]

Error = psycopg.Error
IntegrityError = psycopg.errors.IntegrityError
BEGIN_WRITE = "BEGIN IMMEDIATE"  # the statement the store already runs: here, BEGIN and the write lock
BEGIN_READ = "BEGIN"  # here a REPEATABLE READ snapshot, like a SQLite read transaction
STORE_LOCK = 0x68616C6F6E67  # "halong": the advisory lock of the store's write transactions
CONNECT_TIMEOUT_S = 10
SCHEMES = ("postgresql://", "postgres://")
# INSERT INTO t (...) VALUES (%s, ...), nothing after it: many rows of it can be a COPY.
_PLAIN_INSERT = re.compile(r"INSERT INTO (\w+)\s*\(([\w,\s]+)\)\s*VALUES\s*\((?:%s,\s*)*%s\)\s*\Z")


def is_url(url_or_path: object) -> bool:
    return isinstance(url_or_path, str) and url_or_path.startswith(SCHEMES)


def redacted(url: str) -> str:
    """The URL without its password, for messages and logs."""
    try:
        info = conninfo_to_dict(url)
    except psycopg.Error:
        return "postgresql://(unparsable URL)"
    user = f"{info['user']}@" if info.get("user") else ""
    port = f":{info['port']}" if info.get("port") else ""
    return f"postgresql://{user}{info.get('host', '')}{port}/{info.get('dbname', '')}"


class _Number(NumericLoader):
    def load(self, data):
        return _plain(super().load(data))


class _BinaryNumber(NumericBinaryLoader):
    def load(self, data):
        return _plain(super().load(data))


def _plain(value: Decimal):
    return int(value) if value == value.to_integral_value() else float(value)


class _NamedRow(tuple):
    """A row readable by index and by column name, as sqlite3.Row is (broker.auth reads both)."""

    _index: dict[str, int] = {}

    def __getitem__(self, key):
        return tuple.__getitem__(self, self._index[key] if isinstance(key, str) else key)


def _named_rows(cursor):
    names = [c.name for c in cursor.description or ()]
    row_type = type("Row", (_NamedRow,), {"_index": {n: i for i, n in enumerate(names)}})
    return lambda values: row_type(values)


class Connection:
    """A psycopg connection (autocommit: transactions are the store's BEGIN/COMMIT) with sqlite3's surface."""

    def __init__(self, url: str, *, lock: int = STORE_LOCK, rows_by_name: bool = False) -> None:
        self.url = url
        self.lock = lock
        self.rows_by_name = rows_by_name
        self.counts_writes = False  # set by prepare_writer once hailong_store exists
        self.foreign_writes = 0  # data_version: commits by other connections seen so far
        self._own_last: int | None = None  # the write counter as this connection's last commit left it
        self._pending: int | None = None
        self._open = False  # inside a transaction this connection began
        self._conn = self._connect()

    def _connect(self) -> psycopg.Connection:
        conn = psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S,
                               application_name="hailong")
        conn.adapters.register_loader("numeric", _Number)
        conn.adapters.register_loader("numeric", _BinaryNumber)
        if self.rows_by_name:
            conn.row_factory = _named_rows
        return conn

    def execute(self, sql: str, params: Iterable = ()):
        if sql == "ROLLBACK" and self._conn.broken:
            self._open = False  # the server ended that transaction with the connection
            return self._reconnect_if_broken()
        if not self._open:
            self._reconnect_if_broken()
        if sql == BEGIN_WRITE:
            return self._begin_write()
        if sql == BEGIN_READ:
            cursor = self._conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            self._open = True
            return cursor
        if sql in ("COMMIT", "ROLLBACK"):
            pending, self._open, self._pending = self._pending, False, None  # ended, whatever the outcome
            cursor = self._conn.execute(sql)
            if sql == "COMMIT" and pending is not None:
                self._own_last = pending
            return cursor
        return self._conn.execute(translate(sql), tuple(params))

    def executemany(self, sql: str, rows: Iterable[Iterable]):
        if not self._open:
            self._reconnect_if_broken()
        cursor = self._conn.cursor()
        rows = [tuple(row) for row in rows]
        sql = translate(sql)
        plain = _PLAIN_INSERT.match(sql)
        if plain and len(rows) > 1:
            # COPY: psycopg's executemany costs ~0.2 ms of Python per row, which made a batch's
            # 500 events insert at a third of SQLite's rate. Same constraints, same transaction.
            columns = ", ".join(c.strip() for c in plain.group(2).split(","))
            with cursor.copy(f"COPY {plain.group(1)} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        elif rows:
            cursor.executemany(sql, rows)
        return cursor

    def _begin_write(self):
        cursor = self._conn.execute("BEGIN")
        self._open = True
        self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (self.lock,))
        if self.counts_writes:
            (before,) = self._conn.execute(
                "UPDATE hailong_store SET writes = writes + 1 RETURNING writes - 1").fetchone()
            if before != self._own_last:
                self.foreign_writes += 1
            self._pending = before + 1
        return cursor

    def _reconnect_if_broken(self) -> None:
        # A restarted server (or a failover) leaves the old connection dead: the statement that found
        # out failed, the next one outside a transaction starts on a new connection. What other
        # connections committed meanwhile is unknown, so it counts as a change.
        if self._conn.broken:
            self._conn = self._connect()
            self.foreign_writes += 1
            self._own_last = self._pending = None

    @property
    def in_transaction(self) -> bool:
        return self._conn.broken or self._conn.info.transaction_status != TransactionStatus.IDLE

    def close(self) -> None:
        self._conn.close()


def connect(url: str, **kwargs) -> Connection:
    return Connection(url, **kwargs)


def prepare_writer(db: Connection, where: str) -> None:
    """Create the store's own row (schema version, write counter) if the database is new."""
    db.execute(BEGIN_WRITE)
    try:
        db.execute("CREATE TABLE IF NOT EXISTS hailong_store (id INTEGER PRIMARY KEY CHECK (id = 1),"
                   " version INTEGER NOT NULL, writes BIGINT NOT NULL)")
        db.execute("INSERT INTO hailong_store VALUES (1, 0, 0) ON CONFLICT DO NOTHING")
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    db.counts_writes = True


def set_durable(db: Connection, durable: bool) -> None:
    """durable=False: this session's commits return before their WAL reaches the disk."""
    db.execute("SET synchronous_commit = " + ("on" if durable else "off"))


def schema_version(db: Connection) -> int:
    return db.execute("SELECT version FROM hailong_store").fetchone()[0]


def set_schema_version(db: Connection, version: int) -> None:
    db.execute("UPDATE hailong_store SET version = ?", (int(version),))


def data_version(db: Connection) -> int:
    """Changes when another connection has committed a write since this one last looked."""
    return db.foreign_writes


def check_reachable(url: str) -> None:
    """StoreError (without the password) if the server cannot be reached or refuses the login."""
    try:
        psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S).close()
    except psycopg.Error as exc:
        raise StoreError(f"cannot reach the store {redacted(url)}: {exc}".strip()) from None
