"""The queue (issue 13): queues per site, the tickets of a day, waiting and service times.

Like the registry, anyone may read and only an admin changes queues. The queues a counter
serves are a `queues` list on /counters (broker.api.registry, through `counter_with_queues`).
"""
from __future__ import annotations

import re
from typing import Annotated, Literal

from fastapi import HTTPException, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from broker.api.answers import ok
from broker.api.bodies import QUEUE_PATTERN, IdStr, Name, QueueId
from broker.api.deps import API, SiteAdmin, SiteViewer, StoreDep
from broker.api.errors import api_router, errors, found
from broker.api.figures import DateFrom, DateTo, OnlySite
from broker.store import InUse
from common.periods import parse_day

__all__ = ["counter_with_queues", "router"]

router = api_router("queues")

PREFIX_PATTERN = "^[A-Z]{1,2}$"
_DAY_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
SiteKey = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", examples=["hcm-q1"])]
QueueKey = Annotated[str, Path(pattern=QUEUE_PATTERN, examples=["A"])]


# ----- bodies and answers -------------------------------------------------------------------------


class QueueBody(BaseModel):
    name: Name = ""
    prefix: str = Field(pattern=PREFIX_PATTERN, description="the ticket's letters: one or two of A-Z")


class QueueIn(QueueBody):
    model_config = ConfigDict(json_schema_extra={"examples": [{"site": "hcm-q1", "queue": "A", "name": "Đất đai",
                                                               "prefix": "A"}]})

    site: IdStr
    queue: QueueId


class QueueItem(BaseModel):
    """A queue of a site; its tickets are printed as the prefix and a number of the day (A012)."""

    site: str
    queue: str
    name: str
    prefix: str


class QueueList(BaseModel):
    items: list[QueueItem]


class Rating(BaseModel):
    event: int
    score: int | None
    scale: int | None


class TicketItem(BaseModel):
    """One ticket: ms times (null: not yet), status waiting, called, done or noshow."""

    id: int
    site: str
    date: str
    queue: str
    ticket: str
    priority: bool
    status: Literal["waiting", "called", "done", "noshow"]
    taken_ts: int
    called_ts: int | None
    recalls: int
    recalled_ts: int | None = Field(description="the last recall")
    done_ts: int | None = Field(description="when it was finished: the next call, a close or a no-show")
    rated_ts: int | None
    counter: str | None
    officer: str | None
    device: str = Field(description="the kiosk that printed it")
    source: Literal["service", "block"]
    rating: Rating | None = Field(description="the first counted rating at its counter naming it")


class TicketList(BaseModel):
    site: str
    date: str
    items: list[TicketItem]


class WaitingRow(BaseModel):
    key: str = Field(description="site/queue, officer id ('' for nobody), site/counter, or site")
    name: str
    tickets: int
    served: int
    rated: int = Field(description="served tickets with a counted rating")
    no_show: int
    wait_mean_s: float | None = Field(description="first call - taken, over called tickets")
    wait_p50_s: float | None
    wait_p90_s: float | None
    service_mean_s: float | None = Field(description="done - called, over served tickets")


class WaitingAnswer(BaseModel):
    group: Literal["queue", "officer", "counter", "site"]
    from_: str = Field(alias="from")
    to: str
    rows: list[WaitingRow]


def counter_with_queues(store, counter: dict | None) -> dict | None:
    """A counter as the API shows it: with the queues it serves ([]: the site's daily number)."""
    if counter is None:
        return None
    return {**counter, "queues": store.counter_queues(counter["site"], counter["counter"])}


def _day(text: str, name: str) -> str:
    try:
        if not _DAY_RE.fullmatch(text):  # fromisoformat alone takes other spellings (20240101, week dates)
            raise ValueError(text)
        return parse_day(text)
    except ValueError:
        raise HTTPException(422, f"{name}: expected a date YYYY-MM-DD, got {text!r}") from None


def _days(date_from: str, date_to: str) -> tuple[str, str]:
    first, last = _day(date_from, "from"), _day(date_to, "to")
    if first > last:
        raise HTTPException(422, f"from ({first}) is after to ({last})")
    return first, last


def _changed(store, site: str, queue: str, name: str, prefix: str) -> dict:
    try:
        return store.upsert_queue(site, queue, name, prefix)
    except InUse as e:
        raise HTTPException(409, str(e)) from None


# ----- queues -------------------------------------------------------------------------------------


@router.get("/queues", responses=ok(QueueList) | errors(404))
def list_queues(scope: SiteViewer, store: StoreDep, site: OnlySite = None):
    return {"items": scope.only(store.queues(site if site is None else scope.site(site)))}


@router.get("/queues/{site_id}/{queue_id}", responses=ok(QueueItem) | errors(404))
def get_queue(scope: SiteViewer, store: StoreDep, site_id: SiteKey, queue_id: QueueKey):
    scope.site(site_id, f"queue {site_id}/{queue_id}")
    return found(store.queue(site_id, queue_id), f"queue {site_id}/{queue_id}")


@router.post("/queues", status_code=201, responses=ok(QueueItem, 201) | errors(404, 409))
def create_queue(scope: SiteAdmin, store: StoreDep, body: QueueIn):
    """A new queue; 409 if it exists or another queue of the site has the prefix."""
    found(store.site(scope.site(body.site)), f"site {body.site!r} (create it first)")
    if store.queue(body.site, body.queue) is not None:
        raise HTTPException(409, f"queue {body.site}/{body.queue} already exists; "
                                 f"PUT {API}/queues/{body.site}/{body.queue} changes it")
    return _changed(store, body.site, body.queue, body.name, body.prefix)


@router.put("/queues/{site_id}/{queue_id}", responses=ok(QueueItem) | errors(404, 409))
def put_queue(scope: SiteAdmin, store: StoreDep, site_id: SiteKey, queue_id: QueueKey, body: QueueBody):
    found(store.site(scope.site(site_id)), f"site {site_id!r} (create it first)")
    return _changed(store, site_id, queue_id, body.name, body.prefix)


@router.delete("/queues/{site_id}/{queue_id}", status_code=204, responses=errors(404))
def delete_queue(scope: SiteAdmin, store: StoreDep, site_id: SiteKey, queue_id: QueueKey):
    """Remove the queue; counters stop serving it, its tickets stay as history."""
    scope.site(site_id, f"queue {site_id}/{queue_id}")
    found(store.queue(site_id, queue_id), f"queue {site_id}/{queue_id}")
    store.delete_queue(site_id, queue_id)
    return Response(status_code=204)


# ----- tickets and times --------------------------------------------------------------------------


@router.get("/tickets", responses=ok(TicketList) | errors(404))
def tickets(scope: SiteViewer, store: StoreDep, site: Annotated[str, Query(max_length=64, examples=["hcm-q1"])],
            date: Annotated[str, Query(description="the site-local day, YYYY-MM-DD", examples=["2026-11-30"],
                                       json_schema_extra={"format": "date"})]):
    """The site's tickets of the day, in the order they were taken."""
    day = _day(date, "date")
    scope.site(site)
    return {"site": site, "date": day, "items": store.tickets(site, day)}


@router.get("/waiting", responses=ok(WaitingAnswer) | errors(404))
def waiting(scope: SiteViewer, store: StoreDep,
            group: Annotated[Literal["queue", "officer", "counter", "site"], Query(description="rows per ...")],
            date_from: DateFrom, date_to: DateTo, site: OnlySite = None):
    """Tickets, served, no-shows, waiting (mean, median, 90th percentile) and mean service time, in seconds."""
    first, last = _days(date_from, date_to)
    return {"group": group, "from": first, "to": last, "rows": store.waiting_stats(group, first, last,
                                                                                        sites=scope.narrow(site))}
