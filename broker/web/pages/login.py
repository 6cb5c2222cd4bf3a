"""Logging in and out, and the language cookie."""
# No `from __future__ import annotations`: FastAPI reads the dependency annotations as objects.

import logging
from dataclasses import replace

from fastapi import APIRouter, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from broker.i18n import LANGS
from broker.web.page import AnyPage, Form, Page
from broker.web.session import LANG_COOKIE, PRE_COOKIE, SESSION_COOKIE, new_pre_session, safe_next

__all__ = ["router"]

log = logging.getLogger("hailong.web")

router = APIRouter(include_in_schema=False)

PRE_SESSION_S = 3600
LANG_S = 365 * 86400


def set_cookie(page: Page, response: Response, name: str, value: str, max_age: int | None,
               httponly: bool = True) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/", httponly=httponly, samesite="lax",
                        secure=page.dash.secure)


def login_page(page: Page, *, next_: str, message: str | None = None, status: int = 200,
               user: str = "") -> HTMLResponse:
    pre = page.request.cookies.get(PRE_COOKIE)
    if not pre or len(pre) > 64:
        pre = new_pre_session()
    anonymous = replace(page, session=None)  # the login form never shows a session's menu
    response = anonymous.render("login.html", status=status, login_csrf=page.dash.signer.csrf_for("pre:" + pre),
                                next=next_, message=message, user=user)
    set_cookie(page, response, PRE_COOKIE, pre, max_age=PRE_SESSION_S)
    return response


@router.get("/login")
def login_form(page: AnyPage, next: str = "/"):
    if page.session is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return login_page(page, next_=safe_next(next))


def _refused(page: Page, name: str) -> str:
    """The message for a failed login: locked (until when) or simply wrong."""
    until = page.dash.auth.locked_until_ms(name) if name else None
    if until is not None:
        log.warning("dashboard login refused: %r is locked", name)
        return page.t("login.locked", until=page.dash.local_time(until, "%H:%M"))
    log.info("dashboard login failed for %r", name)
    return page.t("login.wrong")


@router.post("/login")
def login(page: AnyPage, form: Form):
    next_ = safe_next(form.get("next"))
    pre = page.request.cookies.get(PRE_COOKIE)
    signer = page.dash.signer
    if not signer.csrf_ok("pre:" + pre if pre else None, form.get("csrf")):
        return login_page(page, next_=next_, message=page.t("login.expired"), status=403)
    name, password = form.get("user", "").strip(), form.get("password", "")
    who = page.dash.auth.verify_password(name, password) if name and password else None
    if who is None:
        return login_page(page, next_=next_, message=_refused(page, name), status=401, user=name)
    cookie, _ = signer.issue(who.name, who.role)
    response = RedirectResponse(next_, status_code=303)
    set_cookie(page, response, SESSION_COOKIE, cookie, max_age=signer.ttl_s)
    response.delete_cookie(PRE_COOKIE, path="/")
    log.info("dashboard login: %s (%s)", who.name, who.role)
    return response


@router.post("/logout")
def logout(page: AnyPage, form: Form):
    s = page.session
    if s is not None and not page.dash.signer.csrf_ok(s.sid, form.get("csrf")):
        return page.error(403, "error.csrf")
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", secure=page.dash.secure, httponly=True, samesite="lax")
    return response


@router.get("/lang/{code}")
def set_lang(page: AnyPage, code: str, next: str | None = None):
    target = safe_next(next) if next else "/"
    response = RedirectResponse(target, status_code=303)
    if code in LANGS:
        set_cookie(page, response, LANG_COOKIE, code, max_age=LANG_S, httponly=False)
    return response
