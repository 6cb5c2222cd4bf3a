"""Ledger events: building, validating, decoding, identity and counting."""

from __future__ import annotations

import copy

import pytest

from protocol import ProtocolError
from protocol.codec import encode
from protocol.events import (
    CALL_ACTIONS,
    EVENT_TYPES,
    LEDGER_ID_RE,
    RATING_FLAGS,
    SIGN_METHODS,
    decode_event,
    event_key,
    is_counted,
    make_event,
    validate_event,
)

LEDGER = "0123456789abcdef"
COMMON = dict(
    device="hcm-q1-c03",
    site="hcm-q1",
    counter="03",
    ledger=LEDGER,
    seq=42,
    ts=1_732_680_000_123,
    clock_ok=True,
    boot="6f1c2a7e-3d1b-4c5e-9a0b-1c2d3e4f5a6b",
    mono=812.25,
)
SPECIFIC = {
    "rating": dict(score=4, scale=4, flags=[], reason=None),
    "call": dict(action="next"),
    "signin": dict(method="badge", badge="04A1B2C3D4E5F6"),
    "signout": dict(method="central"),
    "take": dict(queue="A", priority=False, source="service", date="2026-11-30"),
}
COMMON_ORDER = ["v", "type", "device", "site", "counter", "ledger", "seq", "ts", "clock_ok", "boot", "mono", "officer", "ticket"]


def event(type_: str = "rating", **overrides):
    """A valid event of `type_` as a plain dict, with `overrides` applied (None values kept)."""
    ev = {"v": 1, "type": type_, **COMMON, "officer": "off-7", "ticket": "A012", **SPECIFIC[type_]}
    ev.update(overrides)
    return ev


def without(ev: dict, key: str) -> dict:
    ev = dict(ev)
    del ev[key]
    return ev


def rejects(ev: object, field: str | None, reason: str | None = None) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        validate_event(ev)
    assert info.value.field == field, str(info.value)
    if reason is not None:
        assert info.value.reason == reason
    return info.value


# --- valid events -----------------------------------------------------------


@pytest.mark.parametrize("type_", EVENT_TYPES)
def test_valid_event_is_returned_unchanged(type_):
    ev = event(type_)
    before = copy.deepcopy(ev)
    assert validate_event(ev) is ev
    assert ev == before


@pytest.mark.parametrize("type_", EVENT_TYPES)
def test_make_event_orders_keys_and_round_trips(type_):
    ev = make_event(type_, **COMMON, officer="off-7", ticket="A012", **SPECIFIC[type_])
    assert list(ev) == COMMON_ORDER + list(SPECIFIC[type_])
    assert ev == event(type_)
    data = encode(ev)
    assert decode_event(data) == ev
    assert list(decode_event(data)) == list(ev)
    assert encode(decode_event(data)) == data


def test_make_event_puts_type_fields_in_canonical_order_before_extras():
    ev = make_event("rating", **COMMON, zeta=1, reason="slow", flags=["repeat"], scale=5, score=2, alpha=True)
    assert list(ev) == COMMON_ORDER + ["score", "scale", "flags", "reason", "zeta", "alpha"]
    ev = make_event("signin", **COMMON, badge="ab", method="badge")
    assert list(ev)[-2:] == ["method", "badge"]


def test_make_event_rating_defaults():
    ev = make_event("rating", **COMMON, score=3, scale=3)
    assert ev["flags"] == [] and ev["reason"] is None
    assert ev["officer"] is None and ev["ticket"] is None


@pytest.mark.parametrize("given", [["chord", "repeat"], ("chord", "repeat"), {"repeat", "chord"}])
def test_make_event_normalises_flag_order(given):
    ev = make_event("rating", **COMMON, score=1, scale=5, flags=given)
    assert ev["flags"] == ["repeat", "chord"]


def test_make_event_validates():
    with pytest.raises(ProtocolError) as info:
        make_event("rating", **COMMON, score=5, scale=4)
    assert str(info.value) == "score: score 5 is outside 1..4"
    with pytest.raises(ProtocolError, match="missing"):
        make_event("call", **COMMON)
    with pytest.raises(ProtocolError):
        make_event("rating", **COMMON, score=1, scale=5, flags=["repeat", 1])


@pytest.mark.parametrize("key", ["v", "type"])
def test_make_event_refuses_reserved_fields(key):
    with pytest.raises(TypeError, match=key):
        make_event("call", **COMMON, action="next", **{key: 2})


def test_unknown_fields_are_ignored_and_preserved():
    ev = event("call", firmware_build="2025.11.27", extra={"nested": [1, 2]}, z=None)
    assert validate_event(ev) is ev
    decoded = decode_event(encode(ev))
    assert decoded["firmware_build"] == "2025.11.27"
    assert decoded["extra"] == {"nested": [1, 2]}
    assert "z" in decoded and decoded["z"] is None


def test_fields_of_other_types_are_just_unknown_fields():
    assert validate_event(event("call", score="not checked for a call"))


@pytest.mark.parametrize("scale", [3, 4, 5])
def test_every_score_of_every_scale(scale):
    for score in range(1, scale + 1):
        assert validate_event(event(scale=scale, score=score))


@pytest.mark.parametrize("flags", [[], ["repeat"], ["chord"], ["repeat", "chord"]])
def test_allowed_flags(flags):
    assert validate_event(event(flags=flags))


@pytest.mark.parametrize("action", CALL_ACTIONS)
def test_call_actions(action):
    assert validate_event(event("call", action=action))


@pytest.mark.parametrize("type_", ["signin", "signout"])
@pytest.mark.parametrize(
    "fields",
    [
        {"method": "badge", "badge": "0"},
        {"method": "badge", "badge": "aBcD" * 8},
        {"method": "central"},
        {"method": "central", "badge": "04a1"},
    ],
)
def test_sign_methods(type_, fields):
    ev = event(type_)
    ev.pop("method")
    ev.pop("badge", None)
    ev.update(fields)
    assert validate_event(ev)


@pytest.mark.parametrize(
    "overrides",
    [
        {"mono": 0},
        {"mono": 0.0},
        {"mono": 10**9},
        {"ts": 0},
        {"seq": 1},
        {"seq": 2**53 - 1},
        {"clock_ok": False},
        {"officer": None},
        {"officer": "x" * 64},
        {"ticket": None},
        {"ticket": "x" * 16},
        {"reason": "x"},
        {"reason": ("Chờ quá lâu " * 17)[:200]},  # exactly 200 characters, accents included
        {"site": "x" * 64, "counter": "y" * 64, "boot": "z" * 64},
        {"device": "a"},
    ],
)
def test_boundary_values_accepted(overrides):
    assert validate_event(event(**overrides))


# --- rejections -------------------------------------------------------------


@pytest.mark.parametrize("type_", EVENT_TYPES)
def test_every_required_field_missing(type_):
    ev = event(type_)
    required = COMMON_ORDER + [k for k in SPECIFIC[type_] if not (type_ != "rating" and k == "badge")]
    for key in required:
        rejects(without(ev, key), key, "missing")


def test_badge_required_for_badge_sign_in():
    rejects(without(event("signin"), "badge"), "badge", "missing")
    rejects(without(event("signout", method="badge", badge="ab"), "badge"), "badge", "missing")


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("seq", True, "expected integer, got boolean"),
        ("seq", False, "expected integer, got boolean"),
        ("seq", 1.0, "expected integer, got number"),
        ("seq", "1", "expected integer, got string"),
        ("ts", True, "expected integer, got boolean"),
        ("ts", 1.5, "expected integer, got number"),
        ("ts", None, "expected integer, got null"),
        ("score", True, "expected integer, got boolean"),
        ("score", 3.0, "expected integer, got number"),
        ("scale", True, "expected integer, got boolean"),
        ("v", True, "expected integer, got boolean"),
        ("v", "1", "expected integer, got string"),
        ("clock_ok", 1, "expected boolean, got integer"),
        ("clock_ok", "true", "expected boolean, got string"),
        ("clock_ok", None, "expected boolean, got null"),
        ("mono", True, "expected number, got boolean"),
        ("mono", "1.5", "expected number, got string"),
        ("mono", None, "expected number, got null"),
        ("site", 3, "expected string, got integer"),
        ("counter", None, "expected string, got null"),
        ("boot", ["b"], "expected string, got array"),
        ("officer", 7, "expected string or null, got integer"),
        ("ticket", {}, "expected string or null, got object"),
        ("reason", 0, "expected string or null, got integer"),
        ("type", 1, "expected string, got integer"),
        ("device", None, "expected string, got null"),
        ("ledger", 1, "expected string, got integer"),
        ("flags", "repeat", "expected array, got string"),
        ("flags", None, "expected array, got null"),
        ("flags", {"repeat": True}, "expected array, got object"),
    ],
)
def test_wrong_types(field, value, reason):
    rejects(event(**{field: value}), field, reason)


@pytest.mark.parametrize("scale", [3, 4, 5])
@pytest.mark.parametrize("score", [0, -1, 6, 10**6])
def test_score_outside_scale(scale, score):
    rejects(event(scale=scale, score=score), "score", f"score {score} is outside 1..{scale}")


@pytest.mark.parametrize("scale", [3, 4])
def test_score_just_above_scale(scale):
    rejects(event(scale=scale, score=scale + 1), "score", f"score {scale + 1} is outside 1..{scale}")


@pytest.mark.parametrize("scale", [0, 1, 2, 6, 10, -3])
def test_scale_outside_3_to_5(scale):
    rejects(event(scale=scale, score=1), "scale", f"scale {scale} is outside 3..5")


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("seq", 0, "seq 0 is below the minimum 1"),
        ("seq", -5, "seq -5 is below the minimum 1"),
        ("seq", 2**53, f"seq {2**53} is above the maximum {2**53 - 1}"),
        ("ts", -1, "ts -1 is below the minimum 0"),
        ("mono", -0.001, "mono -0.001 is below the minimum 0"),
        ("mono", float("inf"), "mono must be a finite number, got inf"),
        ("mono", float("nan"), "mono must be a finite number, got nan"),
        ("site", "", "site must not be empty"),
        ("counter", "", "counter must not be empty"),
        ("boot", "", "boot must not be empty"),
        ("site", "x" * 65, "site length 65 is outside 1..64"),
        ("counter", "x" * 65, "counter length 65 is outside 1..64"),
        ("boot", "x" * 65, "boot length 65 is outside 1..64"),
        ("officer", "", "officer must not be empty"),
        ("officer", "x" * 65, "officer length 65 is outside 1..64"),
        ("ticket", "", "ticket must not be empty"),
        ("ticket", "x" * 17, "ticket length 17 is outside 1..16"),
        ("reason", "", "reason must not be empty"),
        ("reason", "x" * 201, "reason length 201 is outside 1..200"),
        ("site", "bad\udc80", "site contains an unpaired surrogate"),
    ],
)
def test_out_of_range(field, value, reason):
    rejects(event(**{field: value}), field, reason)


@pytest.mark.parametrize(
    ("field", "value", "shown"),
    [
        ("officer", "off\x017", "U+0001 at 3"),
        ("officer", "\x00", "U+0000 at 0"),
        ("reason", "Chờ lâu\n", "U+000A at 7"),
        ("reason", "tab\there", "U+0009 at 3"),
        ("site", "hcm\u2028q1", "U+2028 at 3"),
        ("counter", "03\x7f", "U+007F at 2"),
        ("ticket", "A\x85", "U+0085 at 1"),
        ("boot", "b\u2029", "U+2029 at 1"),
    ],
)
def test_text_with_control_characters_is_refused(field, value, shown):
    # Stored events never change, so a name that breaks a report must be stopped on the wire.
    rejects(event(**{field: value}), field, f"{field} contains a control character ({shown})")
    rejects(decode_event(encode(event())) | {field: value}, field)


def test_text_may_hold_any_printable_unicode():
    ev = event(officer="Nguyễn Thị Lan 😀", reason="Chờ lâu\u00a0— quá", site="Hà Nội")
    assert validate_event(ev) is ev


@pytest.mark.parametrize(
    "ledger",
    ["", "0123456789ABCDEF", "0123456789abcde", "0123456789abcdef0", "0123456789abcdeg", " 123456789abcdef",
     "0123456789abcdef\n", "0x23456789abcdef"],
)
def test_bad_ledger_id(ledger):
    assert not LEDGER_ID_RE.match(ledger)
    err = rejects(event(ledger=ledger), "ledger")
    assert "16 lowercase hex digits" in err.reason


@pytest.mark.parametrize("device", ["", "a/b", "a+b", "#", "a b", "-a", "x" * 65])
def test_bad_device_id(device):
    err = rejects(event(device=device), "device")
    assert "device id" in err.reason


@pytest.mark.parametrize(
    ("flags", "reason"),
    [
        (["again"], "flags 'again' is not one of repeat, chord"),
        (["Repeat"], "flags 'Repeat' is not one of repeat, chord"),
        ([None], "expected string, got null"),
        ([1], "expected string, got integer"),
        (["repeat", "repeat"], "flags ['repeat', 'repeat'] has duplicates"),
        (["chord", "chord"], "flags ['chord', 'chord'] has duplicates"),
        (["chord", "repeat"], "flags ['chord', 'repeat'] must be in the order repeat, chord"),
        (["repeat", "chord", "repeat"], "flags ['repeat', 'chord', 'repeat'] has duplicates"),
    ],
)
def test_bad_flags(flags, reason):
    rejects(event(flags=flags), "flags", reason)


@pytest.mark.parametrize("v", [2, 3, 99])
def test_future_version_rejected_before_anything_else(v):
    # Even a v2 event missing v1 fields reports the version, which is the real problem.
    rejects({"v": v, "type": "something-new"}, "v", f"unsupported version {v}")


@pytest.mark.parametrize("v", [0, -1])
def test_past_versions_rejected(v):
    rejects(event(v=v), "v", f"unsupported version {v}")


@pytest.mark.parametrize("type_", ["", "Rating", "ratings", "click"])
def test_unknown_event_type(type_):
    err = rejects(event(type=type_), "type")
    assert "is not one of rating, call, signin, signout, take" in err.reason


@pytest.mark.parametrize("action", ["", "NEXT", "skip"])
def test_bad_call_action(action):
    rejects(event("call", action=action), "action", f"action {action!r} is not one of next, recall, close, noshow")


@pytest.mark.parametrize("method", ["", "nfc", "Badge"])
def test_bad_sign_method(method):
    rejects(event("signin", method=method), "method", f"method {method!r} is not one of badge, central")


@pytest.mark.parametrize("badge", ["", "xyz", "04:a1", "0" * 33, "04a1 "])
def test_bad_badge(badge):
    rejects(event("signin", badge=badge), "badge", f"badge {badge!r} is not 1-32 hex digits")


@pytest.mark.parametrize("badge", [None, 1234])
def test_badge_must_be_string_when_present(badge):
    rejects(event("signout", method="central", badge=badge), "badge")


@pytest.mark.parametrize("obj", [None, [], "event", 1])
def test_event_must_be_an_object(obj):
    with pytest.raises(ProtocolError, match="event must be a JSON object"):
        validate_event(obj)


def test_decode_event_reports_codec_errors():
    with pytest.raises(ProtocolError, match="NaN"):
        decode_event(b'{"v":1,"mono":NaN}')
    with pytest.raises(ProtocolError, match="got array"):
        decode_event(b"[]")


def test_decode_event_validates():
    with pytest.raises(ProtocolError) as info:
        decode_event(encode(event(seq=True)))
    assert info.value.field == "seq"


# --- identity and counting ---------------------------------------------------


def test_event_key():
    assert event_key(event()) == ("hcm-q1-c03", LEDGER, 42)
    assert event_key(event("call", seq=7)) == ("hcm-q1-c03", LEDGER, 7)


def test_event_key_survives_the_wire():
    ev = event()
    assert event_key(decode_event(encode(ev))) == event_key(ev)


@pytest.mark.parametrize(
    ("ev", "counted"),
    [
        (event(), True),
        (event(flags=["repeat"]), False),
        (event(flags=["chord"]), False),
        (event(flags=["repeat", "chord"]), False),
        (event(reason="slow"), True),
        (event("call"), False),
        (event("signin"), False),
        (event("signout"), False),
        (event("take"), False),
    ],
)
def test_is_counted(ev, counted):
    assert is_counted(ev) is counted


def test_constants():
    assert EVENT_TYPES == ("rating", "call", "signin", "signout", "take")
    assert RATING_FLAGS == ("repeat", "chord")
    assert CALL_ACTIONS == ("next", "recall", "close", "noshow")
    assert SIGN_METHODS == ("badge", "central")


# --- take (the queue, issue 13) ---------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"ticket": "A001"},
        {"ticket": "ZZ999"},
        {"priority": True},
        {"source": "block"},
        {"queue": "dat-dai_2"},
        {"queue": "x" * 16},
        {"date": "2028-02-29"},
    ],
)
def test_take_accepts(overrides):
    assert validate_event(event("take", **overrides))


@pytest.mark.parametrize(
    ("overrides", "field", "reason"),
    [
        ({"ticket": None}, "ticket", "expected string, got null"),
        ({"ticket": "A12"}, "ticket", None),
        ({"ticket": "a012"}, "ticket", None),
        ({"ticket": "ABC012"}, "ticket", None),
        ({"ticket": "A000"}, "ticket", "ticket 'A000' has number 0; numbers run 001-999"),
        ({"ticket": "A1000"}, "ticket", None),
        ({"queue": ""}, "queue", None),
        ({"queue": "x" * 17}, "queue", None),
        ({"queue": "a b"}, "queue", None),
        ({"queue": 1}, "queue", "expected string, got integer"),
        ({"priority": "yes"}, "priority", "expected boolean, got string"),
        ({"priority": 1}, "priority", "expected boolean, got integer"),
        ({"source": "kiosk"}, "source", "source 'kiosk' is not one of service, block"),
        ({"date": "2026-02-29"}, "date", "date '2026-02-29' is not a calendar date from 2000 on"),
        ({"date": "2026-13-01"}, "date", None),
        ({"date": "2026-11-31"}, "date", None),
        ({"date": "1999-12-31"}, "date", None),
        ({"date": "2026-1-30"}, "date", "date '2026-1-30' is not a date YYYY-MM-DD"),
        ({"date": 20261130}, "date", "expected string, got integer"),
    ],
)
def test_take_rejects(overrides, field, reason):
    rejects(event("take", **overrides), field, reason)


def test_make_take_orders_its_fields():
    ev = make_event("take", **COMMON, ticket="B014", date="2026-11-30", source="block", priority=True, queue="B")
    assert list(ev)[len(COMMON_ORDER):] == ["queue", "priority", "source", "date"]
    assert ev["ticket"] == "B014"
