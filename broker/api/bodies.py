"""The API's request bodies and the text rules they share with paths: what a client may send.

Every name or text the API stores is bounded and holds no control character (the wire's rule,
`protocol.codec.forbidden_char`): such characters are invisible on a counter's display and break
the reports. Each rule is both checked, with a readable message, and written into the OpenAPI
document as a `pattern`, so the document says exactly what is accepted.
"""
from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Annotated, Any
from zoneinfo import available_timezones

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from protocol.codec import MAX_INT, TEXT_PATTERN, forbidden_char
from protocol.messages import MAX_IDENTIFY_SECONDS
from protocol.topics import DEVICE_ID_RE

__all__ = ["DEVICE_PATTERN", "ID_PATTERN", "KEY_PATTERN", "QUEUE_PATTERN", "AssignmentIn", "CounterBody", "CounterIn", "DeviceIn",
           "DisplayIn", "IdentifyIn", "Key", "OfficerBody", "OfficerIn", "QueueId", "SiteBody", "SiteIn", "Text", "zones"]

DEVICE_PATTERN = "^" + DEVICE_ID_RE.pattern.removeprefix(r"\A").removesuffix(r"\Z") + "$"  # JSON Schema syntax
ID_PATTERN = DEVICE_PATTERN  # new sites and counters follow the device id rule: safe in a URL path and a topic

_CONTROL = TEXT_PATTERN.removeprefix("^[^").removesuffix("]*$")
# An id that can be named in a URL path: no '/', and not a dot segment ('.', '..'), which
# clients resolve away. Written without look-arounds, which not every regex engine has.
KEY_PATTERN = f"^(?:[^./{_CONTROL}][^/{_CONTROL}]*|\\.[^./{_CONTROL}][^/{_CONTROL}]*|\\.\\.[^/{_CONTROL}]+)$"


def _clean(value: str) -> str:
    bad = forbidden_char(value)
    if bad is not None:
        raise PydanticCustomError("control_character", "must not contain a control character (found {found})",
                                  {"found": bad})
    return value


def _addressable(value: str) -> str:
    _clean(value)
    if "/" in value or value in (".", ".."):
        raise PydanticCustomError("not_addressable", "must not contain '/' nor be '.' or '..' (it names a URL path)")
    return value


def Text(max_length: int, min_length: int = 0, **field: Any) -> Any:
    """A stored name or text: `min_length`..`max_length` characters, none of them a control character."""
    return Annotated[str, Field(min_length=min_length, max_length=max_length,
                                json_schema_extra={"pattern": TEXT_PATTERN}, **field), AfterValidator(_clean)]


def Key(kind: Callable[..., Any] = Field,
        description: str = "1-64 characters, no '/', not '.' or '..', no control characters", **field: Any) -> Any:
    """An id that is also a path segment (officer ids; sites and counters as looked up).

    `kind` is `Field` in a body, or FastAPI's `Path` for a parameter.
    """
    return Annotated[str, kind(min_length=1, max_length=64, description=description,
                               json_schema_extra={"pattern": KEY_PATTERN}, **field), AfterValidator(_addressable)]


def _example(**values: Any) -> ConfigDict:
    """A body's example in the document: shown by the docs page, sent first by the contract test."""
    return ConfigDict(json_schema_extra={"examples": [values]})


@cache
def zones() -> tuple[str, ...]:
    """The IANA zone names this machine knows: what `tz` accepts."""
    return tuple(sorted(available_timezones()))


def _known_zone(value: str) -> str:
    if value not in zones():
        raise PydanticCustomError("unknown_zone", "unknown time zone {zone}: expected an IANA name such as "
                                                  "Asia/Ho_Chi_Minh", {"zone": repr(value)})
    return value


IdStr = Annotated[str, Field(pattern=ID_PATTERN, description="1-64 of A-Z a-z 0-9 _ . -")]
Zone = Annotated[str, Field(description="IANA time zone", json_schema_extra={"enum": list(zones())}),
                 AfterValidator(_known_zone)]
Name = Text(100)
Id64 = Text(64, 1)  # ids that need not name a URL path
Code = Text(8, 1, description="short code for the counter display")
Ticket = Text(16, 1)
OfficerRef = Text(64, 1, description="officer id, or null for nobody")
OfficerId = Key(description="the id events carry: 1-64 characters, no '/', not '.' or '..', no control characters")


class SiteBody(BaseModel):
    name: Name = ""
    tz: Zone | None = Field(None, description="IANA time zone; default: the service's")


class SiteIn(SiteBody):
    model_config = _example(id="hcm-q1", name="UBND Quận 1", tz="Asia/Ho_Chi_Minh")

    id: IdStr


QUEUE_PATTERN = "^[A-Za-z0-9_-]{1,16}$"  # protocol.tickets.QUEUE_ID_RE
QueueId = Annotated[str, Field(pattern=QUEUE_PATTERN, description="1-16 of A-Z a-z 0-9 _ -")]


class CounterBody(BaseModel):
    name: Name = ""
    device: str | None = Field(None, pattern=DEVICE_PATTERN, description="the device id at this counter")
    queues: list[QueueId] | None = Field(None, max_length=64, description="the queues it serves, NEXT calling "
                                         "their tickets ([]: none, the site's daily number); null: unchanged")


class CounterIn(CounterBody):
    model_config = _example(site="hcm-q1", counter="03", name="Quầy 3", device="hcm-q1-c03")

    site: IdStr
    counter: IdStr


class OfficerBody(BaseModel):
    name: Name
    code: Code
    unit: Name = ""
    badge: str | None = Field(None, pattern=r"^[0-9A-Fa-f]{1,32}$", description="card UID, 1-32 hex digits")


class OfficerIn(OfficerBody):
    model_config = _example(id="off-0042", name="Nguyễn Thị Lan", code="NTL", unit="Tư pháp", badge="04A1B2C3")

    id: OfficerId


class AssignmentIn(BaseModel):
    model_config = _example(site="hcm-q1", counter="03", officer="off-0042")

    site: Id64
    counter: Id64
    officer: OfficerRef | None = Field(...)
    at: int | None = Field(None, ge=0, le=MAX_INT, description="ms since epoch; default now")


class DeviceIn(BaseModel):
    model_config = _example(site="hcm-q1", counter="03")

    site: Id64
    counter: Id64


class DisplayIn(BaseModel):
    model_config = _example(ticket="1042")

    ticket: Ticket


class IdentifyIn(BaseModel):
    model_config = _example(seconds=10)

    seconds: float = Field(10, ge=1, le=MAX_IDENTIFY_SECONDS)
