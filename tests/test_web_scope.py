"""Scope in the dashboard: a commune's user sees its centre only, on every page, report and the live
feed; a province user ranks the centres as the API's group=site does (satisfaction and the queue's
waiting times) and picks one; the latest ratings are in the order they were given, however they arrived."""
from __future__ import annotations

import csv
import io
import json
import re
import threading
from datetime import timedelta

import httpx
import openpyxl

from broker.store.batch import Incoming
from protocol.codec import encode
from protocol.events import make_event
from tests.test_broker_api import counters, rating, register  # noqa: F401  (counters: fixture)
from tests.test_hall_waiting_pages import attrs  # data-* names with digits too (data-wait-p90)
from tests.test_web_dashboard import PASSWORD, csrf_of, dash, dash_clock, local_ms  # noqa: F401

# What only the other centre (q2) has: none of it may appear on a page of q1's user.
THEIRS = ("Phường Hai", "Bình Hai", "Quầy Hai", "dev-q2", "Lý do Hai", "o-q2", "Hộ tịch Hai", "kiosk-q2", "desk-q2")
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
    seed_tickets(dash)
    return one, two


# Each centre's queue figures for seed_tickets' tickets: (tickets, no-shows, mean wait s, p90 wait s).
WAITS = {"q1": (4, 1, 360.0, 504.0), "q2": (1, 0, 1800.0, 1800.0)}


def seed_tickets(dash) -> None:
    """Today's queue tickets at both centres, written as the ingest batch and the counters' calls write them
    (as tests/test_queue_store.py does). q1: A001..A003 wait 6, 9 and 3 minutes, A002 a no-show, A004 still
    waiting; services 4 and 8 minutes. q2: A001 waits 30 minutes, served in 10."""
    s, today = dash.store, dash.now()
    day = today.date().isoformat()

    def at(hh: int, mm: int) -> int:
        return local_ms(today.replace(hour=hh, minute=mm, second=0, microsecond=0))

    def event(type_: str, device: str, site: str, counter: str, seq: int, ts: int, **fields) -> dict:
        return make_event(type_, device=device, site=site, counter=counter, ledger="0123456789abcdef", seq=seq,
                          ts=ts, clock_ok=True, boot="b", mono=float(seq), **fields)

    takes = {"q1": [("A001", at(8, 0)), ("A002", at(8, 1)), ("A003", at(8, 9)), ("A004", at(8, 30))],
             "q2": [("A001", at(9, 0))]}
    calls = {"q1": [("next", at(8, 6)), ("next", at(8, 10)), ("noshow", at(8, 12)), ("close", at(8, 20))],
             "q2": [("next", at(9, 30)), ("close", at(9, 40))]}
    for site, queue in (("q1", "Đất đai Một"), ("q2", "Hộ tịch Hai")):
        s.upsert_queue(site, "A", queue, "A")
        register(s, (f"kiosk-{site}", site, "kiosk"), (f"desk-{site}", site, "2"))
        s.set_counter_queues(site, "2", ["A"])
        tickets = [event("take", f"kiosk-{site}", site, "kiosk", seq, ts, ticket=ticket, queue="A", priority=False,
                         source="block", date=day) for seq, (ticket, ts) in enumerate(takes[site], 1)]
        s.ingest([Incoming(e["device"], encode(e), e["ts"]) for e in tickets])
        for seq, (action, ts) in enumerate(calls[site], 1):
            e = event("call", f"desk-{site}", site, "2", seq, ts, action=action)
            assert [o.status for o in s.ingest([Incoming(e["device"], encode(e), ts)])] == ["stored"]
            assert s.queue_call(e["device"], e["ledger"], seq, live=True) is not None
    got = {r["key"]: (r["tickets"], r["no_show"], r["wait_mean_s"], r["wait_p90_s"])
           for r in s.waiting_stats("site", day, day)}
    assert got == WAITS  # what the tests below expect the pages, the API and the reports to show


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
    # The queue's figures per centre: GET /api/v1/waiting?group=site's, and the no-show share from them.
    waits = province.get("/api/v1/waiting", params={"group": "site", "from": first, "to": last}).json()["rows"]
    assert [w["key"] for w in waits] == ["q1", "q2"]
    for row, want in zip(rows, waits):
        assert (int(row["tickets"]), int(row["no-show"]), float(row["wait-mean"]), float(row["wait-p90"])) \
            == (want["tickets"], want["no_show"], want["wait_mean_s"], want["wait_p90_s"]) == WAITS[row["site"]]
        assert float(row["no-show-share"]) == want["no_show"] / want["tickets"]
    q1_row = re.search(r'<tr data-site="q1".*?</tr>', html, re.S).group(0)
    assert all(f"<td class=\"num\">{text}</td>" in q1_row for text in ("4", "6,0 phút", "8,4 phút", "25,0 %"))
    assert 'id="site-picker"' in html and "Phường Hai" in html
    feed = province.get("/").text  # both centres' ratings: each counter named with its centre
    assert "Phường Hai · Quầy Hai" in feed and "Phường Một · Quầy Một" in feed
    q2 = province.get("/?site=q2").text
    assert re.search(r"<title>[^<]*· Phường Hai</title>", q2) and "Lan Một" not in q2
    assert 'data-ratings="2"' in q2  # today's counted ratings at q2 only


def test_a_commune_user_s_centres_page_and_report_by_centre_carry_its_own_queue_figures_only(dash, counters):  # noqa: F811
    seed_two(dash, counters)
    commune = dash.login("commune")
    html = commune.get("/province").text
    rows = attrs(html, r'<tr data-site="[^>]*>')
    assert [(r["site"], int(r["tickets"]), int(r["no-show"]), float(r["wait-mean"]), float(r["wait-p90"]))
            for r in rows] == [("q1", *WAITS["q1"])]
    assert "30,0 phút" not in html and "Hộ tịch Hai" not in html  # q2's wait, shown nowhere
    api = commune.get("/api/v1/waiting", params={"group": "site", "from": dash.now().date().isoformat(),
                                                 "to": dash.now().date().isoformat()}).json()["rows"]
    assert [w["key"] for w in api] == ["q1"]
    r = commune.get("/api/v1/reports/satisfaction.csv", params={"group": "site", "month": dash.month()})
    *_, body, total = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert body[1] == "Phường Một" and body[-6:] == total[-6:] == ["4", "1", "6.0", "6.0", "8.4", "6.0"]


def test_centres_with_tickets_but_no_ratings_are_unranked_with_their_queue_figures(dash):  # noqa: F811
    dash.store.upsert_site("q1", "Phường Một")
    seed_tickets(dash)  # q2 has no name: a centre known only from its tickets
    html = dash.login("viewer").get("/province").text
    assert 'id="province-empty"' in html
    rows = attrs(html, r'<tr data-site="[^>]*>')
    assert [(r["site"], r["rank"], int(r["tickets"]), int(r["no-show"]), float(r["wait-mean"]), float(r["wait-p90"]))
            for r in rows] == [("q1", "", *WAITS["q1"]), ("q2", "", *WAITS["q2"])]


def test_the_report_by_centre_carries_each_centre_s_waiting_figures_as_the_api(dash, counters):  # noqa: F811
    seed_two(dash, counters)
    province = dash.login("province")
    day = dash.now().date().isoformat()
    waits = {w["name"]: w for w in province.get("/api/v1/waiting", params={"group": "site", "from": day,
                                                                           "to": day}).json()["rows"]}
    r = province.get("/api/v1/reports/satisfaction.csv", params={"group": "site", "month": dash.month()})
    head, *body, total = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert head[-6:] == ["Số phiếu xếp hàng", "Vắng mặt khi gọi", "Chờ trung bình (phút)", "Chờ trung vị (phút)",
                         "90% chờ dưới (phút)", "Phục vụ trung bình (phút)"]
    assert {row[1]: row[-6:] for row in body} == {"Phường Một": ["4", "1", "6.0", "6.0", "8.4", "6.0"],
                                                   "Phường Hai": ["1", "0", "30.0", "30.0", "30.0", "10.0"]}
    for row in body:  # the API's figures, in minutes
        w = waits[row[1]]
        assert row[-6:] == [str(w["tickets"]), str(w["no_show"])] + [
            f"{w[k] / 60:.1f}" for k in ("wait_mean_s", "wait_p50_s", "wait_p90_s", "service_mean_s")]
    assert total[-6:-4] == ["5", "1"]  # every ticket of the month, both centres
    sheet = openpyxl.load_workbook(io.BytesIO(province.get("/api/v1/reports/satisfaction.xlsx", params={
        "group": "site", "month": dash.month()}).content)).active
    xlsx = {row[1]: list(row[-6:]) for row in sheet.iter_rows(values_only=True) if row[1] in waits}
    assert xlsx == {"Phường Một": [4, 1, 6.0, 6.0, 8.4, 6.0], "Phường Hai": [1, 0, 30.0, 30.0, 30.0, 10.0]}


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
