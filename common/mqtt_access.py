"""Mosquitto's password and ACL files: provisioning writes them, the embedded broker enforces them.

One format for both brokers, so a small site's embedded broker admits exactly the accounts and
topics that Mosquitto would with the same files (deploy/mosquitto.acl, `hailong provision
mosquitto export`).

Passwords: Mosquitto 2.x lines `user:$7$101$<base64 salt>$<base64 hash>`, PBKDF2-HMAC-SHA512
with 101 iterations, a 12-byte salt and a 64-byte derived key, both standard base64 with padding.

ACL: `user NAME` starts a user's block; `topic [read|write|readwrite|deny] TOPIC` grants (or
denies) that user a topic filter; `pattern [ACCESS] TOPIC` grants every authenticated client,
with `%u` replaced by its username and `%c` by its client id; `#` starts a comment. Anything not
granted is denied, and a `deny` wins over any grant.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from common.errors import ConfigError

__all__ = ["ITERATIONS", "SALT_BYTES", "KEY_BYTES", "hash_password", "parse_hash", "verify_password",
           "parse_passwd", "read_passwd", "Acl", "parse_acl", "read_acl", "topic_matches", "filter_within"]

ITERATIONS = 101
SALT_BYTES = 12
KEY_BYTES = 64

_HASH_RE = re.compile(r"\$7\$(\d+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)")
_ACCESS = {"read": frozenset({"read"}), "write": frozenset({"write"}),
           "readwrite": frozenset({"read", "write"}), "deny": frozenset({"deny"})}


# ----- passwords -------------------------------------------------------------------------------

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


def parse_passwd(text: str, source: str = "passwd") -> dict[str, str]:
    """username -> hash; ConfigError naming each bad line (a typo must not lock a counter out silently)."""
    users, problems = {}, []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        user, sep, hashed = line.strip().partition(":")
        try:
            if not sep or not user:
                raise ValueError("expected user:hash")
            parse_hash(hashed)
        except ValueError as e:
            problems.append((f"line {n}", str(e)))
            continue
        if user in users:
            problems.append((f"line {n}", f"user {user!r} appears twice"))
        users[user] = hashed
    if problems:
        raise ConfigError(problems, source)
    return users


def read_passwd(path: str | Path) -> dict[str, str]:
    return parse_passwd(Path(path).read_text(encoding="utf-8"), str(path))


# ----- topics ----------------------------------------------------------------------------------

def topic_matches(topic: str, topic_filter: str) -> bool:
    """Whether a topic name matches a filter with `+` and `#` wildcards (MQTT 3.1.1 section 4.7)."""
    if topic.startswith("$") != topic_filter.startswith("$"):
        return False  # [MQTT-4.7.2-1]: wildcards at the start never match $-topics
    names, levels = topic.split("/"), topic_filter.split("/")
    for i, level in enumerate(levels):
        if level == "#":
            return True
        if i >= len(names) or (level != "+" and level != names[i]):
            return False
    return len(names) == len(levels)


def filter_within(inner: str, outer: str) -> bool:
    """Whether every topic matching filter `inner` also matches filter `outer`."""
    a, b = inner.split("/"), outer.split("/")
    for i, level in enumerate(b):
        if level == "#":
            return True
        if i >= len(a) or a[i] == "#":
            return False
        if level != "+" and (a[i] == "+" or a[i] != level):
            return False
    return len(a) == len(b)


# ----- ACL -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Rule:
    access: frozenset[str]
    topic: str


@dataclass
class Acl:
    """Parsed ACL rules; `allows` answers one client's question about one topic or filter."""

    users: dict[str, list[_Rule]] = field(default_factory=dict)
    patterns: list[_Rule] = field(default_factory=list)

    def _rules(self, username: str | None, client_id: str) -> list[_Rule]:
        if username is None:
            return []  # anonymous clients get nothing: every account is provisioned
        own = self.users.get(username, [])
        subst = [_Rule(r.access, r.topic.replace("%u", username).replace("%c", client_id)) for r in self.patterns]
        return own + subst

    def allows(self, username: str | None, client_id: str, topic: str, access: str) -> bool:
        """May this client `access` ("read" or "write") the topic name `topic`?"""
        rules = self._rules(username, client_id)
        if any("deny" in r.access and topic_matches(topic, r.topic) for r in rules):
            return False
        return any(access in r.access and topic_matches(topic, r.topic) for r in rules)

    def allows_subscription(self, username: str | None, client_id: str, topic_filter: str) -> bool:
        """May this client subscribe to `topic_filter`: is everything it could match readable?"""
        rules = self._rules(username, client_id)
        if any("deny" in r.access and (filter_within(topic_filter, r.topic) or filter_within(r.topic, topic_filter))
               for r in rules):
            return False
        return any("read" in r.access and filter_within(topic_filter, r.topic) for r in rules)


def parse_acl(text: str, source: str = "acl") -> Acl:
    acl, problems = Acl(), []
    current: list[_Rule] | None = None
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        rest = rest.strip()
        if word == "user" and rest:
            current = acl.users.setdefault(rest, [])
            continue
        if word in ("topic", "pattern") and rest:
            access, _, topic = rest.partition(" ")
            if access not in _ACCESS or not topic.strip():
                access, topic = "readwrite", rest  # the access word is optional
            rule = _Rule(_ACCESS[access], topic.strip())
            if word == "pattern":
                acl.patterns.append(rule)
            elif current is None:
                pass  # Mosquitto applies these to anonymous clients, which we never admit
            else:
                current.append(rule)
            continue
        problems.append((f"line {n}", f"not an ACL rule: {line[:80]!r}"))
    if problems:
        raise ConfigError(problems, source)
    return acl


def read_acl(path: str | Path) -> Acl:
    return parse_acl(Path(path).read_text(encoding="utf-8"), str(path))
