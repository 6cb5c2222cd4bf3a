"""The queue's wire values (protocol.tickets): queue ids, tickets, dates and the kiosk's request."""

from __future__ import annotations

import pytest

from protocol import ProtocolError
from protocol.codec import encode
from protocol.tickets import (
    REQUEST_OPS,
    check_date,
    check_queue_id,
    check_queue_prefix,
    decode_request,
    format_ticket,
    make_request,
    parse_ticket,
    validate_request,
)
from protocol.topics import QOS, RETAINED, Topics, parse_topic

TAKE = {"req": "0123abcd", "op": "take", "queue": "A", "priority": False}
BLOCK = {"req": "0123abcd", "op": "block", "queue": "A", "date": "2026-11-30"}


def fails(func, obj, field, reason=None):
    with pytest.raises(ProtocolError) as info:
        func(obj)
    assert info.value.field == field, str(info.value)
    if reason is not None:
        assert info.value.reason == reason


def test_request_topic_is_reliable_and_not_retained():
    t = Topics("kiosk-1")
    assert t.request == "hailong/v1/kiosk-1/request"
    assert parse_topic(t.request) == ("kiosk-1", "request")
    assert QOS["request"] == 1 and "request" not in RETAINED


@pytest.mark.parametrize("req", [TAKE, {**TAKE, "priority": True}, BLOCK, {**TAKE, "extra": [1]},
                                 {**TAKE, "req": "f" * 32}, {**BLOCK, "queue": "tu-phap_2"}])
def test_valid_requests_round_trip(req):
    assert validate_request(req) is req
    assert decode_request(encode(req)) == req


def test_make_request():
    assert make_request("take", "0123abcd", "A") == TAKE
    assert make_request("block", "0123abcd", "A", date="2026-11-30") == BLOCK
    assert {"take", "block"} == set(REQUEST_OPS)
    with pytest.raises(ProtocolError):
        make_request("block", "0123abcd", "A")


@pytest.mark.parametrize(
    ("obj", "field", "reason"),
    [
        ({**TAKE, "op": "cancel"}, "op", "op 'cancel' is not one of take, block"),
        ({k: v for k, v in TAKE.items() if k != "req"}, "req", "missing"),
        ({**TAKE, "req": "0123abc"}, "req", "req '0123abc' is not 8-32 lowercase hex digits"),
        ({**TAKE, "req": "f" * 33}, "req", None),
        ({**TAKE, "queue": ""}, "queue", None),
        ({**TAKE, "queue": "x" * 17}, "queue", None),
        ({**TAKE, "queue": "Đất"}, "queue", None),
        ({k: v for k, v in TAKE.items() if k != "priority"}, "priority", "missing"),
        ({**TAKE, "priority": 0}, "priority", "expected boolean, got integer"),
        ({k: v for k, v in BLOCK.items() if k != "date"}, "date", "missing"),
        ({**BLOCK, "date": "2026-02-30"}, "date", "date '2026-02-30' is not a calendar date from 2000 on"),
    ],
)
def test_bad_requests(obj, field, reason):
    fails(validate_request, obj, field, reason)


def test_request_must_be_an_object():
    with pytest.raises(ProtocolError, match="must be a JSON object"):
        decode_request(b"[]")


@pytest.mark.parametrize(("prefix", "number", "ticket"), [("A", 1, "A001"), ("A", 12, "A012"), ("ZZ", 999, "ZZ999")])
def test_ticket_format_and_parse(prefix, number, ticket):
    assert format_ticket(prefix, number) == ticket
    assert parse_ticket(ticket) == (prefix, number)


@pytest.mark.parametrize("number", [0, 1000, -1])
def test_format_ticket_refuses_numbers_out_of_range(number):
    with pytest.raises(ValueError):
        format_ticket("A", number)


@pytest.mark.parametrize("ticket", ["A000", "A12", "a012", "L12", "----", "A0120", ""])
def test_parse_ticket_refuses(ticket):
    with pytest.raises(ProtocolError):
        parse_ticket(ticket)


@pytest.mark.parametrize("good", ["2000-01-01", "2024-02-29", "2000-02-29", "9999-12-31"])
def test_dates(good):
    assert check_date(good) == good


@pytest.mark.parametrize("bad", ["1900-02-29", "2100-02-29", "2026-00-10", "2026-04-31", "2026-11-30T00:00", "", None])
def test_bad_dates(bad):
    with pytest.raises(ProtocolError):
        check_date(bad)


def test_queue_ids_and_prefixes():
    assert check_queue_id("A") == "A" and check_queue_prefix("AB") == "AB"
    for bad in ("A B", "A+", "", "a" * 17, None):
        with pytest.raises(ProtocolError):
            check_queue_id(bad)
    for bad in ("a", "ABC", "Ă", "1", ""):
        with pytest.raises(ProtocolError):
            check_queue_prefix(bad)
