"""What the API answers on success, as the OpenAPI document declares it.

Declared with `responses=ok(Model)`, not `response_model=`: the document says what a client
gets, while the handler's dict goes out as it is (no second copy, no field silently
dropped). The contract test checks every answer against these, so they cannot drift from
the store's dicts unnoticed. Extra fields are allowed: a newer service may add some.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

__all__ = ["Assigned", "CounterItem", "CounterList", "DeadLetterPage", "DeviceList", "EventPage", "OfficerItem",
           "OfficerList", "ReasonList", "Satisfaction", "Sent", "SiteItem", "SiteList", "ok"]


def ok(model: type[BaseModel], status: int = 200) -> dict[int | str, dict[str, Any]]:
    """`responses=` entry for a success answer shaped like `model`."""
    return {status: {"model": model, "description": model.__doc__ or "Successful Response"}}


class SiteItem(BaseModel):
    """A site."""

    id: str
    name: str
    tz: str


class SiteList(BaseModel):
    """The sites, by id."""

    items: list[SiteItem]


class CounterItem(BaseModel):
    """A counter and the device registered at it."""

    site: str
    counter: str
    name: str
    device: str | None
    queues: list[str] = Field(description="the queues it serves; []: NEXT draws the site's daily number")


class CounterList(BaseModel):
    """The counters, by site and counter."""

    items: list[CounterItem]


class OfficerItem(BaseModel):
    """An officer."""

    id: str
    name: str
    code: str
    unit: str
    badge: str | None


class OfficerList(BaseModel):
    """The officers, by id."""

    items: list[OfficerItem]


class Device(BaseModel):
    device: str
    registered: bool
    site: str | None
    counter: str | None
    first_seen_ms: int | None
    last_seen_ms: int | None
    online: bool | None
    fw: str | None
    ledger: str | None
    backlog: int | None
    clock_ok: bool | None
    last_telemetry: dict[str, Any] | None


class DeviceList(BaseModel):
    """Every device seen or registered, by id."""

    items: list[Device]


class Event(BaseModel):
    id: int
    device: str
    ledger: str
    seq: int
    type: Literal["rating", "call", "signin", "signout", "take"]
    site: str
    counter: str
    ts: int
    ts_source: str
    day: str
    received_ms: int
    officer: str | None
    officer_source: str | None
    held: str | None = Field(description="why it is not counted; null: counted")
    discarded_ms: int | None
    event: dict[str, Any] = Field(description="the event as the device sent it")


class EventPage(BaseModel):
    """A page of stored events; `next` is null on the last page."""

    items: list[Event]
    next: int | None


class DeadLetter(BaseModel):
    id: int
    received_ms: int
    device: str
    ledger: str | None
    seq: int | None
    reason: str
    payload: str = Field(description="the kept prefix: text, or base64 (see encoding)")
    encoding: Literal["utf-8", "base64"]
    size: int = Field(description="the whole payload's size in bytes")
    sha256: str
    truncated: bool


class DeadLetterPage(BaseModel):
    """Dead letters, newest first."""

    items: list[DeadLetter]
    limit: int
    offset: int


class Row(BaseModel):
    key: str | None = Field(description="officer id, site/counter or site; null: ratings nobody was attributed")
    name: str
    ratings: int
    counts: dict[str, int] = Field(description="ratings per level, 1 the worst")
    satisfied: int
    rate: float | None = Field(description="0-1; null without ratings")
    mean: float | None
    index: float | None = Field(description="0-100")
    wilson_lower: float
    flagged: int
    served: int


class Satisfaction(BaseModel):
    """Satisfaction per officer, counter or site, ranked best first."""

    scale: int | None = Field(description="the scale most ratings were given on; null without ratings")
    group: Literal["officer", "counter", "site"]
    from_: str = Field(alias="from")
    to: str
    rows: list[Row]


class Reason(BaseModel):
    reason: str
    count: int


class ReasonList(BaseModel):
    """Reasons given after a low rating, most frequent first."""

    officer: str | None
    items: list[Reason]


class Assigned(BaseModel):
    """The assignment, recorded and sent to the counter's device."""

    site: str
    counter: str
    officer: str | None
    at: int
    recorded: bool
    device: str | None
    published: bool
    assignment: dict[str, Any] = Field(description="what the device receives")


class Sent(BaseModel):
    """The command, published to the device."""

    device: str
    published: bool
    command: dict[str, Any]
