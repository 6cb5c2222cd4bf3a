"""Scope in the HTTP API: a principal limited to some sites sees, exports, assigns and commands only
those. Every route of the OpenAPI document is walked with a token of another site; a route that
is not site-aware must be declared site-less in SITELESS, and then refuses every scoped caller.
"""
from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from fastapi.routing import APIRoute

from broker.api.deps import Scope, check_province
from broker.api.errors import _shape
from broker.auth import Principal
from tests.test_api_contract import document
from tests.test_broker_api import NOW, TODAY, counters, rating, register, service  # noqa: F401  (fixtures)

PUBLIC = {"/healthz", "/api/v1/openapi.json", "/api/v1/docs", "/api/v1/docs/oauth2-redirect"}
# Routes about no site, or about every site at once: they refuse a caller limited to some sites
# (403). A new route goes here on purpose, or takes a SiteViewer/SiteManager/SiteAdmin.
SITELESS = {
    ("GET", "/metrics"), ("GET", "/api/v1/dead-letters"),
    ("POST", "/api/v1/officers"), ("PUT", "/api/v1/officers/{officer_id}"),
    ("DELETE", "/api/v1/officers/{officer_id}"),
    ("GET", "/api/v1/users"), ("PUT", "/api/v1/users/{name}/sites"),
    ("GET", "/api/v1/tokens"), ("PUT", "/api/v1/tokens/{name}/sites"),
    # fleet updates: releases and rollouts are the province IT department's (docs/updates.md)
    ("GET", "/api/v1/releases"), ("POST", "/api/v1/releases"), ("GET", "/api/v1/rollouts"),
    ("POST", "/api/v1/rollouts"), ("GET", "/api/v1/rollouts/{rollout_id}"), ("POST", "/api/v1/rollouts/{rollout_id}/stop"),
}
# Counters fetch release files with their MQTT credentials (HTTP Basic), never a token: no principal.
DEVICE_ROUTES = {("GET", "/api/v1/releases/{release_id}/{name}")}
NAMES = "Secret"  # in its names: a refusal may repeat the ids asked about, never a stored name
IDS = ("secret-site", "secret-officer", "secret-device", "secret-ghost", "secret-user")
PATH_VALUES = {"site_id": "secret-site", "counter_id": "c1", "officer_id": "secret-officer",
               "device_id": "secret-device", "name": "secret-user", "queue_id": "A", "alert_id": "1"}
# The held routes need a device whose events are held (naming the secret site).
DEVICE_OF = {"/api/v1/devices/{device_id}/approve": "secret-ghost",
             "/api/v1/devices/{device_id}/discard": "secret-ghost"}
BODIES = {"/api/v1/sites": {"id": "secret-site", "name": "x"}, "/api/v1/sites/{site_id}": {"name": "x"},
          "/api/v1/counters": {"site": "secret-site", "counter": "c9", "name": "x"},
          "/api/v1/counters/{site_id}/{counter_id}": {"name": "x"},
          "/api/v1/officers": {"id": "o9", "name": "x", "code": "9"}, "/api/v1/officers/{officer_id}": {"name": "x"},
          # registering another site's device at one's own counter would take it
          "/api/v1/devices/{device_id}": {"site": "mine", "counter": "m1"},
          "/api/v1/assignments": {"site": "secret-site", "counter": "c1", "officer": None},
          "/api/v1/devices/{device_id}/display": {"ticket": "1"},
          "/api/v1/devices/{device_id}/identify": {"seconds": 5},
          "/api/v1/users/{name}/sites": {"sites": None}, "/api/v1/tokens/{name}/sites": {"sites": None},
          "/api/v1/queues": {"site": "secret-site", "queue": "Z", "name": "x", "prefix": "Z"},
          "/api/v1/queues/{site_id}/{queue_id}": {"name": "x", "prefix": "A"},
          "/api/v1/sites/{site_id}/hours": {"weekly": {"mon": ["07:30-11:30"]}}}
MONTH = NOW.strftime("%Y-%m")
PARAMS = {"group": "officer", "from": (TODAY - timedelta(days=1)).isoformat(), "to": TODAY.isoformat(),
          "month": MONTH, "officer": "secret-officer", "date": TODAY.isoformat(), "state": "all"}


def seed(service, counters) -> None:  # noqa: F811
    """Two sites: "secret-site" (a counter, its device, an officer rated there, a held device) and "mine"."""
    store = service.store
    store.upsert_site("secret-site", "Secret centre")
    store.upsert_site("mine", "My centre")
    store.upsert_counter("secret-site", "c1", "Secret counter")
    store.upsert_counter("mine", "m1", "My counter")
    store.upsert_officer("secret-officer", "Secret Officer", "S1")
    register(store, ("secret-device", "secret-site", "c1"))
    store.assign("secret-site", "c1", "secret-officer", 0)
    c = counters("secret-device", site="secret-site", counter="c1")
    c.send(rating(c, 1, "secret-officer", reason="Secret reason"), rating(c, 4, "secret-officer"),
           c.event("call", officer="secret-officer", action="next"))
    ghost = counters("secret-ghost", site="secret-site", counter="c2")
    ghost.send(rating(ghost, 3, "secret-officer"))  # held: nobody registered it
    service.auth.add_user("secret-user", "viewer", "p" * 12, sites=["secret-site"])
    store.upsert_queue("secret-site", "A", "Secret queue", "A")
    # alert 1: the secret site's device went offline (no notices: no channel is configured here)
    store.apply_alerts([("offline", "secret-device", "secret-site", {"name": "Secret device"})], [],
                       lambda *_: [], 0)


def routes() -> list[tuple[str, str]]:
    return [(method.upper(), path) for path, ops in document()["paths"].items() if path not in PUBLIC
            for method in ops if (method.upper(), path) not in DEVICE_ROUTES]


class _Values(dict):
    def __missing__(self, key: str) -> str:
        return f"secret-{key}"  # a route keyed by something new: an id of the secret site's kind


def call(client: httpx.Client, method: str, path: str, **params) -> httpx.Response:
    url = path.format_map(_Values({**PATH_VALUES, "device_id": DEVICE_OF.get(path, PATH_VALUES["device_id"])}))
    return client.request(method, url, params={**PARAMS, **params},
                          json=BODIES.get(path) if method != "GET" else None)


def leaks(r: httpx.Response) -> str | None:
    """What is wrong with an answer to a caller of another site, or None."""
    if r.status_code in (403, 404, 422):  # 422: the request was refused before anything was read
        try:
            return None if r.json().keys() == {"detail"} and NAMES not in r.json()["detail"] else r.text[:120]
        except ValueError:
            return r.text[:120]
    if r.is_success and r.request.method == "GET":
        # an answer may repeat what was asked (?officer=secret-officer), nothing else of that site
        asked = str(r.request.url)
        told = [word for word in (NAMES, *IDS) if word in r.text and word not in asked]
        return f"{r.status_code} tells {told}: {r.text[:200]}" if told else None
    return f"{r.status_code}: {r.text[:120]}"


def test_every_route_answers_another_sites_caller_with_403_or_404_and_no_data(service, counters):  # noqa: F811
    seed(service, counters)
    before = state(service)
    other = service.client(token=service.auth.create_token("admin", "other-admin", sites=["mine"]))
    same = service.client(token=service.auth.create_token("admin", "same-admin", sites=["secret-site"]))
    failures = []
    for method, path in routes():
        for params in ({}, {"site": "secret-site"}):
            problem = leaks(call(other, method, path, **params))
            if problem:
                failures.append(f"{method} {path} {params or ''} as another site's admin: {problem}")
        if method != "GET":
            continue
        r = call(same, method, path)
        if (method, path) in SITELESS and r.status_code != 403:
            failures.append(f"{method} {path} is declared site-less but answered {r.status_code} to a scoped caller")
        elif (method, path) not in SITELESS and r.status_code == 403:
            failures.append(f"{method} {path} refuses the site's own caller: take a SiteViewer (or SiteManager, "
                            f"SiteAdmin) and narrow it, or declare it in SITELESS")
    assert not failures, "\n".join(failures)
    assert state(service) == before  # nothing was changed, sent or decided


def state(service) -> tuple:
    s = service.store
    return (s.sites(), s.counters(), s.officers(), [(d["device"], d["site"], d["counter"], d["registered"])
                                                   for d in s.devices()],
            s.held_devices(), s.current_assignments(), service.auth.list_users())


def api_routes(routes) -> list[APIRoute]:
    """Every APIRoute; FastAPI >= 0.165 keeps an included router's routes inside it, older versions flat."""
    found = []
    for route in routes:
        if isinstance(route, APIRoute):
            found.append(route)
        elif hasattr(route, "original_router"):
            found += api_routes(route.original_router.routes)
    return found


def test_every_route_is_site_scoped_or_declared_siteless():
    """Static, from the routes' dependencies: the walk above sends the site's own caller only GETs."""
    from broker.api import create_app
    from tests.test_api_contract import config

    app = create_app(store=None, ingest=None, auth=None, cfg=config("unused.db"))
    declared = set()
    for route in api_routes(app.routes):
        if route.include_in_schema and route.path not in PUBLIC:
            shape = _shape(route.dependant)
            for method in route.methods:
                if (method, route.path) in DEVICE_ROUTES:
                    continue
                declared.add((method, route.path))
                if (method, route.path) in SITELESS:
                    assert shape.province, f"{method} {route.path} is declared site-less but accepts scoped callers"
                else:
                    assert shape.scoped and not shape.province, f"{method} {route.path}: neither site-scoped " \
                                                                f"nor declared site-less"
    assert SITELESS <= declared, f"SITELESS names routes that are gone: {SITELESS - declared}"


def test_a_scoped_caller_sees_its_own_site_in_full(service, counters):  # noqa: F811
    seed(service, counters)
    same = service.client(token=service.auth.create_token("viewer", "same", sites=["secret-site"]))
    other = service.client(token=service.auth.create_token("viewer", "other", sites=["mine"]))
    assert [s["id"] for s in same.get("/api/v1/sites").json()["items"]] == ["secret-site"]
    assert [s["id"] for s in other.get("/api/v1/sites").json()["items"]] == ["mine"]
    rows = same.get("/api/v1/satisfaction", params={**PARAMS, "group": "site"}).json()["rows"]
    assert [(r["key"], r["ratings"]) for r in rows] == [("secret-site", 2)]
    assert other.get("/api/v1/satisfaction", params={**PARAMS, "group": "officer"}).json()["rows"] == []
    assert [i["reason"] for i in same.get("/api/v1/reasons", params=PARAMS).json()["items"]] == ["Secret reason"]
    assert other.get("/api/v1/reasons", params=PARAMS).json()["items"] == []
    assert len(same.get("/api/v1/events").json()["items"]) == 4  # three counted and the held one
    assert [d["device"] for d in same.get("/api/v1/held").json()["items"]] == ["secret-ghost"]
    assert same.get("/api/v1/officers/secret-officer").status_code == 200
    assert other.get("/api/v1/officers/secret-officer").status_code == 404
    # An officer nobody has seen anywhere yet carries no evaluation: every site may see and assign them.
    service.store.upsert_officer("new-officer", "New", "N1")
    assert [o["id"] for o in other.get("/api/v1/officers").json()["items"]] == ["new-officer"]


def test_an_empty_scope_sees_nothing_and_a_province_scope_everything(service, counters):  # noqa: F811
    seed(service, counters)
    service.auth.create_token("viewer", "nobody", sites=[])
    nobody = service.client(token=service.auth.create_token("viewer", "later", sites=["mine"]))
    service.auth.set_sites("token", "later", [])  # the last site taken away: nothing, not everything
    assert nobody.get("/api/v1/sites").json()["items"] == []
    assert nobody.get("/api/v1/events").json()["items"] == []
    admin = service.client("admin")
    r = admin.put("/api/v1/tokens/later/sites", json={"sites": None})
    assert r.status_code == 200 and r.json()["sites"] is None
    assert {s["id"] for s in nobody.get("/api/v1/sites").json()["items"]} == {"secret-site", "mine"}
    assert admin.put("/api/v1/tokens/missing/sites", json={"sites": []}).status_code == 404
    users = admin.get("/api/v1/users").json()["items"]
    assert {"name": "secret-user", "role": "viewer", "sites": ["secret-site"]} in users


def test_scope_helpers_decide_like_the_routes():
    scoped, province = Principal("a", "viewer", sites=frozenset({"s1"})), Principal("b", "viewer")
    assert Scope.of(scoped).narrow(None) == {"s1"} and Scope.of(province).narrow(None) is None
    assert Scope.of(scoped).only([{"site": "s1"}, {"site": "s2"}, {"site": None}]) == [{"site": "s1"}]
    with pytest.raises(Exception) as refused:
        Scope.of(scoped).site("s2")
    assert refused.value.status_code == 404
    with pytest.raises(Exception) as refused:
        check_province(scoped)
    assert refused.value.status_code == 403
