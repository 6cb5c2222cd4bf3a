"""Who may open the hall display: a display token opens its own site's hall and nothing else."""
from __future__ import annotations

import pytest

from broker.auth import DISPLAY
from tests.test_web_dashboard import dash, dash_clock  # noqa: F401  (fixtures)


@pytest.fixture
def key(dash):  # noqa: F811
    return dash.auth.create_token(DISPLAY, "hall-kt", site="kien-thuy")


def test_the_display_token_opens_its_own_hall_and_live_feed(dash, key):  # noqa: F811
    with dash.client() as c:
        page = c.get("/hall/kien-thuy", params={"key": key})
        assert page.status_code == 200 and 'id="hall-calls"' in page.text
        assert page.headers["referrer-policy"] == "no-referrer"  # the key must not leak to other sites
        with c.stream("GET", "/hall/kien-thuy/live", params={"key": key}) as live:
            assert live.status_code == 200 and live.headers["content-type"].startswith("text/event-stream")


@pytest.mark.parametrize("path", ["/hall/an-lao", "/hall/an-lao/live"])
def test_the_display_token_cannot_open_another_site_s_hall(dash, key, path):  # noqa: F811
    with dash.client() as c:
        r = c.get(path, params={"key": key})
        assert r.status_code == 403 and "an-lao" in r.text


@pytest.mark.parametrize("path", ["/api/v1/sites", "/api/v1/counters", "/api/v1/events",
                                  "/api/v1/reports/satisfaction.csv?group=officer&month=2026-11"])
def test_the_display_token_cannot_read_the_api(dash, key, path):  # noqa: F811
    with dash.client() as c:
        r = c.get(path, headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 403, r.text
        assert "display" in r.json()["detail"]


@pytest.mark.parametrize("path", ["/", "/officers", "/waiting", "/reports", "/devices", "/live"])
def test_the_display_token_cannot_open_the_dashboard(dash, key, path):  # noqa: F811
    with dash.client() as c:
        r = c.get(path, params={"key": key}, headers={"Authorization": f"Bearer {key}"})
        assert r.status_code in (303, 401), (path, r.status_code)  # the login page, or "log in first"
        if r.status_code == 303:
            assert r.headers["location"].startswith("/login")


def test_no_key_a_wrong_key_or_a_revoked_one_is_refused(dash, key):  # noqa: F811
    with dash.client() as c:
        assert c.get("/hall/kien-thuy").status_code == 401
        assert c.get("/hall/kien-thuy", params={"key": "hl_" + "x" * 43}).status_code == 401
        dash.auth.revoke_token("hall-kt")
        assert c.get("/hall/kien-thuy", params={"key": key}).status_code == 401
        assert c.get("/hall/kien-thuy/live", params={"key": key}).status_code == 401


def test_a_logged_in_user_may_watch_any_hall(dash):  # noqa: F811
    c = dash.login("viewer")
    try:
        assert c.get("/hall/an-lao").status_code == 200
    finally:
        c.close()


def test_voice_clips_are_only_the_known_names(dash):  # noqa: F811
    with dash.client() as c:
        r = c.get("/hall/voice/moi")
        assert r.status_code == 200 and r.headers["content-type"] == "audio/wav" and r.content[:4] == b"RIFF"
        for bad in ("..%2Fauth.py", "nope", "%2Fetc%2Fpasswd", "moi.wav"):
            assert c.get(f"/hall/voice/{bad}").status_code == 404, bad


def test_revoking_the_key_ends_an_open_live_feed(dash, key, monkeypatch):  # noqa: F811
    from broker.web.pages import hall

    monkeypatch.setattr(hall, "RECHECK_S", 0.2)  # instead of half a minute
    with dash.client() as c, c.stream("GET", "/hall/kien-thuy/live", params={"key": key}) as live:
        assert live.status_code == 200
        lines = live.iter_lines()
        assert next(lines).startswith("retry:")
        dash.auth.revoke_token("hall-kt")
        rest = list(lines)  # the server ends the stream: this returns instead of waiting for the next call
    assert all(not line.startswith("event: call") for line in rest)


def test_the_live_feed_refuses_an_id_past_the_store_s_integers(dash, key):  # noqa: F811
    with dash.client() as c:
        assert c.get("/hall/kien-thuy/live", params={"key": key, "after": 2**64}).status_code == 422
        assert c.get("/hall/kien-thuy/live", params={"key": key, "after": -1}).status_code == 422
        # A resumed feed with a Last-Event-ID no call can have starts from the newest instead of failing.
        with c.stream("GET", "/hall/kien-thuy/live", params={"key": key},
                      headers={"Last-Event-ID": "9" * 40}) as live:
            assert live.status_code == 200
            with dash.store._write() as db:  # a call, as broker.store.tickets logs it
                db.execute("INSERT INTO queue_calls (site, ts, ticket, queue, counter, action, recall)"
                           " VALUES ('kien-thuy', 0, 'A001', 'A', '3', 'next', 0)")
            assert any(line == "event: call" for line in live.iter_lines())


def test_calls_missed_during_an_outage_are_shown_but_not_announced(dash, key):  # noqa: F811
    import json

    fresh = int(dash.clock() * 1000) - 5_000
    with dash.client() as c, c.stream("GET", "/hall/kien-thuy/live", params={"key": key, "after": 0}) as live:
        with dash.store._write() as db:
            for ticket, ts in (("A001", fresh - 3_600_000), ("A002", fresh)):
                db.execute("INSERT INTO queue_calls (site, ts, ticket, queue, counter, action, recall)"
                           " VALUES ('kien-thuy', ?, ?, 'A', '3', 'next', 0)", (ts, ticket))
        calls = []
        for line in live.iter_lines():
            if line.startswith('data: {"id"'):
                calls.append(json.loads(line[6:]))
            if len(calls) == 2:
                break
    assert [(c["ticket"], bool(c["clips"])) for c in calls] == [("A001", False), ("A002", True)]
    assert calls[1]["clips"][0].startswith("/hall/voice/moi?call=")
