"""The service's HTTP API (FastAPI), and `ApiServer`, which runs it with uvicorn on a thread.

Every /api/v1 route and /metrics needs a principal (see `principal`); /healthz does not,
so a load balancer or systemd watchdog can probe it. Errors are always JSON
`{"detail": "..."}`: validation problems are flattened to one readable sentence, and an
unexpected exception is logged here and answered with a bare 500, never a traceback.

Handlers are plain `def`s: FastAPI runs them on its thread pool, which suits the blocking
SQLite store and paho's thread-safe publish.
"""
from __future__ import annotations

import errno
import logging
import socket
import threading
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from broker.auth import Principal
from broker.registry import InUse
from broker.reports import satisfaction_csv, satisfaction_xlsx
from common.periods import DEFAULT_TZ, month_range
from protocol import ProtocolError
from protocol.messages import MAX_IDENTIFY_SECONDS, make_assignment, make_command
from protocol.topics import DEVICE_ID_RE

__all__ = ["ApiServer", "ApiServerError", "PrincipalResolver", "add_principal_resolver", "create_app"]

log = logging.getLogger("hailong.api")

API = "/api/v1"
MAX_PAGE = 1000
DEVICE_PATTERN = "^" + DEVICE_ID_RE.pattern.removeprefix(r"\A").removesuffix(r"\Z") + "$"  # JSON Schema syntax
ID_PATTERN = DEVICE_PATTERN  # new sites and counters follow the device id rule: safe in a URL path and a topic

# Something that recognises a caller from the request (e.g. the dashboard's session cookie).
PrincipalResolver = Callable[[Request], "Principal | None"]


class ApiServerError(RuntimeError):
    """The HTTP server could not start (port taken, bad address) or died."""


# ----- auth -------------------------------------------------------------------------------

_bearer = HTTPBearer(auto_error=False, description="an API token: `hailong broker token create --role ...`")


def _unauthorized(why: str) -> HTTPException:
    return HTTPException(401, why, headers={"WWW-Authenticate": "Bearer"})


def principal(request: Request,
              creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Principal:
    """The caller: from the bearer token if one is sent, else from any registered resolver.

    A wrong token is refused outright rather than falling through to a cookie, so a
    client with a stale token learns about it instead of silently acting as someone else.
    """
    if creds is not None:
        found = request.app.state.auth.verify_token(creds.credentials)
        if found is None:
            raise _unauthorized("invalid or revoked token")
        return found
    if request.headers.get("authorization"):
        raise _unauthorized("Authorization must be 'Bearer <token>'")
    # The seam for the dashboard: its session cookie will resolve to a Principal here.
    for resolve in request.app.state.principal_resolvers:
        found = resolve(request)
        if found is not None:
            return found
    raise _unauthorized("missing bearer token")


def add_principal_resolver(app: FastAPI, resolver: PrincipalResolver) -> None:
    """Let `resolver` (e.g. a session-cookie check) authenticate requests that carry no token."""
    app.state.principal_resolvers.append(resolver)


def require(role: str):
    def check(who: Annotated[Principal, Depends(principal)]) -> Principal:
        if not who.allows(role):
            raise HTTPException(403, f"this needs the {role} role or higher; {who.name!r} is {who.role}")
        return who

    return Depends(check)


Viewer, Manager, Admin = require("viewer"), require("manager"), require("admin")


# ----- bodies -------------------------------------------------------------------------------

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


# ----- helpers --------------------------------------------------------------------------------


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _day(text: str, name: str) -> date:
    try:
        if len(text) != 10:
            raise ValueError
        return date.fromisoformat(text)
    except ValueError:
        raise HTTPException(422, f"{name}: expected a date YYYY-MM-DD, got {text!r}") from None


def _instant(text: str | None, name: str, tz: str, *, end: bool) -> int | None:
    """ms since epoch from ms digits, an ISO date-time, or a day: its start, or for `end` the next day's start.

    The store's upper bound is exclusive, so `until=2024-11-27` covers all of that day.
    """
    if text is None:
        return None
    if text.isdigit():
        return int(text)
    from common.periods import zone

    try:
        if len(text) == 10:
            day = datetime.combine(date.fromisoformat(text), datetime.min.time(), zone(tz))
            moment = day + timedelta(days=1) if end else day
        else:
            moment = datetime.fromisoformat(text)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=zone(tz))
    except ValueError:
        raise HTTPException(422, f"{name}: expected ms since epoch, YYYY-MM-DD or an ISO date-time, "
                                 f"got {text!r}") from None
    return int(moment.timestamp() * 1000)


def _validation_text(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
        msg = err.get("msg", "invalid")
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts) or "invalid request"


# ----- registry reads the store lacks ------------------------------------------------------


# ----- the app ------------------------------------------------------------------------------------


def create_app(*, store, ingest, auth, cfg) -> FastAPI:
    """The API over `store` (reads, registry), `ingest` (health, metrics, publishing) and `auth`."""
    app = FastAPI(title="hailong", version="1",
                  description="Citizen satisfaction at one-stop administrative centres. "
                              "See docs/api.md for roles and tokens.",
                  openapi_url=f"{API}/openapi.json", docs_url=f"{API}/docs", redoc_url=None)
    app.state.auth = auth
    app.state.principal_resolvers = []
    tz = getattr(cfg.service, "timezone", DEFAULT_TZ)
    satisfied_from = getattr(cfg.service, "satisfied_from", 0) or None  # 0: the store's default

    @app.exception_handler(RequestValidationError)
    def _invalid(request: Request, exc: RequestValidationError):
        return JSONResponse({"detail": _validation_text(exc)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    def _http(request: Request, exc: StarletteHTTPException):
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    def _crash(request: Request, exc: Exception):
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"detail": "internal error; the service log has the details"}, status_code=500)

    # ----- health and metrics ---------------------------------------------------------

    @app.get("/healthz", tags=["ops"], summary="liveness and readiness; no auth")
    def healthz():
        body: dict[str, Any] = {"ok": True, "ingest": "connected", "store": "ok"}
        if ingest.failed.is_set():
            body["ingest"] = "failed"
        elif not ingest.connected.is_set():
            body["ingest"] = "disconnected"
        try:
            store.counts()  # one tiny table: cheap enough for a probe every few seconds
        except Exception as e:  # noqa: BLE001 - any store failure means "not ready"
            log.warning("health check: store does not answer: %s", e)
            body["store"] = "error"
        if body["ingest"] != "connected" or body["store"] != "ok":
            body["ok"] = False
            reasons = []
            if body["ingest"] != "connected":
                reasons.append(f"MQTT ingest is {body['ingest']}")
            if body["store"] != "ok":
                reasons.append("the store does not answer")
            body["detail"] = "; ".join(reasons)
            return JSONResponse(body, status_code=503)
        return body

    @app.get("/metrics", tags=["ops"], response_class=PlainTextResponse,
             summary="Prometheus text format 0.0.4 (any role)")
    def metrics(_: Annotated[Principal, Viewer]):
        m = ingest.metrics
        dead = store.counts().get("dead_letters", 0)
        series = [
            ("hailong_events_ingested_total", "counter", "Events stored for the first time.", m.ingested),
            ("hailong_events_duplicated_total", "counter", "Events received again and recognised as stored.",
             m.duplicates),
            ("hailong_events_rejected_total", "counter", "Events refused and dead-lettered.", m.rejected),
            ("hailong_ingest_batches_total", "counter", "Groups of messages committed in one transaction.", m.batches),
            ("hailong_ingest_lag_ms", "gauge", "Receive-to-commit time of the latest event, in ms.", m.last_lag_ms),
            ("hailong_tickets_issued_total", "counter", "Queue ticket numbers sent to counters.", m.tickets),
            ("hailong_devices_online", "gauge", "Devices whose retained status says online.",
             sum(1 for v in dict(m.online).values() if v)),
            ("hailong_dead_letters", "gauge", "Messages kept in the dead-letter table.", dead),
        ]
        lines = []
        for name, kind, help_, value in series:
            lines += [f"# HELP {name} {help_}", f"# TYPE {name} {kind}", f"{name} {value}"]
        return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4; charset=utf-8")

    # ----- figures and history ---------------------------------------------------------

    @app.get(f"{API}/satisfaction", tags=["figures"])
    def satisfaction(
        _: Annotated[Principal, Viewer],
        group: Annotated[Literal["officer", "counter", "site"], Query(description="rows per officer, counter or site")],
        date_from: Annotated[str, Query(alias="from", description="first day, YYYY-MM-DD, site-local")],
        date_to: Annotated[str, Query(alias="to", description="last day, inclusive")],
        site: Annotated[str | None, Query(description="only this site")] = None,
    ):
        """Ratings, satisfied share (`rate`, 0-1), mean, index (0-100) and Wilson lower bound per row."""
        first, last = _day(date_from, "from"), _day(date_to, "to")
        if first > last:
            raise HTTPException(422, f"from ({first}) is after to ({last})")
        try:
            return store.satisfaction(group, first.isoformat(), last.isoformat(), site=site,
                                      satisfied_from=satisfied_from)
        except ValueError as e:  # e.g. service.satisfied_from above this period's scale
            raise HTTPException(422, str(e)) from None

    # ----- monthly report files (broker/reports.py builds them from the satisfaction dict) ------

    XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

    def _month_report(group: str, month: str, site: str | None) -> dict:
        try:
            first, last = month_range(month)
        except ValueError as e:
            raise HTTPException(422, str(e)) from None
        try:  # the very call GET /satisfaction makes for from=first, to=last
            return store.satisfaction(group, first.isoformat(), last.isoformat(), site=site,
                                      satisfied_from=satisfied_from)
        except ValueError as e:
            raise HTTPException(422, str(e)) from None

    def _attachment(body: bytes, media_type: str, group: str, month: str, ext: str) -> Response:
        name = f"hailong-satisfaction-{group}-{month}.{ext}"
        return Response(body, media_type=media_type,
                        headers={"Content-Disposition": f'attachment; filename="{name}"',
                                 "Cache-Control": "no-store"})

    @app.get(f"{API}/reports/satisfaction.xlsx", tags=["figures"], response_class=Response,
             responses={200: {"content": {XLSX: {}}, "description": "an Excel workbook"}})
    def satisfaction_report_xlsx(
        _: Annotated[Principal, Viewer],
        group: Annotated[Literal["officer", "counter"], Query(description="rows per officer or counter")],
        month: Annotated[str, Query(description="the month, YYYY-MM (site-local days)")],
        site: Annotated[str | None, Query(description="only this site")] = None,
    ):
        """The month's satisfaction figures as an Excel workbook (Vietnamese headings, a totals row)."""
        report = _month_report(group, month, site)
        site_name = None if site is None else ((store.site(site) or {}).get("name") or site)
        from common.periods import zone

        body = satisfaction_xlsx(report, centre=cfg.service.name, group=group, month=month,
                                 generated_at=datetime.now(zone(tz)), site=site_name)
        return _attachment(body, XLSX, group, month, "xlsx")

    @app.get(f"{API}/reports/satisfaction.csv", tags=["figures"], response_class=Response,
             responses={200: {"content": {"text/csv": {}}, "description": "UTF-8 CSV with a BOM"}})
    def satisfaction_report_csv(
        _: Annotated[Principal, Viewer],
        group: Annotated[Literal["officer", "counter"], Query(description="rows per officer or counter")],
        month: Annotated[str, Query(description="the month, YYYY-MM (site-local days)")],
        site: Annotated[str | None, Query(description="only this site")] = None,
    ):
        """The month's satisfaction figures as CSV: UTF-8 with a BOM, CRLF, rates as fractions."""
        report = _month_report(group, month, site)
        body = satisfaction_csv(report, centre=cfg.service.name, group=group, month=month)
        return _attachment(body, "text/csv; charset=utf-8", group, month, "csv")

    @app.get(f"{API}/reasons", tags=["figures"])
    def reasons(
        _: Annotated[Principal, Viewer],
        officer: Annotated[str, Query(description="officer id; empty for unattributed ratings")],
        date_from: Annotated[str, Query(alias="from", description="first day, YYYY-MM-DD, site-local")],
        date_to: Annotated[str, Query(alias="to", description="last day, inclusive")],
    ):
        """Reasons citizens chose after a low rating for this officer, most frequent first."""
        first, last = _day(date_from, "from"), _day(date_to, "to")
        if first > last:
            raise HTTPException(422, f"from ({first}) is after to ({last})")
        return {"officer": officer or None,
                "items": store.low_reasons(officer or None, first.isoformat(), last.isoformat())}

    @app.get(f"{API}/devices", tags=["devices"])
    def devices(_: Annotated[Principal, Viewer]):
        return {"items": store.devices()}

    @app.get(f"{API}/events", tags=["figures"])
    def events(
        _: Annotated[Principal, Viewer],
        device: str | None = None, site: str | None = None, counter: str | None = None,
        officer: str | None = None,
        type: Annotated[Literal["rating", "call", "signin", "signout"] | None, Query()] = None,
        since: Annotated[str | None, Query(description="ms, YYYY-MM-DD (its start) or ISO date-time")] = None,
        until: Annotated[str | None, Query(description="exclusive: ms or ISO date-time; "
                                                       "a YYYY-MM-DD includes that day")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
        after: Annotated[int | None, Query(ge=0, description="the `next` of the previous page")] = None,
    ):
        """Stored events in storage order, a page at a time: pass `next` back as `after`."""
        days_in = (store.site(site) or {}).get("tz", tz) if site is not None else tz
        rows = store.events(device=device, site=site, counter=counter, officer=officer, type=type,
                            since_ms=_instant(since, "since", days_in, end=False),
                            until_ms=_instant(until, "until", days_in, end=True),
                            limit=limit + 1, after_id=after)
        page = rows[:limit]
        return {"items": page, "next": page[-1]["id"] if len(rows) > limit else None}

    @app.get(f"{API}/dead-letters", tags=["figures"])
    def dead_letters(_: Annotated[Principal, Manager],
                     limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
                     offset: Annotated[int, Query(ge=0)] = 0):
        return {"items": store.dead_letters(limit, offset), "limit": limit, "offset": offset}

    # ----- registry: sites, counters, officers --------------------------------------------

    def _found(item, what: str):
        if item is None:
            raise HTTPException(404, f"no such {what}")
        return item

    @app.get(f"{API}/sites", tags=["registry"])
    def list_sites(_: Annotated[Principal, Viewer]):
        return {"items": store.sites()}

    @app.get(f"{API}/sites/{{site_id}}", tags=["registry"])
    def get_site(_: Annotated[Principal, Viewer], site_id: str):
        return _found(store.site(site_id), f"site {site_id!r}")

    @app.post(f"{API}/sites", tags=["registry"], status_code=201)
    def create_site(_: Annotated[Principal, Admin], body: SiteIn):
        if store.site(body.id) is not None:
            raise HTTPException(409, f"site {body.id!r} already exists; PUT {API}/sites/{body.id} changes it")
        store.upsert_site(body.id, body.name, tz=body.tz or tz)
        return store.site(body.id)

    @app.put(f"{API}/sites/{{site_id}}", tags=["registry"])
    def put_site(_: Annotated[Principal, Admin], site_id: Annotated[str, Path(pattern=ID_PATTERN)], body: SiteBody):
        store.upsert_site(site_id, body.name, tz=body.tz or tz)
        return store.site(site_id)

    @app.delete(f"{API}/sites/{{site_id}}", tags=["registry"], status_code=204)
    def delete_site(_: Annotated[Principal, Admin], site_id: str):
        _found(store.site(site_id), f"site {site_id!r}")
        try:
            store.delete_site(site_id)
        except InUse as e:
            raise HTTPException(409, str(e)) from None
        return Response(status_code=204)

    @app.get(f"{API}/counters", tags=["registry"])
    def list_counters(_: Annotated[Principal, Viewer], site: str | None = None):
        return {"items": store.counters(site)}

    @app.get(f"{API}/counters/{{site_id}}/{{counter_id}}", tags=["registry"])
    def get_counter(_: Annotated[Principal, Viewer], site_id: str, counter_id: str):
        return _found(store.counter(site_id, counter_id), f"counter {site_id}/{counter_id}")

    @app.post(f"{API}/counters", tags=["registry"], status_code=201)
    def create_counter(_: Annotated[Principal, Admin], body: CounterIn):
        _found(store.site(body.site), f"site {body.site!r} (create it first)")
        if store.counter(body.site, body.counter) is not None:
            raise HTTPException(409, f"counter {body.site}/{body.counter} already exists; "
                                     f"PUT {API}/counters/{body.site}/{body.counter} changes it")
        store.upsert_counter(body.site, body.counter, body.name, device=body.device)
        return store.counter(body.site, body.counter)

    @app.put(f"{API}/counters/{{site_id}}/{{counter_id}}", tags=["registry"])
    def put_counter(_: Annotated[Principal, Admin], site_id: str,
                    counter_id: Annotated[str, Path(pattern=ID_PATTERN)], body: CounterBody):
        _found(store.site(site_id), f"site {site_id!r} (create it first)")
        store.upsert_counter(site_id, counter_id, body.name, device=body.device)
        return store.counter(site_id, counter_id)

    @app.delete(f"{API}/counters/{{site_id}}/{{counter_id}}", tags=["registry"], status_code=204)
    def delete_counter(_: Annotated[Principal, Admin], site_id: str, counter_id: str):
        _found(store.counter(site_id, counter_id), f"counter {site_id}/{counter_id}")
        store.delete_counter(site_id, counter_id)
        return Response(status_code=204)

    @app.get(f"{API}/officers", tags=["registry"])
    def list_officers(_: Annotated[Principal, Viewer]):
        return {"items": store.officers()}

    @app.get(f"{API}/officers/{{officer_id}}", tags=["registry"])
    def get_officer(_: Annotated[Principal, Viewer], officer_id: str):
        return _found(store.officer(officer_id), f"officer {officer_id!r}")

    @app.post(f"{API}/officers", tags=["registry"], status_code=201)
    def create_officer(_: Annotated[Principal, Admin], body: OfficerIn):
        if store.officer(body.id) is not None:
            raise HTTPException(409, f"officer {body.id!r} already exists; PUT {API}/officers/{body.id} changes it")
        store.upsert_officer(body.id, body.name, body.code, body.unit, body.badge)
        return store.officer(body.id)

    @app.put(f"{API}/officers/{{officer_id}}", tags=["registry"])
    def put_officer(_: Annotated[Principal, Admin],
                    officer_id: Annotated[str, Path(min_length=1, max_length=64)], body: OfficerBody):
        store.upsert_officer(officer_id, body.name, body.code, body.unit, body.badge)
        return store.officer(officer_id)

    @app.delete(f"{API}/officers/{{officer_id}}", tags=["registry"], status_code=204)
    def delete_officer(_: Annotated[Principal, Admin], officer_id: str):
        _found(store.officer(officer_id), f"officer {officer_id!r}")
        store.delete_officer(officer_id)
        return Response(status_code=204)

    # ----- talking to counters ------------------------------------------------------------------

    @app.put(f"{API}/devices/{{device_id}}", tags=["devices"])
    def register_device(_: Annotated[Principal, Admin],
                        device_id: Annotated[str, Path(pattern=DEVICE_PATTERN)], body: DeviceIn):
        """Say which site and counter a device serves."""
        store.register_device(device_id, body.site, body.counter)
        return _found(store.device(device_id), f"device {device_id!r}")

    @app.post(f"{API}/assignments", tags=["devices"])
    def assign(_: Annotated[Principal, Manager], body: AssignmentIn):
        """Put an officer (or nobody) at a counter: recorded, then sent to the counter's device (retained)."""
        officer = None
        if body.officer is not None:
            row = _found(store.officer(body.officer), f"officer {body.officer!r} (add it under {API}/officers first)")
            officer = {"id": row["id"], "name": row["name"], "code": row["code"]}
        try:
            payload = make_assignment(officer)
        except ProtocolError as e:
            raise HTTPException(422, f"officer {body.officer!r} cannot be shown on a counter: {e}") from None
        at = body.at if body.at is not None else _now_ms()
        store.assign(body.site, body.counter, body.officer, at)
        device = store.device_at(body.site, body.counter)
        result = {"site": body.site, "counter": body.counter, "officer": body.officer, "at": at,
                  "recorded": True, "device": device, "published": device is not None, "assignment": payload}
        if device is None:
            return JSONResponse({"detail": f"recorded, but not sent: counter {body.site}/{body.counter} has no "
                                           "device yet; assign again once its device is registered", **result},
                                status_code=409)
        # Retained, so the device gets it on every (re)connect, even if it is offline right now.
        ingest.publish(device, "assignment", payload, retain=True)
        return result

    def _command(device_id: str, command: dict) -> dict:
        _found(store.device(device_id), f"device {device_id!r}")
        ingest.publish(device_id, "cmd", command)
        return {"device": device_id, "published": True, "command": command}

    @app.post(f"{API}/devices/{{device_id}}/display", tags=["devices"], status_code=202)
    def display(_: Annotated[Principal, Manager], device_id: str, body: DisplayIn):
        """Show a ticket number on the counter's display (for a third-party queue system)."""
        return _command(device_id, make_command("display", ticket=body.ticket))

    @app.post(f"{API}/devices/{{device_id}}/identify", tags=["devices"], status_code=202)
    def identify(_: Annotated[Principal, Manager], device_id: str, body: IdentifyIn):
        """Blink the counter for `seconds`, to find it on the floor."""
        seconds = int(body.seconds) if float(body.seconds).is_integer() else body.seconds
        return _command(device_id, make_command("identify", seconds=seconds))

    return app


# ----- the server ---------------------------------------------------------------------------------


class ApiServer:
    """uvicorn on a daemon thread: `start()` returns once it accepts connections, `stop()` drains it."""

    def __init__(self, app: FastAPI, host: str, port: int, *, log_level: str = "warning"):
        import uvicorn

        self.host, self.port = host, port
        # log_config=None: keep the service's logging setup instead of uvicorn's own.
        self._config = uvicorn.Config(app, host=host, port=port, log_config=None, log_level=log_level,
                                      lifespan="off", timeout_graceful_shutdown=5, server_header=False)
        self._server = uvicorn.Server(self._config)
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._stopping = False
        self.error: BaseException | None = None

    def bind(self) -> "ApiServer":
        """Claim the address now (ApiServerError if taken); `start` then serves on it."""
        if self._sock is not None:
            return self
        # Binding here, not in uvicorn, turns "address in use" into an exception for the
        # caller instead of a log line on a thread and a server that never starts.
        try:
            family, kind, proto, _, addr = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM,
                                                              flags=socket.AI_PASSIVE)[0]
            sock = socket.socket(family, kind, proto)
        except OSError as e:
            raise ApiServerError(f"HTTP API: cannot use address {self.host}:{self.port}: {e}") from None
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(addr)
            # Listening is what claims the port on Linux: with SO_REUSEADDR two sockets may
            # both be bound to it until one listens. Early connections wait in the backlog.
            sock.listen(self._config.backlog)
        except OSError as e:
            sock.close()
            hint = " (is another service using that port?)" if e.errno == errno.EADDRINUSE else ""
            raise ApiServerError(f"HTTP API: cannot listen on {self.host}:{self.port}: {e.strerror or e}{hint}") \
                from None
        self._sock = sock
        self.port = sock.getsockname()[1]  # the real one when asked for port 0
        return self

    def start(self, timeout: float = 10.0) -> "ApiServer":
        """Serve on a thread; returns once connections are accepted."""
        self.bind()
        self._thread = threading.Thread(target=self._run, args=(self._sock,), name="http-api", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            self._thread.join(0.01)  # doubles as the wait and the "did it die?" check
            if not self._thread.is_alive():
                raise ApiServerError(f"HTTP API on {self.host}:{self.port} failed to start: {self.error!r}")
            if time.monotonic() > deadline:
                self.stop()
                raise ApiServerError(f"HTTP API on {self.host}:{self.port} did not start within {timeout} s")
        return self

    def _run(self, sock: socket.socket) -> None:
        try:
            self._server.run(sockets=[sock])
        except BaseException as e:  # noqa: BLE001 - uvicorn exits with SystemExit on startup failure
            self.error = e
            log.error("HTTP API stopped: %r", e)
        finally:
            sock.close()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def failed(self) -> bool:
        """True if the server ended without being asked to."""
        return self._thread is not None and not self._thread.is_alive() and not self._stopping

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping = True
        self._server.should_exit = True
        if self._thread is None and self._sock is not None:
            self._sock.close()  # bound but never served
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                self._server.force_exit = True
                self._thread.join(timeout)
