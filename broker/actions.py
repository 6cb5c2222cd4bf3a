"""What a manager or an admin does to the counters, whether asked through the API or the dashboard's forms.

Plain functions over the store and ingest: no HTTP here. Callers check the caller's role
first (broker.api.deps) and turn the typed errors below into their own answers (a JSON
404 for the API, an error page or a flash message for the dashboard). Deciding about held
events (an admin's) raises the store's own errors: NothingHeld, Ambiguous, ValueError.
"""
from __future__ import annotations

from common.errors import HailongError
from protocol import ProtocolError
from protocol.messages import make_assignment, make_command

__all__ = ["ActionError", "NotFound", "NotShowable", "approve_held", "assign_officer", "discard_held", "display_ticket",
           "identify_device"]


class ActionError(HailongError):
    """An action could not be done; the message says why."""


class NotFound(ActionError, LookupError):
    """The officer or device named is not in the registry."""

    def __init__(self, kind: str, key: str):
        self.kind, self.key = kind, key
        super().__init__(kind, key)

    def __str__(self) -> str:
        return f"no such {self.kind} {self.key!r}"


class NotShowable(ActionError, ValueError):
    """The officer's record cannot be put on a counter's display."""


def assign_officer(store, ingest, *, site: str, counter: str, officer: str | None, at_ms: int) -> dict:
    """Put `officer` (or nobody, for None) at a counter from `at_ms`: recorded, then sent to its device.

    The assignment is recorded even when the counter has no device yet; the result says
    whether it was `published`. It is sent retained, so the device gets it on every
    (re)connect, even if it is offline right now.
    """
    shown = None
    if officer is not None:
        row = store.officer(officer)
        if row is None:
            raise NotFound("officer", officer)
        shown = {"id": row["id"], "name": row["name"], "code": row["code"]}
    try:
        payload = make_assignment(shown)
    except ProtocolError as e:
        raise NotShowable(f"officer {officer!r} cannot be shown on a counter: {e}") from None
    store.assign(site, counter, officer, at_ms)
    device = store.device_at(site, counter)
    if device is not None:
        ingest.publish(device, "assignment", payload, retain=True)
    return {"site": site, "counter": counter, "officer": officer, "at": at_ms,
            "recorded": True, "device": device, "published": device is not None, "assignment": payload}


def _command(store, ingest, device: str, command: dict) -> dict:
    if store.device(device) is None:
        raise NotFound("device", device)
    ingest.publish(device, "cmd", command)
    return {"device": device, "published": True, "command": command}


def identify_device(store, ingest, device: str, seconds: float = 10) -> dict:
    """Make the device blink for `seconds`, to find it on the floor."""
    seconds = int(seconds) if float(seconds).is_integer() else seconds
    return _command(store, ingest, device, make_command("identify", seconds=seconds))


def display_ticket(store, ingest, device: str, ticket: str) -> dict:
    """Show a queue ticket number on the device's display."""
    return _command(store, ingest, device, make_command("display", ticket=ticket))


def approve_held(store, device: str, site: str | None = None, counter: str | None = None) -> dict:
    """Register `device` at the counter its held events name, and count them (broker.store.held).

    `site` and `counter` (both or neither) choose when its events name several counters. The
    device registered at that counter before is unregistered: one device per counter.
    NothingHeld when nothing waits, Ambiguous when a counter must be chosen, ValueError for
    only one of site and counter. Returns {"device", "site", "counter", "counted"}.
    """
    return store.approve_device(device, site, counter)


def discard_held(store, device: str, at_ms: int, site: str | None = None, counter: str | None = None) -> dict:
    """Never count the held events of `device` (those naming site/counter, if given); kept for audit.

    NothingHeld when nothing waits. Returns {"device", "discarded"}.
    """
    return store.discard_held(device, at_ms, site, counter)
