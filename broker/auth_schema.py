"""The auth store's tables, as SQL scripts by version: `MIGRATIONS[n-1]` takes version n-1 to n.

Kept apart from broker.auth so the rules (roles, scope, lockout) read without the DDL.
Append only: a store that has run a script never runs it again.
"""
from __future__ import annotations

__all__ = ["MIGRATIONS"]

MIGRATIONS: list[str] = [
    # 1: users with a persisted lockout, tokens stored only as hashes.
    """
    CREATE TABLE auth_users (
        name            TEXT PRIMARY KEY,
        role            TEXT NOT NULL CHECK (role IN ('viewer', 'manager', 'admin')),
        password_hash   TEXT NOT NULL,
        created_ms      INTEGER NOT NULL,
        failures        INTEGER NOT NULL DEFAULT 0,
        locked_until_ms INTEGER NOT NULL DEFAULT 0,
        last_login_ms   INTEGER
    );
    CREATE TABLE auth_tokens (
        id           INTEGER PRIMARY KEY,
        name         TEXT NOT NULL,
        role         TEXT NOT NULL CHECK (role IN ('viewer', 'manager', 'admin')),
        token_hash   TEXT NOT NULL UNIQUE,
        shown        TEXT NOT NULL,
        created_ms   INTEGER NOT NULL,
        revoked_ms   INTEGER,
        last_used_ms INTEGER
    );
    -- A revoked token keeps its row (for the audit trail) but frees its name.
    CREATE UNIQUE INDEX auth_tokens_live_name ON auth_tokens (name) WHERE revoked_ms IS NULL;
    """,
    # 2: display tokens, each bound to its site (SQLite cannot change a CHECK: the table is rebuilt).
    """
    CREATE TABLE auth_tokens_v2 (
        id           INTEGER PRIMARY KEY,
        name         TEXT NOT NULL,
        role         TEXT NOT NULL CHECK (role IN ('viewer', 'manager', 'admin', 'display')),
        token_hash   TEXT NOT NULL UNIQUE,
        shown        TEXT NOT NULL,
        created_ms   INTEGER NOT NULL,
        revoked_ms   INTEGER,
        last_used_ms INTEGER,
        site         TEXT CHECK ((role = 'display') = (site IS NOT NULL))
    );
    INSERT INTO auth_tokens_v2 (id, name, role, token_hash, shown, created_ms, revoked_ms, last_used_ms)
        SELECT id, name, role, token_hash, shown, created_ms, revoked_ms, last_used_ms FROM auth_tokens;
    DROP TABLE auth_tokens;
    ALTER TABLE auth_tokens_v2 RENAME TO auth_tokens;
    CREATE UNIQUE INDEX auth_tokens_live_name ON auth_tokens (name) WHERE revoked_ms IS NULL;
    """,
    # 2: scope. `scoped` = 0: every site (province-wide); 1: only the sites listed for it, so a
    # scoped principal whose last site is taken away sees nothing rather than everything.
    """
    ALTER TABLE auth_users ADD COLUMN scoped INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE auth_tokens ADD COLUMN scoped INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE auth_user_sites (user TEXT NOT NULL, site TEXT NOT NULL, PRIMARY KEY (user, site)) WITHOUT ROWID;
    CREATE TABLE auth_token_sites (token INTEGER NOT NULL, site TEXT NOT NULL, PRIMARY KEY (token, site))
        WITHOUT ROWID;
    """,
]
