"""A throw-away PostgreSQL for tests: Debian's initdb/pg_ctl, a cluster in a temp dir on a free loopback port.

One cluster per test session, started on first use; each test gets a fresh database, copied
from a template that already holds the store's schema (CREATE DATABASE ... TEMPLATE is a file
copy), or, for the store's own tests, one used before and emptied again (`recycle`: TRUNCATE
and the template's few rows put back, about ten times faster than a copy).

Reachable only from this machine: TCP on 127.0.0.1 with a random password (scram), and a Unix
socket in the cluster's own 0700 directory. As root, the server runs as user `postgres`
(it refuses to run as root), which then owns the directory.
"""
from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.mosquitto import free_port

__all__ = ["PostgresCluster", "find_bin_dir", "raw_connection"]

TEMPLATE = "hailong_template"  # the store's schema, migrated once per session


def find_bin_dir() -> Path | None:
    """The newest Debian PostgreSQL's bin directory (/usr/lib/postgresql/<major>/bin), or None."""
    found = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb") if os.access(p, os.X_OK)]
    if not found:
        return None
    return max(found, key=lambda d: int(d.parent.name) if d.parent.name.isdigit() else 0)


class PostgresCluster:
    """One PostgreSQL server. `durable=False` (tests) skips fsync: a crash of the test machine loses
    nothing we care about, and every commit would otherwise wait for the disk."""

    def __init__(self, bin_dir: Path, durable: bool = False) -> None:
        self.bin_dir = Path(bin_dir)
        self.durable = durable
        self.password = secrets.token_urlsafe(16)
        self.port = 0
        self.root: Path | None = None
        self._user = "postgres" if os.geteuid() == 0 else None
        self._template_ready = False
        self._template_rows: dict[str, list[tuple]] = {}  # table -> its rows in the template
        self._databases = 0
        self._spare: list[str] = []  # emptied databases, ready for the next test

    # ----- lifecycle -----------------------------------------------------------------------

    def start(self) -> "PostgresCluster":
        self.root = Path(tempfile.mkdtemp(prefix="hailong-pg-"))
        if self._user is not None:
            entry = pwd.getpwnam(self._user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        pwfile = self.root / "pw"
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o600)
        if self._user is not None:
            os.chown(pwfile, entry.pw_uid, entry.pw_gid)
        self._run_as([str(self.bin_dir / "initdb"), "-D", str(self.root / "data"), "-U", "postgres",
                      "--pwfile", str(pwfile), "-A", "scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8",
                      *([] if self.durable else ["--no-sync"])])
        (self.root / "data" / "pg_hba.conf").write_text(
            # Only the socket in our own directory and loopback, the latter with the password.
            "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n")
        for attempt in range(5):  # a free port may be taken before the server binds it
            self.port = free_port()
            if self._pg_ctl_start():
                break
        else:
            raise RuntimeError(f"PostgreSQL did not start:\n{self.log_text()}")
        return self

    def _pg_ctl_start(self) -> bool:
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root}"
                   " -c max_connections=200 -c shared_buffers=64MB")
        if not self.durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        result = self._run_as([str(self.bin_dir / "pg_ctl"), "-D", str(self.root / "data"), "-l",
                               str(self.root / "log"), "-o", options, "-w", "-t", "60", "start"], check=False)
        return result.returncode == 0

    def stop(self) -> None:
        if self.root is None:
            return
        self._run_as([str(self.bin_dir / "pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate", "-w",
                      "stop"], check=False)
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None

    def log_text(self) -> str:
        try:
            return (self.root / "log").read_text(errors="replace")[-4000:]
        except (OSError, TypeError):
            return "(no log)"

    def _run_as(self, argv: list[str], check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(argv, user=self._user, group=self._user, capture_output=True, text=True,
                                cwd=self.root, timeout=120)
        if check and result.returncode:
            raise RuntimeError(f"{' '.join(argv[:2])} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
        return result

    # ----- databases -----------------------------------------------------------------------

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres:{self.password}@127.0.0.1:{self.port}/{database}"

    def admin(self):
        """A superuser connection in autocommit mode (CREATE DATABASE cannot run in a transaction)."""
        import psycopg

        return psycopg.connect(self.url(), autocommit=True)

    def create_database(self, migrated: bool = True) -> str:
        """A new empty database's URL; `migrated`: copied from a template that holds the store's schema."""
        self._databases += 1
        name = f"t{self._databases}_{secrets.token_hex(3)}"
        if migrated and not self._template_ready:
            self._prepare_template()
        template = TEMPLATE if migrated else "template0"
        with self.admin() as conn:
            conn.execute(f"CREATE DATABASE {name} TEMPLATE {template} STRATEGY file_copy")
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        with self.admin() as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def reusable_database(self) -> str:
        """A database holding the schema and nothing else: an emptied one if there is one, else a new one."""
        return self._spare.pop() if self._spare else self.create_database()

    def recycle(self, url: str) -> None:
        """Empty the database for the next test; drop it instead if the test changed more than rows."""
        try:
            self._empty(url)
        except Exception:  # noqa: BLE001  (whatever it was, a fresh copy is the answer)
            self.drop_database(url)
        else:
            self._spare.append(url)

    def _empty(self, url: str) -> None:
        import psycopg

        with self.admin() as conn:  # a store the test left open must not hold a lock
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s"
                         " AND pid <> pg_backend_pid()", (url.rsplit("/", 1)[1],))
        with psycopg.connect(url, autocommit=True) as conn:
            tables = sorted(r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))
            if tables != sorted(self._template_tables):
                raise RuntimeError(f"the test changed the schema: {tables}")
            with conn.transaction():
                conn.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY")
                for table, rows in self._template_rows.items():
                    marks = ", ".join(["%s"] * len(rows[0]))
                    conn.cursor().executemany(f"INSERT INTO {table} VALUES ({marks})", rows)

    def _prepare_template(self) -> None:
        from broker.auth import Auth
        from broker.store import Store

        with self.admin() as conn:
            conn.execute(f"CREATE DATABASE {TEMPLATE} TEMPLATE template0")
        Store.open(self.url(TEMPLATE)).close()
        Auth(self.url(TEMPLATE)).close()
        import psycopg

        with psycopg.connect(self.url(TEMPLATE), autocommit=True) as conn:
            self._template_tables = [r[0] for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
            for table in self._template_tables:
                rows = conn.execute(f"SELECT * FROM {table}").fetchall()
                if rows:
                    self._template_rows[table] = rows
        self._template_ready = True


def raw_connection(store):
    """A second connection to the store's database, outside the store: sqlite3's, or the PostgreSQL
    one the store uses (same execute/fetch surface, "?" statements, autocommit)."""
    if store.path is not None:
        import sqlite3

        return sqlite3.connect(store.path)
    import broker.store.dialect_pg as dialect_pg

    return dialect_pg.connect(store._db.url)
