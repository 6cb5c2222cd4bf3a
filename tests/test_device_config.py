"""The device configuration: its keys, defaults and rules (pins, roster), its example and its docs.

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
from device import config as config_module
from device.config import (
    DEFAULT_LABELS, DOCS_PATH, FILE_KEY, REQUIRED, SCHEMA, SECTIONS, Officer,
    config_from_dict, config_reference_markdown, example_config, load_config,
)
from device.errors import ConfigError, DeviceError

MINIMAL = {
    "device": {"id": "hl-hp-kt-01-c03", "site": "kien-thuy", "counter": "3", "data_dir": "/var/lib/hailong"},
    "mqtt": {"host": "mqtt.example.vn"},
}


def with_keys(changes: dict, base: dict = MINIMAL) -> dict:
    """MINIMAL with dotted keys set (or removed with DELETE)."""
    return _with_keys(base, changes)


def problems_for(changes: dict, base_dir: Path | None = None) -> dict[str, str]:
    return problems_of(config_from_dict, with_keys(changes), base_dir)


# --- defaults ---------------------------------------------------------------------------

def test_minimal_config_gets_every_documented_default():
    cfg = config_from_dict(MINIMAL)
    for key in SCHEMA:
        if key.section == "officers" or key.default is REQUIRED or key.default is None:
            continue
        expected = tuple(key.default) if isinstance(key.default, list) else key.default
        assert value_at(cfg, key.path) == expected, key.path
        assert type(value_at(cfg, key.path)) is type(expected), key.path

    assert cfg.device.id == "hl-hp-kt-01-c03"
    assert cfg.device.data_dir == Path("/var/lib/hailong")
    assert cfg.mqtt.host == "mqtt.example.vn"
    assert cfg.mqtt.username == "hl-hp-kt-01-c03"  # defaults to the device id
    assert cfg.mqtt.password is None and cfg.mqtt.password_file is None  # anonymous
    assert cfg.mqtt.ca_file is cfg.mqtt.cert_file is cfg.mqtt.key_file is None
    assert cfg.rating.labels == ("Không hài lòng", "Bình thường", "Hài lòng", "Rất hài lòng")
    assert cfg.rating.reasons == ()
    assert cfg.pins.rating_buttons == (5, 6, 13, 19, 26)
    assert cfg.officers == ()
    assert cfg.source is None
    assert cfg.display_width == 4
    assert cfg.ledger_path == Path("/var/lib/hailong/ledger.db")


def test_config_is_frozen_and_hides_the_password():
    cfg = config_from_dict(with_keys({"mqtt.password": "s3cret"}))
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.mqtt.port = 1  # type: ignore[misc]
    assert cfg.mqtt.password == "s3cret"
    assert "s3cret" not in repr(cfg)


@pytest.mark.parametrize("scale", [3, 4, 5])
def test_default_labels_follow_the_scale(scale):
    cfg = config_from_dict(with_keys({"rating.scale": scale}))
    assert cfg.rating.labels == DEFAULT_LABELS[scale]
    assert len(cfg.rating.labels) == scale


def test_explicit_username_labels_and_reasons():
    cfg = config_from_dict(with_keys({
        "mqtt.username": "counter3",
        "rating.scale": 3,
        "rating.labels": ["Tệ", "Được", "Tốt"],
        "rating.reasons": ["Chờ lâu", "Thái độ"],
        "rating.ask_reason_max_score": 2,
    }))
    assert cfg.mqtt.username == "counter3"
    assert cfg.rating.labels == ("Tệ", "Được", "Tốt")
    assert cfg.rating.reasons == ("Chờ lâu", "Thái độ")
    assert cfg.rating.ask_reason_max_score == 2


def test_protocol_takes_the_shared_mqtt_spellings():
    assert config_from_dict(with_keys({"mqtt.protocol": "v311"})).mqtt.protocol == "3.1.1"


@pytest.mark.parametrize("display, width", [
    ({"kind": "sevenseg", "digits": 8}, 8),
    ({"kind": "matrix", "cascaded": 4}, 5),
    ({"kind": "matrix", "cascaded": 16}, 21),
    ({"kind": "none"}, 4),
])
def test_display_width(display, width):
    assert config_from_dict(with_keys({"display": display})).display_width == width


# --- every constraint is reported -------------------------------------------------------

@pytest.mark.parametrize("changes, key, reason", [
    # required keys
    ({"device.id": DELETE}, "device.id", "required key is missing"),
    ({"device.site": DELETE}, "device.site", "required key is missing"),
    ({"device.counter": DELETE}, "device.counter", "required key is missing"),
    ({"device.data_dir": DELETE}, "device.data_dir", "required key is missing"),
    ({"mqtt": DELETE}, "mqtt.host", "required key is missing"),
    # [device]
    ({"device.id": ""}, "device.id", "must be 1..64 characters of"),
    ({"device.id": "-leading-dash"}, "device.id", "starting with a letter or digit, got '-leading-dash'"),
    ({"device.id": "has space"}, "device.id", "must be 1..64 characters"),
    ({"device.id": "x" * 65}, "device.id", "must be 1..64 characters"),
    ({"device.site": ""}, "device.site", "must be a string of 1..64 characters without control characters, got ''"),
    ({"device.counter": "c" * 65}, "device.counter", "must be a string of 1..64 characters"),
    ({"device.counter": 3}, "device.counter", "must be a string of 1..64 characters without control characters, got 3"),
    ({"device.data_dir": ""}, "device.data_dir", "must be a non-empty path, got ''"),
    # [mqtt]
    ({"mqtt.host": ""}, "mqtt.host", "must be a non-empty string, got ''"),
    ({"mqtt.port": "abc"}, "mqtt.port", "must be an integer 1..65535, got 'abc'"),
    ({"mqtt.port": 0}, "mqtt.port", "must be an integer 1..65535, got 0"),
    ({"mqtt.port": 65536}, "mqtt.port", "got 65536"),
    ({"mqtt.username": ""}, "mqtt.username", "must be a non-empty string"),
    ({"mqtt.password": ""}, "mqtt.password", "must be a non-empty string"),
    ({"mqtt.protocol": "4"}, "mqtt.protocol", 'must be one of "5", "3.1.1", got \'4\''),
    ({"mqtt.prefix": "/hailong"}, "mqtt.prefix", "leading/trailing"),
    ({"mqtt.keepalive_s": 4}, "mqtt.keepalive_s", "must be an integer 5..600, got 4"),
    ({"mqtt.keepalive_s": 601}, "mqtt.keepalive_s", "got 601"),
    ({"mqtt.session_expiry_s": -1}, "mqtt.session_expiry_s", "must be an integer 0..4294967295"),
    ({"mqtt.tls": "yes"}, "mqtt.tls", "must be true or false, got 'yes'"),
    ({"mqtt.ca_file": "/nonexistent/ca.crt"}, "mqtt.ca_file", "file not found: /nonexistent/ca.crt"),
    ({"mqtt.backoff_min_s": 0}, "mqtt.backoff_min_s", "must be a number > 0, got 0"),
    ({"mqtt.session_expiry_s": 2**32}, "mqtt.session_expiry_s", "got 4294967296"),
    ({"mqtt.backoff_min_s": 10, "mqtt.backoff_max_s": 5}, "mqtt.backoff_max_s",
     "must be >= mqtt.backoff_min_s (10.0), got 5.0"),
    ({"mqtt.connect_timeout_s": -1}, "mqtt.connect_timeout_s", "must be a number > 0"),
    # [ledger]
    ({"ledger.in_flight": 0}, "ledger.in_flight", "must be an integer 1..1000, got 0"),
    ({"ledger.in_flight": 1001}, "ledger.in_flight", "got 1001"),
    ({"ledger.ack_timeout_s": 0}, "ledger.ack_timeout_s", "must be a number > 0"),
    # [rating]
    ({"rating.scale": 2}, "rating.scale", "must be an integer 3..5, got 2"),
    ({"rating.scale": 6}, "rating.scale", "got 6"),
    ({"rating.labels": ["a", "b", "c"]}, "rating.labels", "must have exactly 4 entries (rating.scale = 4), got 3"),
    ({"rating.labels": ["a", "b", "", "d"]}, "rating.labels", "must be a list of non-empty strings"),
    ({"rating.repeat_gap_s": -1}, "rating.repeat_gap_s", "must be a number >= 0, got -1"),
    ({"rating.grace_s": -0.5}, "rating.grace_s", "must be a number >= 0"),
    ({"rating.feedback_s": 0}, "rating.feedback_s", "must be a number > 0"),
    ({"rating.reasons": ["a", "b", "c", "d", "e"]}, "rating.reasons",
     "must have at most 4 entries (rating.scale = 4), got 5"),
    ({"rating.reasons": ["Chờ lâu", ""]}, "rating.reasons", "must be a list of strings of 1..100 characters"),
    ({"rating.reasons": ["x" * 101]}, "rating.reasons", "1..100 characters"),
    ({"rating.ask_reason_max_score": 0}, "rating.ask_reason_max_score", "must be an integer >= 1, got 0"),
    ({"rating.ask_reason_max_score": 4}, "rating.ask_reason_max_score",
     "must be an integer 1..3 (rating.scale = 4), got 4"),
    ({"rating.reason_window_s": 0}, "rating.reason_window_s", "must be a number > 0"),
    # [staff]
    ({"staff.hold_close_s": 0}, "staff.hold_close_s", "must be a number > 0"),
    ({"staff.ticket_timeout_s": "2"}, "staff.ticket_timeout_s", "got '2'"),
    ({"staff.fallback_start": 0}, "staff.fallback_start", "must be an integer >= 1, got 0"),
    # [pins]
    ({"pins.rating_buttons": [5, 6, 13]}, "pins.rating_buttons",
     "must list at least 4 pins (rating.scale = 4), got 3"),
    ({"pins.rating_buttons": [5, 6, 13, 28]}, "pins.rating_buttons", "must be a list of integers 0..27"),
    ({"pins.rating_buttons": [5, 6, 13, -1]}, "pins.rating_buttons", "got [5, 6, 13, -1]"),
    ({"pins.rating_leds": [12, 16]}, "pins.rating_leds",
     "must be empty or list at least 4 pins (rating.scale = 4), got 2"),
    ({"pins.next_button": 28}, "pins.next_button", "must be an integer 0..27, got 28"),
    ({"pins.recall_button": "24"}, "pins.recall_button", "got '24'"),
    ({"pins.pull_up": "true"}, "pins.pull_up", "must be true or false"),
    ({"pins.bounce_s": -0.01}, "pins.bounce_s", "must be a number >= 0"),
    # [buzzer]
    ({"buzzer.enabled": 0}, "buzzer.enabled", "must be true or false, got 0"),
    ({"buzzer.pin": 40}, "buzzer.pin", "must be an integer 0..27, got 40"),
    # [display]
    ({"display.kind": "lcd"}, "display.kind", 'must be one of "sevenseg", "matrix", "none", got \'lcd\''),
    ({"display.digits": 6}, "display.digits", "must be one of 4, 8, got 6"),
    ({"display.cascaded": 17}, "display.cascaded", "must be an integer 1..16, got 17"),
    ({"display.cascaded": 0}, "display.cascaded", "got 0"),
    ({"display.spi_port": 2}, "display.spi_port", "must be an integer 0..1, got 2"),
    ({"display.spi_device": 2}, "display.spi_device", "must be an integer 0..1"),
    ({"display.brightness": 256}, "display.brightness", "must be an integer 0..255, got 256"),
    ({"display.rotate": 4}, "display.rotate", "must be an integer 0..3, got 4"),
    # [badge], [clock], [telemetry]
    ({"badge.enabled": "no"}, "badge.enabled", "must be true or false"),
    ({"badge.port": ""}, "badge.port", "must be a non-empty string"),
    ({"badge.baud": 0}, "badge.baud", "must be an integer >= 1, got 0"),
    ({"clock.trust": "sometimes"}, "clock.trust", 'must be one of "auto", "always", "never"'),
    ({"telemetry.interval_s": 0.5}, "telemetry.interval_s", "must be a number >= 1, got 0.5"),
])
def test_each_constraint_is_reported(changes, key, reason):
    """Each key's own rule (kind, bounds, checks) and the rules tied to the scale; how the engine
    treats values in general, e.g. `true` for an integer or nan for a number, is tested once in
    tests/test_configschema.py."""
    problems = problems_for(changes)
    assert key in problems, problems
    assert reason in problems[key]


def test_config_error_is_the_devices_own_and_the_shared_one():
    # Pickling and the message format: tests/test_configschema.py, for this class too.
    err = ConfigError([("mqtt.port", "must be an integer 1..65535, got 0")], "/etc/hailong/device.toml")
    assert isinstance(err, DeviceError) and isinstance(err, ValueError)
    assert isinstance(err, common.errors.ConfigError)


# --- files --------------------------------------------------------------------------------

def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "nope.toml")
    [(key, reason)] = caught.value.problems
    assert key == FILE_KEY and "No such file" in reason


def write_minimal(directory: Path, extra: str = "") -> Path:
    path = directory / "device.toml"
    path.write_text(
        '[device]\nid = "hl-01"\nsite = "kien-thuy"\ncounter = "3"\ndata_dir = "state"\n'
        '[mqtt]\nhost = "localhost"\n' + extra, encoding="utf-8")
    return path


def test_relative_paths_are_resolved_against_the_config_file(tmp_path):
    conf_dir = tmp_path / "etc"
    (conf_dir / "tls").mkdir(parents=True)
    for name in ("ca.crt", "dev.crt", "dev.key"):
        (conf_dir / "tls" / name).write_text("x")
    (conf_dir / "secret").write_text("pw\n")
    path = write_minimal(conf_dir, 'password_file = "secret"\ntls = true\n'
                                   'ca_file = "tls/ca.crt"\ncert_file = "tls/dev.crt"\nkey_file = "tls/dev.key"\n')
    cfg = load_config(path)
    assert cfg.source == path
    assert cfg.device.data_dir == conf_dir / "state"
    assert cfg.ledger_path == conf_dir / "state" / "ledger.db"
    assert cfg.mqtt.password_file == conf_dir / "secret"
    assert cfg.mqtt.ca_file == conf_dir / "tls" / "ca.crt"
    assert (cfg.mqtt.cert_file, cfg.mqtt.key_file) == (conf_dir / "tls" / "dev.crt", conf_dir / "tls" / "dev.key")


def test_absolute_paths_are_kept_and_base_dir_applies_to_dicts(tmp_path):
    cfg = config_from_dict(with_keys({"device.data_dir": "rel"}), base_dir=tmp_path)
    assert cfg.device.data_dir == tmp_path / "rel"
    cfg = config_from_dict(with_keys({"device.data_dir": "/srv/hl"}), base_dir=tmp_path)
    assert cfg.device.data_dir == Path("/srv/hl")
    assert config_from_dict(with_keys({"device.data_dir": "rel"})).device.data_dir == Path("rel")


def test_tls_files_must_exist_and_come_in_pairs(tmp_path):
    (tmp_path / "dev.crt").write_text("x")
    problems = problems_for({"mqtt.cert_file": "dev.crt"}, base_dir=tmp_path)
    assert problems == {"mqtt.key_file": "must be set together with mqtt.cert_file"}
    problems = problems_for({"mqtt.key_file": "missing.key"}, base_dir=tmp_path)
    assert problems == {"mqtt.key_file": f"file not found: {tmp_path / 'missing.key'}",
                        "mqtt.cert_file": "must be set together with mqtt.key_file"}


# --- password ------------------------------------------------------------------------------

def test_password_file_is_read_with_trailing_newline_stripped(tmp_path):
    (tmp_path / "pw").write_text("s3cret \n", encoding="utf-8")
    cfg = config_from_dict(with_keys({"mqtt.password_file": "pw"}), base_dir=tmp_path)
    assert cfg.mqtt.password == "s3cret "
    assert cfg.mqtt.password_file == tmp_path / "pw"


def test_password_and_password_file_together_is_a_problem(tmp_path):
    (tmp_path / "pw").write_text("a")
    problems = problems_for({"mqtt.password": "b", "mqtt.password_file": "pw"}, base_dir=tmp_path)
    assert problems == {"mqtt.password_file": "set either mqtt.password or mqtt.password_file, not both"}


def test_inline_password_is_used_as_is():
    assert config_from_dict(with_keys({"mqtt.password": "inline"})).mqtt.password == "inline"


def test_officer_keys_are_checked_like_any_table():
    assert problems_for({"officers": [{"id": "a", "code": "A", "nmae": "An"}]}) == {
        "officers[0].nmae": "unknown key (did you mean officers[0].name?)"}


# --- pins ------------------------------------------------------------------------------------

@pytest.mark.parametrize("changes, key, reason", [
    ({"pins.recall_button": 23}, "pins.recall_button", "pin 23 is also used by pins.next_button"),
    ({"pins.rating_buttons": [5, 6, 5, 19]}, "pins.rating_buttons[2]", "pin 5 is also used by pins.rating_buttons[0]"),
    ({"pins.rating_leds": [12, 16, 6, 21]}, "pins.rating_leds[2]", "pin 6 is also used by pins.rating_buttons[1]"),
    ({"pins.next_button": 12}, "pins.next_button", "pin 12 is also used by pins.rating_leds[0]"),
    ({"buzzer.enabled": True, "buzzer.pin": 24}, "buzzer.pin", "pin 24 is also used by pins.recall_button"),
    ({"pins.next_button": 10}, "pins.next_button",
     'pin 10 is also used by the display (display.kind = "sevenseg", SPI0: pins 8, 9, 10, 11)'),
    ({"display.kind": "matrix", "pins.rating_buttons": [8, 6, 13, 19]}, "pins.rating_buttons[0]",
     'display.kind = "matrix"'),
    ({"display.spi_device": 1, "pins.recall_button": 7}, "pins.recall_button", "SPI0: pins 7, 8, 9, 10, 11"),
    ({"display.spi_port": 1}, "pins.rating_buttons[3]", "pin 19 is also used by the display"),
    ({"badge.enabled": True, "pins.next_button": 14}, "pins.next_button",
     "pin 14 is also used by the badge reader (badge.enabled = true, UART: pins 14, 15)"),
])
def test_pin_clashes_name_both_users(changes, key, reason):
    problems = problems_for(changes)
    assert reason in problems[key], problems


@pytest.mark.parametrize("changes", [
    {"buzzer.pin": 23},                                # a disabled buzzer claims no pin
    {"display.kind": "none", "pins.next_button": 10},  # no SPI bus without a display
    {"pins.next_button": 14},                          # UART pins are free without a badge reader
    {"pins.next_button": 26},                          # 5th button pin is unused at scale 4
    {"pins.rating_leds": []},                          # no LEDs
])
def test_pins_that_do_not_clash(changes):
    config_from_dict(with_keys(changes))


def test_only_the_first_scale_pins_are_used():
    cfg = config_from_dict(with_keys({"rating.scale": 3, "pins.rating_buttons": [5, 6, 13, 23]}))
    assert cfg.pins.rating_buttons == (5, 6, 13, 23)  # kept as written; the panel takes the first 3


# --- officers --------------------------------------------------------------------------------

ROSTER = [
    {"id": "cb-0012", "name": "Nguyễn Văn An", "code": "AN", "badge": "04a1b2c3"},
    {"id": "cb-0013", "code": "BINH"},
]


def test_officer_roster_and_badge_lookup():
    cfg = config_from_dict(with_keys({"officers": ROSTER}))
    assert cfg.officers == (Officer("cb-0012", "Nguyễn Văn An", "AN", "04A1B2C3"),
                            Officer("cb-0013", "", "BINH", None))
    assert cfg.officer_for_badge("04a1b2c3") is cfg.officers[0]
    assert cfg.officer_for_badge("04A1B2C3\n") is cfg.officers[0]
    assert cfg.officer_for_badge("DEADBEEF") is None


@pytest.mark.parametrize("roster, key, reason", [
    ([{"id": "a"}], "officers[0].code", "required key is missing"),
    ([{"code": "A"}], "officers[0].id", "required key is missing"),
    ([{"id": "a", "code": "TOOLONGCODE"}], "officers[0].code", "must be a string of 1..8 characters"),
    ([{"id": "a", "code": ""}], "officers[0].code", "must be a string of 1..8 characters"),
    ([{"id": "a", "code": "A", "badge": "04-A1"}], "officers[0].badge", "must be 2..32 hex digits, got '04-A1'"),
    ([{"id": "a", "code": "A"}, {"id": "a", "code": "B"}], "officers[1].id", "'a' is already used by officers[0].id"),
    ([{"id": "a", "code": "A", "badge": "abcd"}, {"id": "b", "code": "B", "badge": "ABCD"}],
     "officers[1].badge", "'ABCD' is already used by officers[0].badge"),
    ({"id": "a", "code": "A"}, "officers", "must be an array of tables ([[officers]])"),
    (["a"], "officers", "must be an array of tables"),
])
def test_officer_problems(roster, key, reason):
    problems = problems_for({"officers": roster})
    assert reason in problems[key], problems


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
    assert cfg.device.id == "hl-hp-kt-01-c03" and cfg.device.site == "kien-thuy"
    assert cfg.mqtt.host == "mqtt.example.vn" and cfg.mqtt.password == "pw"
    # Everything else in the example is a default.
    assert cfg == config_from_dict(with_keys({"mqtt.password_file": str(tmp_path / "mqtt-password")}))


def test_commented_out_example_values_are_valid(tmp_path):
    """Uncommenting an example line (e.g. the officer roster) must not produce an invalid config."""
    for name in ("ca.crt", "device.crt", "device.key", "mqtt-password"):
        (tmp_path / name).write_text("x")
    text = example_config().replace('"/etc/hailong/', f'"{tmp_path}/')
    data = tomllib.loads(re.sub(r"^# (\[\[officers\]\]|\[\[queues\]\]|\w+ = )", r"\1", text, flags=re.M))
    del data["mqtt"]["password"]  # the inline alternative to password_file
    del data["mqtt"]["hosts"]  # the alternative to host and port
    data["device"]["role"] = "kiosk"  # queue buttons are a kiosk's
    cfg = config_from_dict(data)
    assert cfg.officers == (Officer("cb-0012", "Nguyễn Văn An", "AN", "04A1B2C3"),)
    assert [(q.id, q.name, q.button) for q in cfg.queues] == [("A", "Đất đai", 22)]
    assert cfg.mqtt.cert_file == tmp_path / "device.crt"


def test_schema_matches_the_config_dataclasses():
    for section in SECTIONS:
        cls = config_module._SECTION_TYPES[section]
        assert [f.name for f in dataclasses.fields(cls)] == [k.name for k in SCHEMA if k.section == section]
    assert all(k.doc.endswith(".") for k in SCHEMA)


def test_docs_are_up_to_date():
    assert DOCS_PATH.read_text(encoding="utf-8") == config_reference_markdown(), (
        "docs/device-config.md is out of date; run `python -m device.config --write-docs`")


def test_module_cli_prints_the_example(capsys):
    assert config_module.main(["--example"]) == 0
    assert capsys.readouterr().out == example_config()


def test_module_cli_checks_a_file(tmp_path, capsys):
    good = write_minimal(tmp_path)
    assert config_module.main(["--check", str(good)]) == 0
    bad = write_minimal(tmp_path, "port = 0\n")
    assert config_module.main(["--check", str(bad)]) == 1
    assert "mqtt.port: must be an integer 1..65535, got 0" in capsys.readouterr().err


# --- text that goes on the wire ---------------------------------------------------------------

@pytest.mark.parametrize("key, value, shown", [
    ("device.site", "kien\u0001thuy", "a string of 1..64 characters without control characters"),
    ("device.counter", "3\n", "a string of 1..64 characters without control characters"),
    ("rating.reasons", ["Chờ lâu", "Thái\u2028độ"], "a list of strings of 1..100 characters without control characters"),
    ("rating.labels", ["a", "b", "c", "d\u007f"], "a list of non-empty strings without control characters"),
])
def test_text_the_service_would_refuse_is_refused_here(key, value, shown):
    # The service refuses events carrying control characters (protocol.codec.forbidden_char):
    # a counter configured with one would record votes that can never be counted.
    assert problems_for({key: value})[key].startswith(f"must be {shown}, got ")


@pytest.mark.parametrize("field", ["id", "name", "code"])
def test_an_officer_with_a_control_character_is_refused(field):
    officer = {"id": "cb-01", "name": "Nguyễn Văn An", "code": "AN", field: "A\u0000B"}
    problems = problems_of(config_from_dict, {**MINIMAL, "officers": [officer]})
    assert list(problems) == [f"officers[0].{field}"]
    assert "without control characters" in problems[f"officers[0].{field}"]
