"""The demo logins, made once per data folder: user `demo` (manager of every centre, the province's)
with an API token, and the commune user `xa-minh-tan` (manager of the commune's centre only).

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
    if saved is not None and "commune" in saved:
        return saved
    if saved is not None:  # a data folder from before the demo had two centres
        saved["commune"] = _commune(auth)
        atomic_write(path, (json.dumps(saved, indent=2) + "\n").encode("utf-8"), mode=0o600)
        return saved
    password = generate_password()
    users = {u["name"] for u in auth.list_users()}
    # The file was lost: pick a fresh name rather than guess the old password.
    name = f"demo-{secrets.token_hex(2)}" if "demo" in users else "demo"
    auth.add_user(name, "manager", password)
    token = auth.create_token("manager", f"demo-{secrets.token_hex(3)}")
    saved = {"user": name, "password": password, "role": "manager", "api_token": token, "commune": _commune(auth)}
    atomic_write(path, (json.dumps(saved, indent=2) + "\n").encode("utf-8"), mode=0o600)
    return saved


def _commune(auth) -> dict:
    """The commune's manager, limited to its centre."""
    from broker.auth import generate_password
    from hailong.demo.config import COMMUNE_SITE

    password = generate_password()
    users = {u["name"] for u in auth.list_users()}
    name = f"xa-minh-tan-{secrets.token_hex(2)}" if "xa-minh-tan" in users else "xa-minh-tan"
    auth.add_user(name, "manager", password, sites=[COMMUNE_SITE])
    return {"user": name, "password": password, "role": "manager", "sites": [COMMUNE_SITE]}


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
