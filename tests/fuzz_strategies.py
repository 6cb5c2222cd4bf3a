"""Hypothesis strategies and settings shared by the property-based tests (tests/test_fuzz_*.py).

Every property test runs derandomized: the same examples on every run, on any day, so a
failure in CI is a failure on a laptop too. `HAILONG_FUZZ_EXAMPLES=<factor>` multiplies the
example counts for a longer hunt (still derandomized; change the factor to see new examples).
"""
from __future__ import annotations

import datetime
import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from protocol.codec import MAX_INT
from protocol.events import CALL_ACTIONS, EVENT_TYPES, RATING_FLAGS, SCALES
from protocol.tickets import TAKE_SOURCES

_FACTOR = float(os.environ.get("HAILONG_FUZZ_EXAMPLES", "1") or "1")


def fuzz_settings(examples: int) -> settings:
    """Derandomized, no deadline (2 shared cores make timing meaningless), no example database."""
    return settings(
        max_examples=max(1, int(examples * _FACTOR)), derandomize=True, deadline=None, database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


# ----- JSON values --------------------------------------------------------------------------------

# Text as JSON can carry it: any code point but a lone surrogate (encode refuses those by design).
json_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
json_scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(),  # unbounded: now and then far beyond a double (10**400 is valid JSON)
    st.floats(allow_nan=False, allow_infinity=False),
    json_text,
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(json_text, inner, max_size=5)),
    max_leaves=15,
)
json_objects = st.dictionaries(json_text, json_values, max_size=8)

# Anything a hostile JSON value could be, for a field that expects one type: the wrong types,
# the edges of the right one, and the values a careless parser chokes on.
weird_values = st.one_of(
    json_values,
    st.sampled_from([0, -1, 1, MAX_INT, MAX_INT + 1, -(2**63), 2**64, 10**30, 10**400, -(10**400), 0.5, -0.0,
                     1e308, True, False,
                     "", " ", "\x00", "\ud800", "a" * 300, "<script>", [], {}, [None], {"": None}]),
)

# ----- valid protocol values ----------------------------------------------------------------------

device_ids = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,20}\Z")
ledgers = st.text("0123456789abcdef", min_size=16, max_size=16)
# What a text field on the wire may hold: no control character, line or paragraph separator, or
# lone surrogate (protocol.codec.forbidden_char); the refusals are fuzzed by the mutation tests.
wire_chars = st.characters(exclude_categories=("Cs", "Cc"), exclude_characters="\u2028\u2029")
short_text = st.text(wire_chars, min_size=1, max_size=64)
seqs = st.integers(min_value=1, max_value=MAX_INT)
stamps = st.integers(min_value=0, max_value=MAX_INT)
monos = st.floats(min_value=0, max_value=1e12, allow_nan=False, allow_infinity=False)
badges = st.text("0123456789ABCDEFabcdef", min_size=1, max_size=32)
queue_ids = st.from_regex(r"\A[A-Za-z0-9_-]{1,16}\Z")
tickets = st.builds(lambda p, n: f"{p}{n:03d}", st.from_regex(r"\A[A-Z]{1,2}\Z"), st.integers(1, 999))
dates = st.dates(min_value=datetime.date(2000, 1, 1)).map(lambda d: d.isoformat())


@st.composite
def event_args(draw) -> tuple[str, dict]:
    """(type, keyword arguments) for protocol.events.make_event that make a valid event."""
    kind = draw(st.sampled_from(EVENT_TYPES))
    kw = dict(device=draw(device_ids), site=draw(short_text), counter=draw(short_text), ledger=draw(ledgers),
              seq=draw(seqs), ts=draw(stamps), clock_ok=draw(st.booleans()), boot=draw(short_text),
              mono=draw(monos), officer=draw(st.none() | short_text),
              ticket=draw(st.none() | st.text(wire_chars, min_size=1, max_size=16)))
    if kind == "rating":
        scale = draw(st.sampled_from(SCALES))
        kw.update(scale=scale, score=draw(st.integers(1, scale)),
                  flags=draw(st.lists(st.sampled_from(RATING_FLAGS), unique=True)),
                  reason=draw(st.none() | st.text(wire_chars, min_size=1,
                                                  max_size=200)))
    elif kind == "call":
        kw["action"] = draw(st.sampled_from(CALL_ACTIONS))
    elif kind == "take":
        kw.update(ticket=draw(tickets), queue=draw(queue_ids), priority=draw(st.booleans()),
                  source=draw(st.sampled_from(TAKE_SOURCES)), date=draw(dates))
    else:
        method = draw(st.sampled_from(["badge", "central"]))
        kw["method"] = method
        if method == "badge" or draw(st.booleans()):
            kw["badge"] = draw(badges)
    return kind, kw
