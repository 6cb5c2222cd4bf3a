"""Secrets for devices; their Mosquitto password hashes come from common.mqtt_access, which the
embedded broker also uses to check them."""
from __future__ import annotations

import re
import secrets

from common.mqtt_access import (  # noqa: F401  (re-exported: the provisioning tool's vocabulary)
    ITERATIONS, KEY_BYTES, SALT_BYTES, hash_password, parse_hash, verify_password,
)

SERVICE_USER = "hailong-service"
USERNAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def new_password() -> str:
    return secrets.token_urlsafe(24)


def new_provisioning_key() -> str:
    """32 random bytes as 64 hex digits."""
    return secrets.token_hex(32)


def read_secret(path) -> str:
    """A secret from a file, trailing newline ignored (as device.config reads password_file)."""
    from pathlib import Path

    text = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
    if not text:
        raise ValueError(f"{path}: empty")
    return text
