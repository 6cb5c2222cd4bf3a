"""What the API's routes depend on: the caller and its role, and the service's parts on `app.state`.

`create_app` puts the store, ingest, auth, config, clock and the settings derived from the
config on `app.state`; routes ask for them with the aliases here (`StoreDep`, `ClockDep`...)
instead of closing over them, so a route module is a plain `APIRouter`. Only `principal`
reads the auth, to recognise the caller.

The role and site checks are declared once, here, for routes:

    SiteViewer, SiteManager, SiteAdmin   a `Scope`: the caller (role checked) and the sites it may
        see. A route over site data takes one and passes everything it reads or changes through it:
        `scope.sites` narrows a store query (None: every site), `scope.site(x)` checks a site the
        request names (404 for another site's, as for one that does not exist: no telling which),
        `scope.only(items)` filters a list by its "site".
    Viewer, Manager, Admin   the caller, province-wide only: a principal limited to some sites is
        refused (403). The default for a route that has not been made site-aware, so a new route
        leaks nothing to a commune's principal; making it site-scoped is one `Depends` away.

`check_role` and `Scope.of` are for anyone else who must decide the same way (the dashboard).
The `display` role (a hall display's token, bound to one site) is below all of them: every
route here answers it 403; only the hall page accepts it, through `check_hall`.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from broker.auth import Principal
from common.clock import Clock
from common.periods import DEFAULT_TZ

__all__ = ["API", "Admin", "ApiSettings", "ClockDep", "IngestDep", "Manager", "PrincipalResolver", "Scope",
           "SettingsDep", "SiteAdmin", "SiteManager", "SiteViewer", "StoreDep", "Viewer", "add_principal_resolver",
           "check_hall", "check_role", "principal", "require", "scoped"]

API = "/api/v1"

# Something that recognises a caller from the request (e.g. the dashboard's session cookie).
PrincipalResolver = Callable[[Request], "Principal | None"]


@dataclass(frozen=True)
class ApiSettings:
    """What the routes need from the config, read once."""

    tz: str  # the service's zone: days in queries and report times
    satisfied_from: int | None  # None: the store's default
    centre: str  # the service's name, on report files

    @classmethod
    def of(cls, cfg) -> "ApiSettings":
        return cls(tz=getattr(cfg.service, "timezone", DEFAULT_TZ),
                   satisfied_from=getattr(cfg.service, "satisfied_from", 0) or None,
                   centre=getattr(cfg.service, "name", ""))


# ----- the service's parts ---------------------------------------------------------------------


def _store(request: Request) -> Any:
    return request.app.state.store


def _ingest(request: Request) -> Any:
    return request.app.state.ingest


def _clock(request: Request) -> Clock:
    return request.app.state.clock


def _settings(request: Request) -> ApiSettings:
    return request.app.state.settings


StoreDep = Annotated[Any, Depends(_store)]
IngestDep = Annotated[Any, Depends(_ingest)]
ClockDep = Annotated[Clock, Depends(_clock)]
SettingsDep = Annotated[ApiSettings, Depends(_settings)]


# ----- the caller ------------------------------------------------------------------------------

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
    # The seam for the dashboard: its session cookie resolves to a Principal here.
    for resolve in request.app.state.principal_resolvers:
        found = resolve(request)
        if found is not None:
            return found
    raise _unauthorized("missing bearer token")


def add_principal_resolver(app: FastAPI, resolver: PrincipalResolver) -> None:
    """Let `resolver` (e.g. a session-cookie check) authenticate requests that carry no token."""
    app.state.principal_resolvers.append(resolver)


def check_role(who: Principal, role: str) -> Principal:
    """`who` if its role is `role` or higher; else a 403 HTTPException saying what is missing."""
    if not who.allows(role):
        raise HTTPException(403, f"this needs the {role} role or higher; {who.name!r} is {who.role}")
    return who


def check_hall(who: Principal, site: str) -> Principal:
    """`who` if it may watch `site`'s hall display (that site's display token, or a user who sees it); else a 403."""
    if not who.shows_hall(site):
        raise HTTPException(403, f"{who.name!r} may not watch the hall display of {site!r}")
    return who


def check_province(who: Principal) -> Principal:
    """`who` if it sees every site; else a 403 HTTPException."""
    if who.sites is not None:
        raise HTTPException(403, f"this covers every site; {who.name!r} is limited to some sites")
    return who


def require(role: str) -> Callable[..., Principal]:
    """The dependency that lets a province-wide caller with `role` or higher through."""

    def check(who: Annotated[Principal, Depends(principal)]) -> Principal:
        return check_province(check_role(who, role))

    # Read by errors.api_router's routes: 401, and 403 (a scoped caller is always refused here).
    check.role = role  # type: ignore[attr-defined]
    check.province = True  # type: ignore[attr-defined]
    return check


Viewer = Annotated[Principal, Depends(require("viewer"))]
Manager = Annotated[Principal, Depends(require("manager"))]
Admin = Annotated[Principal, Depends(require("admin"))]


# ----- the caller's sites ----------------------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    """The caller and the sites it may see and act on: `sites` None for every site."""

    who: Principal

    @classmethod
    def of(cls, who: Principal) -> "Scope":
        return cls(who)

    @property
    def sites(self) -> frozenset[str] | None:
        return self.who.sites

    @property
    def province(self) -> bool:
        return self.who.sites is None

    def sees(self, site: str | None) -> bool:
        return self.who.sees(site)

    def site(self, site: str, what: str | None = None) -> str:
        """`site` if the caller sees it, else a 404 "no such ..." that reads as for a missing one."""
        if not self.sees(site):
            raise HTTPException(404, f"no such {what or f'site {site!r}'}")
        return site

    def narrow(self, site: str | None) -> frozenset[str] | None:
        """The sites a query may read: just `site` when the request names one (checked), else all the caller's."""
        return self.sites if site is None else frozenset({self.site(site)})

    def only(self, items: Iterable[dict], key: str = "site") -> list[dict]:
        """The items whose `key` is a site the caller sees."""
        return [item for item in items if self.sees(item.get(key))]


def scoped(role: str) -> Callable[..., Scope]:
    """The dependency that lets a caller with `role` or higher through, limited to its sites."""

    def check(who: Annotated[Principal, Depends(principal)]) -> Scope:
        return Scope.of(check_role(who, role))

    check.role = role  # type: ignore[attr-defined]
    check.scoped = True  # type: ignore[attr-defined]  # read by the tests that walk every route
    return check


SiteViewer = Annotated[Scope, Depends(scoped("viewer"))]
SiteManager = Annotated[Scope, Depends(scoped("manager"))]
SiteAdmin = Annotated[Scope, Depends(scoped("admin"))]
