"""The store by site: the latest ratings by the time they were given (migration 7's indexes), every
site-aware query narrowed by a set of sites, and which officers a set of sites has seen."""
from __future__ import annotations

import pytest

from broker.store.sites import site_filter
from tests.test_broker_store import DAY_MS, T0, event, msg, register, store, bare  # noqa: F401  (fixtures)

DAY = "2024-11-27"


def rate(store, site: str, seq: int, ts: int, officer: str = "off-1", score: int = 4) -> None:  # noqa: F811
    register(store, (site, "1"))
    outcomes = store.ingest([msg(event(seq=seq, site=site, ts=ts, officer=officer, score=score))])
    assert [o.status for o in outcomes] == ["stored"]


def test_the_latest_ratings_are_by_event_time_at_every_site_or_a_few(store):  # noqa: F811
    # Stored in this order; given in another: a backlog of older ratings arrives last.
    for seq, (site, ts) in enumerate([("a", T0 + 50), ("b", T0 + 40), ("a", T0 + 10), ("c", T0 + 60),
                                      ("b", T0 - DAY_MS), ("a", T0 + 30)], start=1):
        rate(store, site, seq, ts)
    assert [r["ts"] - T0 for r in store.latest_ratings(4)] == [60, 50, 40, 30]
    assert [(r["site"], r["ts"] - T0) for r in store.latest_ratings(3, sites={"a", "b"})] == \
        [("a", 50), ("b", 40), ("a", 30)]
    assert [r["ts"] - T0 for r in store.latest_ratings(10, sites={"b"})] == [40, -DAY_MS]
    assert store.latest_ratings(5, sites=set()) == []
    # The live feed's "stored after": storage order, narrowed the same way.
    first = store.latest_ratings(10, after_id=0)
    assert [r["site"] for r in store.latest_ratings(10, after_id=first[0]["id"], sites={"b"})] == ["b", "b"]


def test_the_latest_ratings_walk_an_index_by_time_not_the_whole_table(store):  # noqa: F811
    from broker.store.dashboard import _LATEST

    if store.path is None:
        pytest.skip("SQLite's query plan; PostgreSQL's planner chooses by its statistics (benchmarks/pages.py)")
    with store._read() as db:
        every = db.execute("EXPLAIN QUERY PLAN " + _LATEST + " ORDER BY e.ts DESC, e.id DESC LIMIT 20").fetchall()
        one = db.execute("EXPLAIN QUERY PLAN " + _LATEST + " AND e.site = ? ORDER BY e.ts DESC, e.id DESC LIMIT 20",
                         ("a",)).fetchall()
    assert "events_ratings_by_time" in str(every) and "TEMP B-TREE" not in str(every)
    assert "events_site_ratings_by_time" in str(one) and "TEMP B-TREE" not in str(one)


def test_figures_reasons_and_events_are_narrowed_to_the_sites_given(store):  # noqa: F811
    rate(store, "a", 1, T0, "off-1", 4)
    rate(store, "b", 2, T0 + 1, "off-1", 1)
    rows = store.satisfaction("officer", DAY, DAY, sites={"a"})["rows"]
    assert [(r["key"], r["ratings"], r["rate"]) for r in rows] == [("off-1", 1, 1.0)]
    assert [r["key"] for r in store.satisfaction("site", DAY, DAY)["rows"]] == ["a", "b"]
    assert store.satisfaction("site", DAY, DAY, sites=set())["rows"] == []
    assert [e["site"] for e in store.events(sites={"b"})] == ["b"]
    assert store.rating_totals(DAY, DAY, sites={"b"})["ratings"] == 1
    assert store.officer_counters("off-1", DAY, DAY, sites={"a"})[0]["site"] == "a"
    assert site_filter(None) == ("", ()) and site_filter(set()) == (" AND site IN ()", ())


def test_a_site_sees_the_officers_it_has_seen_and_those_nobody_has(store):  # noqa: F811
    for oid in ("here", "there", "new"):
        store.upsert_officer(oid, oid.title())
    rate(store, "a", 1, T0, "here")
    store.assign("b", "1", "there", T0)
    assert store.officers_seen({"a"}) == {"here", "new"}
    assert store.officers_seen({"b"}) == {"there", "new"}
    assert store.officers_seen(None) is None
    assert store.officer_sites("here") == {"a"}
