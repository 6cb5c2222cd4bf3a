"""One request's page: who is asking, in which language, and how to answer with a template.

The dependencies pages declare:

    AnyPage     anyone, logged in or not (the login form)
    UserPage    a logged-in user; anyone else is sent to /login?next=<here>. Its `sites` are what
                every query of the page must be narrowed to: the one chosen with ?site= (a site the
                user does not see is a 404 page) or all the user's (None: every site); `scope`
                decides about a site an action names, as the API does (broker.api.deps.Scope).
    ActingPage  a user whose form carries its CSRF token and whose role may change things,
                decided by the API's own role check (`broker.api.deps.check_role`)
    Form        the posted form fields
"""
# No `from __future__ import annotations`: FastAPI reads these dependency annotations as objects.

from dataclasses import dataclass, field
from typing import Annotated
from urllib.parse import parse_qs, quote

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from broker.api.deps import Scope, check_role
from broker.auth import Principal
from broker.i18n import LANGS, level_label, pick_lang, translator
from broker.web import format as fmt
from broker.web.context import Dashboard
from broker.web.session import LANG_COOKIE, Session, safe_next

__all__ = ["ACTING_ROLE", "ActingPage", "AnyPage", "Dash", "Form", "Page", "UserPage", "install_page_errors"]

MAX_FORM = 16 * 1024
ACTING_ROLE = "manager"  # the role the API asks for the same actions (assignments, identify)


class LoginRequired(Exception):
    def __init__(self, target: str):
        self.target = target


class PageError(Exception):
    """Answer with the error page: `status` and the catalogue id of its message."""

    def __init__(self, status: int, msg_id: str):
        self.status, self.msg_id = status, msg_id


def _dashboard(request: Request) -> Dashboard:
    return request.app.state.dashboard


Dash = Annotated[Dashboard, Depends(_dashboard)]


@dataclass
class Page:
    dash: Dashboard
    request: Request
    session: Session | None
    _principal: Principal | None = field(default=None, repr=False)

    @property
    def lang(self) -> str:
        return pick_lang(self.request.cookies.get(LANG_COOKIE))

    def t(self, msg_id: str, **fields) -> str:
        return translator(self.lang)(msg_id, **fields)

    @property
    def principal(self) -> Principal | None:
        if self.session is None:
            return None
        if self._principal is None or self._principal.name != self.session.user:
            self._principal = self.dash.principal_of(self.session)  # one auth lookup per request
        return self._principal

    @property
    def scope(self) -> Scope:
        return Scope.of(self.principal)

    @property
    def site(self) -> str | None:
        """The one site the page shows: the one chosen with ?site=, or the user's only site; else None."""
        chosen = self.request.query_params.get("site") or None
        if chosen is not None:
            if not self.scope.sees(chosen):
                raise PageError(404, "error.not_found")
            return chosen
        mine = self.scope.sites
        return next(iter(mine)) if mine is not None and len(mine) == 1 else None

    @property
    def sites(self) -> frozenset[str] | None:
        """What every query of this page is narrowed to (None: every site)."""
        site = self.site
        return self.scope.sites if site is None else frozenset({site})

    @property
    def may_act(self) -> bool:
        """Whether to offer the forms `ActingPage` would accept."""
        return self.principal is not None and self.principal.allows(ACTING_ROLE)

    def render(self, template: str, status: int = 200, **ctx) -> HTMLResponse:
        d, request, session, lang = self.dash, self.request, self.session, self.lang
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        html = d.env.get_template(template).render(
            t=translator(lang), lang=lang, langs=LANGS, session=session, service_name=d.service_name,
            **self._site_context(),
            path=request.url.path, here=quote(safe_next(here), safe="/?=&-"), can_act=self.may_act,
            can_scope=session is not None and self.principal.allows("admin") and self.principal.sites is None,
            csrf=d.signer.csrf_for(session.sid) if session else "",
            num=lambda v, digits=1: fmt.num(v, lang, digits), pct=lambda r: fmt.pct(r, lang),
            count=lambda n: fmt.count(n, lang), minutes=lambda s: fmt.minutes(s, lang),
            level=lambda scale, score: level_label(scale, score, lang),
            hue=fmt.hue, when=d.local_time, alerts_open=d.store.open_alert_count(self.scope.sites) if session else 0, **ctx)
        response = HTMLResponse(html, status_code=status)
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "same-origin"
        return response

    def _site_context(self) -> dict:
        """The centre the page shows (its title) and the site picker, for a user who sees several sites."""
        if self.session is None:
            return {"centre": self.dash.service_name, "site": None, "site_choices": [], "site_q": "",
                    "request_args": []}
        names = self.dash.site_names()
        try:
            site = self.site
        except PageError:
            site = None  # the error page for that very site: name no site
        choices = sorted(((k, v) for k, v in names.items() if self.scope.sees(k)), key=lambda kv: kv[1])
        if self.scope.sites is not None:
            choices += [(k, k) for k in sorted(self.scope.sites - names.keys())]
        return {"centre": names.get(site, site) if site else self.dash.service_name, "site": site,
                "site_choices": choices if len(choices) > 1 else [],
                "site_q": f"site={quote(site, safe='')}" if site and self.request.query_params.get("site") else "",
                "request_args": [(k, v) for k, v in self.request.query_params.multi_items()
                                 if k in ("period", "month")]}

    def error(self, status: int, msg_id: str) -> HTMLResponse:
        return self.render("error.html", status=status, message_id=msg_id)


# ----- dependencies ----------------------------------------------------------------------------


async def _form(request: Request) -> dict[str, str]:
    """An application/x-www-form-urlencoded body (python-multipart is not needed for that)."""
    body = await request.body()
    if len(body) > MAX_FORM:
        return {}
    parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[0] for k, v in parsed.items()}


Form = Annotated[dict, Depends(_form)]


def _any_page(request: Request, dash: Dash) -> Page:
    return Page(dash, request, dash.session_of(request))


AnyPage = Annotated[Page, Depends(_any_page)]


def _user_page(request: Request, page: AnyPage) -> Page:
    if page.session is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(safe_next(target))
    _ = page.site  # a ?site= the user does not see: the 404 page, before anything is read
    return page


UserPage = Annotated[Page, Depends(_user_page)]


def _acting_page(page: UserPage, form: Form) -> Page:
    if not page.dash.signer.csrf_ok(page.session.sid, form.get("csrf")):
        raise PageError(403, "error.csrf")
    try:
        check_role(page.principal, ACTING_ROLE)
    except HTTPException:
        raise PageError(403, "error.forbidden") from None
    return page


ActingPage = Annotated[Page, Depends(_acting_page)]


# ----- answers to the exceptions above ---------------------------------------------------------


def _to_login(request: Request, exc: LoginRequired):
    return RedirectResponse(f"/login?next={quote(exc.target, safe='/')}", status_code=303)


def _error_page(request: Request, exc: PageError):
    dash = _dashboard(request)
    return Page(dash, request, dash.session_of(request)).error(exc.status, exc.msg_id)


def install_page_errors(app: FastAPI) -> None:
    app.add_exception_handler(LoginRequired, _to_login)
    app.add_exception_handler(PageError, _error_page)
