"""API users and tokens: argon2id passwords, persisted lockout, hashed tokens, and the CLI around them."""
from __future__ import annotations

import hashlib
import re
import sqlite3
import subprocess
import sys

import pytest
from argon2 import PasswordHasher

from broker.auth import MIGRATIONS, Auth, AuthError, Principal
from tests.support import ROOT

TOKEN_RE = re.compile(r"\Ahl_[A-Za-z0-9_-]{43}\Z")
# A real argon2id, just cheap enough that a lockout test's dozen verifications stay fast.
CHEAP = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


class Clock:
    def __init__(self, t: float = 1_700_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path):
    """Where the auth tables live: a SQLite file, then a PostgreSQL store's database (a URL)."""
    if request.param == "postgresql":
        return request.getfixturevalue("pg_url")
    return tmp_path / "service" / "hailong.db"


SQLITE_ONLY = pytest.mark.parametrize("db", ["sqlite"], indirect=True)


def raw(db, sql, *args):
    if isinstance(db, str):  # PostgreSQL
        from broker.store import dialect_pg

        conn = dialect_pg.connect(db)
        try:
            return [tuple(row) for row in conn.execute(sql, args).fetchall()]
        finally:
            conn.close()
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, args).fetchall()


def test_passwords_are_stored_as_argon2id_and_checked(db):
    with Auth(db) as auth:
        auth.add_user("lan", "manager", "correct horse battery")
        assert auth.verify_password("lan", "correct horse battery") == Principal("lan", "manager", "password")
        assert auth.verify_password("lan", "wrong horse battery") is None
        assert auth.verify_password("nobody", "correct horse battery") is None
    [(stored,)] = raw(db, "SELECT password_hash FROM auth_users WHERE name = 'lan'")
    # argon2id with a memory cost that makes each guess expensive (64 MiB).
    assert stored.startswith("$argon2id$") and "m=65536" in stored
    assert "correct horse" not in stored


def test_users_are_validated(db):
    with Auth(db, hasher=CHEAP) as auth:
        with pytest.raises(AuthError, match="unknown role 'boss'"):
            auth.add_user("lan", "boss", "long enough pw")
        with pytest.raises(AuthError, match="too short"):
            auth.add_user("lan", "viewer", "short")
        with pytest.raises(AuthError, match="bad user name"):
            auth.add_user("lan nguyen", "viewer", "long enough pw")
        auth.add_user("lan", "viewer", "long enough pw")
        with pytest.raises(AuthError, match="already exists"):
            auth.add_user("lan", "admin", "long enough pw")
        assert [(u["name"], u["role"], u["locked"]) for u in auth.list_users()] == [("lan", "viewer", False)]
        assert "password_hash" not in auth.list_users()[0]


def test_lockout_after_n_failures_lasts_the_window_and_survives_a_restart(db):
    clock = Clock()
    auth = Auth(db, lockout_attempts=3, lockout_minutes=10, clock=clock, hasher=CHEAP)
    auth.add_user("lan", "viewer", "the right one!")
    for _ in range(2):
        assert auth.verify_password("lan", "a wrong one") is None
    # Fewer than N failures: a right password still works, and resets the count.
    assert auth.verify_password("lan", "the right one!") is not None
    for _ in range(3):
        assert auth.verify_password("lan", "a wrong one") is None
    assert auth.verify_password("lan", "the right one!") is None
    assert auth.locked_until_ms("lan") == int(clock.t * 1000) + 600_000
    auth.close()

    # The lock is in the database: a restarted service (or the CLI) sees it too.
    auth = Auth(db, lockout_attempts=3, lockout_minutes=10, clock=clock, hasher=CHEAP)
    clock.t += 599
    assert auth.verify_password("lan", "the right one!") is None
    assert [u["locked"] for u in auth.list_users()] == [True]
    clock.t += 1
    assert auth.locked_until_ms("lan") is None
    assert auth.verify_password("lan", "the right one!") == Principal("lan", "viewer", "password")

    # After the window the count starts afresh: one failure does not re-lock.
    for _ in range(3):
        assert auth.verify_password("lan", "a wrong one") is None
    clock.t += 600
    assert auth.verify_password("lan", "a wrong one") is None
    assert auth.verify_password("lan", "the right one!") is not None
    auth.close()


def test_a_name_that_is_no_users_locks_like_one_so_names_cannot_be_probed(db):
    clock = Clock()
    auth = Auth(db, lockout_attempts=3, lockout_minutes=10, clock=clock, hasher=CHEAP)
    auth.add_user("lan", "viewer", "the right one!")
    seen = {}
    for name in ("lan", "nobody"):
        answers = []
        for _ in range(5):
            answers.append((auth.verify_password(name, "a wrong one"), auth.locked_until_ms(name)))
        seen[name] = answers
    assert seen["lan"] == seen["nobody"]
    assert seen["nobody"][2][1] == int(clock.t * 1000) + 600_000  # locked at the third failure, not extended
    clock.t += 600
    assert auth.locked_until_ms("nobody") is None and auth.locked_until_ms("lan") is None
    auth.close()


def test_names_that_are_no_users_are_remembered_within_a_bound(db, monkeypatch):
    import broker.auth

    monkeypatch.setattr(broker.auth, "_MAX_GHOSTS", 3)
    auth = Auth(db, lockout_attempts=1, clock=Clock(), hasher=CHEAP)
    for i in range(10):
        auth.verify_password(f"probe-{i}", "x")
    assert len(auth._ghosts) == 3 and auth.locked_until_ms("probe-9") is not None
    auth.close()


def test_a_token_exists_in_clear_only_once_and_only_its_hash_is_stored(db):
    with Auth(db) as auth:
        token = auth.create_token("manager", "queue-system")
        assert TOKEN_RE.match(token)
        assert auth.verify_token(token) == Principal("queue-system", "manager", "token")
        listed = auth.list_tokens()
        assert [(t["name"], t["role"], t["revoked"]) for t in listed] == [("queue-system", "manager", False)]
        assert token not in repr(listed) and token.startswith(listed[0]["prefix"])
    [(stored,)] = raw(db, "SELECT token_hash FROM auth_tokens")
    assert stored == hashlib.sha256(token.encode()).hexdigest()
    if isinstance(db, str):  # PostgreSQL: in no row of any auth table
        for table in ("auth_meta", "auth_users", "auth_tokens", "auth_user_sites", "auth_token_sites"):
            assert token not in repr(raw(db, f"SELECT * FROM {table}")), table
        return
    # Not anywhere in the database files, WAL included.
    for path in db.parent.iterdir():
        assert token.encode() not in path.read_bytes(), path


def test_wrong_revoked_and_malformed_tokens_are_refused(db):
    with Auth(db) as auth:
        token = auth.create_token("admin", "ops")
        other = auth.create_token("viewer")
        assert auth.verify_token(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
        for bad in ("", "hl_", "Bearer " + token, token.removeprefix("hl_"), "x" * 500):
            assert auth.verify_token(bad) is None
        assert auth.revoke_token("ops") == ["ops"]
        assert auth.verify_token(token) is None
        assert auth.verify_token(other) is not None
        with pytest.raises(AuthError, match="no live token"):
            auth.revoke_token("ops")
        # A revoked token frees its name, and the shown prefix also revokes.
        again = auth.create_token("admin", "ops")
        prefix = next(t["prefix"] for t in auth.list_tokens() if not t["revoked"] and t["name"] == "ops")
        auth.revoke_token(prefix)
        assert auth.verify_token(again) is None
        with pytest.raises(AuthError, match="already exists"):
            name = next(t["name"] for t in auth.list_tokens() if not t["revoked"])
            auth.create_token("viewer", name)
        with pytest.raises(AuthError, match="unknown role"):
            auth.create_token("root")


def test_roles_are_ranked():
    viewer, manager, admin = (Principal("x", r) for r in ("viewer", "manager", "admin"))
    assert admin.allows("manager") and admin.allows("viewer") and manager.allows("viewer")
    assert not viewer.allows("manager") and not manager.allows("admin")


def test_schema_is_versioned_and_migrated_once(db):
    Auth(db).close()
    with Auth(db) as auth:
        assert auth.schema_version() == len(MIGRATIONS)
    assert raw(db, "SELECT value FROM auth_meta WHERE key = 'schema_version'") == [(str(len(MIGRATIONS)),)]
    if not isinstance(db, str):
        assert raw(db, "PRAGMA journal_mode") == [("wal",)]


# ----- the CLI, as a real process ---------------------------------------------------------


def write_config(tmp_path, db):
    cfg = tmp_path / "broker.toml"
    url = db if isinstance(db, str) else f"sqlite:///{db}"
    cfg.write_text(f'[mqtt]\nembedded = false\n[store]\nurl = "{url}"\n'
                   '[auth]\nlockout_attempts = 4\nlockout_minutes = 5\n')
    return cfg


def hailong(*args, stdin: str | None = None):
    return subprocess.run([sys.executable, "-m", "hailong.cli", "broker", *args], input=stdin,
                          capture_output=True, text=True, cwd=ROOT, timeout=60)


def test_cli_token_create_prints_only_the_token_and_a_running_service_accepts_it(tmp_path, db):
    cfg = write_config(tmp_path, db)
    service = Auth(db)  # as if the service were running with the file open
    try:
        r = hailong("token", "create", "--role", "manager", "--name", "queue", "--config", str(cfg))
        assert r.returncode == 0, r.stderr
        assert r.stdout.endswith("\n") and TOKEN_RE.match(r.stdout[:-1]), repr(r.stdout)
        token = r.stdout[:-1]
        assert "shown only this once" in r.stderr and token not in r.stderr
        assert service.verify_token(token) == Principal("queue", "manager", "token")

        listed = hailong("token", "list", "--config", str(cfg))
        assert listed.returncode == 0 and "queue" in listed.stdout and token not in listed.stdout

        r = hailong("token", "revoke", "queue", "--config", str(cfg))
        assert r.returncode == 0, r.stderr
        assert service.verify_token(token) is None
        r = hailong("token", "revoke", "queue", "--config", str(cfg))
        assert r.returncode == 2 and "no live token" in r.stderr and "Traceback" not in r.stderr
    finally:
        service.close()


@SQLITE_ONLY  # the command line's own checks: the database plays no part
def test_cli_bad_role_is_exit_2_with_a_message(tmp_path, db):
    cfg = write_config(tmp_path, db)
    for args in (("token", "create", "--role", "root"), ("user", "add", "lan", "--role", "boss")):
        r = hailong(*args, "--config", str(cfg))
        assert r.returncode == 2 and r.stdout == ""
        assert "invalid choice" in r.stderr and "admin" in r.stderr and "Traceback" not in r.stderr


def test_cli_user_add_generates_or_reads_the_password(tmp_path, db):
    cfg = write_config(tmp_path, db)
    r = hailong("user", "add", "lan", "--role", "admin", "--config", str(cfg), stdin="")
    assert r.returncode == 0, r.stderr
    generated = r.stdout.strip()
    assert len(generated) >= 20 and r.stdout == generated + "\n"

    r = hailong("user", "add", "minh", "--role", "viewer", "--password-stdin", "--config", str(cfg),
                stdin="my own passphrase\nignored second line\n")
    assert r.returncode == 0 and r.stdout == "", r.stderr

    r = hailong("user", "add", "minh", "--role", "viewer", "--password-stdin", "--config", str(cfg),
                stdin="another passphrase\n")
    assert r.returncode == 2 and "already exists" in r.stderr

    r = hailong("user", "add", "hoa", "--role", "viewer", "--password-stdin", "--config", str(cfg), stdin="")
    assert r.returncode == 2 and "no password on stdin" in r.stderr

    with Auth(db) as auth:
        assert auth.verify_password("lan", generated) == Principal("lan", "admin", "password")
        assert auth.verify_password("minh", "my own passphrase") == Principal("minh", "viewer", "password")
        assert auth.verify_password("hoa", "") is None

    listed = hailong("user", "list", "--json", "--config", str(cfg))
    assert listed.returncode == 0
    assert '"lan"' in listed.stdout and '"minh"' in listed.stdout and "argon2" not in listed.stdout


# ----- scope: users and tokens limited to some sites ------------------------------------------------


@SQLITE_ONLY  # the scope itself runs on PostgreSQL in the next test; this is the command line
def test_cli_limits_users_and_tokens_to_sites_and_changes_them(tmp_path, db):
    cfg = write_config(tmp_path, db)
    r = hailong("user", "add", "lan", "--role", "manager", "--site", "xa-1", "--site", "xa-2", "--config", str(cfg))
    assert r.returncode == 0 and "sites: xa-1, xa-2" in r.stderr, r.stderr
    r = hailong("token", "create", "--role", "viewer", "--name", "q", "--site", "xa-1", "--config", str(cfg))
    token = r.stdout.strip()
    with Auth(db) as auth:
        assert auth.user("lan").sites == {"xa-1", "xa-2"} and auth.verify_token(token).sites == {"xa-1"}
    assert hailong("user", "sites", "lan", "--all-sites", "--config", str(cfg)).returncode == 0
    assert hailong("token", "sites", "q", "--site", "xa-3", "--config", str(cfg)).returncode == 0
    with Auth(db) as auth:
        assert auth.user("lan").sites is None and auth.verify_token(token).sites == {"xa-3"}
    listed = hailong("user", "list", "--config", str(cfg)).stdout
    assert re.search(r"^lan\s+manager\s+\*", listed, re.M), listed
    r = hailong("user", "sites", "nobody", "--site", "x", "--config", str(cfg))
    assert r.returncode == 2 and "no user named 'nobody'" in r.stderr


def test_principals_from_before_scope_keep_every_site_and_an_emptied_scope_sees_nothing(db):
    # An auth file of schema version 1, as the previous release left it.
    if isinstance(db, str):
        _auth_tables_of_version_1_on_postgres(db)
    else:
        _auth_tables_of_version_1(db)
    with Auth(db) as auth:
        assert auth.user("old").sites is None
        auth.set_sites("user", "old", ["s1"])
        auth.set_sites("user", "old", [])
        assert auth.user("old").sites == frozenset()
        assert auth.user("gone") is None and auth.sites_of("user", "gone") == frozenset()
        with pytest.raises(AuthError):
            auth.add_user("bad", "viewer", "p" * 12, sites=["a\nb"])
        with pytest.raises(AuthError):
            auth.create_token("viewer", sites="s1")  # one string is not a list of sites


def _auth_tables_of_version_1(db) -> None:
    db.parent.mkdir(parents=True)
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE auth_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        for statement in filter(str.strip, MIGRATIONS[0].split(";")):
            conn.execute(statement)
        conn.execute("INSERT INTO auth_meta VALUES ('schema_version', '1')")
        conn.execute("INSERT INTO auth_users (name, role, password_hash, created_ms) VALUES ('old', 'admin', 'x', 0)")


def _auth_tables_of_version_1_on_postgres(url: str) -> None:
    from broker.auth_schema import PG_MIGRATIONS
    from broker.store import dialect_pg

    conn = dialect_pg.connect(url)
    try:
        conn.execute("DROP TABLE auth_meta, auth_users, auth_tokens, auth_user_sites, auth_token_sites")
        conn.execute("CREATE TABLE auth_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        for statement in filter(str.strip, PG_MIGRATIONS[0].split(";")):
            conn.execute(statement)
        conn.execute("INSERT INTO auth_meta VALUES ('schema_version', '1')")
        conn.execute("INSERT INTO auth_users (name, role, password_hash, created_ms) VALUES ('old', 'admin', 'x', 0)")
    finally:
        conn.close()
