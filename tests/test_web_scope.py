"""Scope in the dashboard: a commune's user sees its centre only, on every page, report and the live
feed; a province user ranks the centres as the API's group=site does and picks one; the latest
ratings are in the order they were given, however they arrived."""
from __future__ import annotations

import csv
import io
import json
import re
import threading
from datetime import timedelta

import httpx

from tests.test_broker_api import counters, rating, register  # noqa: F401  (counters: fixture)
from tests.test_web_dashboard import PASSWORD, attrs, csrf_of, dash, dash_clock, local_ms  # noqa: F401

# What only the other centre (q2) has: none of it may appear on a page of q1's user.
THEIRS = ("Phường Hai", "Bình Hai", "Quầy Hai", "dev-q2", "Lý do Hai", "o-q2")
# Every page the dashboard serves is walked (a new page too), with these path values.
OPEN = {"/login", "/logout", "/lang/{code}", "/live",
        "/hall/{site}/live", "/hall/voice/{name}"}  # endless streams and the public voice clips
VALUES = {"officer_id": "o-q1", "device_id": "dev-q1", "site_id": "q1", "counter_id": "1"}


class _Values(dict):
    def __missing__(self, key: str) -> str:
        return "q1"  # a page keyed by something else of the centre's


def pages(dash) -> list[str]:  # noqa: F811
    from tests.test_attacks_web import page_routes

    paths = {path for method, path in page_routes(dash.server._config.app.routes) if method == "GET"}
    found = sorted(path.format_map(_Values(VALUES)) for path in paths - OPEN)
    assert {"/", "/officers", "/officers/o-q1", "/devices", "/misuse", "/reports", "/province"} <= set(found)
    return found


def seed_two(dash, counters):  # noqa: F811
    """Two centres with an officer, a counter and a device each; the commune user of q1 and a province user."""
    s = dash.store
    s.upsert_site("q1", "Phường Một")
    s.upsert_site("q2", "Phường Hai")
    s.upsert_officer("o-q1", "Lan Một", "M1")
    s.upsert_officer("o-q2", "Bình Hai", "H2")
    s.upsert_counter("q1", "1", "Quầy Một")
    s.upsert_counter("q2", "1", "Quầy Hai")
    register(s, ("dev-q1", "q1", "1"), ("dev-q2", "q2", "1"))
    at = local_ms(dash.now()) - 60_000
    s.assign("q1", "1", "o-q1", at)
    s.assign("q2", "1", "o-q2", at)
    t0 = local_ms(dash.now()) - 30_000
    one = counters("dev-q1", site="q1", t0=t0)
    two = counters("dev-q2", site="q2", t0=t0)
    one.send(rating(one, 4, "o-q1"), rating(one, 4, "o-q1"), rating(one, 1, "o-q1", reason="Chờ lâu"))
    two.send(rating(two, 2, "o-q2"), rating(two, 1, "o-q2", reason="Lý do Hai"),
             rating(two, 2, "o-q2", flags=["repeat"]))
    dash.auth.add_user("commune", "manager", PASSWORD, sites=["q1"])
    dash.auth.add_user("province", "viewer", PASSWORD)
    return one, two


def test_a_commune_user_sees_only_its_centre_on_every_page_and_report(dash, counters):  # noqa: F811
    seed_two(dash, counters)
    commune = dash.login("commune")
    for path in pages(dash):
        r = commune.get(path)
        assert r.status_code in (200, 403), path  # 403: a page for province-wide admins
        told = [word for word in THEIRS if word in r.text]
        assert not told, f"{path} shows {told}"
        if r.status_code == 200:
            assert re.search(r"<title>[^<]*· Phường Một</title>", r.text), path  # the title names its centre
        assert 'id="site-picker"' not in r.text  # one centre: nothing to pick
    assert "Lan Một" in commune.get("/officers").text
    assert commune.get("/hall/q2").status_code == 403  # nor another centre's hall display
    for path in ("/officers/o-q2", "/?site=q2", "/officers?site=q2"):
        r = commune.get(path)
        assert r.status_code == 404 and "Bình Hai" not in r.text, path
    for group in ("officer", "counter", "site"):
        r = commune.get("/api/v1/reports/satisfaction.csv", params={"group": group, "month": dash.month()})
        assert r.status_code == 200 and not [w for w in THEIRS if w in r.content.decode("utf-8-sig")], group
        rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
        assert any(mine in cell for mine in ("Phường Một", "Lan Một", "Quầy Một") for row in rows for cell in row)


def test_a_commune_manager_cannot_act_on_another_centre(dash, counters):  # noqa: F811
    seed_two(dash, counters)
    commune = dash.login("commune")
    csrf = csrf_of(commune.get("/devices").text)
    assert commune.post("/devices/dev-q2/identify", data={"csrf": csrf}).status_code == 404
    r = commune.post("/devices/assign", data={"csrf": csrf, "counter": "q2/1", "officer": ""})
    assert r.status_code == 404
    r = commune.post("/devices/assign", data={"csrf": csrf, "counter": "q1/1", "officer": "o-q2"})
    assert r.headers["location"] == "/devices?msg=bad_request"  # their officer, as if there were none
    assert dash.store.current_assignments() == {("q1", "1"): "o-q1", ("q2", "1"): "o-q2"}
    r = commune.post("/devices/assign", data={"csrf": csrf, "counter": "q1/1", "officer": ""})
    assert r.headers["location"].startswith("/devices?msg=assigned")


def first_live_item(client: httpx.Client, after: int, found: list, ready: threading.Event) -> None:
    with client.stream("GET", f"/live?after={after}", timeout=20) as r:
        ready.set()
        for line in r.iter_lines():
            if line.startswith("data: "):
                found.append(json.loads(line[6:]))
                return


def test_the_live_feed_sends_a_commune_user_its_centre_only(dash, counters):  # noqa: F811
    one, two = seed_two(dash, counters)
    after = dash.store.last_event_id()
    found: list = []
    ready = threading.Event()
    reader = threading.Thread(target=first_live_item, args=(dash.login("commune"), after, found, ready), daemon=True)
    reader.start()
    assert ready.wait(10)
    two.send(rating(two, 4, "o-q2"))  # stored first, never sent to q1's user
    one.send(rating(one, 3, "o-q1"))
    reader.join(20)
    assert [(f["counter"], f["officer"]) for f in found] == [("q1/1", "o-q1")]


def test_the_province_ranking_equals_the_apis_group_site_figures(dash, counters):  # noqa: F811
    seed_two(dash, counters)
    province = dash.login("province")
    html = province.get("/province").text
    rows = attrs(html, r'<tr data-site="[^>]*>')
    first, last = re.search(r'data-from="([^"]+)" data-to="([^"]+)"', html).groups()
    api = province.get("/api/v1/satisfaction", params={"group": "site", "from": first, "to": last}).json()
    assert [r["site"] for r in rows] == [r["key"] for r in api["rows"]] == ["q1", "q2"]
    for row, want in zip(rows, api["rows"]):
        assert (int(row["ratings"]), float(row["rate"]), float(row["index"]), float(row["wilson"]),
                int(row["flagged"])) == (want["ratings"], want["rate"], want["index"], want["wilson_lower"],
                                         want["flagged"])
    assert 'id="site-picker"' in html and "Phường Hai" in html
    feed = province.get("/").text  # both centres' ratings: each counter named with its centre
    assert "Phường Hai · Quầy Hai" in feed and "Phường Một · Quầy Một" in feed
    q2 = province.get("/?site=q2").text
    assert re.search(r"<title>[^<]*· Phường Hai</title>", q2) and "Lan Một" not in q2
    assert 'data-ratings="2"' in q2  # today's counted ratings at q2 only


def test_latest_ratings_are_in_the_order_given_whatever_the_order_they_arrived(dash, counters):  # noqa: F811
    dash.store.upsert_site("q1", "Phường Một")
    register(dash.store, ("dev-q1", "q1", "1"))
    now = local_ms(dash.now())
    c = counters("dev-q1", site="q1")
    yesterday = now - 86_400_000
    # A counter back from an outage: its backlog (older times) arrives after newer ratings.
    given = [now - 5_000, now - 1_000, yesterday, now - 3_000, now - 4_000]
    c.send(*(c.event("rating", ts=ts, score=3, scale=4) for ts in given))
    for user in ("viewer", "admin"):
        html = dash.login(user).get("/").text
        feed = attrs(html, r'<li data-seq="[^>]*>')
        assert [int(f["ts"]) for f in feed] == sorted(given, reverse=True)
        day = (dash.now() - timedelta(days=1)).strftime("%Y-%m-%d")
        assert html.count(f'<span class="date">{day}</span>') == 1  # only yesterday's carries its date


def test_a_province_admin_changes_who_sees_which_centre_on_the_users_page(dash, counters):  # noqa: F811
    seed_two(dash, counters)
    admin = dash.login("admin")
    html = admin.get("/users").text
    assert re.search(r'<tr data-kind="user" data-name="commune" data-sites="q1">', html)
    r = admin.post("/users/sites", data={"csrf": csrf_of(html), "kind": "user", "name": "commune",
                                         "site:q1": "1", "site:q2": "1"})
    assert r.status_code == 303 and r.headers["location"] == "/users?msg=saved&name=commune"
    assert dash.auth.user("commune").sites == {"q1", "q2"}
    assert "Bình Hai" in dash.login("commune").get("/officers").text  # at the next request
    r = admin.post("/users/sites", data={"kind": "user", "name": "commune", "all": "1"})
    assert r.status_code == 403 and dash.auth.user("commune").sites == {"q1", "q2"}  # no CSRF token
    # Only an admin who sees every centre decides who sees which.
    dash.auth.add_user("q1-admin", "admin", PASSWORD, sites=["q1"])
    for user in ("q1-admin", "manager", "commune"):
        c = dash.login(user)
        assert c.get("/users").status_code == 403, user
        csrf = csrf_of(c.get("/").text)
        r = c.post("/users/sites", data={"csrf": csrf, "kind": "user", "name": user, "all": "1"})
        assert r.status_code == 403, user
    assert dash.auth.user("q1-admin").sites == {"q1"}
