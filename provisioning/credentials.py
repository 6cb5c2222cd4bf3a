"""Secrets for devices and Mosquitto password hashes in the format `mosquitto_passwd` writes.

Mosquitto 2.x: `user:$7$101$<base64 salt>$<base64 hash>`, PBKDF2-HMAC-SHA512 with 101
iterations, a 12-byte salt and a 64-byte derived key, both standard base64 with padding.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

SERVICE_USER = "hailong-service"
ITERATIONS = 101
SALT_BYTES = 12
KEY_BYTES = 64

_HASH_RE = re.compile(r"\$7\$(\d+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)")
USERNAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def new_password() -> str:
    return secrets.token_urlsafe(24)


def new_provisioning_key() -> str:
    """32 random bytes as 64 hex digits."""
    return secrets.token_hex(32)


def hash_password(password: str, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """The part after `user:` of a Mosquitto 2.x password file line."""
    if salt is None:
        salt = secrets.token_bytes(SALT_BYTES)
    key = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations, KEY_BYTES)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(key).decode()}"


def parse_hash(hashed: str) -> tuple[int, bytes, bytes]:
    m = _HASH_RE.fullmatch(hashed)
    if not m:
        raise ValueError("not a Mosquitto $7$ (PBKDF2-SHA512) password hash")
    return int(m[1]), base64.b64decode(m[2]), base64.b64decode(m[3])


def verify_password(password: str, hashed: str) -> bool:
    iterations, salt, key = parse_hash(hashed)
    got = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations, len(key))
    return hmac.compare_digest(got, key)


def read_secret(path) -> str:
    """A secret from a file, trailing newline ignored (as device.config reads password_file)."""
    from pathlib import Path

    text = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
    if not text:
        raise ValueError(f"{path}: empty")
    return text
