"""Administration: users and roles, API keys, device credentials, security events and
blocks, and (platform admins) tenants and tenant profiles with usage against their limits.

Every action calls the same service as the API with the viewer's principal, so the
permission matrix, the grant rule (nobody gives a role above their own) and tenant scope
apply unchanged. Actions answer 200 with the section re-rendered, the service's complaint
shown beside the field it names; secrets (API keys, device tokens) appear in that one answer
only."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Annotated, Any, Literal, cast

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field
from sqlalchemy import select

from yugong.api.routers.security import lift_block, list_blocks, list_events
from yugong.core.errors import FieldError, InvalidInput, NotFound, YugongError
from yugong.platform.quotas_profiles import LIMIT_FIELDS, RATE_LIMITS
from yugong.security.models import SecurityEvent
from yugong.security.permissions import can_grant
from yugong.security.principal import Role
from yugong.web.console import PREFIX, NavItem, Viewer, ViewerDep, render

router = APIRouter(prefix=PREFIX, include_in_schema=False)
NAV = [NavItem("admin", f"{PREFIX}/admin", "users:write")]
BASE = f"{PREFIX}/admin"
PAGE = 100
SEVERITIES = ("info", "warning", "critical")
Severity = Literal["info", "warning", "critical"]

Text = Annotated[str, Form(max_length=1024)]
OptText = Annotated[str | None, Form(max_length=1024)]


@dataclass(frozen=True)
class SubItem:
    key: str  # catalog key "admin.nav.<key>"
    path: str
    action: str


SUBNAV = (
    SubItem("home", BASE, "users:write"),
    SubItem("users", f"{BASE}/users", "users:write"),
    SubItem("apikeys", f"{BASE}/apikeys", "apikeys:write"),
    SubItem("credentials", f"{BASE}/credentials", "devices:credentials"),
    SubItem("security", f"{BASE}/security", "security:read"),
    SubItem("audit", f"{PREFIX}/audit", "audit:read"),
    SubItem("tenants", f"{BASE}/tenants", "tenants:write"),
    SubItem("profiles", f"{BASE}/profiles", "tenants:write"),
)


@dataclass
class Outcome:
    """What an action came to: a message on success, or the error and the fields it names."""

    done: str | None = None
    error: str | None = None
    fields: dict[str, str] | None = None

    @classmethod
    def failed(cls, exc: YugongError) -> Outcome:
        return cls(error=exc.detail, fields={e.loc: e.msg for e in exc.errors})


def _enter(viewer: Viewer, action: str) -> None:
    """Admin pages need users:write and the section's own permission."""
    viewer.require("users:write")
    viewer.require(action)


def _page(
    request: Request, viewer: Viewer, name: str, section: str, **context: Any
) -> HTMLResponse:
    """The admin page around the section ``_admin_<name>.html``, or for htmx the section."""
    htmx = request.headers.get("hx-request") == "true"
    template = f"_admin_{name}.html" if htmx else "admin.html"
    context["part"] = f"_admin_{name}.html"
    subnav = [s for s in SUBNAV if viewer.may(s.action)]
    context.setdefault("outcome", Outcome())
    return render(request, template, viewer, subnav=subnav, section=section, **context)


def _grantable(viewer: Viewer) -> list[Role]:
    """Roles the viewer may give; platform admins only by platform admins."""
    return [r for r in Role if can_grant(viewer.principal.role, r)]


def _role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        raise InvalidInput("unknown role", [FieldError("role", "unknown role")]) from None


def _placed(viewer: Viewer, role: Role) -> int | None:
    """The tenant a new user or key goes to: the tenant shown; none for a platform admin."""
    return None if role is Role.PLATFORM_ADMIN else viewer.tenant_id


def _security(request: Request) -> Any:
    return request.app.state.security


def _registry(request: Request) -> Any:
    return request.app.state.registry


def _quotas(request: Request) -> Any:
    return request.app.state.platform.quotas


# Home -------------------------------------------------------------------------------------

USAGE_ROWS = (
    ("devices", "max_devices"),
    ("users", "max_users"),
    ("api_keys", "max_api_keys"),
    ("stored_bytes", "max_stored_bytes"),
    ("messages_per_s", "messages_per_s"),
    ("points_per_s", "points_per_s"),
    ("api_requests_per_s", "api_requests_per_s"),
)


def _usage(request: Request, viewer: Viewer, tenant: int | None) -> dict[str, Any] | None:
    """A tenant's usage against its profile's limits, for those who may read it."""
    if tenant is None or not viewer.may("quotas:read"):
        return None
    report = _quotas(request).usage(viewer.principal, tenant)
    limits, used = report["limits"], report["usage"]
    rows = [(name, used.get(name), limits.get(limit)) for name, limit in USAGE_ROWS]
    return {
        "profile": limits.get("profile"),
        "rows": rows,
        "storage_full": report["storage_full"],
        "refused": report["refused"],
    }


@router.get("/admin", response_class=HTMLResponse)
def home(request: Request, viewer: ViewerDep) -> HTMLResponse:
    _enter(viewer, "users:write")
    usage = _usage(request, viewer, viewer.tenant_id)
    return _page(request, viewer, "home", "home", usage=usage)


# Users ------------------------------------------------------------------------------------


def _users(request: Request, viewer: Viewer, outcome: Outcome, **form: Any) -> HTMLResponse:
    users = _security(request).users.list(viewer.principal, tenant_id=viewer.tenant_id, limit=PAGE)
    return _page(
        request,
        viewer,
        "users",
        "users",
        users=users,
        roles=_grantable(viewer),
        outcome=outcome,
        form=form,
        me=viewer.principal.id if viewer.principal.kind == "user" else None,
    )


@router.get("/admin/users", response_class=HTMLResponse)
def users_page(request: Request, viewer: ViewerDep) -> HTMLResponse:
    _enter(viewer, "users:write")
    return _users(request, viewer, Outcome())


@router.post("/admin/users", response_class=HTMLResponse)
def create_user(
    request: Request,
    viewer: ViewerDep,
    username: Annotated[str, Form(max_length=64)],
    password: Text,
    role: Annotated[str, Form(max_length=32)],
    display_name: Annotated[str, Form(max_length=128)] = "",
) -> HTMLResponse:
    _enter(viewer, "users:write")
    form = {"username": username, "display_name": display_name, "role": role}
    try:
        new_role = _role(role)
        created = _security(request).users.create(
            viewer.principal,
            username=username.strip(),
            password=password,
            role=new_role,
            tenant_id=_placed(viewer, new_role),
            display_name=display_name.strip(),
            locale=viewer.locale,
        )
    except YugongError as exc:
        return _users(request, viewer, Outcome.failed(exc), **form)
    done = viewer.t("admin.users.created", name=created.username)
    return _users(request, viewer, Outcome(done=done))


USER_ACTIONS = ("role", "activate", "deactivate", "unlock", "totp_reset", "revoke", "delete")


@router.post("/admin/users/{user_id}/{action}", response_class=HTMLResponse)
def user_action(
    request: Request,
    viewer: ViewerDep,
    user_id: int,
    action: str,
    role: Annotated[str | None, Form(max_length=32)] = None,
) -> HTMLResponse:
    _enter(viewer, "users:write")
    if action not in USER_ACTIONS:
        return render(request, "error.html", viewer, status_code=404, kind="not_found")
    security, p = _security(request), viewer.principal
    try:
        security.users.get(p, user_id)  # another tenant's user is "not found"
        if action == "role":
            security.users.update(p, user_id, role=_role(role or ""))
        elif action in ("activate", "deactivate"):
            security.users.update(p, user_id, active=action == "activate")
        elif action == "unlock":
            security.users.unlock(p, user_id)
        elif action == "totp_reset":
            security.totp.reset(p, user_id)
        elif action == "revoke":
            security.users.revoke_sessions(p, user_id)
        else:
            security.users.delete(p, user_id)
    except YugongError as exc:
        return _users(request, viewer, Outcome.failed(exc))
    return _users(request, viewer, Outcome(done=viewer.t(f"admin.users.done_{action}")))


# API keys ---------------------------------------------------------------------------------


def _keys(
    request: Request, viewer: Viewer, outcome: Outcome, new_key: str | None = None, **form: Any
) -> HTMLResponse:
    keys = _security(request).apikeys.list(viewer.principal, tenant_id=viewer.tenant_id, limit=PAGE)
    return _page(
        request,
        viewer,
        "apikeys",
        "apikeys",
        keys=keys,
        roles=_grantable(viewer),
        outcome=outcome,
        new_key=new_key,
        form=form,
    )


@router.get("/admin/apikeys", response_class=HTMLResponse)
def keys_page(request: Request, viewer: ViewerDep) -> HTMLResponse:
    _enter(viewer, "apikeys:write")
    return _keys(request, viewer, Outcome())


def _expiry(value: str | None) -> datetime | None:
    """The end (UTC) of the day a key stops working; empty: never."""
    if not value:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise InvalidInput("bad date", [FieldError("expires_at", "YYYY-MM-DD")]) from None
    return datetime.combine(day, time(23, 59, 59), tzinfo=UTC)


@router.post("/admin/apikeys", response_class=HTMLResponse)
def create_key(
    request: Request,
    viewer: ViewerDep,
    name: Annotated[str, Form(max_length=128)],
    role: Annotated[str, Form(max_length=32)],
    expires: Annotated[str | None, Form(max_length=10)] = None,
) -> HTMLResponse:
    _enter(viewer, "apikeys:write")
    form = {"name": name, "role": role, "expires": expires or ""}
    try:
        key_role = _role(role)
        new = _security(request).apikeys.create(
            viewer.principal,
            name=name,
            role=key_role,
            expires_at=_expiry(expires),
            tenant_id=_placed(viewer, key_role),
        )
    except YugongError as exc:
        return _keys(request, viewer, Outcome.failed(exc), **form)
    done = viewer.t("admin.keys.created", name=new.info.name)
    return _keys(request, viewer, Outcome(done=done), new_key=new.key)


@router.post("/admin/apikeys/{key_id}/revoke", response_class=HTMLResponse)
def revoke_key(request: Request, viewer: ViewerDep, key_id: int) -> HTMLResponse:
    _enter(viewer, "apikeys:write")
    try:
        info = _security(request).apikeys.revoke(viewer.principal, key_id)
    except YugongError as exc:
        return _keys(request, viewer, Outcome.failed(exc))
    return _keys(request, viewer, Outcome(done=viewer.t("admin.keys.revoked", name=info.name)))


# Device credentials -----------------------------------------------------------------------


def _credentials(
    request: Request,
    viewer: Viewer,
    device_id: int | None,
    outcome: Outcome,
    q: str = "",
    token: str | None = None,
) -> HTMLResponse:
    devices = _registry(request).devices
    p, tenant = viewer.principal, viewer.tenant_id
    choices = []
    if tenant is not None:
        choices = devices.list(p, tenant_id=tenant, search=q or None, limit=PAGE).items
    device = info = None
    if device_id is not None:
        try:
            device = devices.get(p, device_id, tenant_id=tenant)
            info = devices.credentials(p, device_id, tenant_id=tenant)
        except NotFound as exc:
            outcome = Outcome.failed(exc)
    return _page(
        request,
        viewer,
        "credentials",
        "credentials",
        choices=choices,
        device=device,
        info=info,
        q=q,
        token=token,
        outcome=outcome,
    )


@router.get("/admin/credentials", response_class=HTMLResponse)
def credentials_page(
    request: Request,
    viewer: ViewerDep,
    device: Annotated[str | None, Query(max_length=20)] = None,
    q: Annotated[str, Query(max_length=128)] = "",
) -> HTMLResponse:
    _enter(viewer, "devices:credentials")
    device_id = int(device) if device and device.isdigit() else None
    return _credentials(request, viewer, device_id, Outcome(), q=q)


CREDENTIAL_ACTIONS = ("token", "mqtt", "mqtt_delete", "x509", "x509_delete")


@router.post("/admin/credentials/{device_id}/{action}", response_class=HTMLResponse)
def credential_action(
    request: Request,
    viewer: ViewerDep,
    device_id: int,
    action: str,
    username: Annotated[str | None, Form(max_length=128)] = None,
    password: Annotated[str | None, Form(max_length=256)] = None,
    fingerprint: Annotated[str | None, Form(max_length=95)] = None,
) -> HTMLResponse:
    _enter(viewer, "devices:credentials")
    if action not in CREDENTIAL_ACTIONS:
        return render(request, "error.html", viewer, status_code=404, kind="not_found")
    devices, p, tenant = _registry(request).devices, viewer.principal, viewer.tenant_id
    token = None
    try:
        if action == "token":
            token = devices.rotate_token(p, device_id, tenant_id=tenant)
        elif action == "mqtt":
            devices.set_mqtt_credentials(
                p, device_id, username=username or "", password=password or "", tenant_id=tenant
            )
        elif action == "mqtt_delete":
            devices.delete_mqtt_credentials(p, device_id, tenant_id=tenant)
        elif action == "x509":
            devices.set_certificate(p, device_id, fingerprint=fingerprint or "", tenant_id=tenant)
        else:
            devices.delete_certificate(p, device_id, tenant_id=tenant)
    except YugongError as exc:
        return _credentials(request, viewer, device_id, Outcome.failed(exc))
    done = Outcome(done=viewer.t(f"admin.cred.done_{action}"))
    return _credentials(request, viewer, device_id, done, token=token)


# Security events and blocks ---------------------------------------------------------------


def _security_page(
    request: Request, viewer: Viewer, kind: str | None, severity: str | None, outcome: Outcome
) -> HTMLResponse:
    security, p = _security(request), viewer.principal
    # Platform admins see every tenant's events (and the platform's own, tenant-less ones).
    tenant = None if p.tenant is None else p.tenant
    sev = cast(Severity | None, severity if severity in SEVERITIES else None)
    events = list_events(
        p, security, tenant_id=tenant, kind=kind, severity=sev, since=None, limit=PAGE, offset=0
    )
    blocks = list_blocks(p, security, tenant_id=tenant, active=True, limit=PAGE, offset=0)
    kinds_q = select(SecurityEvent.kind).distinct().order_by(SecurityEvent.kind)
    if p.tenant is not None:
        kinds_q = kinds_q.where(SecurityEvent.tenant_id == p.tenant)
    with security.db.session() as s:
        kinds = list(s.scalars(kinds_q))
    return _page(
        request,
        viewer,
        "security",
        "security",
        events=events,
        blocks=blocks,
        kinds=kinds,
        kind=kind or "",
        severity=severity or "",
        severities=SEVERITIES,
        outcome=outcome,
    )


@router.get("/admin/security", response_class=HTMLResponse)
def security_page(
    request: Request,
    viewer: ViewerDep,
    kind: Annotated[str | None, Query(max_length=64)] = None,
    severity: Annotated[str | None, Query(pattern="^(info|warning|critical)?$")] = None,
) -> HTMLResponse:
    _enter(viewer, "security:read")
    return _security_page(request, viewer, kind or None, severity or None, Outcome())


@router.post("/admin/security/blocks/{block_id}/lift", response_class=HTMLResponse)
def unblock(request: Request, viewer: ViewerDep, block_id: int) -> HTMLResponse:
    _enter(viewer, "security:write")
    try:
        info = lift_block(block_id, viewer.principal, _security(request))
    except YugongError as exc:
        return _security_page(request, viewer, None, None, Outcome.failed(exc))
    done = Outcome(done=viewer.t("admin.sec.lifted", value=info.value))
    return _security_page(request, viewer, None, None, done)


# Tenants (platform admins) ----------------------------------------------------------------


def _profiles(request: Request, viewer: Viewer) -> list[Any]:
    profiles: list[Any] = _quotas(request).profiles.list(viewer.principal)
    return profiles


def _tenants(request: Request, viewer: Viewer, outcome: Outcome, **form: Any) -> HTMLResponse:
    tenants = _registry(request).tenants.list(viewer.principal, limit=1000).items
    profiles = _profiles(request, viewer)
    return _page(
        request,
        viewer,
        "tenants",
        "tenants",
        tenants=tenants,
        profiles=profiles,
        names={pr.id: pr.name for pr in profiles},
        outcome=outcome,
        form=form,
    )


@router.get("/admin/tenants", response_class=HTMLResponse)
def tenants_page(request: Request, viewer: ViewerDep) -> HTMLResponse:
    _enter(viewer, "tenants:write")
    return _tenants(request, viewer, Outcome())


def _profile_id(value: str | None) -> int | None:
    """The profile chosen in a form; empty: the default profile."""
    if not value:
        return None
    if not value.isdigit():
        raise InvalidInput("bad profile", [FieldError("profile_id", "choose a profile")])
    return int(value)


@router.post("/admin/tenants", response_class=HTMLResponse)
def create_tenant(
    request: Request,
    viewer: ViewerDep,
    name: Annotated[str, Form(max_length=128)],
    slug: Annotated[str | None, Form(max_length=64)] = None,
    industry: Annotated[str | None, Form(max_length=64)] = None,
    profile_id: Annotated[str | None, Form(max_length=20)] = None,
) -> HTMLResponse:
    _enter(viewer, "tenants:write")
    form = {"name": name, "slug": slug or "", "industry": industry or "", "profile_id": profile_id}
    tenants = _registry(request).tenants
    try:
        profile = _profile_id(profile_id)
        rec = tenants.create(
            viewer.principal,
            name=name,
            slug=(slug or "").strip() or None,
            industry=(industry or "").strip() or None,
        )
        if profile is not None:
            tenants.update(viewer.principal, rec.id, profile_id=profile)
    except YugongError as exc:
        return _tenants(request, viewer, Outcome.failed(exc), **form)
    return _tenants(request, viewer, Outcome(done=viewer.t("admin.tenants.created", name=rec.name)))


def _tenant(
    request: Request, viewer: Viewer, tenant_id: int, outcome: Outcome, **form: Any
) -> HTMLResponse:
    try:
        tenant = _registry(request).tenants.get(viewer.principal, tenant_id)
    except NotFound:
        return render(request, "error.html", viewer, status_code=404, kind="not_found")
    return _page(
        request,
        viewer,
        "tenant",
        "tenants",
        tenant=tenant,
        profiles=_profiles(request, viewer),
        usage=_usage(request, viewer, tenant_id),
        outcome=outcome,
        form=form,
    )


@router.get("/admin/tenants/{tenant_id}", response_class=HTMLResponse)
def tenant_page(request: Request, viewer: ViewerDep, tenant_id: int) -> HTMLResponse:
    _enter(viewer, "tenants:write")
    return _tenant(request, viewer, tenant_id, Outcome())


@router.post("/admin/tenants/{tenant_id}", response_class=HTMLResponse)
def update_tenant(
    request: Request,
    viewer: ViewerDep,
    tenant_id: int,
    name: Annotated[str, Form(max_length=128)],
    industry: Annotated[str | None, Form(max_length=64)] = None,
    profile_id: Annotated[str | None, Form(max_length=20)] = None,
    active: Annotated[str | None, Form(max_length=5)] = None,
) -> HTMLResponse:
    _enter(viewer, "tenants:write")
    try:
        _registry(request).tenants.update(
            viewer.principal,
            tenant_id,
            name=name,
            industry=(industry or "").strip() or None,
            profile_id=_profile_id(profile_id),
            active=active == "on",
        )
    except YugongError as exc:
        if isinstance(exc, NotFound):
            return render(request, "error.html", viewer, status_code=404, kind="not_found")
        return _tenant(request, viewer, tenant_id, Outcome.failed(exc))
    return _tenant(request, viewer, tenant_id, Outcome(done=viewer.t("admin.saved")))


# Tenant profiles (platform admins) --------------------------------------------------------


def _limits(form: dict[str, Any]) -> dict[str, Any]:
    """The limits typed in a profile form: empty is unlimited; numbers checked by the
    service (whole numbers for counts and sizes, any positive number for rates)."""
    values: dict[str, Any] = {}
    errors = []
    for name in LIMIT_FIELDS:
        raw = (form.get(name) or "").strip()
        if not raw:
            values[name] = None
            continue
        try:
            values[name] = float(raw) if name in RATE_LIMITS else int(raw)
        except ValueError:
            errors.append(FieldError(name, "a number, or empty for unlimited"))
    if errors:
        raise InvalidInput("; ".join(f"{e.loc}: {e.msg}" for e in errors), errors)
    return values


class ProfileForm(BaseModel):
    """A profile form as typed: limits are text until checked (empty: unlimited)."""

    name: str = Field("", max_length=128)
    description: str = Field("", max_length=512)
    is_default: str | None = Field(None, max_length=5)
    max_devices: str = Field("", max_length=24)
    max_users: str = Field("", max_length=24)
    max_api_keys: str = Field("", max_length=24)
    max_stored_bytes: str = Field("", max_length=24)
    max_retention_days: str = Field("", max_length=24)
    messages_per_s: str = Field("", max_length=24)
    points_per_s: str = Field("", max_length=24)
    device_messages_per_s: str = Field("", max_length=24)
    device_points_per_s: str = Field("", max_length=24)
    api_requests_per_s: str = Field("", max_length=24)

    def values(self) -> dict[str, Any]:
        values = _limits(self.model_dump())
        values["name"], values["description"] = self.name, self.description
        if self.is_default == "on":
            values["is_default"] = True
        return values


ProfileFormDep = Annotated[ProfileForm, Form()]


def _profiles_page(
    request: Request, viewer: Viewer, outcome: Outcome, form: dict[str, Any] | None = None
) -> HTMLResponse:
    return _page(
        request,
        viewer,
        "profiles",
        "profiles",
        profiles=_profiles(request, viewer),
        limit_fields=LIMIT_FIELDS,
        outcome=outcome,
        form=form or {},
    )


@router.get("/admin/profiles", response_class=HTMLResponse)
def profiles_page(request: Request, viewer: ViewerDep) -> HTMLResponse:
    _enter(viewer, "tenants:write")
    return _profiles_page(request, viewer, Outcome())


@router.post("/admin/profiles", response_class=HTMLResponse)
def create_profile(request: Request, viewer: ViewerDep, form: ProfileFormDep) -> HTMLResponse:
    _enter(viewer, "tenants:write")
    try:
        rec = _quotas(request).profiles.create(viewer.principal, **form.values())
    except YugongError as exc:
        return _profiles_page(request, viewer, Outcome.failed(exc), form.model_dump())
    done = Outcome(done=viewer.t("admin.profiles.created", name=rec.name))
    return _profiles_page(request, viewer, done)


def _profile_page(
    request: Request, viewer: Viewer, profile_id: int, outcome: Outcome
) -> HTMLResponse:
    try:
        profile = _quotas(request).profiles.get(viewer.principal, profile_id)
    except NotFound:
        return render(request, "error.html", viewer, status_code=404, kind="not_found")
    return _page(
        request,
        viewer,
        "profile",
        "profiles",
        profile=profile,
        limit_fields=LIMIT_FIELDS,
        outcome=outcome,
    )


@router.get("/admin/profiles/{profile_id}", response_class=HTMLResponse)
def profile_page(request: Request, viewer: ViewerDep, profile_id: int) -> HTMLResponse:
    _enter(viewer, "tenants:write")
    return _profile_page(request, viewer, profile_id, Outcome())


@router.post("/admin/profiles/{profile_id}", response_class=HTMLResponse)
def update_profile(
    request: Request, viewer: ViewerDep, profile_id: int, form: ProfileFormDep
) -> HTMLResponse:
    _enter(viewer, "tenants:write")
    try:
        _quotas(request).profiles.update(viewer.principal, profile_id, **form.values())
    except NotFound:
        return render(request, "error.html", viewer, status_code=404, kind="not_found")
    except YugongError as exc:
        return _profile_page(request, viewer, profile_id, Outcome.failed(exc))
    return _profile_page(request, viewer, profile_id, Outcome(done=viewer.t("admin.saved")))
