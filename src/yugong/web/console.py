"""The console's frame: sign-in with the platform's sessions (cookie, CSRF-protected), the
viewer of each page (who, in which language, allowed to see what), page rendering and the
navigation. Pages live in ``yugong.web.pages``; each is an ordinary route that calls the
platform's services with the viewer's principal, so tenant scope and the permission matrix
apply exactly as in the API.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Depends, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from yugong import __version__
from yugong.api.csrf import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    check_csrf,
    clear_session_cookies,
    csrf_token,
    set_session_cookies,
)
from yugong.core.errors import RateLimited, Unauthorized, YugongError
from yugong.security.context import current
from yugong.security.permissions import allowed
from yugong.security.principal import Principal
from yugong.security.service import Security
from yugong.security.totp import SecondFactorError
from yugong.security.users import LOCALES
from yugong.web.i18n import LANG_COOKIE, Translator, negotiate

log = logging.getLogger(__name__)
PREFIX = "/console"
REFRESH_COOKIE = "yugong_refresh"
TENANT_COOKIE = "yugong_tenant"
LANG_COOKIE_AGE = 365 * 86_400
WEB = Path(__file__).parent
templates = Jinja2Templates(directory=str(WEB / "templates"))


def vendor(name: str) -> str:
    """URL of a vendored library (``static/vendor/<name>-<version>.min.js``)."""
    found = sorted((WEB / "static" / "vendor").glob(f"{name}-*.min.js"))
    return f"/static/vendor/{found[-1].name}" if found else ""


templates.env.globals["vendor"] = vendor


@dataclass(frozen=True)
class NavItem:
    key: str  # the catalog key of its label is "nav.<key>"
    path: str
    action: str  # the permission a viewer needs to see it


# The console's menu, in order: each page module declares its items (``NAV`` in the module)
# and install_console() gathers them; an item appears for viewers whose role allows it.
NAV: list[NavItem] = []


@dataclass
class Viewer:
    """Who looks at a page, and in which language."""

    principal: Principal
    name: str
    locale: str
    t: Translator
    csrf: str
    new_cookies: list[Callable[[Response], None]] = field(default_factory=list)

    tenant_id: int | None = None  # the tenant shown (a platform admin chooses one)
    tenants: list[tuple[int, str]] = field(default_factory=list)  # a platform admin's choice

    def may(self, action: str) -> bool:
        return allowed(self.principal.role, action)

    def require(self, action: str) -> None:
        if not self.may(action):
            raise PageForbidden(action)


class LoginRequired(Exception):
    """No valid session: the browser goes to the sign-in page, coming back afterwards."""


class PageForbidden(Exception):
    def __init__(self, action: str) -> None:
        super().__init__(action)
        self.action = action


def _security(request: Request) -> Security:
    security: Security = request.app.state.security
    return security


def _session(request: Request, security: Security) -> tuple[Principal, str, list[Any]]:
    """The principal of the session cookie, renewing an expired access token with the
    refresh cookie; the access token in use; cookies to set on the answer."""
    key = security.settings.signing_key()
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        try:
            principal = security.authenticate(token)
            check_csrf(request, key, token)
            return principal, token, []
        except Unauthorized:
            pass
    refresh = request.cookies.get(REFRESH_COOKIE)
    if not refresh:
        raise LoginRequired
    try:
        pair = security.sessions.refresh(refresh)
    except YugongError:
        raise LoginRequired from None
    principal = security.authenticate(pair.access_token)
    if request.method not in ("GET", "HEAD"):
        raise LoginRequired  # a renewed session has a new CSRF token: reload the page first

    def renew(response: Response) -> None:
        _set_cookies(response, request, security, pair.access_token, pair.refresh_token)

    return principal, pair.access_token, [renew]


def _set_cookies(
    response: Response, request: Request, security: Security, access: str, refresh: str
) -> None:
    settings = security.settings
    key = settings.signing_key()
    set_session_cookies(response, request, key, access, settings.access_token_minutes * 60)
    response.set_cookie(
        REFRESH_COOKIE,
        refresh,
        max_age=settings.refresh_token_days * 86_400,
        path=PREFIX,
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )


def get_viewer(request: Request) -> Viewer:
    security = _security(request)
    principal, token, renew = _session(request, security)
    saved: str | None = None
    name = principal.name
    if principal.kind == "user":
        with_profile = security.users.me(principal)
        saved, name = with_profile.locale, with_profile.display_name or with_profile.username
    locale = negotiate(
        saved, request.cookies.get(LANG_COOKIE), request.headers.get("accept-language")
    )
    csrf = csrf_token(security.settings.signing_key(), token)
    viewer = Viewer(principal, name, locale, Translator(locale), csrf, renew)
    viewer.tenant_id, viewer.tenants = _tenant_choice(request, principal)
    request.state.principal = principal
    current().principal = principal  # the audit log and events name who acted
    return viewer


def _tenant_choice(request: Request, principal: Principal) -> tuple[int | None, list[Any]]:
    """A tenant user sees its tenant; a platform admin picks one (``?tenant=`` or the
    ``yugong_tenant`` cookie), the first tenant until then."""
    if principal.tenant is not None:
        return principal.tenant, []
    registry = request.app.state.registry
    listing = registry.tenants.list(principal, limit=1000)
    tenants = [(t.id, t.name) for t in listing.items]
    wanted = request.query_params.get("tenant") or request.cookies.get(TENANT_COOKIE)
    ids = {tid for tid, _ in tenants}
    if wanted and wanted.isdigit() and int(wanted) in ids:
        return int(wanted), tenants
    return (tenants[0][0] if tenants else None), tenants


ViewerDep = Annotated[Viewer, Depends(get_viewer)]


def render(
    request: Request,
    template: str,
    viewer: Viewer | None = None,
    *,
    status_code: int = 200,
    locale: str | None = None,
    **context: Any,
) -> HTMLResponse:
    """A page (or, for an htmx request, a fragment the template decides) in the viewer's
    language, with the menu of pages the viewer may see."""
    if viewer is None:
        locale = locale or negotiate(
            None, request.cookies.get(LANG_COOKIE), request.headers.get("accept-language")
        )
    t = viewer.t if viewer is not None else Translator(locale or "zh-CN")
    nav = [item for item in NAV if viewer is not None and viewer.may(item.action)]
    response = templates.TemplateResponse(
        request,
        template,
        {
            "t": t,
            "locale": t.locale,
            "viewer": viewer,
            "nav": nav,
            "path": request.url.path,
            "version": __version__,
            "htmx": request.headers.get("hx-request") == "true",
            **context,
        },
        status_code=status_code,
    )
    for renew in viewer.new_cookies if viewer is not None else ():
        renew(response)
    return response


router = APIRouter(prefix=PREFIX, include_in_schema=False)


def _safe_next(target: str | None) -> str:
    """Only a path inside the console: never an open redirect."""
    if not target:
        return f"{PREFIX}/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith(PREFIX):
        return f"{PREFIX}/"
    return target


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str | None = None, lang: str | None = None) -> HTMLResponse:
    chosen = lang if lang in LOCALES else None
    response = render(
        request, "login.html", locale=chosen, next=_safe_next(next), error=None, need_code=False
    )
    if chosen:
        response.set_cookie(LANG_COOKIE, chosen, max_age=LANG_COOKIE_AGE, path="/", samesite="lax")
    return response


@router.post("/login", response_class=HTMLResponse)
def login_submit(
    request: Request,
    username: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=1024)],
    code: Annotated[str | None, Form(max_length=16)] = None,
    next: Annotated[str | None, Form(max_length=2048)] = None,
) -> Response:
    security = _security(request)
    target = _safe_next(next)
    locale = negotiate(
        None, request.cookies.get(LANG_COOKIE), request.headers.get("accept-language")
    )
    t = Translator(locale)
    form: dict[str, Any] = {"next": target, "username": username}
    try:
        pair = security.sessions.login(username, password, code or None)
    except SecondFactorError:
        need = t("login.code_wrong") if code else None
        return render(request, "login.html", locale=locale, error=need, need_code=True, **form)
    except RateLimited as exc:
        wait = getattr(exc, "retry_after", 60)
        error = t("login.locked", minutes=max(1, round(wait / 60)))
        return render(
            request,
            "login.html",
            locale=locale,
            error=error,
            need_code=False,
            status_code=429,
            **form,
        )
    except Unauthorized:
        error = t("login.failed")
        return render(
            request,
            "login.html",
            locale=locale,
            error=error,
            need_code=False,
            status_code=401,
            **form,
        )
    response = RedirectResponse(target, status_code=303)
    _set_cookies(response, request, security, pair.access_token, pair.refresh_token)
    return response


@router.post("/logout")
def logout(request: Request, viewer: ViewerDep) -> Response:
    security = _security(request)
    security.sessions.logout(viewer.principal, request.cookies.get(REFRESH_COOKIE))
    response = _redirect(request, f"{PREFIX}/login")
    clear_session_cookies(response, request)
    response.delete_cookie(REFRESH_COOKIE, path=PREFIX)
    return response


@router.post("/language")
def set_language(
    request: Request, viewer: ViewerDep, locale: Annotated[str, Form(max_length=8)]
) -> Response:
    """Switch the console's language; remembered for the user and in a cookie."""
    security = _security(request)
    if viewer.principal.kind == "user":
        security.users.update_me(viewer.principal, locale=locale)  # refuses unknown locales
    back = request.headers.get("hx-current-url") or request.headers.get("referer")
    response = _redirect(request, _safe_next(urlsplit(back).path if back else None))
    response.set_cookie(LANG_COOKIE, locale, max_age=LANG_COOKIE_AGE, path="/", samesite="lax")
    return response


def _redirect(request: Request, target: str) -> Response:
    """A redirect the browser follows whether the request came from htmx or a form."""
    if request.headers.get("hx-request") == "true":
        return Response(status_code=204, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


def install_console(app: FastAPI) -> None:
    """The console's routes and how its refusals look: a sign-in page or a 403 page,
    never a JSON problem."""
    from yugong.web.pages import all_pages

    app.include_router(router)
    NAV.clear()
    for page in all_pages():
        app.include_router(page.router)
        NAV.extend(getattr(page, "NAV", ()))

    @app.exception_handler(LoginRequired)
    async def to_login(request: Request, exc: LoginRequired) -> Response:
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        target = f"{PREFIX}/login?next={quote(here)}"
        response = _redirect(request, target)
        response.delete_cookie(SESSION_COOKIE, path="/")
        response.delete_cookie(CSRF_COOKIE, path="/")
        return response

    @app.exception_handler(PageForbidden)
    async def forbidden(request: Request, exc: PageForbidden) -> Response:
        viewer = get_viewer(request)
        return render(request, "error.html", viewer, status_code=403, kind="forbidden")

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse(f"{PREFIX}/", status_code=307)


__all__ = [
    "NAV",
    "PREFIX",
    "LoginRequired",
    "PageForbidden",
    "Viewer",
    "ViewerDep",
    "install_console",
    "render",
    "router",
]
