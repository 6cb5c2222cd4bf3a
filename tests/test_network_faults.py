"""Network faults between counters and broker and between broker and service, through FaultProxy.

Real counter processes, a real Mosquitto, the real service process on a store on disk. Each test ends
with the harness's comparison: every event a counter reported `stored` is stored and counted once by
the service, flagged ones flagged (tests/chaos.py, tally).
"""
from __future__ import annotations

import sqlite3

import pytest

from tests.chaos import Rig, _offline, assert_exact, tally, wait_until


@pytest.fixture
def rig(tmp_path):
    r = Rig(tmp_path, counters=2).start()
    yield r
    r.close()


def burst(rig: Rig, presses: int) -> None:
    """Presses queued on every counter's stdin, a little apart; a chord now and then gets flagged."""
    for c in rig.counters:
        script = []
        for i in range(presses):
            script += ["chord 2 3" if i % 7 == 3 else f"press {2 + i % 3}", "wait 0.05"]
        for command in script:
            c.send(command)


def service_rows(rig: Rig, device: str) -> int:
    db = sqlite3.connect(f"file:{rig.service.db}?mode=ro", uri=True)
    try:
        return db.execute("SELECT count(*) FROM events WHERE device = ?", (device,)).fetchone()[0]
    finally:
        db.close()


def duplicates_seen(rig: Rig) -> int:
    db = sqlite3.connect(f"file:{rig.service.db}?mode=ro", uri=True)
    try:
        return db.execute("SELECT n FROM totals WHERE name = 'duplicates'").fetchone()[0]
    finally:
        db.close()


def finish_exact(rig: Rig, at_least: int) -> dict:
    figures = rig.finish()
    assert_exact(figures)
    assert figures["events"] >= at_least and figures["flagged"] > 0
    return figures


def test_cuts_between_counters_and_broker_during_presses(rig):
    burst(rig, 60)
    for _ in range(3):
        rig.wait_for_more_events(8)
        for c in rig.counters:
            c.link.drop()
    finish_exact(rig, 120)
    assert all(c.link.stats.accepted >= 4 for c in rig.counters)  # each cut made the counter reconnect


def test_a_counter_with_no_route_for_a_while_catches_up(rig):
    c = rig.counters[0]
    c.link.refuse()
    c.link.drop()
    wait_until(_offline(c), 30, "the counter offline")
    burst(rig, 30)
    wait_until(lambda: len(c.stored()) >= 30 and c.link.stats.accepted >= 3, 60, "presses stored and retries refused")
    c.link.heal()
    finish_exact(rig, 60)


def test_a_counter_reconnecting_into_a_blackhole_gives_up_on_it_and_retries(rig):
    """New connections are accepted and then nothing: the counter must not wait forever for its CONNACK."""
    c = rig.counters[0]
    c.link.blackhole()
    c.link.drop()
    burst(rig, 20)
    wait_until(lambda: c.link.stats.accepted >= 3, 60, "a second attempt after a silent one", rig.describe)
    assert c.link.stats.upstream == 1  # none of the attempts reached the broker
    c.link.heal()  # the attempt hanging in the hole stays there: the counter must give up on it by itself
    finish_exact(rig, 40)


def test_half_open_counter_link_is_noticed_by_the_keepalive(rig):
    c = rig.counters[0]
    burst(rig, 40)
    rig.wait_for_more_events(10)
    closed = c.link.stats.closed
    c.link.stall()
    wait_until(_offline(c), 60, "the keepalive noticing the dead link")
    assert c.link.stats.closed == closed  # nothing was closed: the device noticed silence, not a FIN
    burst(rig, 10)  # presses while the link is still dead
    rig.wait_for_more_events(20)
    c.link.heal()
    finish_exact(rig, 80)


def test_half_open_service_link_is_noticed_by_the_keepalive(rig):
    link = rig.svc_link
    burst(rig, 40)
    rig.wait_for_more_events(10)
    link.stall()
    wait_until(lambda: link.stats.accepted >= 2, 60, "the service reconnecting after its keepalive gave up")
    assert link.stats.closed == 0
    link.heal()
    finish_exact(rig, 80)


def test_acks_lost_on_the_way_to_a_counter_are_resent_and_counted_once(rig):
    """The service committed and acked; the ack dies in a stalled, then cut, link: the counter resends."""
    c = rig.counters[0]
    c.link.stall("down")
    burst(rig, 20)
    wait_until(lambda: len(c.stored()) >= 20 and service_rows(rig, c.device) >= 20, 60,
               "the service holding events whose acks are stuck", rig.describe)
    c.link.drop()
    c.link.heal()
    finish_exact(rig, 40)
    assert duplicates_seen(rig) > 0  # the resends reached the service, which counted them once


def test_acks_lost_on_the_way_from_the_service_are_counted_once(rig):
    """The service committed; its PUBACKs and acks die in the cut: the broker redelivers, counters resend."""
    link = rig.svc_link
    link.stall("up")
    burst(rig, 20)
    wait_until(lambda: all(service_rows(rig, c.device) >= 20 for c in rig.counters), 60,
               "the service committing events it cannot ack", rig.describe)
    link.drop()
    link.heal()
    finish_exact(rig, 40)
    assert duplicates_seen(rig) > 0


def test_slow_links_then_a_cut_in_the_middle(rig):
    for link in [rig.svc_link, *(c.link for c in rig.counters)]:
        link.slow(latency_s=0.1, bytes_per_s=4000)
    burst(rig, 40)
    rig.wait_for_more_events(20)
    rig.counters[1].link.drop()
    rig.svc_link.drop()
    rig.wait_for_more_events(20)
    for link in [rig.svc_link, *(c.link for c in rig.counters)]:
        link.heal()
    finish_exact(rig, 80)
    assert rig.svc_link.stats.delays and all(c.link.stats.delays for c in rig.counters)


def test_the_comparison_catches_a_lost_and_a_doubled_event(rig):
    """The check itself can fail: one event removed, one rollup bumped, after an honest run."""
    burst(rig, 10)
    rig.wait_for_more_events(20)
    figures = rig.finish()
    assert_exact(figures)
    db = sqlite3.connect(rig.service.db)
    with db:
        db.execute("DELETE FROM events WHERE id = (SELECT max(id) FROM events WHERE type = 'rating')")
        db.execute("UPDATE rating_days SET n = n + 1 WHERE (day, site, counter, officer, scale, score, flagged) ="
                   " (SELECT day, site, counter, officer, scale, score, flagged FROM rating_days LIMIT 1)")
    db.close()
    bad = tally(rig.counters, rig.service.db)
    assert bad["lost"] == 1 and bad["doubled"] >= 1
    with pytest.raises(AssertionError, match="differs"):
        assert_exact(bad)
