"""The config schema engine (common.configschema) on a small schema of its own.

What every config gets from the engine is tested here once: defaults, type and range rules and
their messages, every problem at once, unknown keys with a suggestion, TOML and file errors,
secret files, key pairs, the example config and the markdown reference, the `--check` tool.
tests/test_broker_config.py and tests/test_device_config.py keep what only their config has.
"""
from __future__ import annotations

import dataclasses
import math
import pickle
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

import device.errors
from common.configschema import (
    FILE_KEY, MQTT_PROTOCOLS, REQUIRED, TOPIC_PREFIX_RULE, Key, Problems, Schema, as_written, config_tool,
    is_topic_prefix, not_both, read_secret_file, toml_literal, together,
)
from common.errors import ConfigError
from tests.config_helpers import DELETE, problems_of, with_keys as _with_keys

SECTIONS = {
    "shop": "The shop itself.",
    "link": "How it reaches the broker.",
    "staff": "Optional roster; one [[staff]] table each.",
}
KEYS = [
    Key("shop.name", "str", REQUIRED, "The shop's name.", lo=1, example="Kiến Thụy"),
    Key("shop.code", "str", "KT", "Short code | shown on the sign.", lo=1, hi=8),
    Key("shop.data_dir", "path", "/var/lib/shop", "Where the shop keeps its data."),
    Key("shop.ratio", "float", 1.5, "A ratio above zero.", lo=0, lo_open=True),
    Key("shop.grace_s", "float", 0.0, "Seconds of grace, zero or more.", lo=0),
    Key("shop.limit", "int", 10, "How many at most.", lo=1, hi=100),
    Key("shop.floor", "int", 1, "How many at least.", lo=1),
    Key("shop.open", "bool", False, "Whether the shop is open."),
    Key("shop.tags", "list[str]", [], "Tags for the shop.", lo=1, hi=10),
    Key("shop.labels", "list[str]", ["a", "b"], "Labels, non-empty.", lo=1),
    Key("shop.pins", "list[int]", [5, 6], "Pins in use.", lo=0, hi=27),
    Key("shop.digits", "choice", 4, "Display digits.", choices={4: 4, 8: 8}),
    Key("shop.zone", "str", None, "Time zone name, unset for the default.", check=lambda v: "/" in v,
        rule_text="a zone name like Area/City", default_text="the site's zone", example="Asia/Ho_Chi_Minh"),
    Key("link.host", "str", "127.0.0.1", "Broker host.", lo=1),
    Key("link.port", "int", 1883, "Broker port.", lo=1, hi=65535),
    Key("link.session_expiry_s", "int", 3600, "Session expiry.", lo=0, hi=2**32 - 1),
    Key("link.protocol", "choice", "5", "MQTT version.", choices=MQTT_PROTOCOLS),
    Key("link.prefix", "str", "hailong/v1", "Topic prefix.", lo=1, check=is_topic_prefix,
        rule_text=TOPIC_PREFIX_RULE),
    Key("link.password", "str", None, "Password inline.", lo=1, example="s3cret"),
    Key("link.password_file", "path", None, "Password in a file.", example="/etc/shop/pw", recommended=True),
    Key("link.cert_file", "path", None, "Client certificate.", must_exist=True, example="/etc/shop/c.crt"),
    Key("link.key_file", "path", None, "Client key.", must_exist=True, example="/etc/shop/c.key"),
    Key("staff.id", "str", REQUIRED, "Officer id.", lo=1, example="cb-1"),
    Key("staff.name", "str", "", "Officer name.", example="An"),
]
SCHEMA = Schema(SECTIONS, KEYS, ConfigError, arrays=frozenset({"staff"}))
MINIMAL = {"shop": {"name": "Kiến Thụy"}}


def load(data: Any, base_dir: Path | None = None, source: Path | None = None) -> dict[str, Any]:
    """What a config's config_from_dict does with the engine: read, arrays, rules across keys."""
    values, problems = SCHEMA.read(data, base_dir, source)
    staff = data.get("staff", []) if isinstance(data, dict) else []
    values["staff"] = [SCHEMA.read_table(t, "staff", f"staff[{i}]", base_dir, problems) for i, t in enumerate(staff)]
    not_both(values, "link.password", "link.password_file", problems)
    together(values, "link.cert_file", "link.key_file", problems)
    read_secret_file(values, "link.password_file", "link.password", problems)
    if problems:
        raise SCHEMA.error(problems, source)
    return values


def load_file(path: Path) -> dict[str, Any]:
    return load(SCHEMA.load_toml(path), path.parent, path)


def with_keys(changes: dict, base: dict = MINIMAL) -> dict:
    return _with_keys(base, changes, missing_ok=True)


def problems_for(changes: dict, base_dir: Path | None = None) -> dict[str, str]:
    return problems_of(load, with_keys(changes), base_dir)


# --- defaults and values ------------------------------------------------------------------

def test_missing_keys_get_their_defaults_with_their_types():
    values = load(MINIMAL)
    for key in KEYS:
        if key.section == "staff" or key.default is REQUIRED:
            continue
        expected = tuple(key.default) if isinstance(key.default, list) else key.default
        expected = Path(expected) if key.kind == "path" and expected is not None else expected
        assert values[key.path] == expected, key.path
        assert type(values[key.path]) is type(expected), key.path
    assert values["shop.name"] == "Kiến Thụy"


def test_list_defaults_are_copies_and_lists_become_tuples():
    values = load(MINIMAL)
    assert values["shop.pins"] == (5, 6) and isinstance(values["shop.pins"], tuple)
    assert next(k for k in KEYS if k.path == "shop.pins").default == [5, 6]  # the schema is untouched
    assert load(with_keys({"shop.tags": ["x", "y"]}))["shop.tags"] == ("x", "y")


def test_integers_are_accepted_for_numbers():
    values = load(with_keys({"shop.ratio": 2, "shop.grace_s": 0}))
    assert values["shop.ratio"] == 2.0 and isinstance(values["shop.ratio"], float)
    assert values["shop.grace_s"] == 0.0 and isinstance(values["shop.grace_s"], float)


def test_relative_paths_resolve_against_the_base_and_absolute_ones_are_kept(tmp_path):
    assert load(with_keys({"shop.data_dir": "state"}), tmp_path)["shop.data_dir"] == tmp_path / "state"
    assert load(with_keys({"shop.data_dir": "/srv/shop"}), tmp_path)["shop.data_dir"] == Path("/srv/shop")
    assert load(with_keys({"shop.data_dir": "state"}))["shop.data_dir"] == Path("state")
    assert load(MINIMAL, tmp_path)["shop.data_dir"] == Path("/var/lib/shop")


@pytest.mark.parametrize("spelling, version", [
    ("5", "5"), ("v5", "5"), (5, "5"), ("V5", "5"), ("3.1.1", "3.1.1"), ("311", "3.1.1"), ("v311", "3.1.1"),
])
def test_choice_spellings_are_normalised(spelling, version):
    assert load(with_keys({"link.protocol": spelling}))["link.protocol"] == version


def test_make_builds_a_sections_dataclass():
    @dataclasses.dataclass(frozen=True)
    class Link:
        host: str
        port: int
        session_expiry_s: int
        protocol: str
        prefix: str
        password: str | None
        password_file: Path | None
        cert_file: Path | None
        key_file: Path | None

    link = SCHEMA.make(Link, "link", load(with_keys({"link.port": 8883})))
    assert (link.host, link.port, link.protocol, link.password) == ("127.0.0.1", 8883, "5", None)


# --- every rule and its message -------------------------------------------------------------

@pytest.mark.parametrize("changes, key, reason", [
    # required keys, also when their whole section is missing
    ({"shop.name": DELETE}, "shop.name", "required key is missing"),
    ({"shop": DELETE}, "shop.name", "required key is missing"),
    # strings
    ({"shop.name": ""}, "shop.name", "must be a non-empty string, got ''"),
    ({"shop.name": 7}, "shop.name", "must be a non-empty string, got 7"),
    ({"shop.code": ""}, "shop.code", "must be a string of 1..8 characters, got ''"),
    ({"shop.code": "TOOLONGCODE"}, "shop.code", "must be a string of 1..8 characters, got 'TOOLONGCODE'"),
    ({"shop.name": {"vi": "x"}}, "shop.name", "must be a non-empty string, got a table"),
    # paths
    ({"shop.data_dir": ""}, "shop.data_dir", "must be a non-empty path, got ''"),
    ({"shop.data_dir": 3}, "shop.data_dir", "must be a non-empty path, got 3"),
    ({"link.cert_file": "/nonexistent/c.crt", "link.key_file": "/nonexistent/c.key"}, "link.cert_file",
     "file not found: /nonexistent/c.crt"),
    # integers: bounds, and neither booleans, floats nor strings
    ({"link.port": 0}, "link.port", "must be an integer 1..65535, got 0"),
    ({"link.port": 65536}, "link.port", "must be an integer 1..65535, got 65536"),
    ({"link.port": True}, "link.port", "must be an integer 1..65535, got true"),
    ({"link.port": 1883.0}, "link.port", "must be an integer 1..65535, got 1883.0"),
    ({"link.port": "abc"}, "link.port", "must be an integer 1..65535, got 'abc'"),
    ({"link.port": 10**400}, "link.port", "must be an integer 1..65535, got 1"),
    ({"link.session_expiry_s": -1}, "link.session_expiry_s", "must be an integer 0..4294967295, got -1"),
    ({"link.session_expiry_s": 2**32}, "link.session_expiry_s", "got 4294967296"),
    ({"shop.floor": 0}, "shop.floor", "must be an integer >= 1, got 0"),
    ({"shop.floor": 1.5}, "shop.floor", "must be an integer >= 1, got 1.5"),
    # numbers: open and closed lower bounds, no inf or nan
    ({"shop.ratio": 0}, "shop.ratio", "must be a number > 0, got 0"),
    ({"shop.ratio": -5}, "shop.ratio", "must be a number > 0, got -5"),
    ({"shop.ratio": "1s"}, "shop.ratio", "must be a number > 0, got '1s'"),
    ({"shop.ratio": float("inf")}, "shop.ratio", "must be a number > 0, got inf"),
    ({"shop.ratio": float("nan")}, "shop.ratio", "must be a number > 0, got nan"),
    ({"shop.ratio": False}, "shop.ratio", "must be a number > 0, got false"),
    ({"shop.grace_s": -1}, "shop.grace_s", "must be a number >= 0, got -1"),
    ({"shop.grace_s": -0.5}, "shop.grace_s", "must be a number >= 0, got -0.5"),
    # booleans are booleans
    ({"shop.open": "yes"}, "shop.open", "must be true or false, got 'yes'"),
    ({"shop.open": "true"}, "shop.open", "must be true or false, got 'true'"),
    ({"shop.open": 0}, "shop.open", "must be true or false, got 0"),
    ({"shop.open": 1}, "shop.open", "must be true or false, got 1"),
    ({"shop.open": {"enabled": True}}, "shop.open", "must be true or false, got a table"),
    # choices
    ({"link.protocol": "4"}, "link.protocol", 'must be one of "5", "3.1.1", got \'4\''),
    ({"link.protocol": True}, "link.protocol", 'must be one of "5", "3.1.1", got true'),
    ({"link.protocol": 5.0}, "link.protocol", "got 5.0"),
    ({"shop.digits": 6}, "shop.digits", "must be one of 4, 8, got 6"),
    ({"shop.digits": "4"}, "shop.digits", "must be one of 4, 8, got '4'"),
    ({"shop.digits": True}, "shop.digits", "must be one of 4, 8, got true"),
    # lists: each item checked
    ({"shop.tags": ["ok", ""]}, "shop.tags", "must be a list of strings of 1..10 characters, got ['ok', '']"),
    ({"shop.tags": ["x" * 11]}, "shop.tags", "must be a list of strings of 1..10 characters"),
    ({"shop.tags": [1, 2]}, "shop.tags", "got [1, 2]"),
    ({"shop.tags": "a,b"}, "shop.tags", "got 'a,b'"),
    ({"shop.labels": ["a", ""]}, "shop.labels", "must be a list of non-empty strings, got ['a', '']"),
    ({"shop.pins": [5, 28]}, "shop.pins", "must be a list of integers 0..27, got [5, 28]"),
    ({"shop.pins": [5, 6, 13, -1]}, "shop.pins", "got [5, 6, 13, -1]"),
    ({"shop.pins": [5, True]}, "shop.pins", "got [5, True]"),
    # a rule of the key's own, described by rule_text
    ({"shop.zone": "UTC+7"}, "shop.zone", "must be a zone name like Area/City, got 'UTC+7'"),
    # the topic prefix rule both configs share
    ({"link.prefix": "/hailong"}, "link.prefix", f"must be {TOPIC_PREFIX_RULE}, got '/hailong'"),
    ({"link.prefix": "hailong/"}, "link.prefix", "got 'hailong/'"),
    ({"link.prefix": "hailong/+"}, "link.prefix", 'without "+", "#"'),
    ({"link.prefix": "hailong/#"}, "link.prefix", "got 'hailong/#'"),
    ({"link.prefix": ""}, "link.prefix", "non-empty"),
    # a section of the wrong shape
    ({"link": "127.0.0.1:1883"}, "link", "must be a table ([link]), got '127.0.0.1:1883'"),
    ({"link": 3}, "link", "must be a table ([link]), got 3"),
])
def test_each_rule_is_reported_with_its_message(changes, key, reason):
    problems = problems_for(changes)
    assert key in problems, problems
    assert reason in problems[key]


def test_a_value_is_only_accepted_by_its_rule():
    assert is_topic_prefix("hailong/v1") and is_topic_prefix("a")
    for bad in ("/a", "a/", "a/+/b", "a/#"):
        assert not is_topic_prefix(bad)
    values = load(with_keys({"shop.zone": "Asia/Ho_Chi_Minh", "shop.code": "X" * 8, "link.port": 65535,
                             "link.session_expiry_s": 0, "shop.ratio": 0.001}))
    assert (values["shop.zone"], values["link.port"], values["link.session_expiry_s"]) == ("Asia/Ho_Chi_Minh",
                                                                                        65535, 0)
    assert math.isclose(values["shop.ratio"], 0.001)


def test_not_a_table_of_sections_is_a_file_problem():
    with pytest.raises(ConfigError) as caught:
        load(["shop"])
    assert caught.value.problems == [(FILE_KEY, "must be a table of sections, got ['shop']")]


def test_all_problems_are_reported_at_once(tmp_path):
    path = tmp_path / "shop.toml"
    path.write_text(
        '[shop]\n'
        'code = ""\n'
        'ratio = 0\n'
        '[link]\n'
        'port = "abc"\n'
        'hots = "typo"\n'
        'protocol = "4"\n'
        '[[staff]]\n'
        'name = "An"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_file(path)
    err = caught.value
    assert dict(err.problems) == {
        "shop.name": "required key is missing",
        "shop.code": "must be a string of 1..8 characters, got ''",
        "shop.ratio": "must be a number > 0, got 0",
        "link.port": "must be an integer 1..65535, got 'abc'",
        "link.hots": "unknown key (did you mean link.host?)",
        "link.protocol": 'must be one of "5", "3.1.1", got \'4\'',
        "staff[0].id": "required key is missing",
    }
    assert len(err.problems) == len(dict(err.problems)), "each key once"
    lines = str(err).splitlines()
    assert lines[0] == f"config error in {path}:"
    assert "  link.port: must be an integer 1..65535, got 'abc'" in lines
    assert len(lines) == 1 + len(err.problems)


@pytest.mark.parametrize("cls", [ConfigError, device.errors.ConfigError])
def test_config_error_is_a_value_error_and_survives_pickling(cls):
    err = cls([("link.port", "must be an integer 1..65535, got 0")], "/etc/shop/shop.toml")
    assert isinstance(err, ConfigError) and isinstance(err, ValueError)
    copy_ = pickle.loads(pickle.dumps(err))
    assert type(copy_) is cls
    assert copy_.problems == err.problems and copy_.source == err.source and str(copy_) == str(err)
    assert str(err) == "config error in /etc/shop/shop.toml:\n  link.port: must be an integer 1..65535, got 0"
    assert str(cls([("a", "b")])) == "config error:\n  a: b"


# --- unknown keys -------------------------------------------------------------------------

@pytest.mark.parametrize("changes, key, reason", [
    ({"link.hots": "x"}, "link.hots", "unknown key (did you mean link.host?)"),          # a typo
    ({"link.session_expiry": 1}, "link.session_expiry", "unknown key (did you mean link.session_expiry_s?)"),
    ({"lnik": {}}, "lnik", "unknown key (did you mean link?)"),                          # a section's typo
    ({"shop.port": 1883}, "shop.port", "unknown key (did you mean link.port?)"),         # the wrong section
    ({"host": "x"}, "host", "unknown key (did you mean link.host?)"),                    # outside any section
    ({"shop.xyzzy": 1}, "shop.xyzzy", "unknown key"),                                    # nothing like it
    ({"xyzzy": 1}, "xyzzy", "unknown key"),
    ({"link.id": "x"}, "link.id", "unknown key"),  # staff.id is in an array of tables: not suggested
    ({"staff": [{"id": "a", "nmae": "An"}]}, "staff[0].nmae", "unknown key (did you mean staff[0].name?)"),
])
def test_unknown_keys_are_errors_with_a_suggestion(changes, key, reason):
    assert problems_for(changes)[key] == reason


# --- files and secrets -----------------------------------------------------------------------

def test_toml_syntax_error_reports_line_and_column(tmp_path):
    path = tmp_path / "shop.toml"
    path.write_text('[shop]\nname = "x"\ncode = kien-thuy\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_file(path)
    [(key, reason)] = caught.value.problems
    assert key == FILE_KEY and reason.startswith("invalid TOML: ")
    assert re.search(r"line 3, column \d+", reason), reason
    assert str(path) in str(caught.value) and caught.value.source == path


def test_missing_or_unreadable_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_file(tmp_path / "nope.toml")
    [(key, reason)] = caught.value.problems
    assert key == FILE_KEY and reason.startswith("cannot read: ") and "No such file" in reason
    with pytest.raises(ConfigError) as caught:
        load_file(tmp_path)  # a directory
    assert caught.value.problems[0][0] == FILE_KEY


def test_the_schema_raises_its_owners_error(tmp_path):
    owned = Schema(SECTIONS, KEYS, device.errors.ConfigError)
    with pytest.raises(device.errors.ConfigError):
        owned.load_toml(tmp_path / "nope.toml")
    with pytest.raises(device.errors.ConfigError):
        owned.read("not a table", None)


def test_secret_file_is_read_with_only_the_trailing_newline_dropped(tmp_path):
    (tmp_path / "pw").write_text("s3cret \r\n", encoding="utf-8")
    values = load(with_keys({"link.password_file": "pw"}), tmp_path)
    assert values["link.password"] == "s3cret " and values["link.password_file"] == tmp_path / "pw"


def test_unreadable_or_empty_secret_file_is_a_problem(tmp_path):
    problems = problems_for({"link.password_file": "missing"}, base_dir=tmp_path)
    assert problems["link.password_file"].startswith(f"cannot read {tmp_path / 'missing'}: No such file")
    (tmp_path / "empty").write_text("\n")
    assert problems_for({"link.password_file": "empty"}, base_dir=tmp_path) == {
        "link.password_file": f"{tmp_path / 'empty'} is empty"}


def test_inline_secret_is_used_as_is_and_not_both_may_be_set(tmp_path):
    assert load(with_keys({"link.password": "inline"}))["link.password"] == "inline"
    (tmp_path / "pw").write_text("a")
    assert problems_for({"link.password": "b", "link.password_file": "pw"}, base_dir=tmp_path) == {
        "link.password_file": "set either link.password or link.password_file, not both"}


def test_keys_set_together_and_files_that_must_exist(tmp_path):
    for name in ("c.crt", "c.key"):
        (tmp_path / name).write_text("x")
    values = load(with_keys({"link.cert_file": "c.crt", "link.key_file": "c.key"}), tmp_path)
    assert (values["link.cert_file"], values["link.key_file"]) == (tmp_path / "c.crt", tmp_path / "c.key")
    assert problems_for({"link.cert_file": "c.crt"}, base_dir=tmp_path) == {
        "link.key_file": "must be set together with link.cert_file"}
    # A file that is not there is reported once, and its partner is blamed for the pair.
    assert problems_for({"link.key_file": "missing.key"}, base_dir=tmp_path) == {
        "link.key_file": f"file not found: {tmp_path / 'missing.key'}",
        "link.cert_file": "must be set together with link.key_file"}


def test_rules_across_keys_stay_quiet_about_keys_already_reported():
    problems: Problems = []
    values = {"a": None, "b": 1}
    not_both({"a": 1}, "a", "b", problems)  # b invalid (absent): nothing to say
    together({"a": None}, "a", "b", problems)
    together({"a": None, "b": None}, "a", "b", problems)
    assert problems == []
    together(values, "a", "b", problems)
    assert problems == [("a", "must be set together with b")]


# --- generated example and docs ------------------------------------------------------------

def example_keys(text: str) -> set[tuple[str, str]]:
    """(section, key) for every key line, commented out or not."""
    found, section = set(), None
    for line in text.splitlines():
        if header := re.fullmatch(r"(?:# )?\[\[?(\w+)\]\]?", line):
            section = header.group(1)
        elif key := re.match(r"(?:# )?(\w+) = ", line):
            found.add((section, key.group(1)))
    return found


HEADER = ["# A shop's configuration.", "# Generated; every key is shown."]


def test_example_shows_every_key_with_its_description():
    text = SCHEMA.example(HEADER)
    assert text.startswith("\n".join(HEADER) + "\n") and text.endswith("\n")
    assert example_keys(text) == {(k.section, k.name) for k in KEYS}
    for key in KEYS:
        assert " ".join(key.doc.split()[:4]) in text, key.path
    for about in SECTIONS.values():
        assert f"# {about}" in text
    assert "# The shop's name. Required.\nname = \"Kiến Thụy\"" in text  # required: its example, live


def test_example_lines_by_kind_of_key():
    lines = SCHEMA.example(HEADER).splitlines()
    assert 'name = "Kiến Thụy"' in lines                    # required: the example value
    assert "limit = 10" in lines and "open = false" in lines  # defaults, live
    assert 'pins = [5, 6]' in lines and "tags = []" in lines
    assert '# password = "s3cret"' in lines                  # unset: commented out
    assert 'password_file = "/etc/shop/pw"' in lines         # recommended: live, though optional
    assert "# [[staff]]" in lines and '# id = "cb-1"' in lines and '# name = "An"' in lines  # arrays: all commented


def test_example_round_trips_to_the_defaults(tmp_path):
    data = tomllib.loads(SCHEMA.example(HEADER))
    # The recommended password file does not exist here, and that must be caught.
    with pytest.raises(ConfigError) as caught:
        load(data)
    assert [key for key, _ in caught.value.problems] == ["link.password_file"]
    (tmp_path / "pw").write_text("pw\n")
    data["link"]["password_file"] = str(tmp_path / "pw")
    assert load(data) == load(with_keys({"link.password_file": str(tmp_path / "pw")}))


def test_commented_out_example_values_are_valid(tmp_path):
    for name in ("c.crt", "c.key", "pw"):
        (tmp_path / name).write_text("x")
    text = SCHEMA.example(HEADER).replace('"/etc/shop/', f'"{tmp_path}/')
    data = tomllib.loads(re.sub(r"^# (\[\[staff\]\]|\w+ = )", r"\1", text, flags=re.M))
    del data["link"]["password"]  # the inline alternative to password_file
    values = load(data)
    assert values["staff"] == [{"staff.id": "cb-1", "staff.name": "An"}]
    assert values["link.cert_file"] == tmp_path / "c.crt" and values["shop.zone"] == "Asia/Ho_Chi_Minh"


def test_markdown_reference_has_every_key():
    text = SCHEMA.markdown(["# Shop configuration"], notes={"link": ["", "A note on links."]},
                           rules=["link.cert_file and link.key_file go together."])
    for key in KEYS:
        name = f"staff[].{key.name}" if key.section == "staff" else key.path
        assert f"`{name}`" in text and key.doc.replace("|", "\\|") in text, key.path
    lines = text.splitlines()
    assert lines[0] == "# Shop configuration"
    assert "## `[shop]`" in lines and "## `[[staff]]`" in lines
    assert "| `shop.name` | non-empty string | **required** | The shop's name. |" in lines
    assert "| `link.port` | integer 1..65535 | `1883` | Broker port. |" in lines
    assert "| `link.password` | non-empty string | unset | Password inline. |" in lines
    assert "| `shop.zone` | zone name like Area/City | the site's zone | Time zone name, unset for the default. |" in lines
    assert "| `shop.code` | string of 1..8 characters | `\"KT\"` | Short code \\| shown on the sign. |" in lines
    assert "| `link.protocol` | one of \"5\", \"3.1.1\" | `\"5\"` | MQTT version. |" in lines
    assert lines.index("A note on links.") > lines.index("| `link.key_file` | non-empty path | unset | Client key. |")
    assert lines[-3:] == ["## Rules across keys", "", "- link.cert_file and link.key_file go together."]


def test_literals_and_values_as_written():
    assert toml_literal("Kiến Thụy") == '"Kiến Thụy"'
    assert toml_literal([1, "a", True]) == '[1, "a", true]' and toml_literal((5, 6)) == "[5, 6]"
    assert (as_written(True), as_written({"a": 1}), as_written("x"), as_written(0)) == ("true", "a table", "'x'", "0")


# --- the config tool (`python -m <package>.config`) ---------------------------------------------

def tool(argv, docs_path: Path) -> int:
    return config_tool(argv, prog="python -m shop.config", description="Shop configuration tools.",
                       docs_path=docs_path, markdown=lambda: SCHEMA.markdown(["# Shop"]),
                       example=lambda: SCHEMA.example(HEADER), load=lambda p: load_file(Path(p)),
                       error=ConfigError)


def test_config_tool_prints_the_example_checks_a_file_and_writes_the_docs(tmp_path, capsys):
    docs = tmp_path / "shop-config.md"
    assert tool(["--example"], docs) == 0
    assert capsys.readouterr().out == SCHEMA.example(HEADER)

    good = tmp_path / "good.toml"
    good.write_text('[shop]\nname = "x"\n', encoding="utf-8")
    assert tool(["--check", str(good)], docs) == 0
    assert capsys.readouterr().out == f"{good}: ok\n"
    bad = tmp_path / "bad.toml"
    bad.write_text('[shop]\nname = "x"\n[link]\nport = 0\n', encoding="utf-8")
    assert tool(["--check", str(bad)], docs) == 1
    assert "link.port: must be an integer 1..65535, got 0" in capsys.readouterr().err

    assert tool(["--write-docs"], docs) == 0
    assert docs.read_text(encoding="utf-8") == SCHEMA.markdown(["# Shop"])
    assert capsys.readouterr().out == f"wrote {docs}\n"
    with pytest.raises(SystemExit):
        tool([], docs)  # one action is required


def test_text_keys_refuse_what_the_wire_refuses():
    key = Key("s.t", "str", "", "Text.", lo=None, hi=None, text=True)
    listed = Key("s.l", "list[str]", [], "Texts.", lo=1, hi=10, text=True)
    schema = Schema({"s": "S."}, [key, listed], ConfigError)
    assert key.rule == "a string without control characters"
    assert listed.rule == "a list of strings of 1..10 characters without control characters"
    values, problems = schema.read({"s": {"t": "ok Tiếng Việt", "l": ["x", "y"]}}, None, None)
    assert problems == [] and values["s.t"] == "ok Tiếng Việt"
    for bad in ("a\u0001", "\u0085", "line\u2029", "\ud800"):
        _, problems = schema.read({"s": {"t": bad, "l": [bad]}}, None, None)
        assert [k for k, _ in problems] == ["s.t", "s.l"], bad
