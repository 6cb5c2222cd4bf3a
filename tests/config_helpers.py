"""Shared helpers for the schema-driven config tests (device and service)."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Callable

import pytest

DELETE = object()


def with_keys(base: dict, changes: dict, *, missing_ok: bool = False) -> dict:
    """`base` with dotted keys set (or removed with DELETE; removing an absent key is an
    error unless missing_ok, so a typo in a test cannot silently remove nothing)."""
    data = copy.deepcopy(base)
    for dotted, value in changes.items():
        section, _, name = dotted.partition(".")
        if value is DELETE:
            if name and missing_ok:
                data[section].pop(name, None)
            else:
                data[section].pop(name) if name else data.pop(section)
        elif not name:
            data[section] = value
        else:
            data.setdefault(section, {})[name] = value
    return data


def problems_of(load: Callable, data: dict, base_dir: Path | None = None) -> dict[str, str]:
    """key -> reason for every problem `load(data, base_dir)` reports; each key at most once."""
    from common.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        load(data, base_dir)
    problems = dict(caught.value.problems)
    assert len(problems) == len(caught.value.problems), "one key reported twice"
    return problems


def value_at(cfg, path: str):
    section, name = path.split(".")
    return getattr(getattr(cfg, section), name)
