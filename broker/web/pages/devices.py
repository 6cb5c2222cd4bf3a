"""Counters and devices: what is where and who sits there; managers assign officers and identify devices.

Held events (devices the registry does not vouch for, broker.store.held) are listed here too;
an admin approves or discards them, as `POST /api/v1/devices/{id}/approve|discard` does.
"""
# No `from __future__ import annotations`: FastAPI reads the dependency annotations as objects.

import logging
from datetime import datetime
from urllib.parse import quote, unquote

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from broker import actions
from broker.api.bodies import AssignmentIn
from broker.store import Ambiguous, NothingHeld
from broker.web.format import counter_value
from broker.web.page import ActingPage, Form, Page, UserPage
from common.periods import zone

__all__ = ["router"]

log = logging.getLogger("hailong.web")

router = APIRouter(include_in_schema=False)

MESSAGES = ("identify_sent", "assigned", "assigned_not_sent", "bad_request", "approved", "discarded", "nothing_held")
IDENTIFY_S = 10
DECIDING_ROLE = "admin"  # the role the API asks to approve or discard held events, as to register a device


def _counter_rows(counters: list[dict], devices: list[dict], assigned: dict, officer_names: dict) -> list[dict]:
    """The registered counters, then those only devices know of, each with its officer."""
    known = {(c["site"], c["counter"]) for c in counters}
    unknown = sorted({(r["site"], r["counter"]) for r in devices if r["site"] is not None} - known)
    rows = [*counters, *({"site": s, "counter": c, "name": "", "device": None} for s, c in unknown)]
    return [{**c, "value": counter_value(c["site"], c["counter"]),
             "officer": assigned.get((c["site"], c["counter"])),
             "officer_name": officer_names.get(assigned.get((c["site"], c["counter"])))}
            for c in rows]


def _held_rows(page: Page, counters: list[dict]) -> list[dict]:
    """Held devices, each with its claimed counter's name and current device, times in the site's zone."""
    store = page.dash.store
    at = {(c["site"], c["counter"]): c for c in counters}
    tz_of = {s["id"]: s["tz"] for s in store.sites()}
    rows = []
    for h in _at(page, store.held_devices()):
        counter = at.get((h["site"], h["counter"]), {})
        tz = zone(tz_of.get(h["site"], page.dash.tz_name))
        rows.append({**h, "counter_name": counter.get("name") or "", "value": counter_value(h["site"], h["counter"]),
                     "replaces": None if counter.get("device") == h["device"] else counter.get("device"),
                     "first": _local(h["first_received_ms"], tz), "last": _local(h["last_received_ms"], tz)})
    return rows


def _local(ms: int, tz) -> str:
    return datetime.fromtimestamp(ms / 1000, tz).strftime("%Y-%m-%d %H:%M")


def _at(page: Page, items: list[dict]) -> list[dict]:
    """The items at the page's sites."""
    sites = page.sites
    return [item for item in items if sites is None or item.get("site") in sites]


def _officers(page: Page) -> list[dict]:
    seen = page.dash.store.officers_seen(page.scope.sites)
    return [o for o in page.dash.store.officers() if seen is None or o["id"] in seen]


@router.get("/devices")
def devices(page: UserPage, msg: str | None = None, device: str | None = None, n: str = ""):
    store = page.dash.store
    counters = _at(page, store.counters())
    names = {(c["site"], c["counter"]): c["name"] for c in counters}
    officers = _officers(page)
    officer_names = {o["id"]: o["name"] for o in officers}
    assigned = store.current_assignments()
    rows = []
    for dev in _at(page, store.devices()):
        key = (dev["site"], dev["counter"])
        officer_id = assigned.get(key)
        rows.append({**dev, "counter_name": names.get(key) or "",
                     "officer": officer_id, "officer_name": officer_names.get(officer_id, officer_id)})
    return page.render("devices.html", devices=rows, counters=_counter_rows(counters, rows, assigned, officer_names),
                       officers=officers, message=msg if msg in MESSAGES else None, message_device=device or "",
                       message_n=n if n.isdigit() else "", held=_held_rows(page, counters), can_decide=page.principal.allows(DECIDING_ROLE))


@router.post("/devices/{device_id}/identify")
def identify(page: ActingPage, device_id: str):
    found = page.dash.store.device(device_id)
    if found is None or not page.scope.sees(found["site"]):
        return page.error(404, "error.not_found")
    try:
        actions.identify_device(page.dash.store, page.dash.ingest, device_id, IDENTIFY_S)
    except actions.NotFound:
        return page.error(404, "error.not_found")
    log.info("dashboard: %s asked %s to identify itself", page.session.user, device_id)
    return RedirectResponse(f"/devices?msg=identify_sent&device={quote(device_id, safe='')}", status_code=303)


@router.post("/devices/assign")
def assign(page: ActingPage, form: Form):
    site, _, counter = form.get("counter", "").partition("/")
    officer_id = form.get("officer") or None
    try:  # the API's own body: the same limits as POST /api/v1/assignments
        body = AssignmentIn(site=unquote(site), counter=unquote(counter), officer=officer_id)
        if not page.scope.sees(body.site):
            return page.error(404, "error.not_found")
        seen = page.dash.store.officers_seen(page.scope.sites)
        if officer_id is not None and seen is not None and officer_id not in seen:
            raise actions.NotFound("officer", officer_id)  # as for one that does not exist
        result = actions.assign_officer(page.dash.store, page.dash.ingest, site=body.site, counter=body.counter,
                                        officer=body.officer, at_ms=page.dash.now_ms())
    except (ValidationError, actions.NotFound, actions.NotShowable):
        return RedirectResponse("/devices?msg=bad_request", status_code=303)
    log.info("dashboard: %s assigned %r to %s/%s", page.session.user, officer_id, body.site, body.counter)
    return RedirectResponse(f"/devices?msg={'assigned' if result['published'] else 'assigned_not_sent'}",
                            status_code=303)


def _may_decide(page: Page, device_id: str, site: str) -> bool:
    """Whether every site the decision touches is the user's: the one named (else all the device's held
    events name), and where the device is registered now (approving moves it)."""
    store = page.dash.store
    touched = {site} if site else {h["site"] for h in store.held_devices() if h["device"] == device_id}
    device = store.device(device_id)
    if device is not None and device["site"] is not None:
        touched.add(device["site"])
    return all(map(page.scope.sees, touched))


def _decide(page: Page, form: dict, device_id: str, what: str, decide) -> Response:
    """Approve or discard (`decide(site, counter)`) one held row of the page, for an admin only."""
    if not page.principal.allows(DECIDING_ROLE):
        return page.error(403, "error.forbidden")
    site, _, counter = form.get("counter", "").partition("/")
    if not _may_decide(page, device_id, unquote(site)):
        return page.error(404, "error.not_found")
    try:  # each row names its counter, so never ambiguous; a stale page may find nothing left to decide
        result = decide(unquote(site) or None, unquote(counter) or None)
    except NothingHeld:
        return _back("nothing_held", device_id)
    except (Ambiguous, ValueError):
        return RedirectResponse("/devices?msg=bad_request", status_code=303)
    n = result.get("counted", result.get("discarded"))
    log.info("dashboard: %s %s %d held event(s) of %s naming %s/%s", page.session.user, what, n, device_id,
             unquote(site), unquote(counter))
    return _back(what, device_id, n)


def _back(msg: str, device_id: str, n: int = 0) -> RedirectResponse:
    return RedirectResponse(f"/devices?msg={msg}&device={quote(device_id, safe='')}&n={n}#held", status_code=303)


@router.post("/devices/{device_id}/approve")
def approve(page: ActingPage, form: Form, device_id: str):
    return _decide(page, form, device_id, "approved",
                   lambda site, counter: actions.approve_held(page.dash.store, device_id, site, counter))


@router.post("/devices/{device_id}/discard")
def discard(page: ActingPage, form: Form, device_id: str):
    at_ms = page.dash.now_ms()
    return _decide(page, form, device_id, "discarded",
                   lambda site, counter: actions.discard_held(page.dash.store, device_id, at_ms, site, counter))
