"""Opening the store, and the transactions every part of it runs in.

One connection writes, behind a lock; a second one reads, so reports run while a batch
commits (WAL readers never block). Every transaction turns the driver's errors into
StoreError on its way out, so no method built on `_read` or `_write` can leak them.
The database is SQLite (a file) or PostgreSQL ("postgresql://..."): the store keeps the
module of its database's own SQL (dialect or dialect_pg) and asks it.
"""
from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Self
from zoneinfo import ZoneInfo

import broker.store.dialect as dialect
from broker.store.dialect import Connection
from broker.store.errors import StoreError
from broker.store.schema import MIGRATIONS, migrate

__all__ = ["StoreBase", "path_of"]


class StoreBase:
    """Connections, locks, transactions, and the ingest caches the registry must invalidate."""

    path: Path | None  # the SQLite file; None on PostgreSQL

    def __init__(self, path: Path | None, db: Connection, reader: Connection, sql=dialect,
                 name: str | None = None) -> None:
        self.path = path
        self.name = name or str(path)  # what messages call the store: the file, or the URL without password
        self._dialect = sql
        self._db: Connection | None = db  # writes, under _wlock
        self._reader: Connection | None = reader
        self._wlock = threading.RLock()
        self._rlock = threading.Lock()
        # Caches of committed state, for the ingest hot path. Another connection's
        # commit changes the database's data version, and then they are dropped.
        self._zones: dict[str, ZoneInfo] = {}
        self._offsets: dict[tuple[str, str], float | None] = {}
        self._data_version = -1

    # ------------------------------------------------------------- lifecycle

    @classmethod
    def open(cls, url_or_path: str | Path) -> Self:
        """Open (creating if needed) "sqlite:///relative.db", "sqlite:////abs/path.db", a plain path,
        or a PostgreSQL database, "postgresql://user[:password]@host[:port]/database" (which must exist)."""
        if isinstance(url_or_path, str) and url_or_path.startswith(("postgresql://", "postgres://")):
            return cls._open_postgres(url_or_path)
        path = path_of(url_or_path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the store's directory {path.parent}: {exc}") from exc
        created = not path.exists()
        db = reader = None
        try:
            db = dialect.connect(path)
            dialect.prepare_writer(db, path)
            migrate(db, path)
            reader = dialect.connect(path)
            if created:
                _fsync_dir(path.parent)  # SQLite syncs the directory for -wal, not for the main file
        except BaseException as exc:
            for conn in (db, reader):
                if conn is not None:
                    conn.close()
            if isinstance(exc, (dialect.Error, OSError)):
                raise StoreError(f"cannot open store {path}: {exc}") from exc
            raise
        return cls(path, db, reader)

    @classmethod
    def _open_postgres(cls, url: str) -> Self:
        import broker.store.dialect_pg as dialect_pg  # psycopg: only a PostgreSQL store needs it
        import broker.store.schema_pg as schema_pg

        name = dialect_pg.redacted(url)
        if len(schema_pg.MIGRATIONS) != len(MIGRATIONS):  # a SQLite migration without its PostgreSQL twin
            raise StoreError(f"cannot open store {name}: this program has {len(MIGRATIONS)} migrations for SQLite"
                             f" but {len(schema_pg.MIGRATIONS)} for PostgreSQL")
        db = reader = None
        try:
            db = dialect_pg.connect(url)
            dialect_pg.prepare_writer(db, name)
            migrate(db, name, schema_pg.MIGRATIONS, dialect_pg)
            reader = dialect_pg.connect(url)
        except BaseException as exc:
            for conn in (db, reader):
                if conn is not None:
                    conn.close()
            if isinstance(exc, dialect_pg.Error):
                raise StoreError(f"cannot open store {name}: {str(exc).strip()}") from exc
            raise
        return cls(None, db, reader, dialect_pg, name)

    def close(self) -> None:
        with self._wlock, self._rlock:
            for conn in (self._db, self._reader):
                if conn is not None:
                    conn.close()
            self._db = self._reader = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Store {self.name}>"

    # ---------------------------------------------------------- transactions

    @contextmanager
    def _translated(self) -> Iterator[None]:
        """The driver's errors leave as StoreError; argument errors (ValueError) pass unchanged."""
        try:
            yield
        except self._dialect.Error as exc:
            raise StoreError(f"store {self.name}: {str(exc).strip()}") from exc

    @contextmanager
    def _write(self, durable: bool = True) -> Iterator[Connection]:
        """One write transaction, committed (and, if durable, fsynced) on leaving."""
        with self._wlock, self._translated():
            db = self._db
            if db is None:
                raise StoreError("the store is closed")
            if not durable:
                # Losing the last few of these in a power cut is harmless, and the
                # next durable commit syncs them too.
                self._dialect.set_durable(db, False)
            try:
                db.execute(self._dialect.BEGIN_WRITE)
                try:
                    yield db
                    db.execute("COMMIT")
                except BaseException:
                    # A failed COMMIT (disk full, I/O error) can leave the transaction
                    # open, and the next BEGIN would then fail forever.
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
            finally:
                if not durable:
                    self._dialect.set_durable(db, True)

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        """One read transaction: every query inside sees the same snapshot."""
        with self._rlock, self._translated():
            db = self._reader
            if db is None:
                raise StoreError("the store is closed")
            db.execute(self._dialect.BEGIN_READ)
            try:
                yield db
            finally:
                db.execute("COMMIT")

    def _rows(self, sql: str, args: tuple = ()) -> list[tuple]:
        """All rows of one query, in a read transaction of its own."""
        with self._read() as db:
            return db.execute(sql, args).fetchall()


def path_of(url_or_path: str | Path) -> Path:
    """The database file a store URL or path names; ValueError for anything else."""
    if isinstance(url_or_path, Path):
        return url_or_path
    text = str(url_or_path)
    if text.startswith("sqlite:///"):
        # SQLAlchemy's convention: the path follows the third slash, so an
        # absolute path gives four slashes (sqlite:////var/lib/hailong/store.db).
        text = text[len("sqlite:///"):]
    elif "://" in text:
        raise ValueError(f"unsupported store URL {url_or_path!r}: expected sqlite:///path or a file path")
    if not text or text == ":memory:" or text.startswith("file:"):
        raise ValueError(f"the store needs a database file, got {url_or_path!r}")
    return Path(text)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
