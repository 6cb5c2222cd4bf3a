"""The display role: a token bound to one site that opens only that site's hall display."""
from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys

import pytest

import broker.auth as auth_module
from broker.auth import DISPLAY, Auth, AuthError, Principal
from tests.support import ROOT

ROLES_ABOVE = ("viewer", "manager", "admin")


@pytest.fixture
def db(tmp_path):
    return tmp_path / "service" / "hailong.db"


def test_a_display_token_carries_its_site_and_allows_no_ranked_role(db):
    with Auth(db) as auth:
        token = auth.create_token(DISPLAY, "hall-kt", site="kien-thuy")
        who = auth.verify_token(token)
        assert who == Principal("hall-kt", DISPLAY, "token", "kien-thuy", frozenset({"kien-thuy"}))
        assert not any(who.allows(r) for r in ROLES_ABOVE)
        assert who.shows_hall("kien-thuy") and not who.shows_hall("an-lao")
        assert [(t["name"], t["role"], t["site"]) for t in auth.list_tokens()] == [("hall-kt", DISPLAY, "kien-thuy")]
        # Every user may watch any hall; a ranked token has no site.
        assert Principal("lan", "viewer", "session").shows_hall("an-lao")
        assert auth.verify_token(auth.create_token("viewer", "v")).site is None


def test_a_display_token_needs_a_site_and_only_it_takes_one(db):
    with Auth(db) as auth:
        with pytest.raises(AuthError, match="needs its site"):
            auth.create_token(DISPLAY, "hall")
        with pytest.raises(AuthError, match="only a display token"):
            auth.create_token("viewer", "v", site="kien-thuy")
        with pytest.raises(AuthError, match="bad site name"):
            auth.create_token(DISPLAY, "hall", site="kien thuy/../x")
        with pytest.raises(AuthError, match="unknown role"):
            auth.add_user("tv", DISPLAY, "long enough password")  # nobody logs in as a TV


def test_tokens_made_before_the_display_role_survive_the_migration(db, monkeypatch):
    monkeypatch.setattr(auth_module, "MIGRATIONS", auth_module.MIGRATIONS[:1])
    Auth(db).close()  # the tables as the release before this one made them
    monkeypatch.undo()
    token = "hl_" + "k" * 43
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO auth_tokens (name, role, token_hash, shown, created_ms) VALUES (?, ?, ?, ?, 0)",
                     ("queue-system", "manager", hashlib.sha256(token.encode()).hexdigest(), token[:11]))
    with Auth(db) as auth:
        assert auth.schema_version() == len(auth_module.MIGRATIONS)
        assert auth.verify_token(token) == Principal("queue-system", "manager", "token", None)
        auth.create_token(DISPLAY, "hall", site="kien-thuy")
    with sqlite3.connect(db) as conn, pytest.raises(sqlite3.IntegrityError):
        # The table itself refuses a display token without a site, whoever writes it.
        conn.execute("INSERT INTO auth_tokens (name, role, token_hash, shown, created_ms) "
                     "VALUES ('x', 'display', 'h', 's', 0)")


def hailong(*args):
    return subprocess.run([sys.executable, "-m", "hailong.cli", "broker", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)


def test_cli_creates_a_display_token_for_a_site(tmp_path, db):
    cfg = tmp_path / "broker.toml"
    cfg.write_text(f'[mqtt]\nembedded = false\n[store]\nurl = "sqlite:///{db}"\n')
    r = hailong("token", "create", "--role", "display", "--site", "kien-thuy", "--name", "hall", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    assert "/hall/kien-thuy?key=" in r.stderr
    with Auth(db) as auth:
        assert auth.verify_token(r.stdout.strip()).site == "kien-thuy"
    r = hailong("token", "create", "--role", "display", "--config", str(cfg))
    assert r.returncode == 2 and "needs its site" in r.stderr
    listed = hailong("token", "list", "--json", "--config", str(cfg))
    assert '"site": "kien-thuy"' in listed.stdout
