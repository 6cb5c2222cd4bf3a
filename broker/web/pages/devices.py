"""Counters and devices: what is where and who sits there; managers assign officers and identify devices."""
# No `from __future__ import annotations`: FastAPI reads the dependency annotations as objects.

import logging
from urllib.parse import quote, unquote

from fastapi import APIRouter
from fastapi.responses import RedirectResponse
from pydantic import ValidationError

from broker import actions
from broker.api.bodies import AssignmentIn
from broker.web.format import counter_value
from broker.web.page import ActingPage, Form, UserPage

__all__ = ["router"]

log = logging.getLogger("hailong.web")

router = APIRouter(include_in_schema=False)

MESSAGES = ("identify_sent", "assigned", "assigned_not_sent", "bad_request")
IDENTIFY_S = 10


def _counter_rows(counters: list[dict], devices: list[dict], assigned: dict, officer_names: dict) -> list[dict]:
    """The registered counters, then those only devices know of, each with its officer."""
    known = {(c["site"], c["counter"]) for c in counters}
    unknown = sorted({(r["site"], r["counter"]) for r in devices if r["site"] is not None} - known)
    rows = [*counters, *({"site": s, "counter": c, "name": "", "device": None} for s, c in unknown)]
    return [{**c, "value": counter_value(c["site"], c["counter"]),
             "officer": assigned.get((c["site"], c["counter"])),
             "officer_name": officer_names.get(assigned.get((c["site"], c["counter"])))}
            for c in rows]


@router.get("/devices")
def devices(page: UserPage, msg: str | None = None, device: str | None = None):
    store = page.dash.store
    counters = store.counters()
    names = {(c["site"], c["counter"]): c["name"] for c in counters}
    officers = store.officers()
    officer_names = {o["id"]: o["name"] for o in officers}
    assigned = store.current_assignments()
    rows = []
    for dev in store.devices():
        key = (dev["site"], dev["counter"])
        officer_id = assigned.get(key)
        rows.append({**dev, "counter_name": names.get(key) or "",
                     "officer": officer_id, "officer_name": officer_names.get(officer_id, officer_id)})
    return page.render("devices.html", devices=rows, counters=_counter_rows(counters, rows, assigned, officer_names),
                       officers=officers, message=msg if msg in MESSAGES else None, message_device=device or "")


@router.post("/devices/{device_id}/identify")
def identify(page: ActingPage, device_id: str):
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
        result = actions.assign_officer(page.dash.store, page.dash.ingest, site=body.site, counter=body.counter,
                                        officer=body.officer, at_ms=page.dash.now_ms())
    except (ValidationError, actions.NotFound, actions.NotShowable):
        return RedirectResponse("/devices?msg=bad_request", status_code=303)
    log.info("dashboard: %s assigned %r to %s/%s", page.session.user, officer_id, body.site, body.counter)
    return RedirectResponse(f"/devices?msg={'assigned' if result['published'] else 'assigned_not_sent'}",
                            status_code=303)
