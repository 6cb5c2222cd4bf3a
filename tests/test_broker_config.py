"""The central service's configuration: its keys, defaults and rules, its example and its docs.

What the schema engine does for every config (type rules, unknown keys, TOML errors, secret
files, generated text) is tested once in tests/test_configschema.py.
"""
from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path

import pytest

from tests.config_helpers import DELETE, problems_of, value_at
from tests.config_helpers import with_keys as _with_keys

import common.errors
import device.errors
from broker import config as config_module
from broker.config import (
    DOCS_PATH, FILE_KEY, REQUIRED, SCHEMA, SECTIONS, BrokerConfig, ConfigError,
    config_from_dict, config_reference_markdown, example_config, load_config,
)

MINIMAL = {"mqtt": {"embedded": False}, "store": {"url": "sqlite:///hailong.db"}}
# The embedded broker's password and ACL files (they must exist) and the service's own login.
SITE_FILES = Path(__file__).resolve().parent / "data" / "embedded-site"
EMBEDDED = {"mqtt.embedded": True, "mqtt.password": "pw",
            "mqtt.passwd_file": str(SITE_FILES / "passwd"), "mqtt.acl_file": str(SITE_FILES / "acl")}
EMBEDDED_TOML = ('[mqtt]\nembedded = true\npassword = "pw"\n'
                 f'passwd_file = "{SITE_FILES / "passwd"}"\nacl_file = "{SITE_FILES / "acl"}"\n')


def with_keys(changes: dict, base: dict = MINIMAL) -> dict:
    """MINIMAL with dotted keys set (or removed with DELETE)."""
    return _with_keys(base, changes, missing_ok=True)


def problems_for(changes: dict, base_dir: Path | None = None) -> dict[str, str]:
    return problems_of(config_from_dict, with_keys(changes), base_dir)


# --- defaults ---------------------------------------------------------------------------

def test_minimal_config_gets_every_documented_default():
    cfg = config_from_dict(MINIMAL)
    for key in SCHEMA:
        if key.default is REQUIRED or key.default is None:
            continue
        expected = Path(key.default) if key.kind == "path" else key.default
        assert value_at(cfg, key.path) == expected, key.path
        assert type(value_at(cfg, key.path)) is type(expected), key.path

    assert cfg.service.name == "Trung tâm Phục vụ hành chính công"
    assert cfg.service.data_dir == Path("/var/lib/hailong")
    assert str(cfg.service.zone) == "Asia/Ho_Chi_Minh"
    assert cfg.service.satisfied_from == 0 and cfg.service.ticket_fresh_s == 5.0
    assert cfg.mqtt.embedded is False and cfg.mqtt.protocol == "5"
    assert (cfg.mqtt.host, cfg.mqtt.port, cfg.mqtt.username) == ("127.0.0.1", 1883, "hailong-service")
    assert cfg.mqtt.password is None and cfg.mqtt.password_file is None
    assert cfg.mqtt.ca_file is cfg.mqtt.cert_file is cfg.mqtt.key_file is None
    assert (cfg.mqtt.batch_max, cfg.mqtt.batch_wait_ms) == (500, 20)
    assert cfg.store.url == "sqlite:///hailong.db" and cfg.store.path == Path("hailong.db")
    assert (cfg.http.host, cfg.http.port, cfg.http.cookie_secure) == ("127.0.0.1", 8080, False)
    assert cfg.http.session_secret_file is None
    assert cfg.session_secret_path == Path("/var/lib/hailong/session-secret")
    assert (cfg.auth.lockout_attempts, cfg.auth.lockout_minutes) == (5, 15)
    assert cfg.source is None


def test_minimal_file_resolves_the_store_against_its_directory(tmp_path):
    path = tmp_path / "broker.toml"
    path.write_text(EMBEDDED_TOML + '[store]\nurl = "sqlite:///db/hailong.db"\n', encoding="utf-8")
    cfg = load_config(path)
    assert cfg.source == path
    assert cfg.store.path == tmp_path / "db" / "hailong.db"
    assert cfg.store.url == f"sqlite:///{tmp_path}/db/hailong.db"  # four slashes: absolute


def test_absolute_store_path_and_session_secret_file_are_kept(tmp_path):
    (tmp_path / "secret").write_text("x")
    cfg = config_from_dict(with_keys({"store.url": "sqlite:////srv/hl/hailong.db",
                                      "http.session_secret_file": str(tmp_path / "secret"),
                                      "service.data_dir": "state"}), base_dir=tmp_path)
    assert cfg.store.url == "sqlite:////srv/hl/hailong.db" and cfg.store.path == Path("/srv/hl/hailong.db")
    assert cfg.service.data_dir == tmp_path / "state"
    assert cfg.session_secret_path == tmp_path / "secret"
    url = "postgresql://hailong@db.example.vn:5432/hailong"
    cfg = config_from_dict(with_keys({"store.url": url}), base_dir=tmp_path)
    assert cfg.store.url == url and cfg.store.postgres  # not a path: not resolved against the file's folder


def test_config_is_frozen_and_hides_the_password():
    cfg = config_from_dict(with_keys({"mqtt.password": "s3cret"}))
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.mqtt.port = 1  # type: ignore[misc]
    assert cfg.mqtt.password == "s3cret"
    assert "s3cret" not in repr(cfg)


# --- the embedded broker speaks MQTT 3.1.1 only ---------------------------------------------

@pytest.mark.parametrize("embedded, protocol, expected", [
    (False, DELETE, "5"),
    (True, DELETE, "3.1.1"),  # not given: follows embedded
    (False, "3.1.1", "3.1.1"),
    (True, "3.1.1", "3.1.1"),
    (True, "v311", "3.1.1"),
    (False, 5, "5"),
])
def test_protocol_follows_embedded(embedded, protocol, expected):
    cfg = config_from_dict(with_keys({**(EMBEDDED if embedded else {}), "mqtt.embedded": embedded,
                                      "mqtt.protocol": protocol}))
    assert cfg.mqtt.protocol == expected


@pytest.mark.parametrize("protocol", ["5", "v5", 5])
def test_embedded_broker_refuses_an_explicit_mqtt5(protocol):
    assert problems_for({**EMBEDDED, "mqtt.protocol": protocol}) == {
        "mqtt.protocol": "the embedded broker speaks MQTT 3.1.1 only"}


def test_invalid_embedded_does_not_also_blame_the_protocol():
    assert problems_for({"mqtt.embedded": "yes", "mqtt.protocol": "5"}) == {
        "mqtt.embedded": "must be true or false, got 'yes'"}


# --- every constraint is reported -------------------------------------------------------

@pytest.mark.parametrize("changes, key, reason", [
    # required keys
    ({"mqtt.embedded": DELETE}, "mqtt.embedded", "required key is missing"),
    ({"mqtt": DELETE}, "mqtt.embedded", "required key is missing"),
    ({"store": DELETE}, "store.url", "required key is missing"),
    # [service]
    ({"service.name": ""}, "service.name", "must be a non-empty string, got ''"),
    ({"service.data_dir": ""}, "service.data_dir", "must be a non-empty path, got ''"),
    ({"service.timezone": "Mars/Olympus_Mons"}, "service.timezone",
     'must be a time zone name known to this system, e.g. "Asia/Ho_Chi_Minh", got \'Mars/Olympus_Mons\''),
    ({"service.timezone": "/etc/localtime"}, "service.timezone", "got '/etc/localtime'"),
    ({"service.timezone": "../etc/passwd"}, "service.timezone", "time zone name"),
    ({"service.timezone": "UTC+7"}, "service.timezone", "time zone name"),
    ({"service.satisfied_from": -1}, "service.satisfied_from", "must be an integer 0..5, got -1"),
    ({"service.satisfied_from": 6}, "service.satisfied_from", "got 6"),
    ({"service.ticket_fresh_s": 0}, "service.ticket_fresh_s", "must be a number > 0, got 0"),
    # [mqtt]
    ({"mqtt.host": ""}, "mqtt.host", "must be a non-empty string, got ''"),
    ({"mqtt.port": 0}, "mqtt.port", "must be an integer 1..65535, got 0"),
    ({"mqtt.port": 65536}, "mqtt.port", "got 65536"),
    ({"mqtt.username": ""}, "mqtt.username", "must be a non-empty string"),
    ({"mqtt.password": ""}, "mqtt.password", "must be a non-empty string"),
    ({"mqtt.protocol": "4"}, "mqtt.protocol", 'must be one of "5", "3.1.1", got \'4\''),
    ({"mqtt.prefix": "/hailong"}, "mqtt.prefix", "leading/trailing"),
    ({"mqtt.client_id": ""}, "mqtt.client_id", "must be a non-empty string"),
    ({"mqtt.tls": "yes"}, "mqtt.tls", "must be true or false, got 'yes'"),
    ({"mqtt.ca_file": "/nonexistent/ca.crt"}, "mqtt.ca_file", "file not found: /nonexistent/ca.crt"),
    ({"mqtt.embedded_bind": ""}, "mqtt.embedded_bind", "must be a non-empty string"),
    ({"mqtt.session_expiry_s": -1}, "mqtt.session_expiry_s", "must be an integer 0..4294967295, got -1"),
    ({"mqtt.session_expiry_s": 2**32}, "mqtt.session_expiry_s", "got 4294967296"),
    ({"mqtt.batch_max": 0}, "mqtt.batch_max", "must be an integer 1..5000, got 0"),
    ({"mqtt.batch_max": 5001}, "mqtt.batch_max", "got 5001"),
    ({"mqtt.batch_wait_ms": -1}, "mqtt.batch_wait_ms", "must be an integer 0..1000, got -1"),
    ({"mqtt.batch_wait_ms": 1001}, "mqtt.batch_wait_ms", "got 1001"),
    # [store]
    ({"store.url": "mysql://db/hailong"}, "store.url",
     'must be an SQLite URL, "sqlite:///" followed by the path of the database file, or a PostgreSQL URL, '
     '"postgresql://user@host:port/database", got \'mysql://db/hailong\''),
    ({"store.url": "postgresql://db"}, "store.url", "got 'postgresql://db'"),  # no database
    ({"store.url": "postgresql://db:port/hailong"}, "store.url", "a PostgreSQL URL"),
    ({"store.url": "sqlite:///"}, "store.url", "got 'sqlite:///'"),
    ({"store.url": "sqlite://hailong.db"}, "store.url", "an SQLite URL"),
    ({"store.url": "hailong.db"}, "store.url", "an SQLite URL"),
    ({"store.url": ""}, "store.url", "got ''"),
    # [http]
    ({"http.host": ""}, "http.host", "must be a non-empty string"),
    ({"http.port": 0}, "http.port", "must be an integer 1..65535, got 0"),
    ({"http.session_secret_file": "/nonexistent/secret"}, "http.session_secret_file",
     "file not found: /nonexistent/secret"),
    ({"http.cookie_secure": "true"}, "http.cookie_secure", "must be true or false, got 'true'"),
    # [auth]
    ({"auth.lockout_attempts": 0}, "auth.lockout_attempts", "must be an integer >= 1, got 0"),
    ({"auth.lockout_minutes": 0}, "auth.lockout_minutes", "must be an integer >= 1, got 0"),
])
def test_each_constraint_is_reported(changes, key, reason):
    """Each key's own rule (kind, bounds, checks); how the engine treats values in general, e.g.
    `true` for an integer or inf for a number, is tested once in tests/test_configschema.py."""
    problems = problems_for(changes)
    assert key in problems, problems
    assert reason in problems[key]


def test_rules_across_keys_are_reported_with_the_others(tmp_path):
    path = tmp_path / "broker.toml"
    path.write_text(
        '[service]\n'
        'timezone = "Asia/Hanoi_City"\n'
        '[mqtt]\n'
        'embedded = true\n'
        'protocol = "5"\n'
        'port = "abc"\n'
        'hots = "typo"\n'
        '[http]\n'
        'port = 0\n'
        '[auth]\n'
        'lockout_attempts = 0\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    err = caught.value
    assert dict(err.problems) == {
        "service.timezone": 'must be a time zone name known to this system, e.g. "Asia/Ho_Chi_Minh", '
                            "got 'Asia/Hanoi_City'",
        "mqtt.port": "must be an integer 1..65535, got 'abc'",
        "mqtt.hots": "unknown key (did you mean mqtt.hosts?)",
        "mqtt.protocol": "the embedded broker speaks MQTT 3.1.1 only",
        "mqtt.passwd_file": "required with embedded = true: the embedded broker admits only provisioned accounts",
        "mqtt.acl_file": "required with embedded = true: the embedded broker admits only provisioned accounts",
        "mqtt.password_file": "required with embedded = true (or mqtt.password): the service logs in to its "
                              "embedded broker like any client",
        "store.url": "required key is missing",
        "http.port": "must be an integer 1..65535, got 0",
        "auth.lockout_attempts": "must be an integer >= 1, got 0",
    }
    assert err.source == path


def test_config_error_is_the_shared_one():
    assert ConfigError is common.errors.ConfigError
    assert issubclass(ConfigError, ValueError)
    # The device's own is one of them, so one `except ConfigError` in common.cli serves every area.
    assert issubclass(device.errors.ConfigError, ConfigError)


# --- files, secrets and TLS ------------------------------------------------------------------

def test_load_config_reports_a_file_it_cannot_read(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "nope.toml")
    [(key, reason)] = caught.value.problems
    assert key == FILE_KEY and "No such file" in reason and caught.value.source == tmp_path / "nope.toml"


def test_password_file_is_read_and_checked(tmp_path):
    (tmp_path / "pw").write_text("s3cret\n", encoding="utf-8")
    cfg = config_from_dict(with_keys({"mqtt.password_file": "pw"}), base_dir=tmp_path)
    assert cfg.mqtt.password == "s3cret" and cfg.mqtt.password_file == tmp_path / "pw"
    assert problems_for({"mqtt.password_file": "pw", "mqtt.password": "x"}, base_dir=tmp_path) == {
        "mqtt.password_file": "set either mqtt.password or mqtt.password_file, not both"}
    problems = problems_for({"mqtt.password_file": "missing"}, base_dir=tmp_path)
    assert problems["mqtt.password_file"].startswith(f"cannot read {tmp_path / 'missing'}: No such file")


def test_tls_files_must_exist_and_come_in_pairs(tmp_path):
    for name in ("ca.crt", "svc.crt", "svc.key"):
        (tmp_path / name).write_text("x")
    cfg = config_from_dict(with_keys({"mqtt.tls": True, "mqtt.ca_file": "ca.crt", "mqtt.cert_file": "svc.crt",
                                      "mqtt.key_file": "svc.key"}), base_dir=tmp_path)
    assert (cfg.mqtt.ca_file, cfg.mqtt.cert_file, cfg.mqtt.key_file) == (
        tmp_path / "ca.crt", tmp_path / "svc.crt", tmp_path / "svc.key")
    assert problems_for({"mqtt.cert_file": "svc.crt"}, base_dir=tmp_path) == {
        "mqtt.key_file": "must be set together with mqtt.cert_file"}
    assert problems_for({"mqtt.key_file": "missing.key"}, base_dir=tmp_path) == {
        "mqtt.key_file": f"file not found: {tmp_path / 'missing.key'}",
        "mqtt.cert_file": "must be set together with mqtt.key_file"}


# --- generated example and docs ------------------------------------------------------------

def test_example_config_round_trips(tmp_path):
    data = tomllib.loads(example_config())
    # The example points at a password file that does not exist here, and that must be caught.
    with pytest.raises(ConfigError) as caught:
        config_from_dict(data)
    assert [key for key, _ in caught.value.problems] == ["mqtt.password_file"]

    (tmp_path / "mqtt-password").write_text("pw\n")
    data["mqtt"]["password_file"] = str(tmp_path / "mqtt-password")
    cfg = config_from_dict(data)
    assert cfg.mqtt.embedded is False and cfg.mqtt.password == "pw"
    assert cfg.store.path == Path("/var/lib/hailong/hailong.db")
    # Everything else in the example is a default.
    assert cfg == config_from_dict(with_keys({"mqtt.password_file": str(tmp_path / "mqtt-password"),
                                              "store.url": "sqlite:////var/lib/hailong/hailong.db"}))


def test_commented_out_example_values_are_valid(tmp_path):
    (tmp_path / "mosquitto").mkdir()
    (tmp_path / "voice").mkdir()
    for name in ("ca.crt", "service.crt", "service.key", "mqtt-password", "session-secret", "mosquitto/passwd",
                 "mosquitto/acl", "smtp-password", "webhook-secret", "smtp-ca.crt"):
        (tmp_path / name).write_text("x")
    text = example_config().replace('"/etc/hailong/', f'"{tmp_path}/')
    data = tomllib.loads(re.sub(r"^# (\w+ = )", r"\1", text, flags=re.M))
    del data["mqtt"]["password"]  # the inline alternative to password_file
    del data["mqtt"]["hosts"]  # the alternative to host and port
    del data["mqtt"]["shared_group"]  # needs a client_id per instance (tests/test_instances.py)
    del data["email"]["password"], data["webhook"]["secret"]  # the same for the alerts' secrets
    cfg = config_from_dict(data)
    assert cfg.mqtt.cert_file == tmp_path / "service.crt"
    assert cfg.session_secret_path == tmp_path / "session-secret"


def test_schema_matches_the_config_dataclasses():
    assert list(SECTIONS) == [f.name for f in dataclasses.fields(BrokerConfig)][:-1]  # all but `source`
    for section in SECTIONS:
        cls = config_module._SECTION_TYPES[section]
        assert [f.name for f in dataclasses.fields(cls)] == [k.name for k in SCHEMA if k.section == section]
    assert all(k.doc.endswith(".") for k in SCHEMA)


def test_docs_are_up_to_date():
    assert DOCS_PATH.read_text(encoding="utf-8") == config_reference_markdown(), (
        "docs/broker-config.md is out of date; run `python -m broker.config --write-docs`")


def test_module_cli(tmp_path, capsys):
    assert config_module.main(["--example"]) == 0
    assert capsys.readouterr().out == example_config()
    good = tmp_path / "broker.toml"
    good.write_text(EMBEDDED_TOML + '[store]\nurl = "sqlite:///x.db"\n', encoding="utf-8")
    assert config_module.main(["--check", str(good)]) == 0
    bad = tmp_path / "bad.toml"
    bad.write_text(EMBEDDED_TOML + 'protocol = "5"\n[store]\nurl = "sqlite:///x.db"\n', encoding="utf-8")
    assert config_module.main(["--check", str(bad)]) == 1
    assert "mqtt.protocol: the embedded broker speaks MQTT 3.1.1 only" in capsys.readouterr().err


# --- the embedded broker admits only provisioned accounts ------------------------------------

def test_an_embedded_broker_needs_its_password_and_acl_files_and_the_services_login():
    assert problems_for({"mqtt.embedded": True}) == {
        "mqtt.passwd_file": "required with embedded = true: the embedded broker admits only provisioned accounts",
        "mqtt.acl_file": "required with embedded = true: the embedded broker admits only provisioned accounts",
        "mqtt.password_file": "required with embedded = true (or mqtt.password): the service logs in to its "
                              "embedded broker like any client"}
    cfg = config_from_dict(with_keys(EMBEDDED))
    assert (cfg.mqtt.passwd_file, cfg.mqtt.acl_file) == (SITE_FILES / "passwd", SITE_FILES / "acl")
    assert problems_for({**EMBEDDED, "mqtt.acl_file": "/nonexistent/acl"}) == {
        "mqtt.acl_file": "file not found: /nonexistent/acl"}
