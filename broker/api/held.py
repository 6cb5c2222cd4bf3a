"""Held events: what devices the registry does not vouch for sent; an admin approves or discards them.

Only a device registered at the counter its events name counts (docs/store.md, "Only known
devices count"); the others' events are stored, acked and held. `GET /held` lists them,
`POST /devices/{id}/approve` registers the device there and counts them, `POST
/devices/{id}/discard` keeps them out of every figure for good.
"""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path
from pydantic import BaseModel, Field

from broker import actions
from broker.api.bodies import DEVICE_PATTERN
from broker.api.deps import API, Admin, ClockDep, StoreDep, Viewer
from broker.store import Ambiguous, NothingHeld

__all__ = ["router"]

router = APIRouter(prefix=API, tags=["devices"])

NOTHING_HELD = "nothing from the device is held (naming that site and counter, if given)"
DeviceId = Annotated[str, Path(pattern=DEVICE_PATTERN)]


class Detail(BaseModel):
    detail: str


def _answers(codes: dict[int, str] | None = None) -> dict:
    """The error answers a route gives, for its OpenAPI description: 401 and 403, and these."""
    codes = {401: "no token, or a wrong one", 403: "the role is too low", **(codes or {})}
    return {code: {"model": Detail, "description": why} for code, why in codes.items()}


class HeldChoice(BaseModel):
    """Which of the device's held events: those naming this site and counter (both, or neither: all)."""

    site: str | None = Field(None, min_length=1, max_length=64)
    counter: str | None = Field(None, min_length=1, max_length=64)


def _decided(decide, *args) -> dict:
    try:
        return decide(*args)
    except NothingHeld as e:
        raise HTTPException(404, str(e)) from None
    except Ambiguous as e:  # a ValueError too: caught first
        raise HTTPException(409, str(e)) from None
    except ValueError as e:
        raise HTTPException(422, str(e)) from None


@router.get("/held", responses=_answers())
def held(_: Viewer, store: StoreDep):
    """Devices whose events wait for an admin, one item per device and the site and counter they name."""
    return {"items": store.held_devices()}


@router.post("/devices/{device_id}/approve", responses=_answers({
    404: NOTHING_HELD, 409: "its held events name several counters: choose one",
    422: "only one of site and counter, or an invalid device id"}))
def approve(_: Admin, store: StoreDep, device_id: DeviceId, body: HeldChoice | None = None):
    """Register the device at the counter its held events name and count them; it replaces the device there."""
    body = body or HeldChoice()
    return _decided(actions.approve_held, store, device_id, body.site, body.counter)


@router.post("/devices/{device_id}/discard", responses=_answers({404: NOTHING_HELD}))
def discard(_: Admin, store: StoreDep, clock: ClockDep, device_id: DeviceId, body: HeldChoice | None = None):
    """Never count the device's held events (only those naming site and counter, if given); kept for audit."""
    body = body or HeldChoice()
    return _decided(actions.discard_held, store, device_id, int(clock() * 1000), body.site, body.counter)
