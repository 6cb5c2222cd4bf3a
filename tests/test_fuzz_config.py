"""Property-based tests of the config parser (common/configschema.py), through the counter's and
the service's configs: any table TOML can express gives a config or a ConfigError listing
problems, never another exception (an installer gets a list to fix, not a traceback).
"""
from __future__ import annotations

from datetime import date, datetime, time, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import broker.config as broker_config
import common.device_file as device_file
import device.config as device_config
from common.errors import ConfigError
from tests.fuzz_strategies import fuzz_settings

# Every kind of value a TOML document can hold, with the awkward ones on purpose: NUL and other
# control characters, paths that climb out, numbers at and past 64-bit, nan and inf.
toml_text = st.one_of(
    st.text(max_size=30).filter(lambda s: not any(0xD800 <= ord(c) <= 0xDFFF for c in s)),
    st.sampled_from(["", " ", "\x00", "a\x00b", "../../etc/passwd", "/", "/dev/null", ".", "~", "5", "v5",
                     "3.1.1", "true", "UTC", "Asia/Ho_Chi_Minh", "sqlite:///x.db", "sqlite:///", "a" * 5000,
                     "hailong/v1", "/leading", "trailing/", "a/+/b", "#", "always", "never", "max7219",
                     "none", "0123456789ABCDEF"]),
)
toml_scalars = st.one_of(
    st.booleans(), toml_text,
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([0, 1, -1, 65535, 65536, 2**31, 2**63 - 1, -(2**63)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([date(2026, 11, 18), time(9, 30), datetime(2026, 11, 18, 9, 30),
                     datetime(2026, 11, 18, 9, 30, tzinfo=timezone.utc)]),
)
toml_values = st.recursive(
    toml_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(toml_text, inner, max_size=4)),
    max_leaves=10,
)


def section_tables(schema_keys, sections, arrays=frozenset()):
    """Tables of known sections with known keys (any value) and stray ones, and stray sections."""
    def keys_of(section):
        return sorted(k.name for k in schema_keys if k.section == section)

    def table(section):
        return st.dictionaries(st.sampled_from(keys_of(section)) | toml_text, toml_values, max_size=8)

    def section_value(section):
        if section in arrays:
            return st.lists(table(section), max_size=3) | toml_values
        return table(section) | toml_values

    known = st.sampled_from(sorted(sections)).flatmap(lambda s: st.tuples(st.just(s), section_value(s)))
    return st.lists(known | st.tuples(toml_text, toml_values), max_size=7).map(dict)


broker_tables = section_tables(broker_config.SCHEMA, broker_config.SECTIONS)
device_tables = section_tables(device_file.SCHEMA, device_file.SECTIONS, frozenset(device_file.ARRAY_SECTIONS))


def config_or_problems(load, data: dict, base: Path):
    try:
        return load(data, base_dir=base)
    except ConfigError as e:
        assert e.problems, "a ConfigError must list its problems"
        for key, reason in e.problems:
            assert isinstance(key, str) and isinstance(reason, str) and reason
        str(e)  # renders, whatever the values were
        return None


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tmp_path_factory.mktemp("config-base")


@fuzz_settings(200)
@given(data=broker_tables)
def test_any_service_config_table_is_a_config_or_a_list_of_problems(base, data):
    config_or_problems(broker_config.config_from_dict, data, base)


@fuzz_settings(200)
@given(data=device_tables)
def test_any_counter_config_table_is_a_config_or_a_list_of_problems(base, data):
    config_or_problems(device_config.config_from_dict, data, base)


def required_broker() -> dict:
    return {"mqtt": {"embedded": False}, "store": {"url": "sqlite:///hailong.db"}}


def required_device() -> dict:
    return {"device": {"id": "dev-1", "site": "s", "counter": "1", "data_dir": "data"}, "mqtt": {"host": "h"}}


@fuzz_settings(200)
@given(section=st.sampled_from(sorted(broker_config.SECTIONS)), key=st.data(), value=toml_values)
def test_one_hostile_service_key_in_a_valid_config_is_a_config_or_a_list_of_problems(base, section, key, value):
    name = key.draw(st.sampled_from(sorted(k.name for k in broker_config.SCHEMA if k.section == section)))
    data = required_broker()
    data.setdefault(section, {})[name] = value
    config_or_problems(broker_config.config_from_dict, data, base)


@fuzz_settings(200)
@given(section=st.sampled_from(sorted(device_file.SECTIONS)), key=st.data(), value=toml_values)
def test_one_hostile_counter_key_in_a_valid_config_is_a_config_or_a_list_of_problems(base, section, key, value):
    name = key.draw(st.sampled_from(sorted(k.name for k in device_file.SCHEMA if k.section == section)))
    data = required_device()
    if section in device_file.ARRAY_SECTIONS:
        data[section] = [{name: value}]
    else:
        data.setdefault(section, {})[name] = value
    config_or_problems(device_config.config_from_dict, data, base)


def test_the_required_minimum_configs_load(base):
    assert config_or_problems(broker_config.config_from_dict, required_broker(), base) is not None
    assert config_or_problems(device_config.config_from_dict, required_device(), base) is not None


@pytest.mark.parametrize("key", ["mqtt.password_file", "mqtt.ca_file", "mqtt.cert_file"])
def test_a_path_with_a_nul_byte_is_a_problem_not_a_crash(base, key):
    # TOML can carry "\u0000" in a string; the OS cannot take it in a file name.
    section, name = key.split(".")
    for load, data in ((broker_config.config_from_dict, required_broker()),
                       (device_config.config_from_dict, required_device())):
        data[section][name] = "secret\x00file"
        if key == "mqtt.cert_file":
            data[section]["key_file"] = "key\x00file"
        with pytest.raises(ConfigError):
            load(data, base_dir=base)
