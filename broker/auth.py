"""Who may use the HTTP API: users with passwords and API tokens, each with a role.

Both live in the service's own SQLite file, in `auth_*` tables this module creates and
migrates itself, so `hailong broker user add` / `token create` work the same whether or
not the service is running: WAL lets the CLI write while the service reads, and the
busy timeout absorbs the moments when both write. With a PostgreSQL store they live in
its database instead, shared by every service instance (users, tokens and lockouts alike).

Roles are ranked: admin > manager > viewer. A principal may do what its role or any
lower role may do. Apart from the ranking, a token may have the `display` role: it is bound to one
site and opens only that site's hall display (/hall/{site}), nothing of the API or the dashboard,
so the token that sits in a TV's URL gives away nothing else.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from broker.auth_schema import MIGRATIONS
from broker.store.connection import path_of
from common.clock import Clock, now

__all__ = [
    "DISPLAY", "ROLES", "TOKEN_ROLES", "TOKEN_PREFIX", "MIN_PASSWORD", "AuthError", "NoSuchPrincipal", "Principal",
    "Auth", "check_role", "check_sites", "generate_password", "token_prefix",
]

ROLES = ("viewer", "manager", "admin")  # lowest first: the index is the rank
DISPLAY = "display"  # outside the ranking: a hall display's token, for one site
TOKEN_ROLES = ROLES + (DISPLAY,)
TOKEN_PREFIX = "hl_"
MIN_PASSWORD = 10

_NAME_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}\Z")
_SITE_RE = re.compile(r"\A[^\x00-\x1f\x7f]{1,64}\Z")  # any id the registry can hold
# Enough of a token to recognise it in a list and to revoke it by, without the rest:
# 8 of its 43 random characters leave over 200 bits unknown.
_SHOWN = len(TOKEN_PREFIX) + 8
_MAX_GHOSTS = 10_000  # names that are no user's, remembered for their lockout




@dataclass(frozen=True)
class _Scoped:
    """Where a kind of principal keeps its scope: its table, which row a name means, its sites table."""

    table: str
    which: str  # the WHERE clause finding the row by name
    key: str  # the row's key, as the sites table names it
    sites: str
    column: str  # the sites table's column holding that key


# "user" quoted: PostgreSQL reads a bare `user` as CURRENT_USER.
_SCOPE = {"user": _Scoped("auth_users", "name = ?", "name", "auth_user_sites", '"user"'),
          "token": _Scoped("auth_tokens", "name = ? AND revoked_ms IS NULL", "id", "auth_token_sites", "token")}


def _listed(sites: frozenset[str] | None) -> list[str] | None:
    return None if sites is None else sorted(sites)


class AuthError(ValueError):
    """A request the auth store cannot carry out: bad role or name, duplicate, unknown token."""


class NoSuchPrincipal(AuthError, LookupError):
    """No user, or no live token, of that name."""


@dataclass(frozen=True)
class Principal:
    """An authenticated caller. `via` says how: "token", "password" or "session".

    `sites`: None for a province-wide principal, else the only sites it may see and act on
    (possibly none).
    """

    name: str
    role: str
    via: str = "token"
    site: str | None = None  # a display token's site
    sites: frozenset[str] | None = None  # None: every site

    def allows(self, role: str) -> bool:
        if self.role == DISPLAY:
            return False  # a display is below every ranked role: it opens only its hall
        return ROLES.index(self.role) >= ROLES.index(check_role(role))

    def shows_hall(self, site: str) -> bool:
        """Whether this caller may watch `site`'s hall display: its display token, or any user."""
        return self.site == site if self.role == DISPLAY else self.allows("viewer") and self.sees(site)

    def sees(self, site: str | None) -> bool:
        return self.sites is None or site in self.sites


def check_sites(sites) -> frozenset[str] | None:
    """None (every site) or the set of site ids, each checked like any registry id."""
    if sites is None:
        return None
    if isinstance(sites, str):
        raise AuthError("sites must be a list of site ids, not one string")
    out = frozenset(sites)
    for site in out:
        if not isinstance(site, str) or not _SITE_RE.match(site):
            raise AuthError(f"bad site id {site!r}: 1-64 characters, no control characters")
    return out


def check_role(role: str, *, roles: tuple[str, ...] = ROLES) -> str:
    if role not in roles:
        raise AuthError(f"unknown role {role!r}: expected one of {', '.join(reversed(roles))}")
    return role


def _check_name(name: str, what: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise AuthError(f"bad {what} name {name!r}: 1-64 characters of A-Z a-z 0-9 _ . @ -, "
                        "starting with a letter or digit")
    return name


def generate_password() -> str:
    """A password nobody has to invent: 144 random bits in 24 URL-safe characters."""
    return secrets.token_urlsafe(18)


def token_prefix(token: str) -> str:
    """The part of a token that `list_tokens` shows and `revoke_token` accepts."""
    return token[:_SHOWN]


def _token_hash(token: str) -> str:
    # A token is 256 random bits, so nobody can guess it from its hash: a fast hash is
    # enough, and a slow KDF (right for passwords, which people choose) would only make
    # every API request slow.
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class Auth:
    """Users and tokens in the SQLite file at `path`, or the PostgreSQL database at a "postgresql://" URL;
    safe to share between threads."""

    def __init__(self, path: str | Path, *, lockout_attempts: int = 5, lockout_minutes: float = 15,
                 clock: Clock = now, hasher: PasswordHasher | None = None):
        self.lockout_attempts = lockout_attempts
        self.lockout_ms = int(lockout_minutes * 60_000)
        self._clock = clock
        # argon2id with the library's defaults (64 MiB, 3 passes): memory-hard, so a stolen
        # database costs an attacker real hardware per guess.
        self._hasher = hasher or PasswordHasher()
        self._dummy: str | None = None
        # Failures for names that are not users, counted like a user's so that the dashboard's
        # "locked" answer does not tell which names exist. In memory and bounded: an attacker
        # cycling through names must not grow anything without limit.
        self._ghosts: OrderedDict[str, tuple[int, int]] = OrderedDict()
        self._lock = threading.Lock()
        self._integrity: type[Exception] = sqlite3.IntegrityError
        # ValueError: a URL of no database we know.
        errors: tuple[type[Exception], ...] = (OSError, ValueError, sqlite3.Error)
        self._migrations = MIGRATIONS
        self.name = str(path)
        postgres = isinstance(path, str) and path.startswith(("postgresql://", "postgres://"))
        if postgres:
            from broker.store import dialect_pg

            self.path, self.name, errors = None, dialect_pg.redacted(path), (dialect_pg.Error,)
        try:
            if postgres:
                self._open_postgres(path)
            else:
                self.path: Path | None = path_of(path)  # a file, or the store's sqlite:/// URL
                self.name = str(self.path)
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(str(self.path), timeout=10, isolation_level=None, check_same_thread=False)
                self._db.row_factory = sqlite3.Row
                # Both the CLI and the service write here; wait for the other rather than fail.
                self._db.execute("PRAGMA busy_timeout = 10000")
                self._db.execute("PRAGMA journal_mode = WAL")
            self._migrate()
        except errors as e:
            raise AuthError(f"cannot open the auth tables in {self.name}: {str(e).strip()}") from e

    def _open_postgres(self, url: str) -> None:
        """The store's PostgreSQL database: a connection with rows by name and a write lock of auth's own."""
        from broker.auth_schema import PG_MIGRATIONS
        from broker.store import dialect_pg

        self._integrity, self._migrations = dialect_pg.IntegrityError, PG_MIGRATIONS
        self._db = dialect_pg.connect(url, lock=dialect_pg.STORE_LOCK + 1, rows_by_name=True)

    @classmethod
    def from_config(cls, cfg, **kwargs) -> "Auth":
        where = cfg.store.url if cfg.store.postgres else cfg.store.path
        return cls(where, lockout_attempts=cfg.auth.lockout_attempts,
                   lockout_minutes=cfg.auth.lockout_minutes, **kwargs)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> "Auth":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    # ----- schema ----------------------------------------------------------------------

    def _migrate(self) -> None:
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")  # two processes starting at once must not both migrate
            try:
                db.execute("CREATE TABLE IF NOT EXISTS auth_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
                row = db.execute("SELECT value FROM auth_meta WHERE key = 'schema_version'").fetchone()
                version = int(row["value"]) if row else 0
                if version > len(self._migrations):
                    raise AuthError(f"{self.name}: auth schema version {version} is newer than this software "
                                    f"({len(self._migrations)}); upgrade hailong")
                for sql in self._migrations[version:]:
                    for statement in filter(str.strip, sql.split(";")):
                        db.execute(statement)
                db.execute("INSERT INTO auth_meta (key, value) VALUES ('schema_version', ?)"
                           " ON CONFLICT (key) DO UPDATE SET value = excluded.value", (str(len(self._migrations)),))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def schema_version(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT value FROM auth_meta WHERE key = 'schema_version'").fetchone()
        return int(row["value"])

    # ----- users -------------------------------------------------------------------------

    def add_user(self, name: str, role: str, password: str, sites=None) -> None:
        """`sites`: None for every site, else the only ones the user may see (see Principal)."""
        _check_name(name, "user")
        check_role(role)
        sites = check_sites(sites)
        if not isinstance(password, str) or len(password) < MIN_PASSWORD:
            raise AuthError(f"password too short: at least {MIN_PASSWORD} characters")
        hashed = self._hasher.hash(password)
        with self._lock:
            try:
                with self._tx():
                    self._db.execute("INSERT INTO auth_users (name, role, password_hash, created_ms) "
                                     "VALUES (?, ?, ?, ?)", (name, role, hashed, self._now_ms()))
                    self._put_sites("user", name, sites)
            except self._integrity:
                raise AuthError(f"user {name!r} already exists") from None

    def verify_password(self, name: str, password: str) -> Principal | None:
        """The user's principal if `password` is right and the account is not locked, else None.

        After `lockout_attempts` wrong passwords in a row the account refuses even the right
        one for `lockout_minutes`; the count lives in the database, so restarting the
        service does not reset it.
        """
        with self._lock:
            row = self._db.execute("SELECT * FROM auth_users WHERE name = ?", (name,)).fetchone()
        if row is None:
            # Verifying anyway keeps the timing the same, so response time does not tell
            # which user names exist.
            if self._dummy is None:
                self._dummy = self._hasher.hash(secrets.token_urlsafe(16))
            self._check(self._dummy, password)
            self._ghost_failure(name, self._now_ms())
            return None
        now = self._now_ms()
        if not self._count_attempt(name, now):
            return None  # locked
        ok = self._check(row["password_hash"], password)
        if not ok:
            return None
        with self._lock:
            self._db.execute("UPDATE auth_users SET failures = 0, locked_until_ms = 0, last_login_ms = ? "
                             "WHERE name = ?", (now, name))
            if self._hasher.check_needs_rehash(row["password_hash"]):
                self._db.execute("UPDATE auth_users SET password_hash = ? WHERE name = ?",
                                 (self._hasher.hash(password), name))
        return Principal(name, row["role"], "password", sites=self.sites_of("user", name))

    def _count_attempt(self, name: str, now: int) -> bool:
        """Count an attempt as a failure before its password is checked (a success clears it): False if locked.

        Counted afterwards, every guess of a parallel burst would be checked before the first
        failure was recorded, each burst getting as many guesses as it has requests.
        """
        with self._lock:
            # A lock that has run out starts a fresh count; while locked, attempts neither count
            # nor extend it. In SQL, so that concurrent attempts (CLI and service) all count.
            counted = self._db.execute(
                "UPDATE auth_users SET "
                "failures = CASE WHEN locked_until_ms > 0 THEN 1 ELSE failures + 1 END, "
                "locked_until_ms = 0 WHERE name = ? AND locked_until_ms <= ?", (name, now)).rowcount
            self._db.execute("UPDATE auth_users SET locked_until_ms = ? WHERE name = ? "
                             "AND failures >= ? AND locked_until_ms = 0",
                             (now + self.lockout_ms, name, self.lockout_attempts))
        return counted == 1

    def _check(self, hashed: str, password: str) -> bool:
        try:
            return self._hasher.verify(hashed, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def locked_until_ms(self, name: str) -> int | None:
        """When the user's lockout ends (ms since epoch), or None if not locked; a name that is
        no user's answers the same way after as many failures."""
        with self._lock:
            row = self._db.execute("SELECT locked_until_ms FROM auth_users WHERE name = ?", (name,)).fetchone()
            until = row["locked_until_ms"] if row is not None else self._ghosts.get(name, (0, 0))[1]
        return until if until > self._now_ms() else None

    def _ghost_failure(self, name: str, now: int) -> None:
        with self._lock:
            failures, until = self._ghosts.pop(name, (0, 0))
            if until and until <= now:
                failures, until = 0, 0  # a lock that has run out starts a fresh count
            if not until:  # while locked, refusals neither count nor extend it, as for users
                failures += 1
                until = now + self.lockout_ms if failures >= self.lockout_attempts else 0
            self._ghosts[name] = (failures, until)
            while len(self._ghosts) > _MAX_GHOSTS:
                self._ghosts.popitem(last=False)

    def list_users(self) -> list[dict]:
        with self._lock:
            rows = self._db.execute("SELECT name, role, created_ms, last_login_ms, failures, locked_until_ms "
                                    "FROM auth_users ORDER BY name").fetchall()
        now = self._now_ms()
        return [{"name": r["name"], "role": r["role"], "sites": _listed(self.sites_of("user", r["name"])),
                 "created_ms": r["created_ms"], "last_login_ms": r["last_login_ms"],
                 "locked": r["locked_until_ms"] > now} for r in rows]

    def user(self, name: str) -> Principal | None:
        """The user's principal as it stands now (role and sites), without a password: for a session."""
        with self._lock:
            row = self._db.execute("SELECT role FROM auth_users WHERE name = ?", (name,)).fetchone()
        return None if row is None else Principal(name, row["role"], "session", sites=self.sites_of("user", name))

    # ----- tokens --------------------------------------------------------------------------

    def create_token(self, role: str, name: str | None = None, sites=None, *, site: str | None = None) -> str:
        """Create a token and return it; this is the only time the secret exists in clear.

        `sites`: None for every site, else the only ones it may see (see Principal). A `display`
        token needs instead the one `site` whose hall it shows, and sees only that site.
        """
        check_role(role, roles=TOKEN_ROLES)
        if (role == DISPLAY) != (site is not None):
            raise AuthError("a display token needs its site (--site), and only a display token takes one")
        if site is not None:
            _check_name(site, "site")
            sites = [site]
        sites = check_sites(sites)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        shown = token_prefix(token)
        name = _check_name(name, "token") if name is not None else f"{role}-{shown[len(TOKEN_PREFIX):]}"
        with self._lock:
            try:
                with self._tx():
                    self._db.execute("INSERT INTO auth_tokens (name, role, token_hash, shown, created_ms, site) "
                                     "VALUES (?, ?, ?, ?, ?, ?)",
                                     (name, role, _token_hash(token), shown, self._now_ms(), site))
                    self._put_sites("token", name, sites)
            except self._integrity:
                raise AuthError(f"a token named {name!r} already exists: revoke it first or choose another name") \
                    from None
        return token

    def verify_token(self, token: str) -> Principal | None:
        if not isinstance(token, str) or not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        digest = _token_hash(token)
        # The lookup by hash can only leak timing about the hash, which tells an attacker
        # nothing about any token; the final compare is constant-time anyway.
        with self._lock:
            row = self._db.execute("SELECT id, name, role, token_hash, site FROM auth_tokens "
                                   "WHERE token_hash = ? AND revoked_ms IS NULL", (digest,)).fetchone()
            if row is None or not hmac.compare_digest(row["token_hash"], digest):
                return None
            now = self._now_ms()
            # Recorded at minute granularity: a write per request would contend with ingest.
            self._db.execute("UPDATE auth_tokens SET last_used_ms = ? WHERE id = ? "
                             "AND (last_used_ms IS NULL OR last_used_ms < ?)", (now, row["id"], now - 60_000))
        return Principal(row["name"], row["role"], "token", row["site"], sites=self.sites_of("token", row["name"]))

    def revoke_token(self, name_or_prefix: str) -> list[str]:
        """Revoke the live token with this name, or whose shown prefix (see list_tokens) starts so.

        Returns the names revoked; AuthError if none or, for a prefix, more than one matches.
        """
        now = self._now_ms()
        with self._lock:
            rows = self._db.execute("SELECT id, name FROM auth_tokens WHERE revoked_ms IS NULL AND name = ?",
                                    (name_or_prefix,)).fetchall()
            if not rows and name_or_prefix.startswith(TOKEN_PREFIX) and len(name_or_prefix) >= len(TOKEN_PREFIX) + 4:
                # Also accepts the whole token, whose first characters are its shown prefix.
                key = name_or_prefix[:_SHOWN]
                rows = self._db.execute("SELECT id, name FROM auth_tokens WHERE revoked_ms IS NULL "
                                        "AND substr(shown, 1, ?) = ?", (len(key), key)).fetchall()
            if not rows:
                raise AuthError(f"no live token named or starting with {name_or_prefix!r}")
            if len(rows) > 1:
                raise AuthError(f"{name_or_prefix!r} matches {len(rows)} tokens: give more of the prefix or the name")
            self._db.execute("UPDATE auth_tokens SET revoked_ms = ? WHERE id = ?", (now, rows[0]["id"]))
        return [rows[0]["name"]]

    def list_tokens(self) -> list[dict]:
        """Every token, revoked ones included; never the secret, only its first characters."""
        with self._lock:
            rows = self._db.execute("SELECT name, role, shown, created_ms, revoked_ms, last_used_ms, site "
                                    "FROM auth_tokens ORDER BY created_ms, id").fetchall()
        return [{"name": r["name"], "role": r["role"], "site": r["site"], "prefix": r["shown"],
                 "sites": None if r["revoked_ms"] is not None else _listed(self.sites_of("token", r["name"])),
                 "created_ms": r["created_ms"], "last_used_ms": r["last_used_ms"],
                 "revoked": r["revoked_ms"] is not None} for r in rows]

    # ----- scope: which sites a user or a live token may see -------------------------------

    def sites_of(self, kind: str, name: str) -> frozenset[str] | None:
        """None for every site; else the sites listed (an unknown name sees none)."""
        k = _SCOPE[kind]
        with self._lock:
            row = self._db.execute(f"SELECT {k.key}, scoped FROM {k.table} WHERE {k.which}", (name,)).fetchone()
            if row is not None and not row["scoped"]:
                return None
            found = [] if row is None else self._db.execute(
                f"SELECT site FROM {k.sites} WHERE {k.column} = ?", (row[0],)).fetchall()
        return frozenset(r["site"] for r in found)

    def set_sites(self, kind: str, name: str, sites) -> None:
        """Make the user's or live token's scope `sites` (None: every site). AuthError if there is no such one."""
        sites = check_sites(sites)
        with self._lock, self._tx():
            self._put_sites(kind, name, sites)

    @contextmanager
    def _tx(self) -> Iterator[None]:
        """A write transaction (the caller holds the lock): a principal and its sites are written together."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _put_sites(self, kind: str, name: str, sites: frozenset[str] | None) -> None:
        """Inside the caller's transaction, holding the lock."""
        k = _SCOPE[kind]
        row = self._db.execute(f"SELECT {k.key} FROM {k.table} WHERE {k.which}", (name,)).fetchone()
        if row is None:
            raise NoSuchPrincipal(f"no {'live token' if kind == 'token' else 'user'} named {name!r}")
        self._db.execute(f"DELETE FROM {k.sites} WHERE {k.column} = ?", (row[0],))
        self._db.executemany(f"INSERT INTO {k.sites} ({k.column}, site) VALUES (?, ?)",
                             [(row[0], site) for site in sorted(sites or ())])
        self._db.execute(f"UPDATE {k.table} SET scoped = ? WHERE {k.key} = ?", (int(sites is not None), row[0]))
