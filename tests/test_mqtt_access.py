"""Mosquitto's password and ACL formats as common.mqtt_access reads them."""
from __future__ import annotations

from pathlib import Path

import pytest

from common.errors import ConfigError
from common.mqtt_access import (
    filter_within, hash_password, parse_acl, parse_passwd, read_acl, topic_matches, verify_password,
)
from provisioning.mosquitto_files import render_acl

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("topic, topic_filter, expected", [
    ("a/b/c", "a/b/c", True), ("a/b/c", "a/+/c", True), ("a/b/c", "a/#", True), ("a", "a/#", True),
    ("a/b/c", "#", True), ("a/b", "a/b/c", False), ("a/b/c", "a/b", False), ("a/b/c", "+/+", False),
    ("$SYS/x", "#", False), ("$SYS/x", "+/x", False), ("$SYS/x", "$SYS/#", True), ("a//c", "a/+/c", True),
])
def test_topic_matches(topic, topic_filter, expected):
    assert topic_matches(topic, topic_filter) is expected


@pytest.mark.parametrize("inner, outer, expected", [
    ("h/v1/d1/ack", "h/v1/d1/ack", True), ("h/v1/+/event", "h/v1/+/event", True),
    ("h/v1/d1/event", "h/v1/+/event", True), ("h/v1/+/event", "h/v1/d1/event", False),
    ("h/v1/#", "h/v1/d1/ack", False), ("#", "h/#", False), ("h/v1/d1/ack", "h/#", True),
    ("h/+/#", "h/#", True), ("h/#", "h/+/#", False), ("h/v1/d1", "h/v1/d1/ack", False),
])
def test_filter_within(inner, outer, expected):
    assert filter_within(inner, outer) is expected


def test_passwords_round_trip_and_bad_lines_are_named():
    hashed = hash_password("s3cret")
    users = parse_passwd(f"# comment\ndev-a:{hashed}\n\n")
    assert verify_password("s3cret", users["dev-a"]) and not verify_password("s3cret ", users["dev-a"])
    with pytest.raises(ConfigError) as caught:
        parse_passwd(f"dev-a:{hashed}\ndev-b:plain-text\ndev-a:{hashed}\nnocolon\n")
    assert [key for key, _ in caught.value.problems] == ["line 2", "line 3", "line 4"]


@pytest.mark.parametrize("acl_text", [
    (ROOT / "deploy" / "mosquitto.acl").read_text(encoding="utf-8"),
    render_acl(["hailong/v1"]),
])
def test_the_deployed_and_the_generated_acl_confine_each_device(acl_text):
    acl = parse_acl(acl_text)
    own, other = "hailong/v1/dev-a", "hailong/v1/dev-b"
    for kind in ("event", "status", "telemetry", "request"):
        assert acl.allows("dev-a", "dev-a", f"{own}/{kind}", "write")
        assert not acl.allows("dev-a", "dev-a", f"{other}/{kind}", "write")
        assert not acl.allows("dev-a", "dev-a", f"{other}/{kind}", "read")
        assert acl.allows("hailong-service", "svc", f"{other}/{kind}", "read")
        assert acl.allows_subscription("hailong-service", "svc", f"hailong/v1/+/{kind}")
    for kind in ("ack", "cmd", "assignment"):
        assert acl.allows_subscription("dev-a", "dev-a", f"{own}/{kind}")
        assert not acl.allows_subscription("dev-a", "dev-a", f"{other}/{kind}")
        assert not acl.allows_subscription("dev-a", "dev-a", f"hailong/v1/+/{kind}")
        assert not acl.allows("dev-a", "dev-a", f"{own}/{kind}", "write")
        assert acl.allows("hailong-service", "svc", f"{other}/{kind}", "write")
    assert not acl.allows_subscription("dev-a", "dev-a", "#")
    assert not acl.allows(None, "anon", f"{own}/event", "write")  # anonymous: nothing
    assert not acl.allows("dev-a", "dev-a", "hailong/v1/dev-a", "write")


def test_deny_wins_and_client_id_patterns():
    acl = parse_acl("pattern readwrite t/%c/#\nuser u\ntopic t/#\ntopic deny t/secret/#\n")
    assert acl.allows("x", "c1", "t/c1/a", "write") and not acl.allows("x", "c1", "t/c2/a", "read")
    assert acl.allows("u", "c", "t/open", "read") and not acl.allows("u", "c", "t/secret/a", "read")
    assert not acl.allows_subscription("u", "c", "t/#")  # would include the denied part


def test_unknown_acl_lines_are_errors_with_their_line(tmp_path):
    path = tmp_path / "acl"
    path.write_text("user u\ntopic read a\nallow all\n")
    with pytest.raises(ConfigError) as caught:
        read_acl(path)
    assert caught.value.problems[0][0] == "line 3" and str(path) in str(caught.value)
