"""Declarative TOML config files: one list of keys drives loading, validation, docs and examples.

The counter (device/config.py) and the central service (broker/config.py) each describe
their file as a `Schema` of `Key`s. From it this module checks parsed TOML, collecting
every problem before failing (an installer should fix the file once, not once per
mistake), treats unknown keys as errors with a suggestion (a typo'd key would otherwise
silently fall back to its default), and renders the commented example config and the
markdown reference, so code, docs and examples cannot drift.

What stays with each schema's owner: its keys, its typed dataclasses, the rules that
span several keys, and arrays of tables with rules of their own (the device's roster).

The counter's Pi Zero imports this at every start: standard library only, and what only
error messages and generated text need is imported when first used.
"""
from __future__ import annotations

import math
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocol.codec import forbidden_char

__all__ = [
    "FILE_KEY", "REQUIRED", "MQTT_PROTOCOLS", "TOPIC_PREFIX_RULE", "Key", "Schema", "Problems",
    "is_topic_prefix", "BROKERS_RULE", "broker_address", "check_broker_form", "not_both", "together", "read_secret_file", "as_written", "toml_literal",
    "config_tool",
]

FILE_KEY = "<file>"  # the problem key for faults of the file itself (unreadable, bad TOML)

Problems = list[tuple[str, str]]  # (dotted key, reason)


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


@dataclass(frozen=True)
class Key:
    """One configuration key: what it is for, its type, default and constraints."""

    path: str                     # dotted, e.g. "mqtt.port"; keys of an array of tables are "<array>.<name>"
    kind: str                     # str | int | float | bool | path | choice | list[int] | list[str]
    default: Any                  # REQUIRED, None (unset, or derived from other keys) or a value
    doc: str
    lo: int | float | None = None  # numbers: value bounds; strings: length; lists: each item
    hi: int | float | None = None
    lo_open: bool = False         # for "> 0" timeouts, where 0 would mean "never wait"
    choices: Mapping[Any, Any] | None = None  # accepted spelling -> normalised value
    check: Callable[[Any], Any] | None = None  # extra rule; `rule_text` must describe it
    rule_text: str | None = None
    default_text: str | None = None  # documents a default derived from other keys
    example: Any = None           # shown in the example config when there is no default
    recommended: bool = False     # optional, but the example config sets it live
    must_exist: bool = False      # paths that must name an existing file
    text: bool = False            # strings that go on the wire: no control characters (protocol's rule)

    @property
    def section(self) -> str:
        return self.path.split(".", 1)[0]

    @property
    def name(self) -> str:
        return self.path.split(".", 1)[1]

    @property
    def rule(self) -> str:
        """What a valid value looks like, phrased to follow "must be"."""
        if self.rule_text:
            return self.rule_text
        if self.kind == "bool":
            return "true or false"
        if self.kind == "path":
            return "a non-empty path"
        if self.kind == "choice":
            return "one of " + ", ".join(toml_literal(v) for v in dict.fromkeys(self.choices.values()))
        item = self.kind.removeprefix("list[").removesuffix("]")
        noun = {"int": "integer", "float": "number", "str": "string"}[item]
        if item == "str":
            if self.lo == 1 and self.hi is None:
                noun, bounds = "non-empty string", ""
            else:
                bounds = f"of {self.lo}..{self.hi} characters" if self.hi is not None else ""
        elif self.lo is not None and self.hi is not None:
            bounds = f"{self.lo}..{self.hi}"
        elif self.lo is not None:
            bounds = f"{'>' if self.lo_open else '>='} {self.lo}"
        else:
            bounds = ""
        if self.kind.startswith("list["):
            return f"a list of {noun}s {bounds}".strip() + (" without control characters" if self.text else "")
        article = "an" if noun[0] in "aeiou" else "a"
        return f"{article} {noun} {bounds}".strip() + (" without control characters" if self.text else "")


class _Invalid(Exception):
    pass


@dataclass(frozen=True)
class Schema:
    """The sections and keys of one kind of config file, and the error it raises."""

    sections: Mapping[str, str]   # section name -> one-line description, in file order
    keys: Sequence[Key]
    # Called as error(problems, source); a ValueError with `.problems`, e.g. device.errors.ConfigError.
    error: Callable[[Problems, Path | None], Exception]
    arrays: frozenset[str] = frozenset()  # sections written as arrays of tables ([[name]])

    def section_keys(self, section: str) -> list[Key]:
        return [k for k in self.keys if k.section == section]

    # --- loading and validation ------------------------------------------------------------

    def load_toml(self, path: Path) -> dict:
        """Parse a TOML file; an unreadable file or bad syntax is raised as a problem of FILE_KEY."""
        try:
            with path.open("rb") as f:
                return tomllib.load(f)
        except OSError as e:
            raise self.error([(FILE_KEY, f"cannot read: {e.strerror or e}")], path) from None
        except tomllib.TOMLDecodeError as e:
            raise self.error([(FILE_KEY, f"invalid TOML: {e}")], path) from None

    def read(self, data: Any, base: Path | None, source: Path | None = None) -> tuple[dict[str, Any], Problems]:
        """Check parsed TOML against the single-table sections.

        Returns ({dotted key: value} for every valid key, problems). Arrays of tables are
        only checked for being known; the caller reads them with `read_table`.
        """
        if not isinstance(data, dict):
            raise self.error([(FILE_KEY, f"must be a table of sections, got {as_written(data)}")], source)
        problems: Problems = [(name, self.unknown(name, list(self.sections), ""))
                              for name in data if name not in self.sections]
        values: dict[str, Any] = {}
        for section in self.sections:
            if section in self.arrays:
                continue
            table = data.get(section, {})
            if not isinstance(table, dict):
                problems.append((section, f"must be a table ([{section}]), got {as_written(table)}"))
                continue
            values.update(self.read_table(table, section, section, base, problems))
        return values, problems

    def read_table(self, table: dict, section: str, label: str, base: Path | None,
                   problems: Problems) -> dict[str, Any]:
        """Check one table against its section's keys; return {key.path: value} for the valid ones.

        `label` names the table in problems: the section, or e.g. "officers[2]".
        """
        keys = self.section_keys(section)
        names = [k.name for k in keys]
        for name in table:
            if name not in names:
                problems.append((f"{label}.{name}", self.unknown(name, names, f"{label}.")))
        values: dict[str, Any] = {}
        for key in keys:
            where = f"{label}.{key.name}"
            if key.name not in table:
                if key.default is REQUIRED:
                    problems.append((where, "required key is missing"))
                else:
                    values[key.path] = _default(key, base)
                continue
            raw = table[key.name]
            try:
                value = _parse(key, raw, base)
            except _Invalid:
                problems.append((where, f"must be {key.rule}, got {as_written(raw)}"))
                continue
            if key.must_exist and not value.is_file():
                problems.append((where, f"file not found: {value}"))
            values[key.path] = value
        return values

    def unknown(self, name: str, candidates: list[str], prefix: str) -> str:
        import difflib

        guess = difflib.get_close_matches(name, candidates, n=1)
        if guess:
            return f"unknown key (did you mean {prefix}{guess[0]}?)"
        # Not a typo but maybe the right key in the wrong table, e.g. `port` under [device].
        elsewhere = [k.path for k in self.keys if k.name == name and k.section not in self.arrays]
        if elsewhere:
            return f"unknown key (did you mean {elsewhere[0]}?)"
        return "unknown key"

    def make(self, cls: type, section: str, values: Mapping[str, Any]) -> Any:
        """An instance of a section's dataclass, whose fields are the section's key names."""
        return cls(**{k.name: values[k.path] for k in self.section_keys(section)})

    # --- generated text --------------------------------------------------------------------

    def example(self, header: Sequence[str]) -> str:
        """A complete, commented config: required keys with example values, the rest at defaults."""
        out = list(header)
        for section, about in self.sections.items():
            array = section in self.arrays
            out += ["", *_comment(about), f"# [[{section}]]" if array else f"[{section}]"]
            for key in self.section_keys(section):
                if not array:
                    out.append("")
                out += _comment(key.doc + (" Required." if key.default is REQUIRED else ""))
                if key.default is REQUIRED or key.recommended or (array and key.example is not None):
                    line = f"{key.name} = {toml_literal(key.example)}"
                elif key.default is None:
                    line = f"# {key.name} = {toml_literal(key.example)}"
                else:
                    line = f"{key.name} = {toml_literal(key.default)}"
                # An array of tables is optional, so its example stays commented out entirely.
                out.append(f"# {line}" if array and not line.startswith("#") else line)
        return "\n".join(out) + "\n"

    def markdown(self, preamble: Sequence[str], notes: Mapping[str, Sequence[str]] | None = None,
                 rules: Sequence[str] = ()) -> str:
        """The reference: `preamble` lines, a table per section (then its `notes`), then `rules`."""
        import re

        notes = notes or {}
        out = list(preamble)
        for section, about in self.sections.items():
            array = section in self.arrays
            title = f"[[{section}]]" if array else f"[{section}]"
            out += ["", f"## `{title}`", "", about, "",
                    "| Key | Type | Default | Description |", "|---|---|---|---|"]
            for key in self.section_keys(section):
                name = f"{section}[].{key.name}" if array else key.path
                kind = re.sub(r"^an? ", "", key.rule)
                if key.default is REQUIRED:
                    default = "**required**"
                elif key.default_text:
                    default = key.default_text
                elif key.default is None:
                    default = "unset"
                else:
                    default = f"`{toml_literal(key.default)}`"
                out.append("| " + " | ".join(cell.replace("|", "\\|")
                                             for cell in (f"`{name}`", kind, default, key.doc)) + " |")
            out += notes.get(section, [])
        if rules:
            out += ["", "## Rules across keys", ""] + [f"- {rule}" for rule in rules]
        return "\n".join(out) + "\n"


def _default(key: Key, base: Path | None) -> Any:
    if isinstance(key.default, list):
        return tuple(key.default)  # a copy, so no caller can mutate the schema
    if key.kind == "path" and key.default is not None:
        return _path(key.default, base)
    return key.default


def _path(raw: str, base: Path | None) -> Path:
    path = Path(raw)
    return base / path if base is not None and not path.is_absolute() else path


def _parse(key: Key, raw: Any, base: Path | None) -> Any:
    if key.kind == "choice":
        spelling = raw.lower() if isinstance(raw, str) else raw
        # bool is excluded because True == 1 would otherwise match an integer choice.
        if isinstance(spelling, bool) or not isinstance(spelling, (str, int)) or spelling not in key.choices:
            raise _Invalid
        return key.choices[spelling]
    if key.kind.startswith("list["):
        item_kind = key.kind[5:-1]
        if not isinstance(raw, list) or not all(_valid(key, item_kind, item) for item in raw):
            raise _Invalid
        return tuple(raw)
    if not _valid(key, key.kind, raw):
        raise _Invalid
    if key.kind == "float":
        return float(raw)
    if key.kind == "path":
        return _path(raw, base)
    return raw


def _valid(key: Key, kind: str, value: Any) -> bool:
    if kind == "bool":
        return isinstance(value, bool)
    if kind in ("int", "float"):
        # bool is an int subclass, but `port = true` is a mistake, not 1.
        types = int if kind == "int" else (int, float)
        if isinstance(value, bool) or not isinstance(value, types):
            return False
        if isinstance(value, float) and not math.isfinite(value):  # TOML allows inf and nan
            return False
        size = value
    elif isinstance(value, str):
        size = len(value)
        if kind == "path" and not value:
            return False
        if key.text and forbidden_char(value) is not None:
            return False  # the service would refuse every event carrying it: votes lost
    else:
        return False
    if key.lo is not None and (size <= key.lo if key.lo_open else size < key.lo):
        return False
    if key.hi is not None and size > key.hi:
        return False
    return key.check is None or bool(key.check(value))


# --- rules across keys ---------------------------------------------------------------------
# Each takes the {dotted key: value} of the individually valid keys, so a rule whose keys
# were already reported stays quiet instead of piling a second problem on them.

def not_both(v: Mapping[str, Any], a: str, b: str, problems: Problems) -> None:
    if v.get(a) is not None and v.get(b) is not None:
        problems.append((b, f"set either {a} or {b}, not both"))


def together(v: Mapping[str, Any], a: str, b: str, problems: Problems) -> None:
    """`a` and `b` are both set or both unset; the unset one is reported."""
    if a in v and b in v and (v[a] is None) != (v[b] is None):
        missing, given = (b, a) if v[b] is None else (a, b)
        problems.append((missing, f"must be set together with {given}"))


def read_secret_file(v: dict[str, Any], file_key: str, value_key: str, problems: Problems) -> None:
    """Fill v[value_key] from the file named by v[file_key] (trailing newline dropped), if set."""
    # Read now rather than at connect time, so a missing secret shows up with the other
    # config problems at start-up instead of as a broker refusal much later.
    secret_file = v.get(file_key)
    if secret_file is None:
        return
    try:
        secret = secret_file.read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeError, ValueError) as e:  # ValueError: a NUL in the name, which TOML can carry
        problems.append((file_key, f"cannot read {secret_file}: {getattr(e, 'strerror', None) or e}"))
        return
    if not secret:
        problems.append((file_key, f"{secret_file} is empty"))
    elif v.get(value_key) is None:
        v[value_key] = secret


# --- MQTT keys the device and the service describe the same way ------------------------------

MQTT_PROTOCOLS = {"5": "5", "v5": "5", 5: "5", "3.1.1": "3.1.1", "311": "3.1.1", "v311": "3.1.1"}
TOPIC_PREFIX_RULE = 'a non-empty topic prefix without "+", "#" or a leading/trailing "/"'


def is_topic_prefix(value: str) -> bool:
    return value.strip("/") == value and not set("+#") & set(value)


BROKERS_RULE = 'a list of "host:port" broker addresses (an IPv6 host in brackets: "[::1]:1883")'


def broker_address(value: str) -> tuple[str, int] | None:
    """(host, port) of one `mqtt.hosts` entry, or None if it is not "host:port"."""
    host, sep, port = value.rpartition(":")
    if not sep or not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:
        return None
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        return None  # a bare IPv6 address: which colon starts the port is a guess
    if not host or any(c.isspace() or c in "[]/" for c in host):
        return None
    return host, int(port)


def check_broker_form(v: dict[str, Any], problems: Problems, *, default_host: str | None) -> None:
    """`mqtt.hosts` or `mqtt.host` with `mqtt.port`: one form, not both; fills the host form's defaults.

    `default_host` None makes the host required when there is no hosts list.
    """
    if "mqtt.hosts" not in v:
        return  # already reported: a missing host on top would only be noise
    hosts = v["mqtt.hosts"]
    if hosts is None:
        if v.get("mqtt.host", "") is None:
            if default_host is None:
                problems.append(("mqtt.host", "required key is missing (or list brokers in mqtt.hosts)"))
            else:
                v["mqtt.host"] = default_host
        if v.get("mqtt.port", 0) is None:
            v["mqtt.port"] = 1883
        return
    for key in ("mqtt.host", "mqtt.port"):
        if v.get(key) is not None:
            problems.append((key, f"set either {key} or mqtt.hosts (each entry carries its port), not both"))
    if not hosts:
        problems.append(("mqtt.hosts", "must list at least one broker"))
    seen = [broker_address(h) for h in hosts]
    twice = sorted({h for h, a in zip(hosts, seen) if seen.count(a) > 1})
    if twice:
        problems.append(("mqtt.hosts", f"lists the same broker more than once: {', '.join(twice)}"))


# --- value display ---------------------------------------------------------------------------

def as_written(value: Any) -> str:
    """Show a bad value the way it would look in the TOML file where that is clearer."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    return repr(value)


def toml_literal(value: Any) -> str:
    """A TOML literal for schema values (strings, numbers, booleans and lists of them)."""
    import json

    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(toml_literal(v) for v in value) + "]"
    # JSON strings, numbers and booleans are valid TOML; keep Vietnamese readable.
    return json.dumps(value, ensure_ascii=False)


def _comment(text: str) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width=88, initial_indent="# ", subsequent_indent="# ",
                         break_on_hyphens=False)


# --- `python -m <package>.config` ------------------------------------------------------------

def config_tool(argv: list[str] | None, *, prog: str, description: str, docs_path: Path,
                markdown: Callable[[], str], example: Callable[[], str],
                load: Callable[[str], Any], error: type[Exception]) -> int:
    """--write-docs regenerates docs_path, --example prints the example, --check FILE validates."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog=prog, description=description)
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write-docs", action="store_true", help=f"regenerate {docs_path.name}")
    action.add_argument("--example", action="store_true", help="print the example config")
    action.add_argument("--check", metavar="FILE", help="validate a config file")
    args = parser.parse_args(argv)
    if args.write_docs:
        docs_path.write_text(markdown(), encoding="utf-8")
        print(f"wrote {docs_path}")
    elif args.example:
        sys.stdout.write(example())
    else:
        try:
            load(args.check)
        except error as e:
            print(e, file=sys.stderr)
            return 1
        print(f"{args.check}: ok")
    return 0
