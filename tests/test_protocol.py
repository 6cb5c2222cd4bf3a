"""The protocol package's foundations: errors, topics, codec, import hygiene, docs examples.

Events and the other messages are covered in test_protocol_events.py and
test_protocol_messages.py.
"""

from __future__ import annotations

import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest

import protocol
from protocol import DEFAULT_PREFIX, PROTOCOL_VERSION, ProtocolError
from protocol.codec import MAX_PAYLOAD, decode, encode, json_type
from protocol.errors import ProtocolError as ErrorsProtocolError
from protocol.events import CALL_ACTIONS, EVENT_TYPES, validate_event
from protocol.tickets import validate_request
from protocol.messages import (
    COMMANDS,
    validate_ack,
    validate_assignment,
    validate_command,
    validate_status,
    validate_telemetry,
)
from protocol.topics import (
    DEVICE_ID_RE,
    KINDS,
    QOS,
    RETAINED,
    Topics,
    parse_topic,
    subscription,
    valid_device_id,
    validate_prefix,
)

ROOT = Path(__file__).resolve().parent.parent


# --- package and errors -----------------------------------------------------


def test_package_constants():
    assert PROTOCOL_VERSION == 1
    assert DEFAULT_PREFIX == "hailong/v1"
    assert protocol.ProtocolError is ErrorsProtocolError


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (("score 6 is outside 1..4", "score"), "score: score 6 is outside 1..4"),
        (("empty payload",), "empty payload"),
        (("empty payload", None), "empty payload"),
    ],
)
def test_protocol_error_str_and_attributes(args, text):
    err = ProtocolError(*args)
    assert str(err) == text
    assert err.reason == args[0]
    assert err.field == (args[1] if len(args) > 1 else None)


def test_protocol_error_is_a_value_error_and_survives_pickling():
    err = ProtocolError("missing", "seq")
    assert isinstance(err, ValueError)
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.reason, copy.field, str(copy)) == ("missing", "seq", "seq: missing")


# --- topics -----------------------------------------------------------------


def test_topics_for_a_device():
    t = Topics("hcm-q1.c03_A")
    assert t.event == "hailong/v1/hcm-q1.c03_A/event"
    assert t.ack == "hailong/v1/hcm-q1.c03_A/ack"
    assert t.status == "hailong/v1/hcm-q1.c03_A/status"
    assert t.telemetry == "hailong/v1/hcm-q1.c03_A/telemetry"
    assert t.cmd == "hailong/v1/hcm-q1.c03_A/cmd"
    assert t.assignment == "hailong/v1/hcm-q1.c03_A/assignment"
    assert t.device_id == "hcm-q1.c03_A"
    assert t.prefix == DEFAULT_PREFIX


def test_topics_custom_prefix_and_equality():
    t = Topics("c1", prefix="test/run-7/hailong/v1")
    assert t.event == "test/run-7/hailong/v1/c1/event"
    assert t == Topics("c1", "test/run-7/hailong/v1")
    assert t != Topics("c1")
    assert len({t, Topics("c1", "test/run-7/hailong/v1")}) == 1
    assert "c1" in repr(t)


@pytest.mark.parametrize("kind", KINDS)
def test_topic_by_kind_matches_property(kind):
    t = Topics("c1")
    assert t.topic(kind) == getattr(t, kind) == f"hailong/v1/c1/{kind}"


def test_topic_by_unknown_kind():
    with pytest.raises(ProtocolError) as info:
        Topics("c1").topic("events")
    assert info.value.field == "kind"


@pytest.mark.parametrize(
    "device_id",
    ["a", "A9", "0", "c-1", "c_1", "c.1", "x" * 64, "Hcm.Q1-counter_03"],
)
def test_valid_device_ids(device_id):
    assert valid_device_id(device_id)
    assert DEVICE_ID_RE.match(device_id)
    assert Topics(device_id).device_id == device_id


@pytest.mark.parametrize(
    "device_id",
    ["", "x" * 65, "a/b", "a+", "a#", "a b", " a", "a\n", "-a", "_a", ".a", "é", "a\x00", None, 7, b"a"],
)
def test_invalid_device_ids(device_id):
    assert not valid_device_id(device_id)
    with pytest.raises(ProtocolError) as info:
        Topics(device_id)
    assert info.value.field == "device"


@pytest.mark.parametrize("prefix", ["hailong/v1", "a", "site/hcm/hailong/v1", "a b/c"])
def test_valid_prefixes(prefix):
    assert validate_prefix(prefix) == prefix


@pytest.mark.parametrize(
    ("prefix", "why"),
    [
        ("", "non-empty"),
        (None, "non-empty"),
        ("/hailong/v1", "start or end"),
        ("hailong/v1/", "start or end"),
        ("hailong/+", "wildcards"),
        ("hailong/#", "wildcards"),
        ("hailong//v1", "empty level"),
        ("hai\x00long", "NUL"),
    ],
)
def test_invalid_prefixes(prefix, why):
    with pytest.raises(ProtocolError, match=why) as info:
        validate_prefix(prefix)
    assert info.value.field == "prefix"
    with pytest.raises(ProtocolError):
        Topics("c1", prefix)
    with pytest.raises(ProtocolError):
        subscription("event", prefix)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("prefix", [DEFAULT_PREFIX, "a/b/c"])
def test_parse_topic_round_trips(kind, prefix):
    assert parse_topic(Topics("dev-1", prefix).topic(kind), prefix) == ("dev-1", kind)


@pytest.mark.parametrize(
    "topic",
    [
        "hailong/v1/c1",  # no kind
        "hailong/v1/c1/event/extra",
        "hailong/v1/c1/events",
        "hailong/v1//event",
        "hailong/v1/+/event",  # a filter, not a topic
        "hailong/v1/#",
        "hailong/v2/c1/event",
        "hailong/v10/c1/event",  # prefix must end at a level boundary
        "xhailong/v1/c1/event",
        "hailong/v1",
        "",
        "hailong/v1/a b/event",
    ],
)
def test_parse_topic_rejects(topic):
    with pytest.raises(ProtocolError):
        parse_topic(topic)


def test_parse_topic_rejects_non_string():
    with pytest.raises(ProtocolError):
        parse_topic(b"hailong/v1/c1/event")  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", KINDS)
def test_subscription(kind):
    assert subscription(kind) == f"hailong/v1/+/{kind}"
    assert subscription(kind, "x/y") == f"x/y/+/{kind}"


def test_subscription_unknown_kind():
    with pytest.raises(ProtocolError):
        subscription("+")


def test_qos_and_retain_table():
    assert set(QOS) == set(KINDS)
    assert QOS == {"event": 1, "ack": 1, "status": 1, "telemetry": 0, "cmd": 1, "assignment": 1, "request": 1}
    assert RETAINED == {"status", "assignment"}
    assert RETAINED <= set(KINDS)


# --- codec ------------------------------------------------------------------


def test_encode_is_compact_utf8_and_keeps_key_order():
    data = encode({"z": 1, "a": [1, 2], "m": {"y": None, "b": True}, "name": "Nguyễn Văn A"})
    assert data == '{"z":1,"a":[1,2],"m":{"y":null,"b":true},"name":"Nguyễn Văn A"}'.encode("utf-8")
    assert list(decode(data)) == ["z", "a", "m", "name"]


@pytest.mark.parametrize(
    "obj",
    [
        {},
        {"a": 1.5, "b": -0.0, "c": 1e-7, "d": 10**15, "e": 0.1 + 0.2},
        {"text": "Đánh giá: rất hài lòng 😀", "esc": 'quote " backslash \\ tab \t nl \n', "ctl": "\x00\x1f"},
        {"nested": {"list": [[], {}, [None, False, True]]}},
        {"tuple": (1, 2)},
    ],
)
def test_encode_decode_is_deterministic(obj):
    data = encode(obj)
    assert encode(decode(data)) == data


@pytest.mark.parametrize("payload", [b'{"a":1}', '{"a":1}', bytearray(b'{"a":1}'), memoryview(b'{"a":1}')])
def test_decode_accepts_bytes_like_and_str(payload):
    assert decode(payload) == {"a": 1}


def test_decode_tolerates_whitespace():
    assert decode(b' \n{ "a" : [ 1 , 2 ] }\r\n') == {"a": [1, 2]}


def test_decode_size_limit_is_inclusive():
    head = b'{"a":"'
    exact = head + b"x" * (MAX_PAYLOAD - len(head) - 2) + b'"}'
    assert len(exact) == MAX_PAYLOAD
    assert decode(exact)["a"].startswith("x")
    with pytest.raises(ProtocolError, match=f"{MAX_PAYLOAD + 1} bytes, over the {MAX_PAYLOAD}-byte limit"):
        decode(exact[:-2] + b'x"}')


def test_decode_size_limit_counts_utf8_bytes_of_str():
    # 30000 three-byte characters: under the limit in characters, over it in bytes.
    with pytest.raises(ProtocolError, match="over the"):
        decode('{"a":"' + "ệ" * 30000 + '"}')


def test_encode_refuses_oversized_result():
    with pytest.raises(ProtocolError, match="over the"):
        encode({"a": "x" * MAX_PAYLOAD})


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "empty payload"),
        (b"\xff\xfe{}", "not valid UTF-8: bad byte at offset 0"),
        (b'{"a":"\xc3"}', "not valid UTF-8"),
        ("{\"a\":\"\ud800\"}", "unpaired surrogate"),
        (b"{", "invalid JSON"),
        (b'{"a":1,}', "invalid JSON"),
        (b"{'a':1}", "invalid JSON"),
        (b'{"a":1} {"b":2}', "invalid JSON: Extra data"),
        (b"\xef\xbb\xbf{}", "invalid JSON"),  # a BOM is not JSON
        (b"[]", "must be a JSON object, got array"),
        (b'"s"', "must be a JSON object, got string"),
        (b"1", "must be a JSON object, got integer"),
        (b"1.5", "must be a JSON object, got number"),
        (b"null", "must be a JSON object, got null"),
        (b"true", "must be a JSON object, got boolean"),
        (b'{"a":NaN}', "NaN is not allowed"),
        (b'{"a":Infinity}', "Infinity is not allowed"),
        (b'{"a":[-Infinity]}', "-Infinity is not allowed"),
        (b"NaN", "NaN is not allowed"),
        (b'{"a":1e999}', "out of range"),
        (b'{"a":1,"a":2}', "duplicate key 'a'"),
        (b'{"o":{"k":1,"k":1}}', "duplicate key 'k'"),
        (b'{"a":' + b"1" * 5000 + b"}", "invalid JSON"),
        (b'{"a":' + b"[" * 30000 + b"]" * 30000 + b"}", "invalid JSON"),
    ],
)
def test_decode_rejects(payload, reason):
    with pytest.raises(ProtocolError, match=re.escape(reason)) as info:
        decode(payload)
    assert info.value.field is None


@pytest.mark.parametrize("payload", [None, 42, {"a": 1}])
def test_decode_rejects_non_payload_types(payload):
    with pytest.raises(ProtocolError, match="must be bytes or str"):
        decode(payload)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "obj",
    [{"a": float("nan")}, {"a": float("inf")}, {"a": object()}, {"a": "\udc00"}],
)
def test_encode_rejects_what_json_cannot_carry(obj):
    with pytest.raises(ProtocolError, match="cannot encode"):
        encode(obj)


@pytest.mark.parametrize(
    ("value", "name"),
    [(None, "null"), (True, "boolean"), (1, "integer"), (1.0, "number"), ("", "string"), ([], "array"), ({}, "object")],
)
def test_json_type(value, name):
    assert json_type(value) == name


# --- import hygiene ---------------------------------------------------------

# Modules a counter must not pay for when it only needs the wire contract.
HEAVY = {
    "paho", "gpiozero", "serial", "luma", "lgpio", "amqtt", "sqlite3", "_sqlite3", "asyncio",
    "socket", "ssl", "threading", "logging", "subprocess", "email", "http", "urllib",
    "dataclasses", "inspect", "typing", "decimal", "datetime", "pathlib",
}


def _imported_modules(code: str) -> set[str]:
    # -S: no site-packages, so the import succeeding at all proves stdlib-only;
    # -E: no PYTHON* variables that could preload anything.
    proc = subprocess.run(
        [sys.executable, "-S", "-E", "-X", "importtime", "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    modules = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            name = line.rsplit("|", 1)[1].strip()
            if name != "imported package":
                modules.add(name)
    return modules


def test_submodules_import_only_light_stdlib_modules():
    modules = _imported_modules("import protocol.events, protocol.messages, protocol.topics, protocol.codec")
    assert {"protocol", "protocol.errors", "protocol.topics", "protocol.codec", "protocol.events", "protocol.messages"} <= modules
    tops = {name.split(".")[0] for name in modules}
    assert not tops & HEAVY
    assert tops - {"protocol"} <= set(sys.stdlib_module_names)


def test_package_import_is_tiny():
    modules = _imported_modules("import protocol")
    assert {m for m in modules if m.startswith("protocol")} == {"protocol", "protocol.errors"}
    assert "json" not in modules


# --- docs/protocol.md examples ----------------------------------------------

DOC = ROOT / "docs" / "protocol.md"
VALIDATORS = {
    "event": validate_event,
    "ack": validate_ack,
    "command": validate_command,
    "status": validate_status,
    "assignment": validate_assignment,
    "telemetry": validate_telemetry,
    "request": validate_request,
}
MARKER = re.compile(r"<!--\s*example:\s*(\w+)\s*-->")


def _doc_examples() -> list[tuple[str, int, str]]:
    """(kind, line number, JSON text) for each ```json block whose preceding non-blank line is a marker."""
    lines = DOC.read_text(encoding="utf-8").splitlines()
    examples = []
    i = 0
    while i < len(lines):
        if lines[i].strip() == "```json":
            j = i - 1
            while j >= 0 and not lines[j].strip():
                j -= 1
            marker = MARKER.search(lines[j]) if j >= 0 else None
            end = lines.index("```", i + 1)
            if marker:
                examples.append((marker.group(1), i + 1, "\n".join(lines[i + 1 : end])))
            i = end
        i += 1
    return examples


def test_docs_have_examples_of_every_kind():
    examples = _doc_examples()
    assert {kind for kind, _, _ in examples} == set(VALIDATORS)
    events = [decode(text) for kind, _, text in examples if kind == "event"]
    assert {ev["type"] for ev in events} == set(EVENT_TYPES)
    assert {ev["action"] for ev in events if ev["type"] == "call"} <= set(CALL_ACTIONS)
    commands = {decode(text)["cmd"] for kind, _, text in examples if kind == "command"}
    assert commands == set(COMMANDS)


def test_every_marker_is_followed_by_a_json_block():
    text = DOC.read_text(encoding="utf-8")
    assert len(MARKER.findall(text)) == len(_doc_examples())


@pytest.mark.parametrize(
    ("kind", "line", "text"),
    [pytest.param(kind, line, text, id=f"{kind}-line{line}") for kind, line, text in _doc_examples()],
)
def test_doc_example_is_valid(kind, line, text):
    try:
        VALIDATORS[kind](decode(text))
    except ProtocolError as exc:
        pytest.fail(f"docs/protocol.md line {line}: {kind} example is invalid: {exc}")
