"""The demo login: user `demo` (manager) and an API token, made once per data folder.

Kept in LOGIN_FILE beside the store, so a second run shows the same password and token.
The file holds a password and a token: it is written whole (never half) and only its
owner may read it.
"""
from __future__ import annotations

import json
import secrets
from pathlib import Path

from common.fsutil import atomic_write

LOGIN_FILE = "demo-login.json"


def demo_login(data: Path, auth) -> dict:
    """The saved login if its token still works, else a new user and token (saved)."""
    from broker.auth import generate_password

    path = data / LOGIN_FILE
    saved = _saved(path, auth)
    if saved is not None:
        return saved
    password = generate_password()
    users = {u["name"] for u in auth.list_users()}
    # The file was lost: pick a fresh name rather than guess the old password.
    name = f"demo-{secrets.token_hex(2)}" if "demo" in users else "demo"
    auth.add_user(name, "manager", password)
    token = auth.create_token("manager", f"demo-{secrets.token_hex(3)}")
    saved = {"user": name, "password": password, "role": "manager", "api_token": token}
    atomic_write(path, (json.dumps(saved, indent=2) + "\n").encode("utf-8"), mode=0o600)
    return saved


def _saved(path: Path, auth) -> dict | None:
    if not path.exists():
        return None
    try:
        saved = json.loads(path.read_text())
        if auth.verify_token(saved.get("api_token", "")) is not None:
            return saved
    except (ValueError, OSError, AttributeError):
        pass
    return None
