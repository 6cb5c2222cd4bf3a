"""Property-based tests of the wire contract: whatever arrives, the answer is a value or a ProtocolError.

The codec, the events and every message kind are fed random and mutated input (hypothesis,
derandomized: see tests/fuzz_strategies.py). A crash with any other exception would stop
the service's ingest worker or a counter's MQTT loop on one hostile payload.
"""
from __future__ import annotations

import json
import math

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from protocol import ProtocolError
from protocol import messages as msg
from protocol.codec import MAX_INT, MAX_PAYLOAD, decode, encode
from protocol.events import decode_event, event_key, make_event, validate_event
from tests.fuzz_strategies import (
    event_args, fuzz_settings, json_objects, json_text, json_values, ledgers, seqs, short_text, stamps,
    weird_values, wire_chars,
)


def plain(value) -> bool:
    """Whether a decoded value holds only what JSON can say: no NaN or infinity, exact ints, str keys."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(isinstance(k, str) for k in value) and all(plain(v) for v in value.values())
    if isinstance(value, list):
        return all(plain(v) for v in value)
    return value is None or isinstance(value, (bool, int, str))


def decodes_or_refuses(decoder, payload):
    """decoder(payload), or None if it refused with a ProtocolError; anything else fails the test."""
    try:
        return decoder(payload)
    except ProtocolError as e:
        assert e.reason and isinstance(e.reason, str)
        return None


# ----- codec ---------------------------------------------------------------------------------------


@fuzz_settings(200)
@given(json_objects)
def test_codec_round_trips_every_json_object_with_its_key_order(obj):
    try:
        data = encode(obj)
    except ProtocolError:
        return  # an int too long for JSON, or over the size cap: refused at the sender
    assert len(data) <= MAX_PAYLOAD
    back = decode(data)
    assert back == obj and encode(back) == data  # equal bytes: the same key order


@fuzz_settings(400)
@given(st.binary(max_size=300))
def test_codec_decodes_arbitrary_bytes_or_refuses_them(data):
    value = decodes_or_refuses(decode, data)
    assert value is None or (isinstance(value, dict) and plain(value))


@fuzz_settings(200)
@given(st.text(max_size=200))
def test_codec_decodes_arbitrary_text_or_refuses_it(text):
    value = decodes_or_refuses(decode, text)  # str input: lone surrogates included
    assert value is None or (isinstance(value, dict) and plain(value))


# Ways to break a valid payload: each must be refused, whatever object it lands in.
BREAKERS = {
    "invalid UTF-8": lambda data, i: data[:i] + b"\xff\xfe" + data[i:],
    "truncated": lambda data, i: data[: min(i, len(data) - 1)],
    "NaN": lambda data, i: data[:-1] + b',"zz":NaN}',
    "Infinity": lambda data, i: data[:-1] + b',"zz":-Infinity}',
    "overflowing float": lambda data, i: data[:-1] + b',"zz":1e999}',
    "int of 5000 digits": lambda data, i: data[:-1] + b',"zz":' + b"9" * 5000 + b"}",
    "deep nesting": lambda data, i: data[:-1] + b',"zz":' + b"[" * 20_000 + b"]" * 20_000 + b"}",
    "duplicate key": lambda data, i: data[:-1] + b',"zz":1,"zz":1}',
    "over the size cap": lambda data, i: data[:-1] + b',"zz":"' + b"x" * MAX_PAYLOAD + b'"}',
    "not an object": lambda data, i: b"[" + data + b"]",
    "trailing garbage": lambda data, i: data + b"}",
}


@fuzz_settings(150)
@given(json_objects, st.sampled_from(sorted(BREAKERS)), st.integers(min_value=0, max_value=10_000))
def test_codec_refuses_every_kind_of_broken_payload(obj, breaker, where):
    try:
        data = encode(obj)
    except ProtocolError:
        return
    broken = BREAKERS[breaker](data, where % (len(data) + 1))
    assume(broken != data)
    with pytest.raises(ProtocolError):
        decode(broken)


@fuzz_settings(100)
@given(json_values)
def test_codec_encodes_a_value_or_refuses_it(value):
    try:
        data = encode(value)
    except ProtocolError:
        return
    # What the sender managed to encode, the receiver reads back (as an object, or refuses a non-object).
    assert json.loads(data) == value


# ----- events --------------------------------------------------------------------------------------


@fuzz_settings(300)
@given(event_args())
def test_every_made_event_decodes_back_to_itself(args):
    kind, kw = args
    ev = make_event(kind, **kw)
    data = encode(ev)
    assert decode_event(data) == ev
    assert event_key(decode_event(data)) == (kw["device"], kw["ledger"], kw["seq"])


@fuzz_settings(150)
@given(json_objects)
def test_decode_event_of_any_json_object_is_an_event_or_a_protocol_error(obj):
    try:
        data = encode(obj)
    except ProtocolError:
        return
    decodes_or_refuses(decode_event, data)


def _mutated(ev: dict, field: str, value, drop: bool) -> dict:
    out = dict(ev)
    if drop:
        out.pop(field, None)
    else:
        out[field] = value
    return out


@fuzz_settings(600)
@given(event_args(), st.data())
def test_an_event_with_one_field_changed_is_valid_or_refused_naming_a_field(args, data):
    kind, kw = args
    ev = make_event(kind, **kw)
    field = data.draw(st.sampled_from(sorted(ev) + ["badge", "extra"]), label="field")
    mutated = _mutated(ev, field, data.draw(weird_values, label="value"), data.draw(st.booleans(), label="drop"))
    try:
        payload = encode(mutated)
    except ProtocolError:
        return
    try:
        got = decode_event(payload)
    except ProtocolError as e:
        # A field error names the field; only the whole payload (not an object) has none.
        assert e.field is not None
        return
    assert got == mutated


# Fields whose JSON type never depends on another field: the wrong type is refused by name.
TYPED = {"seq": "integer", "ts": "integer", "clock_ok": "boolean", "mono": "number", "site": "string",
         "counter": "string", "boot": "string", "ledger": "string", "device": "string"}


@fuzz_settings(200)
@given(event_args(), st.sampled_from(sorted(TYPED)), json_values)
def test_a_wrongly_typed_field_is_refused_by_its_name(args, field, value):
    kind, kw = args
    ev = make_event(kind, **kw)
    expected = TYPED[field]
    if expected == "integer":
        assume(not isinstance(value, int) or isinstance(value, bool))
    elif expected == "number":
        assume(not isinstance(value, (int, float)) or isinstance(value, bool))
    elif expected == "boolean":
        assume(not isinstance(value, bool))
    else:
        assume(not isinstance(value, str))
    with pytest.raises(ProtocolError) as refused:
        validate_event({**ev, field: value})
    assert refused.value.field == field


# ----- messages ------------------------------------------------------------------------------------

DECODERS = [msg.decode_ack, msg.decode_status, msg.decode_telemetry, msg.decode_command, msg.decode_assignment]


@fuzz_settings(150)
@given(st.sampled_from(DECODERS), json_objects)
def test_every_message_decoder_answers_any_json_object_with_a_value_or_a_protocol_error(decoder, obj):
    try:
        data = encode(obj)
    except ProtocolError:
        return
    decodes_or_refuses(decoder, data)


@fuzz_settings(300)
@given(st.sampled_from(DECODERS), st.binary(max_size=200))
def test_every_message_decoder_answers_arbitrary_bytes_with_a_value_or_a_protocol_error(decoder, data):
    decodes_or_refuses(decoder, data)


# Valid messages of every kind, with a hostile field or two slipped in.
officers = st.fixed_dictionaries({
    "id": short_text,
    "name": st.text(wire_chars, max_size=100),
    "code": st.text(wire_chars, min_size=1, max_size=8),
})
reasons = st.text(wire_chars, min_size=1, max_size=400)

made_messages = st.one_of(
    st.builds(lambda l, s, r: (msg.decode_ack, msg.make_ack(l, s, r)), ledgers, st.lists(seqs, max_size=5),
              st.lists(st.tuples(seqs, reasons), max_size=3)),
    st.builds(lambda fw, l, ts: (msg.decode_status, msg.make_status(True, fw, l, ts)), short_text, ledgers, stamps),
    st.builds(lambda: (msg.decode_status, msg.make_status(False))),
    st.builds(lambda up, b, ok, fw, disk, temp, ts, l: (msg.decode_telemetry, msg.make_telemetry(
        uptime_s=up, backlog=b, clock_ok=ok, fw=fw, disk_free_mb=disk, cpu_temp_c=temp, ts=ts, ledger=l)),
        st.floats(0, 1e9), st.integers(0, MAX_INT), st.booleans(), short_text, st.floats(0, 1e9),
        st.none() | st.floats(-50, 150), stamps, ledgers),
    st.builds(lambda t: (msg.decode_command, msg.make_command("display", ticket=t)),
              st.text(wire_chars, min_size=1, max_size=16)),
    st.builds(lambda t, s: (msg.decode_command, msg.make_command("ticket", ticket=t, seq=s)),
              st.text(wire_chars, min_size=1, max_size=16), seqs),
    st.builds(lambda o: (msg.decode_command, msg.make_command("officer", officer=o)), st.none() | officers),
    st.builds(lambda s: (msg.decode_command, msg.make_command("identify", seconds=s)), st.integers(1, 600)),
    st.builds(lambda o, ts: (msg.decode_assignment, msg.make_assignment(o, ts)), st.none() | officers,
              st.none() | stamps),
)


@fuzz_settings(300)
@given(made_messages)
def test_every_made_message_decodes_back_to_itself(made):
    decoder, message = made
    back = decoder(encode(message))
    if decoder is msg.decode_ack:
        assert back == {**message, "rejected": message.get("rejected", [])}
    else:
        assert back == message


@fuzz_settings(400)
@given(made_messages, st.data())
def test_a_message_with_one_field_changed_is_valid_or_refused(made, data):
    decoder, message = made
    field = data.draw(st.sampled_from(sorted(message) + ["officer", "seq", "rejected", "extra"]), label="field")
    mutated = _mutated(message, field, data.draw(weird_values, label="value"), data.draw(st.booleans(), label="drop"))
    try:
        payload = encode(mutated)
    except ProtocolError:
        return
    decodes_or_refuses(decoder, payload)


@fuzz_settings(50)
@given(json_text)
def test_an_empty_assignment_means_nobody_and_any_other_text_is_checked(text):
    assert msg.decode_assignment(b"") == {"officer": None}
    decodes_or_refuses(msg.decode_assignment, text)


# Every number a JSON text can hold, most of all the integers beyond a double (10**400 is valid JSON).
any_numbers = st.one_of(st.integers(), st.integers(min_value=10**300, max_value=10**1000).map(lambda n: n * -1),
                        st.integers(min_value=10**300, max_value=10**1000),
                        st.floats(allow_nan=False, allow_infinity=False))
NUMERIC = {"event": ["v", "seq", "ts", "mono", "scale", "score"],
           "telemetry": ["uptime_s", "backlog", "disk_free_mb", "cpu_temp_c", "ts"], "status": ["ts"],
           "ack": ["seqs"], "command": ["seconds", "seq"], "assignment": ["ts"]}


@fuzz_settings(300)
@given(event_args(), made_messages, st.data())
def test_any_number_in_a_numeric_field_is_valid_or_a_protocol_error(args, made, data):
    kind, kw = args
    decoder, message = made
    name = {msg.decode_ack: "ack", msg.decode_status: "status", msg.decode_telemetry: "telemetry",
            msg.decode_command: "command", msg.decode_assignment: "assignment"}[decoder]
    number = data.draw(any_numbers, label="number")
    field = data.draw(st.sampled_from(NUMERIC["event"]), label="event field")
    decodes_or_refuses(decode_event, encode({**make_event(kind, **kw), field: number}))
    field = data.draw(st.sampled_from(NUMERIC[name]), label=f"{name} field")
    value = [number] if field == "seqs" else number
    decodes_or_refuses(decoder, encode({**message, field: value}))
