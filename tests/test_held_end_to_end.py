"""Issue 10, held events end to end: the API, the devices page, and a forger who was never provisioned.

Real uvicorn, real Mosquitto (the suite's, open to anyone: which is the point), real store file,
real ingest; httpx as the client and the browser.
"""
from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

from tests.test_broker_api import WIDE, Counter, counters, now_ms, rating, service  # noqa: F401  (fixtures)
from tests.test_broker_api import seed as seed_api
from tests.test_web_dashboard import attrs, csrf_of, dash, dash_clock, figures_of  # noqa: F401  (fixtures)
from tests.test_web_dashboard import seed as seed_dash

OFFICER_WIDE = {"group": "officer", **WIDE}


def officer_ratings(client) -> dict[str | None, int]:
    return {r["key"]: r["ratings"] for r in client.get("/api/v1/satisfaction", params=OFFICER_WIDE).json()["rows"]}


def claim(counter: Counter, site: str, counter_id: str) -> Counter:
    """From now on the device's events name this counter (whatever the registry says)."""
    counter.site, counter.counter = site, counter_id
    return counter


# ----- the API ---------------------------------------------------------------------------------------


def test_the_held_list_is_for_viewers_and_deciding_is_for_admins(service, counters):
    seed_api(service, counters)
    pi = counters("pi-new")  # nobody registered it; it claims s1/1, dev-1's counter
    pi.send(rating(pi, 4, None), rating(pi, 1, None), pi.event("call", action="next"))
    viewer, manager, admin = (service.client(role) for role in ("viewer", "manager", "admin"))
    r = viewer.get("/api/v1/held")
    assert r.status_code == 200
    (row,) = r.json()["items"]
    assert {k: row[k] for k in ("device", "site", "counter", "registered", "events", "ratings")} == {
        "device": "pi-new", "site": "s1", "counter": "1", "registered": None, "events": 3, "ratings": 2}
    assert service.client(role=None).get("/api/v1/held").status_code == 401
    for who in (viewer, manager):
        for verb in ("approve", "discard"):
            r = who.post(f"/api/v1/devices/pi-new/{verb}")
            assert r.status_code == 403 and "admin" in r.json()["detail"]
    assert viewer.get("/api/v1/held").json()["items"] == [row]  # nothing was decided


def test_an_admin_approves_a_held_device_and_the_figures_include_its_ratings(service, counters):
    c1, _ = seed_api(service, counters)
    service.store.assign("s1", "1", "o1", now_ms() - 3_600_000)
    pi = counters("pi-new")
    pi.send(rating(pi, 4, None), rating(pi, 1, None), pi.event("call", action="next"))
    admin = service.client("admin")
    before = officer_ratings(admin)
    assert before == {"o1": 4, "o2": 2}
    r = admin.post("/api/v1/devices/pi-new/approve")
    assert r.status_code == 200 and r.json() == {"device": "pi-new", "site": "s1", "counter": "1", "counted": 3}
    # Attributed by the counter's assignment, as if they had arrived registered.
    assert officer_ratings(admin) == {"o1": 6, "o2": 2}
    assert admin.get("/api/v1/held").json()["items"] == []
    devices = {d["device"]: d for d in admin.get("/api/v1/devices").json()["items"]}
    assert (devices["pi-new"]["registered"], devices["dev-1"]["registered"]) == (True, False)  # one per counter
    assert admin.get("/api/v1/counters/s1/1").json()["device"] == "pi-new"
    assert admin.post("/api/v1/devices/pi-new/approve").status_code == 404  # nothing waits any more
    # dev-1, replaced, is held from now on; what it sent before stays counted.
    c1.send(rating(c1, 4, "o1"))
    assert officer_ratings(admin) == {"o1": 6, "o2": 2}
    assert [(h["device"], h["registered"]) for h in admin.get("/api/v1/held").json()["items"]] == [("dev-1", None)]


def test_approve_must_name_one_counter_when_the_events_name_several(service, counters):
    pi = counters("pi-x")
    pi.send(rating(pi, 4, None))
    claim(pi, "s1", "2").send(rating(pi, 3, None), rating(pi, 2, None))
    admin = service.client("admin")
    r = admin.post("/api/v1/devices/pi-x/approve")
    assert r.status_code == 409 and "s1/1, s1/2" in r.json()["detail"]
    r = admin.post("/api/v1/devices/pi-x/approve", json={"site": "s1"})
    assert r.status_code == 422 and r.json()["detail"] == "counter: Field required"  # both, or no body
    r = admin.post("/api/v1/devices/pi-x/approve", json={"site": "s1", "counter": "7"})
    assert r.status_code == 404 and "s1/7" in r.json()["detail"]
    r = admin.post("/api/v1/devices/pi-x/approve", json={"site": "s1", "counter": "2"})
    assert r.status_code == 200 and r.json()["counted"] == 2
    (left,) = admin.get("/api/v1/held").json()["items"]
    assert (left["counter"], left["registered"]) == ("1", {"site": "s1", "counter": "2"})
    for path in ("/api/v1/devices/not%20a%20device/approve", "/api/v1/devices/x/approve"):
        bad = admin.post(path, json={"site": "", "counter": "1"} if path.endswith("x/approve") else None)
        assert bad.status_code == 422, path
    assert admin.post("/api/v1/devices/nobody/discard").status_code == 404
    # The OpenAPI document says so, with the body these errors really have.
    paths = admin.get("/api/v1/openapi.json").json()["paths"]
    approve = paths["/api/v1/devices/{device_id}/approve"]["post"]["responses"]
    assert set(approve) == {"200", "400", "401", "403", "404", "409", "422"}  # 400: a body that is not JSON
    assert approve["409"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ApiError"}
    assert set(paths["/api/v1/devices/{device_id}/discard"]["post"]["responses"]) == {
        "200", "400", "401", "403", "404", "422"}


def test_a_discard_is_kept_for_audit_and_never_counted(service, counters):
    seed_api(service, counters)
    pi = counters("pi-x")
    pi.send(rating(pi, 1, "o1"), rating(pi, 1, None))
    admin = service.client("admin")
    before = officer_ratings(admin)
    r = admin.post("/api/v1/devices/pi-x/discard", json={"site": "s1", "counter": "1"})
    assert r.status_code == 200 and r.json() == {"device": "pi-x", "discarded": 2}
    assert admin.post("/api/v1/devices/pi-x/discard").status_code == 404
    assert admin.post("/api/v1/devices/pi-x/approve").status_code == 404  # nothing left to count
    assert admin.get("/api/v1/held").json()["items"] == [] and officer_ratings(admin) == before
    items = admin.get("/api/v1/events", params={"device": "pi-x"}).json()["items"]
    assert [(e["held"], e["discarded_ms"]) for e in items] == [("unregistered", now_ms())] * 2  # the API's clock


# ----- the devices page ------------------------------------------------------------------------------


def held_rows(html: str) -> dict[tuple[str, str], dict]:
    return {(r["held"], r["counter"]): r for r in attrs(html, r'<tr data-held="[^>]*>')}


def decide_forms(html: str) -> list[tuple[str, str, str]]:
    return re.findall(r'<form method="post" action="/devices/[^"]+/(approve|discard)" class="decide"'
                      r' data-action="[a-z]+" data-device="([^"]+)" data-counter="([^"]+)"', html)


def test_the_page_lists_held_devices_for_everyone_and_offers_the_decision_to_admins(dash, counters):
    seed_dash(dash, counters)
    dash.store.upsert_site("s1", "Trung tâm 1", "Asia/Tokyo")  # times in the site's zone, not the service's
    pi = counters("pi-new")
    pi.send(rating(pi, 4, None), rating(pi, 3, None))
    moved = counters("dev-2")  # dev-2 is registered at s1/2; these name s1/1
    claim(moved, "s1", "1").seq = 10
    moved.send(rating(moved, 1, None))
    for role in ("viewer", "manager"):
        html = dash.login(role).get("/devices").text
        rows = held_rows(html)
        assert set(rows) == {("pi-new", "s1/1"), ("dev-2", "s1/1")}
        assert (rows["pi-new", "s1/1"]["events"], rows["pi-new", "s1/1"]["ratings"]) == ("2", "2")
        assert (rows["pi-new", "s1/1"]["registered"], rows["dev-2", "s1/1"]["registered"]) == ("", "s1/2")
        assert decide_forms(html) == [] and "/approve" not in html, role
        assert "Sự kiện đang bị giữ lại" in html and "thiết bị hiện tại của quầy: dev-1" in html
    first = int(rows["pi-new", "s1/1"]["first"])
    assert datetime.fromtimestamp(first / 1000, ZoneInfo("Asia/Tokyo")).strftime("%Y-%m-%d %H:%M") in html
    admin = dash.login("admin")
    html = admin.get("/devices").text
    assert sorted(decide_forms(html)) == [("approve", "dev-2", "s1/1"), ("approve", "pi-new", "s1/1"),
                                          ("discard", "dev-2", "s1/1"), ("discard", "pi-new", "s1/1")]
    manager = dash.login("manager")
    token = csrf_of(manager.get("/devices").text)
    for verb in ("approve", "discard"):
        r = manager.post(f"/devices/pi-new/{verb}", data={"csrf": token, "counter": "s1/1"})
        assert r.status_code == 403 and "không có quyền" in r.text
    assert admin.post("/devices/pi-new/approve", data={"counter": "s1/1"}).status_code == 403  # no CSRF token
    assert set(held_rows(admin.get("/devices").text)) == {("pi-new", "s1/1"), ("dev-2", "s1/1")}
    admin.get("/lang/en")
    html = admin.get("/devices").text
    assert "Held events (not counted)" in html and 'data-confirm="Approve device pi-new at counter s1/1?' in html


def test_approving_on_the_page_changes_the_overview_and_the_officers_figures(dash, counters):
    seed_dash(dash, counters)
    dash.store.assign("s1", "1", "o1", now_ms() - 3_600_000)
    pi = counters("pi-new")
    pi.send(rating(pi, 4, None), rating(pi, 4, None))
    evil = counters("evil-1")
    evil.send(rating(evil, 1, None))
    admin = dash.login("admin")

    def figures():
        today = dict(figures_of(admin.get("/").text))["today"]
        officers = {r["officer"]: r["ratings"] for r in attrs(admin.get("/officers").text,
                                                              r'<tr data-officer="[^>]*>')}
        return today["ratings"], officers

    assert figures() == ("6", {"o1": "4", "o2": "2"})
    token = csrf_of(admin.get("/devices").text)
    r = admin.post("/devices/evil-1/discard", data={"csrf": token, "counter": "s1/1"})
    assert r.status_code == 303 and r.headers["location"] == "/devices?msg=discarded&device=evil-1&n=1#held"
    assert figures() == ("6", {"o1": "4", "o2": "2"})
    r = admin.post("/devices/pi-new/approve", data={"csrf": token, "counter": "s1/1"})
    assert r.status_code == 303 and r.headers["location"] == "/devices?msg=approved&device=pi-new&n=2#held"
    flash = admin.get(r.headers["location"]).text
    assert 'data-msg="approved"' in flash and "Đã duyệt pi-new: 2 sự kiện được tính." in flash
    assert 'id="held-none"' in flash
    assert figures() == ("8", {"o1": "6", "o2": "2"})
    api = admin.get("/api/v1/satisfaction", params={"group": "officer", "from": dash.now().date().isoformat(),
                                                    "to": dash.now().date().isoformat()}).json()
    assert {r["key"]: r["ratings"] for r in api["rows"]} == {"o1": 6, "o2": 2}
    # A stale page: the decision was made already.
    r = admin.post("/devices/pi-new/approve", data={"csrf": token, "counter": "s1/1"})
    assert r.headers["location"] == "/devices?msg=nothing_held&device=pi-new&n=0#held"
    r = admin.post("/devices/evil-1/approve", data={"csrf": token, "counter": "s1/1"})
    assert "msg=nothing_held" in r.headers["location"] and figures() == ("8", {"o1": "6", "o2": "2"})


# ----- the attack ------------------------------------------------------------------------------------


def everything_shown(dash, viewer) -> dict:
    """Every figure the API and the dashboard show for the day: what a forged vote would move."""
    day = dash.now().date().isoformat()
    api = {group: viewer.get("/api/v1/satisfaction", params={"group": group, "from": day, "to": day}).json()
           for group in ("officer", "counter", "site")}
    month = {"group": "officer", "month": dash.month()}
    return {
        "api": api,
        "csv": viewer.get("/api/v1/reports/satisfaction.csv", params=month).content,
        "reasons": viewer.get("/api/v1/reasons", params={"officer": "", "from": day, "to": day}).json(),
        "overview": figures_of(viewer.get("/").text),
        "feed": attrs(viewer.get("/").text, r'<li data-seq="[^>]*>'),
        "officers": attrs(viewer.get("/officers").text, r'<tr data-officer="[^>]*>'),
        "o1": re.findall(r'data-[a-z]+="[^"]*"', viewer.get("/officers/o1").text.split('id="officer-figures"')[1]
                         .split(">")[0]),
        "misuse": attrs(viewer.get("/misuse").text, r'<tr data-counter="[^"]*" data-flagged[^>]*>'),
        "invented": viewer.get("/officers/invented").status_code,
    }


def test_a_never_provisioned_client_voting_as_evil_1_changes_no_figure(dash, counters):
    seed_dash(dash, counters)
    dash.store.assign("s1", "1", "o1", now_ms() - 3_600_000)  # what an `"officer": null` forgery would hit
    viewer, admin = dash.login("viewer"), dash.login("admin")
    before = everything_shown(dash, viewer)
    assert before["invented"] == 404

    evil = counters("evil-1")  # the suite's Mosquitto lets anyone in, as the demo's broker did
    evil.send(rating(evil, 1, "invented", reason="Chờ lâu"), rating(evil, 1, None, flags=["repeat"]),
              rating(evil, 1, None))  # stored and acked: a forger learns nothing
    assert everything_shown(dash, viewer) == before
    (held,) = admin.get("/api/v1/held").json()["items"]
    assert (held["device"], held["site"], held["counter"], held["registered"], held["ratings"]) == (
        "evil-1", "s1", "1", None, 3)
    assert set(held_rows(viewer.get("/devices").text)) == {("evil-1", "s1/1")}
    # Nor is it the counter's device: an assignment (officer names) is never published to its topic.
    lone = claim(counters("evil-2"), "s1", "9")
    lone.send(rating(lone, 4, None))  # the only device that ever named s1/9
    r = admin.post("/api/v1/assignments", json={"site": "s1", "counter": "9", "officer": "o1"},
                   headers={"X-CSRF-Token": csrf_of(admin.get("/").text)})
    assert r.status_code == 409 and (r.json()["device"], r.json()["published"]) == (None, False)

    token = csrf_of(admin.get("/devices").text)
    r = admin.post("/devices/evil-1/discard", data={"csrf": token, "counter": "s1/1"})
    assert r.headers["location"] == "/devices?msg=discarded&device=evil-1&n=3#held"
    # It tries again: resends are duplicates, a new vote is held again; discarded ones stay out for good.
    evil.send(*(evil.sent[seq] for seq in (1, 2, 3)), rating(evil, 2, "invented"))
    (again,) = [h for h in admin.get("/api/v1/held").json()["items"] if h["device"] == "evil-1"]
    assert again["events"] == 1
    assert everything_shown(dash, viewer) == before
    r = admin.post("/devices/evil-1/discard", data={"csrf": token, "counter": "s1/1"})
    assert r.headers["location"].endswith("n=1#held")
    assert admin.post("/api/v1/devices/evil-1/approve", headers={"X-CSRF-Token": token}).status_code == 404
    assert everything_shown(dash, viewer) == before
    events = admin.get("/api/v1/events", params={"device": "evil-1"}).json()["items"]
    assert len(events) == 4 and all(e["held"] == "unregistered" and e["discarded_ms"] for e in events)
