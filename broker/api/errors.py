"""The API's errors, always JSON `{"detail": "..."}`, and what the OpenAPI document says about them.

Validation problems are flattened to one readable sentence, and an unexpected exception is
logged here and answered with a bare 500, never a traceback.

The document declares, for every operation, each error status it can answer, with the
`ApiError` body: routes name the ones their handler raises (`errors(404, 409)`), and routers
made by `api_router` add those that follow from the route's shape — 401 for any route that
needs a caller, 403 when it needs more than the lowest role or a province-wide caller, 422
when it reads a parameter or a body, 404 when it also checks them against the caller's sites,
400 when it reads a body (one that is not UTF-8 JSON cannot even be parsed) — so no list of
statuses is kept by hand.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import get_dependant
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from broker.api.deps import API, principal
from broker.auth import ROLES

__all__ = ["ApiError", "NOT_SENT", "NotSent", "api_router", "errors", "found", "install_error_handlers",
           "validation_text"]

log = logging.getLogger("hailong.api")


class ApiError(BaseModel):
    """Every error's body."""

    detail: str = Field(description="what went wrong, for a human")


class NotSent(ApiError):
    """The assignment is recorded but was not sent: the counter has no device yet."""

    site: str
    counter: str
    officer: str | None
    at: int
    recorded: bool
    device: None
    published: bool
    assignment: dict[str, Any]


NOT_SENT = {409: {"model": NotSent, "description": NotSent.__doc__}}

_WHEN = {
    400: "the body cannot be read as JSON (e.g. it is not UTF-8)",
    401: "no token, a wrong or revoked token, or an Authorization header that is not Bearer",
    403: "the token's role is too low for this route, or it is limited to some sites and this route covers all",
    404: "no such item",
    409: "it already exists, or it is still in use",
    422: "a parameter or the body is invalid; `detail` names the field",
}
_CHALLENGE = {"WWW-Authenticate": {"description": "always `Bearer`", "schema": {"type": "string"}}}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries for these error statuses, with the `ApiError` body."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        entry: dict[str, Any] = {"model": ApiError, "description": _WHEN[status]}
        if status == 401:
            entry["headers"] = _CHALLENGE
        out[status] = entry
    return out


@dataclass
class _Shape:
    caller: bool = False  # it needs a caller: 401
    role: str | None = None  # the role it needs: 403 above the lowest
    province: bool = False  # it refuses a caller limited to some sites: 403
    scoped: bool = False  # it checks what it reads against the caller's sites: 404 for another site's
    reads: bool = False  # it reads parameters or a body: 422
    body: bool = False  # it reads a body, which may not even be UTF-8 JSON: 400


def _shape(dependant: Dependant, shape: _Shape | None = None) -> _Shape:
    """What the route and its dependencies need from a request."""
    shape = shape or _Shape()
    shape.caller = shape.caller or dependant.call is principal
    shape.role = shape.role or getattr(dependant.call, "role", None)
    shape.province = shape.province or getattr(dependant.call, "province", False)
    shape.scoped = shape.scoped or getattr(dependant.call, "scoped", False)
    shape.body = shape.body or bool(dependant.body_params)
    shape.reads = shape.reads or shape.body or any(
        (dependant.path_params, dependant.query_params, dependant.header_params, dependant.cookie_params))
    for dep in dependant.dependencies:
        _shape(dep, shape)
    shape.caller = shape.caller or shape.role is not None
    return shape


class _DeclaringRoute(APIRoute):
    """An APIRoute whose declared responses also list the errors its shape implies (see the module's doc)."""

    def __init__(self, path: str, endpoint: Callable[..., Any], *,
                 responses: dict[int | str, dict[str, Any]] | None = None, **kwargs: Any) -> None:
        shape = _shape(get_dependant(path=path, call=endpoint))
        refuses = shape.role not in (None, ROLES[0]) or shape.province
        implied = errors(*[400] * shape.body, *[401] * shape.caller, *[403] * refuses,
                         *[404] * (shape.scoped and shape.reads), *[422] * shape.reads)
        super().__init__(path, endpoint, responses={**implied, **(responses or {})}, **kwargs)


def api_router(tag: str, prefix: str = API) -> APIRouter:
    """The router of one concern: its routes declare the errors they can answer."""
    return APIRouter(prefix=prefix, tags=[tag], route_class=_DeclaringRoute)


def found(item, what: str):
    """`item`, or a 404 "no such `what`" when there is none."""
    if item is None:
        raise HTTPException(404, f"no such {what}")
    return item


def validation_text(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
        msg = err.get("msg", "invalid")
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts) or "invalid request"


def _invalid(request: Request, exc: RequestValidationError):
    return JSONResponse({"detail": validation_text(exc)}, status_code=422)


def _http(request: Request, exc: StarletteHTTPException):
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


def _crash(request: Request, exc: Exception):
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"detail": "internal error; the service log has the details"}, status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(Exception, _crash)
