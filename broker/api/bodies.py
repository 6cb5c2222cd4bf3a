"""The API's request bodies: what a client may send, checked before a route sees it."""
from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field, field_validator

from protocol.messages import MAX_IDENTIFY_SECONDS
from protocol.topics import DEVICE_ID_RE

__all__ = ["DEVICE_PATTERN", "ID_PATTERN", "AssignmentIn", "CounterBody", "CounterIn", "DeviceIn", "DisplayIn",
           "IdentifyIn", "OfficerBody", "OfficerIn", "SiteBody", "SiteIn"]

DEVICE_PATTERN = "^" + DEVICE_ID_RE.pattern.removeprefix(r"\A").removesuffix(r"\Z") + "$"  # JSON Schema syntax
ID_PATTERN = DEVICE_PATTERN  # new sites and counters follow the device id rule: safe in a URL path and a topic

IdStr = Annotated[str, Field(pattern=ID_PATTERN, description="1-64 of A-Z a-z 0-9 _ . -")]


class SiteBody(BaseModel):
    name: str = Field("", max_length=100)
    tz: str | None = Field(None, description="IANA time zone; default: the service's")

    @field_validator("tz")
    @classmethod
    def _known_zone(cls, v: str | None) -> str | None:
        from common.periods import zone

        if v is not None:
            zone(v)  # ValueError names the bad zone
        return v


class SiteIn(SiteBody):
    id: IdStr


class CounterBody(BaseModel):
    name: str = Field("", max_length=100)
    device: str | None = Field(None, pattern=DEVICE_PATTERN, description="the device id at this counter")


class CounterIn(CounterBody):
    site: IdStr
    counter: IdStr


class OfficerBody(BaseModel):
    name: str = Field(..., max_length=100)
    code: str = Field(..., min_length=1, max_length=8, description="short code for the counter display")
    unit: str = Field("", max_length=100)
    badge: str | None = Field(None, pattern=r"^[0-9A-Fa-f]{1,32}$", description="card UID, 1-32 hex digits")


class OfficerIn(OfficerBody):
    id: str = Field(..., min_length=1, max_length=64)


class AssignmentIn(BaseModel):
    site: str = Field(..., min_length=1, max_length=64)
    counter: str = Field(..., min_length=1, max_length=64)
    officer: str | None = Field(..., min_length=1, max_length=64, description="officer id, or null for nobody")
    at: int | None = Field(None, ge=0, description="ms since epoch; default now")


class DeviceIn(BaseModel):
    site: str = Field(..., min_length=1, max_length=64)
    counter: str = Field(..., min_length=1, max_length=64)


class DisplayIn(BaseModel):
    ticket: str = Field(..., min_length=1, max_length=16)


class IdentifyIn(BaseModel):
    seconds: float = Field(10, ge=1, le=MAX_IDENTIFY_SECONDS)
