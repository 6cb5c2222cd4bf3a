"""The API's errors, always JSON `{"detail": "..."}`.

Validation problems are flattened to one readable sentence, and an unexpected exception is
logged here and answered with a bare 500, never a traceback.
"""
from __future__ import annotations

import logging

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

__all__ = ["found", "install_error_handlers", "validation_text"]

log = logging.getLogger("hailong.api")


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
