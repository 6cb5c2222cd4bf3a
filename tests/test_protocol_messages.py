"""Non-event messages: ack, status, telemetry, officer, cmd, assignment."""

from __future__ import annotations

import copy

import pytest

from protocol import ProtocolError
from protocol.codec import encode
from protocol.messages import (
    COMMANDS,
    decode_ack,
    decode_assignment,
    decode_command,
    decode_status,
    decode_telemetry,
    make_ack,
    make_assignment,
    make_command,
    make_status,
    make_telemetry,
    validate_ack,
    validate_assignment,
    validate_command,
    validate_officer,
    validate_status,
    validate_telemetry,
)

LEDGER = "fedcba9876543210"
OFFICER = {"id": "off-7", "name": "Nguyễn Thị Lan", "code": "NTL"}


def fails(fn, obj, field, reason=None) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        fn(obj)
    assert info.value.field == field, str(info.value)
    if reason is not None:
        assert info.value.reason == reason
    return info.value


# --- ack ----------------------------------------------------------------------


def test_make_ack_omits_empty_rejected_but_validate_adds_it():
    ack = make_ack(LEDGER, [3, 1, 2])
    assert ack == {"ledger": LEDGER, "seqs": [3, 1, 2]}
    assert validate_ack(ack) == {"ledger": LEDGER, "seqs": [3, 1, 2], "rejected": []}
    assert encode(make_ack(LEDGER, (5,))) == b'{"ledger":"fedcba9876543210","seqs":[5]}'


def test_make_ack_with_rejections_from_dicts_or_pairs():
    a = make_ack(LEDGER, range(1, 3), [{"seq": 9, "reason": "score: missing"}])
    b = make_ack(LEDGER, [1, 2], [(9, "score: missing")])
    assert a == b == {"ledger": LEDGER, "seqs": [1, 2], "rejected": [{"seq": 9, "reason": "score: missing"}]}
    assert list(a) == ["ledger", "seqs", "rejected"]


def test_make_ack_cuts_long_reasons():
    ack = make_ack(LEDGER, [], [(4, "x" * 1000)])
    reason = ack["rejected"][0]["reason"]
    assert len(reason) == 200 and reason.endswith("...")


def test_make_ack_replaces_control_characters_in_reasons():
    # The reason is the service's own exception text; it must never stop the ack.
    ack = make_ack(LEDGER, [], [(4, "officer: bad\x01id\n\udc80")])
    assert ack["rejected"][0]["reason"] == "officer: bad\ufffdid\ufffd\ufffd"
    assert decode_ack(encode(ack)) == ack


def test_ack_round_trip():
    ack = make_ack(LEDGER, [1, 2, 3], [(4, "ledger: missing")])
    assert decode_ack(encode(ack)) == ack


def test_validate_ack_does_not_mutate_input():
    raw = {"ledger": LEDGER, "seqs": [1]}
    out = validate_ack(raw)
    assert out == {"ledger": LEDGER, "seqs": [1], "rejected": []}
    assert raw == {"ledger": LEDGER, "seqs": [1]}
    full = {"ledger": LEDGER, "seqs": [1], "rejected": []}
    assert validate_ack(full) is full


def test_ack_keeps_unknown_fields_and_allows_repeats():
    ack = decode_ack(b'{"ledger":"fedcba9876543210","seqs":[1,1,2],"server":"central-2"}')
    assert ack["server"] == "central-2"
    assert ack["seqs"] == [1, 1, 2]


@pytest.mark.parametrize(
    ("obj", "field", "reason"),
    [
        ({"seqs": [1]}, "ledger", "missing"),
        ({"ledger": LEDGER}, "seqs", "missing"),
        ({"ledger": "ABC", "seqs": [1]}, "ledger", None),
        ({"ledger": LEDGER, "seqs": 1}, "seqs", "expected array, got integer"),
        ({"ledger": LEDGER, "seqs": [1, True]}, "seqs[1]", "expected integer, got boolean"),
        ({"ledger": LEDGER, "seqs": [0]}, "seqs[0]", "seqs[0] 0 is below the minimum 1"),
        ({"ledger": LEDGER, "seqs": ["1"]}, "seqs[0]", "expected integer, got string"),
        ({"ledger": LEDGER, "seqs": [1.0]}, "seqs[0]", "expected integer, got number"),
        ({"ledger": LEDGER, "seqs": [], "rejected": None}, "rejected", "expected array, got null"),
        ({"ledger": LEDGER, "seqs": [], "rejected": [5]}, "rejected[0]", "expected object, got integer"),
        ({"ledger": LEDGER, "seqs": [], "rejected": [{"reason": "x"}]}, "rejected[0].seq", "missing"),
        ({"ledger": LEDGER, "seqs": [], "rejected": [{"seq": 1}]}, "rejected[0].reason", "missing"),
        ({"ledger": LEDGER, "seqs": [], "rejected": [{"seq": True, "reason": "x"}]}, "rejected[0].seq", None),
        ({"ledger": LEDGER, "seqs": [], "rejected": [{"seq": 1, "reason": ""}]}, "rejected[0].reason", None),
        ({"ledger": LEDGER, "seqs": [], "rejected": [{"seq": 1, "reason": "x" * 201}]}, "rejected[0].reason", None),
        ({"ledger": LEDGER, "seqs": [], "rejected": [{"seq": 1, "reason": "a\x00"}]}, "rejected[0].reason",
         "reason contains a control character (U+0000 at 1)"),
    ],
)
def test_bad_acks(obj, field, reason):
    fails(validate_ack, obj, field, reason)


@pytest.mark.parametrize("obj", [None, [], "ack"])
def test_ack_must_be_object(obj):
    with pytest.raises(ProtocolError, match="ack must be a JSON object"):
        validate_ack(obj)


# --- status -------------------------------------------------------------------


def test_will_is_exactly_online_false():
    assert make_status(False) == {"online": False}
    assert encode(make_status(False)) == b'{"online":false}'
    assert decode_status(b'{"online":false}') == {"online": False}


def test_online_status_round_trip():
    status = make_status(True, fw="1.4.2", ledger=LEDGER, ts=1_732_680_000_000)
    assert list(status) == ["online", "fw", "ledger", "ts"]
    assert decode_status(encode(status)) == status


def test_offline_status_may_carry_details():
    status = make_status(False, fw="1.4.2", ts=5)
    assert status == {"online": False, "fw": "1.4.2", "ts": 5}
    assert validate_status({"online": False, "reason": "shutdown"})


@pytest.mark.parametrize(
    ("obj", "field", "reason"),
    [
        ({}, "online", "missing"),
        ({"online": 1}, "online", "expected boolean, got integer"),
        ({"online": "false"}, "online", "expected boolean, got string"),
        ({"online": True, "ledger": LEDGER, "ts": 1}, "fw", "missing"),
        ({"online": True, "fw": "1", "ts": 1}, "ledger", "missing"),
        ({"online": True, "fw": "1", "ledger": LEDGER}, "ts", "missing"),
        ({"online": True, "fw": "", "ledger": LEDGER, "ts": 1}, "fw", "fw must not be empty"),
        ({"online": True, "fw": "1", "ledger": LEDGER, "ts": True}, "ts", "expected integer, got boolean"),
        ({"online": True, "fw": "1", "ledger": LEDGER, "ts": -1}, "ts", "ts -1 is below the minimum 0"),
        ({"online": False, "ledger": "nope"}, "ledger", None),
        ({"online": False, "fw": 2}, "fw", "expected string, got integer"),
        ({"online": True, "fw": "1.4\x00", "ledger": LEDGER, "ts": 1}, "fw", "fw contains a control character (U+0000 at 3)"),
    ],
)
def test_bad_status(obj, field, reason):
    fails(validate_status, obj, field, reason)


def test_make_status_online_needs_details():
    with pytest.raises(ProtocolError) as info:
        make_status(True, fw="1.0")
    assert info.value.field == "ledger"


# --- telemetry ----------------------------------------------------------------

TELEMETRY = dict(
    uptime_s=3600.5,
    backlog=0,
    clock_ok=True,
    fw="1.4.2",
    disk_free_mb=2048,
    cpu_temp_c=51.2,
    ts=1_732_680_000_000,
    ledger=LEDGER,
)


def test_make_telemetry_orders_fields_then_extras():
    t = make_telemetry(wifi_rssi=-61, **dict(reversed(list(TELEMETRY.items()))))
    assert list(t) == list(TELEMETRY) + ["wifi_rssi"]
    assert decode_telemetry(encode(t)) == t


@pytest.mark.parametrize("temp", [None, -10, 0, 85.5])
def test_telemetry_cpu_temp(temp):
    assert validate_telemetry({**TELEMETRY, "cpu_temp_c": temp})


@pytest.mark.parametrize("key", list(TELEMETRY))
def test_telemetry_missing_field(key):
    t = dict(TELEMETRY)
    del t[key]
    fails(validate_telemetry, t, key, "missing")


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("uptime_s", -1, "uptime_s -1 is below the minimum 0"),
        ("uptime_s", True, "expected number, got boolean"),
        ("backlog", 1.5, "expected integer, got number"),
        ("backlog", True, "expected integer, got boolean"),
        ("backlog", -1, "backlog -1 is below the minimum 0"),
        ("clock_ok", 0, "expected boolean, got integer"),
        ("fw", None, "expected string, got null"),
        ("disk_free_mb", "2G", "expected number, got string"),
        ("cpu_temp_c", "hot", "expected number, got string"),
        ("cpu_temp_c", float("nan"), "cpu_temp_c must be a finite number, got nan"),
        ("ts", 1.0, "expected integer, got number"),
        ("ledger", "0123", None),
    ],
)
def test_bad_telemetry(field, value, reason):
    fails(validate_telemetry, {**TELEMETRY, field: value}, field, reason)


@pytest.mark.parametrize("state", ["ok", "paper_out", "missing", "error"])
def test_kiosk_telemetry_printer(state):
    assert validate_telemetry({**TELEMETRY, "printer": state})["printer"] == state


@pytest.mark.parametrize(("value", "reason"), [("jammed", "printer 'jammed' is not one of ok, paper_out, missing, error"),
                                               (None, "expected string, got null")])
def test_bad_kiosk_telemetry_printer(value, reason):
    fails(validate_telemetry, {**TELEMETRY, "printer": value}, "printer", reason)


# --- officer ------------------------------------------------------------------


@pytest.mark.parametrize(
    "officer",
    [None, OFFICER, {"id": "x" * 64, "name": "", "code": "x" * 8}, {"id": "1", "name": "n" * 100, "code": "1", "extra": 1}],
)
def test_valid_officers(officer):
    assert validate_officer(officer) is officer


@pytest.mark.parametrize(
    ("officer", "field", "reason"),
    [
        ("off-7", "officer", "expected object or null, got string"),
        ([], "officer", "expected object or null, got array"),
        ({"name": "A", "code": "A"}, "officer.id", "missing"),
        ({"id": "1", "code": "A"}, "officer.name", "missing"),
        ({"id": "1", "name": "A"}, "officer.code", "missing"),
        ({"id": "", "name": "A", "code": "A"}, "officer.id", "id must not be empty"),
        ({"id": "x" * 65, "name": "A", "code": "A"}, "officer.id", "id length 65 is outside 1..64"),
        ({"id": "1", "name": "n" * 101, "code": "A"}, "officer.name", "name length 101 is outside 0..100"),
        ({"id": "1", "name": None, "code": "A"}, "officer.name", "expected string, got null"),
        ({"id": "1", "name": "A", "code": ""}, "officer.code", "code must not be empty"),
        ({"id": "1", "name": "A", "code": "123456789"}, "officer.code", "code length 9 is outside 1..8"),
        ({"id": 1, "name": "A", "code": "A"}, "officer.id", "expected string, got integer"),
        ({"id": "off\x1b7", "name": "A", "code": "A"}, "officer.id", "id contains a control character (U+001B at 3)"),
        ({"id": "1", "name": "Lan\r\n", "code": "A"}, "officer.name",
         "name contains a control character (U+000D at 3)"),
        ({"id": "1", "name": "A", "code": "\u2028"}, "officer.code", "code contains a control character (U+2028 at 0)"),
    ],
)
def test_bad_officers(officer, field, reason):
    fails(validate_officer, officer, field, reason)
    fails(validate_assignment, {"officer": officer}, field, reason)
    fails(validate_command, {"cmd": "officer", "officer": officer}, field, reason)


# --- cmd ----------------------------------------------------------------------

NUMBER = {"cmd": "number", "req": "0123abcd", "queue": "A", "ticket": "A012", "ahead": 3, "date": "2026-11-30"}
BLOCK = {"cmd": "block", "queue": "A", "prefix": "A", "date": "2026-11-30", "first": 41, "last": 50}

GOOD_COMMANDS = [
    {"cmd": "display", "ticket": "A012"},
    {"cmd": "display", "ticket": "x" * 16},
    {"cmd": "ticket", "ticket": "B7", "seq": 41},
    {"cmd": "officer", "officer": OFFICER},
    {"cmd": "officer", "officer": None},
    {"cmd": "identify", "seconds": 1},
    {"cmd": "identify", "seconds": 600},
    {"cmd": "identify", "seconds": 2.5},
    {"cmd": "ticket", "ticket": "----", "seq": 9, "idle": True},
    {"cmd": "ticket", "ticket": "A012", "seq": 9, "idle": False},
    {"cmd": "number", "req": "0123abcd", "queue": "A", "ticket": "A012", "ahead": 3, "date": "2026-11-30"},
    {"cmd": "number", "req": "f" * 32, "queue": "dat-dai", "ticket": "DD999", "ahead": 0, "date": "2026-11-30"},
    {"cmd": "number", "req": "0123abcd", "error": "unknown queue 'Z'"},
    {"cmd": "block", "queue": "A", "prefix": "A", "date": "2026-11-30", "first": 41, "last": 50},
    {"cmd": "block", "req": "0123abcd", "queue": "A", "prefix": "AB", "date": "2026-11-30", "first": 999, "last": 999},
    {"cmd": "update", "version": "0.2.0", "url": "https://svc/api/v1/releases/0.2.0/3.11-aarch64/",
     "signature": '{"format": 1, "key_id": "ab", "signature": "AA=="}'},
    {"cmd": "update", "version": "1", "url": "http://x/", "signature": "s", "allow_downgrade": True},
]


@pytest.mark.parametrize("cmd", GOOD_COMMANDS)
def test_valid_commands_round_trip(cmd):
    assert validate_command(cmd) is cmd
    assert decode_command(encode(cmd)) == cmd


def test_every_command_is_covered():
    assert {c["cmd"] for c in GOOD_COMMANDS} == set(COMMANDS)


def test_make_command():
    assert make_command("ticket", ticket="A012", seq=3) == {"cmd": "ticket", "ticket": "A012", "seq": 3}
    with pytest.raises(ProtocolError):
        make_command("ticket", ticket="A012")


def test_command_keeps_unknown_fields():
    cmd = decode_command(b'{"cmd":"display","ticket":"A1","color":"red"}')
    assert cmd["color"] == "red"


@pytest.mark.parametrize(
    ("obj", "field", "reason"),
    [
        ({}, "cmd", "missing"),
        ({"cmd": None}, "cmd", "expected string, got null"),
        ({"cmd": 1}, "cmd", "expected string, got integer"),
        ({"cmd": "reboot"}, "cmd", "unknown command 'reboot', expected one of display, ticket, officer, identify, number, block, update"),
        ({"cmd": "Display", "ticket": "A"}, "cmd", None),
        ({"cmd": "display"}, "ticket", "missing"),
        ({"cmd": "display", "ticket": ""}, "ticket", "ticket must not be empty"),
        ({"cmd": "display", "ticket": "x" * 17}, "ticket", "ticket length 17 is outside 1..16"),
        ({"cmd": "display", "ticket": 12}, "ticket", "expected string, got integer"),
        ({"cmd": "display", "ticket": "A\x0c1"}, "ticket", "ticket contains a control character (U+000C at 1)"),
        ({"cmd": "ticket", "ticket": "A"}, "seq", "missing"),
        ({"cmd": "ticket", "seq": 1}, "ticket", "missing"),
        ({"cmd": "ticket", "ticket": "A", "seq": True}, "seq", "expected integer, got boolean"),
        ({"cmd": "ticket", "ticket": "A", "seq": 0}, "seq", "seq 0 is below the minimum 1"),
        ({"cmd": "officer"}, "officer", "missing"),
        ({"cmd": "identify"}, "seconds", "missing"),
        ({"cmd": "identify", "seconds": 0}, "seconds", "seconds 0 is outside 1..600"),
        ({"cmd": "identify", "seconds": 0.5}, "seconds", "seconds 0.5 is outside 1..600"),
        ({"cmd": "identify", "seconds": 601}, "seconds", "seconds 601 is outside 1..600"),
        ({"cmd": "identify", "seconds": True}, "seconds", "expected number, got boolean"),
        ({"cmd": "identify", "seconds": "5"}, "seconds", "expected number, got string"),
        ({"cmd": "ticket", "ticket": "----", "seq": 1, "idle": 1}, "idle", "expected boolean, got integer"),
        ({**NUMBER, "req": "0123abc"}, "req", "req '0123abc' is not 8-32 lowercase hex digits"),
        ({**NUMBER, "req": "0123ABCD"}, "req", None),
        ({"cmd": "number", "queue": "A"}, "req", "missing"),
        ({**NUMBER, "ticket": "A0012"}, "ticket", None),
        ({**NUMBER, "ahead": -1}, "ahead", "ahead -1 is below the minimum 0"),
        ({**NUMBER, "date": "30/11/2026"}, "date", None),
        ({**NUMBER, "queue": "A/B"}, "queue", None),
        ({"cmd": "number", "req": "0123abcd", "error": ""}, "error", "error must not be empty"),
        ({**BLOCK, "first": 0}, "first", "first 0 is outside 1..999"),
        ({**BLOCK, "last": 1000}, "last", "last 1000 is outside 41..999"),
        ({**BLOCK, "last": 40}, "last", "last 40 is outside 41..999"),
        ({**BLOCK, "prefix": "a"}, "prefix", "prefix 'a' is not one or two capital letters A-Z"),
        ({**BLOCK, "prefix": "ABC"}, "prefix", None),
        ({**BLOCK, "req": "x"}, "req", None),
        ({"cmd": "block", "queue": "A", "prefix": "A", "first": 1, "last": 2}, "date", "missing"),
        ({"cmd": "update", "url": "http://x/", "signature": "s"}, "version", "missing"),
        ({"cmd": "update", "version": "1.0-rc1", "url": "http://x/", "signature": "s"}, "version",
         "version '1.0-rc1' is not numbers separated by dots"),
        ({"cmd": "update", "version": "1.0", "url": "file:///etc/", "signature": "s"}, "url",
         "url 'file:///etc/' is not http(s)"),
        ({"cmd": "update", "version": "1.0", "url": "http://x/"}, "signature", "missing"),
        ({"cmd": "update", "version": "1.0", "url": "http://x/", "signature": "s", "allow_downgrade": 1},
         "allow_downgrade", "expected boolean, got integer"),
    ],
)
def test_bad_commands(obj, field, reason):
    fails(validate_command, obj, field, reason)


def test_decode_command_rejects_codec_errors():
    with pytest.raises(ProtocolError, match="must be a JSON object"):
        decode_command(b'"display"')
    with pytest.raises(ProtocolError, match="Infinity"):
        decode_command(b'{"cmd":"identify","seconds":Infinity}')


# --- assignment ---------------------------------------------------------------


def test_make_assignment():
    assert make_assignment(OFFICER) == {"officer": OFFICER}
    assert make_assignment(None) == {"officer": None}
    assert make_assignment(OFFICER, ts=5) == {"officer": OFFICER, "ts": 5}


def test_make_assignment_copies_the_officer():
    officer = copy.deepcopy(OFFICER)
    a = make_assignment(officer)
    officer["name"] = "changed"
    assert a["officer"]["name"] == OFFICER["name"]


@pytest.mark.parametrize("payload", [b"", "", bytearray(), memoryview(b"")])
def test_empty_retained_payload_means_nobody(payload):
    assert decode_assignment(payload) == {"officer": None}


def test_assignment_round_trip():
    a = make_assignment(OFFICER, ts=1_732_680_000_000)
    assert decode_assignment(encode(a)) == a


@pytest.mark.parametrize(
    ("obj", "field", "reason"),
    [
        ({}, "officer", "missing"),
        ({"officer": None, "ts": -1}, "ts", "ts -1 is below the minimum 0"),
        ({"officer": None, "ts": "now"}, "ts", "expected integer, got string"),
        ({"officer": None, "ts": None}, "ts", "expected integer, got null"),
    ],
)
def test_bad_assignments(obj, field, reason):
    fails(validate_assignment, obj, field, reason)


def test_decode_assignment_rejects_garbage():
    with pytest.raises(ProtocolError):
        decode_assignment(b" ")
    with pytest.raises(ProtocolError):
        decode_assignment(b"null")
