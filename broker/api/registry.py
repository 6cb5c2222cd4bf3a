"""The registry: sites, their counters, and officers. Anyone may read it; only an admin changes it.

A principal limited to some sites reads and changes only those sites and their counters, and reads
only the officers its sites have seen (or nobody has yet: broker.store.sites); officers are
changed by a province-wide admin.
"""
from __future__ import annotations

from typing import Annotated

from fastapi import HTTPException, Path, Query, Response

from broker.api.answers import CounterItem, CounterList, OfficerItem, OfficerList, SiteItem, SiteList, ok
from broker.api.bodies import ID_PATTERN, CounterBody, CounterIn, Key, OfficerBody, OfficerIn, SiteBody, SiteIn
from broker.api.deps import API, Admin, Scope, SettingsDep, SiteAdmin, SiteViewer, StoreDep
from broker.api.errors import api_router, errors, found
from broker.api.queues import counter_with_queues
from broker.store import InUse

__all__ = ["router"]

router = api_router("registry")

# Looked up, not created: the looser rule, so anything stored can still be read and deleted.
SiteKey = Key(Path, examples=["hcm-q1"])
CounterKey = Key(Path, examples=["03"])
OfficerKey = Key(Path, examples=["off-0042"])
NewSite = Annotated[str, Path(pattern=ID_PATTERN, description="1-64 of A-Z a-z 0-9 _ . -", examples=["hcm-q1"])]
NewCounter = Annotated[str, Path(pattern=ID_PATTERN, description="1-64 of A-Z a-z 0-9 _ . -", examples=["03"])]


# ----- sites --------------------------------------------------------------------------------------


@router.get("/sites", responses=ok(SiteList))
def list_sites(scope: SiteViewer, store: StoreDep):
    return {"items": scope.only(store.sites(), "id")}


@router.get("/sites/{site_id}", responses=ok(SiteItem) | errors(404))
def get_site(scope: SiteViewer, store: StoreDep, site_id: SiteKey):
    return found(store.site(scope.site(site_id)), f"site {site_id!r}")


@router.post("/sites", status_code=201, responses=ok(SiteItem, 201) | errors(404, 409))
def create_site(scope: SiteAdmin, store: StoreDep, settings: SettingsDep, body: SiteIn):
    """Add a site; a principal limited to some sites may add only one of those."""
    scope.site(body.id)
    if store.site(body.id) is not None:
        raise HTTPException(409, f"site {body.id!r} already exists; PUT {API}/sites/{body.id} changes it")
    store.upsert_site(body.id, body.name, tz=body.tz or settings.tz)
    return store.site(body.id)


@router.put("/sites/{site_id}", responses=ok(SiteItem) | errors(404))
def put_site(scope: SiteAdmin, store: StoreDep, settings: SettingsDep, site_id: NewSite, body: SiteBody):
    store.upsert_site(scope.site(site_id), body.name, tz=body.tz or settings.tz)
    return store.site(site_id)


@router.delete("/sites/{site_id}", status_code=204, responses=errors(404, 409))
def delete_site(scope: SiteAdmin, store: StoreDep, site_id: SiteKey):
    found(store.site(scope.site(site_id)), f"site {site_id!r}")
    try:
        store.delete_site(site_id)
    except InUse as e:
        raise HTTPException(409, str(e)) from None
    return Response(status_code=204)


# ----- counters -----------------------------------------------------------------------------------


@router.get("/counters", responses=ok(CounterList) | errors(404))
def list_counters(scope: SiteViewer, store: StoreDep, site: Annotated[str | None, Query(max_length=64)] = None):
    counters = scope.only(store.counters(site if site is None else scope.site(site)))
    served = store.all_counter_queues(site)
    return {"items": [{**c, "queues": served.get((c["site"], c["counter"]), [])} for c in counters]}


def _movable(scope: Scope, store, device: str | None) -> None:
    """404 if the device is registered at a site the caller does not see: binding it here would take it."""
    current = store.device(device) if device is not None else None
    if current is not None and current["site"] is not None and not scope.sees(current["site"]):
        raise HTTPException(404, f"no such device {device!r}")


def _counter_of(scope: Scope, site_id: str, counter_id: str) -> str:
    return scope.site(site_id, f"counter {site_id}/{counter_id}")


@router.get("/counters/{site_id}/{counter_id}", responses=ok(CounterItem) | errors(404))
def get_counter(scope: SiteViewer, store: StoreDep, site_id: SiteKey, counter_id: CounterKey):
    counter = store.counter(_counter_of(scope, site_id, counter_id), counter_id)
    return found(counter_with_queues(store, counter), f"counter {site_id}/{counter_id}")


@router.post("/counters", status_code=201, responses=ok(CounterItem, 201) | errors(404, 409))
def create_counter(scope: SiteAdmin, store: StoreDep, body: CounterIn):
    found(store.site(scope.site(body.site)), f"site {body.site!r} (create it first)")
    _movable(scope, store, body.device)
    if store.counter(body.site, body.counter) is not None:
        raise HTTPException(409, f"counter {body.site}/{body.counter} already exists; "
                                 f"PUT {API}/counters/{body.site}/{body.counter} changes it")
    _known_queues(store, body.site, body.queues)
    store.upsert_counter(body.site, body.counter, body.name, device=body.device)
    return _serving(store, body.site, body.counter, body.queues)


@router.put("/counters/{site_id}/{counter_id}", responses=ok(CounterItem) | errors(404))
def put_counter(scope: SiteAdmin, store: StoreDep, site_id: SiteKey, counter_id: NewCounter, body: CounterBody):
    found(store.site(_counter_of(scope, site_id, counter_id)), f"site {site_id!r} (create it first)")
    _movable(scope, store, body.device)
    _known_queues(store, site_id, body.queues)
    store.upsert_counter(site_id, counter_id, body.name, device=body.device)
    return _serving(store, site_id, counter_id, body.queues)


def _known_queues(store, site: str, queues: list[str] | None) -> None:
    """404 before anything changes if the counter is to serve a queue the site does not have."""
    known = {q["queue"] for q in store.queues(site)}
    missing = [q for q in queues or () if q not in known]
    if missing:
        raise HTTPException(404, f"site {site!r} has no queue {missing[0]!r} (create it first)")


def _serving(store, site: str, counter: str, queues: list[str] | None) -> dict:
    """Set the queues the counter serves (None: leave them as they are)."""
    if queues is not None:
        try:
            store.set_counter_queues(site, counter, queues)
        except ValueError as e:  # a queue deleted since _known_queues looked
            raise HTTPException(404, str(e)) from None
    return counter_with_queues(store, store.counter(site, counter))


@router.delete("/counters/{site_id}/{counter_id}", status_code=204, responses=errors(404))
def delete_counter(scope: SiteAdmin, store: StoreDep, site_id: SiteKey, counter_id: CounterKey):
    found(store.counter(_counter_of(scope, site_id, counter_id), counter_id), f"counter {site_id}/{counter_id}")
    store.delete_counter(site_id, counter_id)
    return Response(status_code=204)


# ----- officers -----------------------------------------------------------------------------------


@router.get("/officers", responses=ok(OfficerList))
def list_officers(scope: SiteViewer, store: StoreDep):
    seen = store.officers_seen(scope.sites)
    return {"items": [o for o in store.officers() if seen is None or o["id"] in seen]}


@router.get("/officers/{officer_id}", responses=ok(OfficerItem) | errors(404))
def get_officer(scope: SiteViewer, store: StoreDep, officer_id: OfficerKey):
    seen = store.officers_seen(scope.sites)
    return found(store.officer(officer_id) if seen is None or officer_id in seen else None, f"officer {officer_id!r}")


@router.post("/officers", status_code=201, responses=ok(OfficerItem, 201) | errors(409))
def create_officer(_: Admin, store: StoreDep, body: OfficerIn):
    if store.officer(body.id) is not None:
        raise HTTPException(409, f"officer {body.id!r} already exists; PUT {API}/officers/{body.id} changes it")
    store.upsert_officer(body.id, body.name, body.code, body.unit, body.badge)
    return store.officer(body.id)


@router.put("/officers/{officer_id}", responses=ok(OfficerItem))
def put_officer(_: Admin, store: StoreDep, officer_id: OfficerKey, body: OfficerBody):
    store.upsert_officer(officer_id, body.name, body.code, body.unit, body.badge)
    return store.officer(officer_id)


@router.delete("/officers/{officer_id}", status_code=204, responses=errors(404))
def delete_officer(_: Admin, store: StoreDep, officer_id: OfficerKey):
    found(store.officer(officer_id), f"officer {officer_id!r}")
    store.delete_officer(officer_id)
    return Response(status_code=204)
