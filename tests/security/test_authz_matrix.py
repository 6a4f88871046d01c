"""The authorisation matrix over HTTP: every endpoint x every role x own / other tenant.

The endpoints come from the application's route table and must all be named in
``ROUTE_ACTIONS``; each is called with a valid request (one factory per route below), so a
refusal can only come from the access rules:

- a role the matrix allows, on its own tenant: not 401/403 (the factory's expected status);
- a role the matrix refuses, on its own tenant: 403;
- any tenant role on the other tenant: 403 or 404, never 2xx;
- a platform admin, naming the tenant: allowed on both.

Routes that touch no tenant's data (public, self-service, device-token ingest, the tenant
list and tenant creation) have no "other tenant" and run on the own side only.
One platform and one data set serve the whole module; DELETE acts on objects made per call.
"""

from __future__ import annotations

import hashlib
import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from argon2.profiles import CHEAPEST
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from tests.conftest import TEMPERATURE_MODE_TSL
from yugong.api.app import create_app
from yugong.core.settings import Settings
from yugong.platform.runtime import Platform
from yugong.security.permissions import ACTIONS, ROUTE_ACTIONS, allowed
from yugong.security.principal import Principal, Role

ADMIN_PASSWORD = "Root-Pass-2026!x"
PASSWORD = "Plain-Pass-2026!y"
OTHER_PASSWORD = "Other-Pass-2026!z"
OK = (200, 201, 204)
TOTP_REFUSED = (400, 409, 422)
MQTT_PASSWORD = "Mqtt-Pass-2026"


def app_routes(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path as declared) of every API route, also inside included routers (FastAPI
    0.120+ keeps those as lazy ``_IncludedRouter`` entries in ``app.routes``)."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # older FastAPI: app.routes is already flat
        contexts: list[Any] = list(app.routes)
        originals = contexts
    else:
        contexts = list(iter_route_contexts(app.routes))
        originals = [c.original_route for c in contexts]
    found: set[tuple[str, str]] = set()
    for ctx, original in zip(contexts, originals, strict=True):
        if isinstance(original, APIRoute):
            if ctx.path.startswith("/console"):
                continue  # console pages: tests/web/test_console_access.py checks each by role
            for method in ctx.methods or ():
                found.add((method, ctx.path))  # as declared, e.g. {path:path}
    return found


# The data set --------------------------------------------------------------------------


@dataclass
class TenantData:
    id: int
    slug: str
    admin: dict[str, str]  # headers of the tenant's admin
    asset: int = 0
    product: int = 0
    device: int = 0  # its token is rotated by the matrix
    ingest_token: str = ""  # token of a device nothing rotates
    user: int = 0  # a spare viewer: the target of user reads and changes
    apikey: int = 0


@dataclass
class Caller:
    role: Role
    principal: Principal
    headers: dict[str, str]
    username: str

    @property
    def platform(self) -> bool:
        return self.role is Role.PLATFORM_ADMIN


@dataclass
class Env:
    client: TestClient
    app: FastAPI
    root: dict[str, str]
    a: TenantData = field(init=False)
    b: TenantData = field(init=False)
    callers: dict[Role, Caller] = field(default_factory=dict)
    profile: int = 0  # a tenant profile nothing uses
    seq: Iterator[int] = field(default_factory=itertools.count)

    def unique(self, stem: str) -> str:
        return f"{stem}-{next(self.seq)}"

    def call(
        self, method: str, path: str, headers: dict[str, str], expect: int = 200, **kw: Any
    ) -> Any:
        r = self.client.request(method, path, headers=headers, **kw)
        assert r.status_code == expect, f"setup {method} {path}: {r.status_code} {r.text}"
        return r.json() if r.content else None

    def login(self, username: str, password: str) -> dict[str, str]:
        body = self.call(
            "POST", "/api/v1/auth/login", {}, json={"username": username, "password": password}
        )
        return {"Authorization": f"Bearer {body['access_token']}"}

    def user(self, username: str, role: Role, tenant: int | None) -> Principal:
        body = self.call(
            "POST",
            "/api/v1/users",
            self.root,
            201,
            json={"username": username, "password": PASSWORD, "role": role, "tenant_id": tenant},
        )
        return Principal("user", body["id"], body["tenant_id"], role, username)

    def tenant(self, name: str) -> TenantData:
        t = self.call("POST", "/api/v1/tenants", self.root, 201, json={"name": name})
        tid, slug = t["id"], t["slug"]
        self.user(f"{slug}-admin", Role.TENANT_ADMIN, tid)
        data = TenantData(tid, slug, self.login(f"{slug}-admin", PASSWORD))
        data.user = self.user(f"{slug}-spare", Role.VIEWER, tid).id
        data.asset = self.create("/api/v1/assets", {"name": "Site", "kind": "site"}, tid)["id"]
        data.product = self.product(tid, "sensor")
        data.device = self.device(tid, data.product, "dev-1")["id"]
        data.ingest_token = self.device(tid, data.product, "dev-ingest")["token"]
        data.apikey = self.call(
            "POST", "/api/v1/apikeys", data.admin, 201, json={"name": "integration"}
        )["id"]
        return data

    # Objects made as the platform admin, in a named tenant.
    def create(self, path: str, body: dict[str, Any], tenant: int) -> Any:
        return self.call("POST", path, self.root, 201, json={**body, "tenant_id": tenant})

    def product(self, tenant: int, key: str) -> int:
        params = {"key": key, "name": key.title(), "tenant_id": tenant}
        out = self.call(
            "POST",
            "/api/v1/products/import",
            self.root,
            201,
            params=params,
            json=TEMPERATURE_MODE_TSL,
        )
        return int(out["id"])

    def device(self, tenant: int, product: int, name: str) -> Any:
        return self.create("/api/v1/devices", {"name": name, "product_id": product}, tenant)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    data_dir: Path = tmp_path_factory.mktemp("authz")
    settings = Settings(
        data_dir=data_dir,
        secret_key="m" * 40,
        admin_password=ADMIN_PASSWORD,
        mqtt_embedded=False,
    )
    platform = Platform(settings)
    app = create_app(settings, platform)
    with TestClient(app) as client:
        # argon2 at its cheapest: the matrix makes and signs in dozens of users.
        platform.security.passwords.hasher = PasswordHasher.from_parameters(CHEAPEST)
        e = Env(client, app, {})
        e.root = e.login(settings.admin_username, ADMIN_PASSWORD)
        e.a, e.b = e.tenant("Matrix A"), e.tenant("Matrix B")
        profile = e.call("POST", f"{V1}/tenant-profiles", e.root, 201, json={"name": "matrix"})
        e.profile = profile["id"]
        for role in Role:
            tenant = None if role is Role.PLATFORM_ADMIN else e.a.id
            name = f"matrix-{role.value.replace('_', '-')}"
            principal = e.user(name, role, tenant)
            e.callers[role] = Caller(role, principal, e.login(name, PASSWORD), name)
        yield e


# One valid request per route -------------------------------------------------------------


@dataclass
class Req:
    method: str
    path: str
    params: dict[str, Any] | None = None
    json: Any = None
    data: dict[str, str] | None = None
    ok: tuple[int, ...] = OK  # what an allowed caller gets
    after: Callable[[httpx.Response], None] | None = None


Factory = Callable[[Env, Caller, TenantData], Req]
V1 = "/api/v1"


def named(c: Caller, t: TenantData) -> dict[str, Any]:
    """Object routes: a platform admin names the tenant; a tenant caller relies on its own
    (so an object of the other tenant must be refused by the object's scope check)."""
    return {"tenant_id": t.id} if c.platform else {}


def fresh_refresh(e: Env, c: Caller) -> str:
    security = e.app.state.security
    return str(security.sessions.issue(c.principal).refresh_token)


def change_password(e: Env, c: Caller, t: TenantData) -> Req:
    def restore(r: httpx.Response) -> None:
        if r.status_code != 200:
            return
        # Every session ended: put the password back and take the new session.
        headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
        body = {"current_password": OTHER_PASSWORD, "new_password": PASSWORD}
        out = e.call("POST", f"{V1}/users/me/password", headers, json=body)
        c.headers = {"Authorization": f"Bearer {out['access_token']}"}

    body = {"current_password": PASSWORD, "new_password": OTHER_PASSWORD}
    return Req("POST", f"{V1}/users/me/password", json=body, after=restore)


def throwaway_key(e: Env, c: Caller, t: TenantData) -> Req:
    # The caller's own key where it may make keys in that tenant, else the tenant admin's.
    own = c.platform or (c.principal.tenant == t.id and allowed(c.role, "apikeys:write"))
    headers = c.headers if own else t.admin
    body: dict[str, Any] = {"name": e.unique("doomed"), "role": "viewer"}
    if c.platform:
        body["tenant_id"] = t.id
    key = e.call("POST", f"{V1}/apikeys", headers, 201, json=body)
    return Req("DELETE", f"{V1}/apikeys/{key['id']}")


def throwaway_tenant(e: Env, c: Caller, t: TenantData) -> Req:
    # Only a platform admin may delete tenants; anyone else aims at the real tenant and
    # must be refused.
    if c.platform:
        doomed = e.call("POST", f"{V1}/tenants", e.root, 201, json={"name": e.unique("Doomed")})
        return Req("DELETE", f"{V1}/tenants/{doomed['id']}")
    return Req("DELETE", f"{V1}/tenants/{t.id}")


def throwaway_user(e: Env, c: Caller, t: TenantData) -> Req:
    doomed = e.user(e.unique("doomed"), Role.VIEWER, t.id)
    return Req("DELETE", f"{V1}/users/{doomed.id}")


def throwaway_asset(e: Env, c: Caller, t: TenantData) -> Req:
    doomed = e.create(f"{V1}/assets", {"name": e.unique("doomed"), "kind": "site"}, t.id)
    return Req("DELETE", f"{V1}/assets/{doomed['id']}", params=named(c, t))


def throwaway_product(e: Env, c: Caller, t: TenantData) -> Req:
    doomed = e.product(t.id, e.unique("doomed"))
    return Req("DELETE", f"{V1}/products/{doomed}", params=named(c, t))


def throwaway_device(e: Env, c: Caller, t: TenantData) -> Req:
    doomed = e.device(t.id, t.product, e.unique("doomed"))
    return Req("DELETE", f"{V1}/devices/{doomed['id']}", params=named(c, t))


def fresh_session_id(e: Env, c: Caller, t: TenantData) -> Req:
    e.app.state.security.sessions.issue(c.principal)
    sessions = e.call("GET", f"{V1}/auth/sessions", c.headers)
    newest = max(sessions, key=lambda x: x["started_at"])
    return Req("DELETE", f"{V1}/auth/sessions/{newest['id']}")


def throwaway_profile(e: Env, c: Caller, t: TenantData) -> Req:
    doomed = e.call("POST", f"{V1}/tenant-profiles", e.root, 201, json={"name": e.unique("p")})
    return Req("DELETE", f"{V1}/tenant-profiles/{doomed['id']}")


def block_device(e: Env, c: Caller, t: TenantData) -> Req:
    doomed = e.device(t.id, t.product, e.unique("blocked"))
    body = {"kind": "device", "value": str(doomed["id"]), "reason": "matrix", "duration_s": 60}
    return Req("POST", f"{V1}/security/blocks", json=body)


def throwaway_block(e: Env, c: Caller, t: TenantData) -> Req:
    doomed = e.device(t.id, t.product, e.unique("blocked"))
    body = {"kind": "device", "value": str(doomed["id"]), "reason": "matrix", "duration_s": 60}
    block = e.call("POST", f"{V1}/security/blocks", e.root, 201, json=body)
    return Req("DELETE", f"{V1}/security/blocks/{block['id']}")


def invoke_component(e: Env, c: Caller, t: TenantData) -> Req:
    """On the own tenant literal inputs; on the other, that tenant's stored series (refused
    to its callers; a platform admin finds no samples in the range)."""
    path = f"{V1}/components/energy.power_factor/1.0.0:invoke"
    if t is e.a:
        return Req("POST", path, json={"inputs": {"p": 3, "q": 4}})
    series = {"device": t.device, "property": "temperature", "start": 0, "end": 1000}
    body = {"inputs": {"p": {"series": series, "unit": "kW"}, "q": 0}}
    return Req("POST", path, json=body, ok=(200, 422))


def notification_target(e: Env, t: TenantData) -> int:
    """A webhook target in ``t`` pointing at a closed port (a test send fails fast)."""
    body = {
        "name": e.unique("hook"),
        "kind": "webhook",
        "config": {"url": "http://127.0.0.1:9/hook", "timeout_s": 2},
        "secret": "matrix-hmac-key-0123456789",
    }
    return int(e.create(f"{V1}/notification-targets", body, t.id)["id"])


def on_target(method: str, suffix: str = "", json: Callable[[Env], Any] | None = None) -> Factory:
    def make(e: Env, c: Caller, t: TenantData) -> Req:
        path = f"{V1}/notification-targets/{notification_target(e, t)}{suffix}"
        return Req(method, path, params=named(c, t), json=json(e) if json else None)

    return make


def fingerprint(e: Env) -> str:
    return hashlib.sha256(e.unique("cert").encode()).hexdigest()


def device_without(kind: str) -> Factory:
    """DELETE of a credential: on a throwaway device that has one."""

    def make(e: Env, c: Caller, t: TenantData) -> Req:
        doomed = e.device(t.id, t.product, e.unique("creds"))["id"]
        base = f"{V1}/devices/{doomed}/credentials"
        if kind == "mqtt":
            body: dict[str, str] = {"username": e.unique("mqtt-user"), "password": MQTT_PASSWORD}
        else:
            body = {"fingerprint": fingerprint(e)}
        e.call("PUT", f"{base}/{kind}", e.root, params={"tenant_id": t.id}, json=body)
        return Req("DELETE", f"{base}/{kind}", params=named(c, t))

    return make


def recorded_command(e: Env, c: Caller, t: TenantData) -> Req:
    """A command in the tenant's log (none can be sent here: no device has a downlink)."""
    from yugong.platform.command_queue import CommandLog

    record = CommandLog(e.app.state.platform.db).create(
        tenant=t.id,
        device=t.device,
        kind="write",
        name="mode",
        params={"value": 1},
        timeout_s=1.0,
        created_by="matrix",
        rule_id=None,
    )
    return Req("GET", f"{V1}/commands/{record.id}")


def now_ms() -> int:
    return int(time.time() * 1000)


def fresh_alarm(e: Env, t: TenantData) -> int:
    """An active alarm of the tenant's device, raised the way rules and actions raise them."""
    alarms = e.app.state.platform.alarms
    change = alarms.raise_alarm(t.id, name=e.unique("Matrix"), severity="major", device=t.device)
    return int(change.alarm)


def on_alarm(method: str, suffix: str = "", json: Any = None) -> Factory:
    """A request on a fresh alarm of the target tenant (assign: to the tenant's spare user)."""

    def make(e: Env, c: Caller, t: TenantData) -> Req:
        path = f"{V1}/alarms/{fresh_alarm(e, t)}{suffix}"
        body = {"user_id": t.user} if suffix == "/assign" else json
        return Req(method, path, params=named(c, t), json=body)

    return make


def rule_spec(e: Env) -> dict[str, Any]:
    return {
        "name": e.unique("matrix-rule"),
        "target": {"product": "sensor"},
        "condition": {"kind": "threshold", "property": "temperature", "op": ">", "value": 90},
    }


def on_rule(method: str, suffix: str = "", body: bool = False) -> Factory:
    """A request on a fresh rule of the target tenant."""

    def make(e: Env, c: Caller, t: TenantData) -> Req:
        rule = e.call(
            "POST", f"{V1}/rules", e.root, 201, params={"tenant_id": t.id}, json=rule_spec(e)
        )
        ok = (204,) if method == "DELETE" else (200,)
        json = rule_spec(e) if body else None
        return Req(method, f"{V1}/rules/{rule['id']}{suffix}", params=named(c, t), json=json, ok=ok)

    return make


def dashboard_body(e: Env, t: TenantData) -> dict[str, Any]:
    widget = {"kind": "value", "device": t.device, "property": "temperature"}
    return {"name": e.unique("matrix-board"), "widgets": [widget]}


def on_dashboard(method: str, body: bool = False) -> Factory:
    """A request on a fresh dashboard of the target tenant: the caller's own where it is of
    that tenant (only owners and admins change one), else the tenant admin's, not shared."""

    def make(e: Env, c: Caller, t: TenantData) -> Req:
        own = c.platform or c.principal.tenant == t.id
        maker = c.headers if own else t.admin
        params = {"tenant_id": t.id} if c.platform else None
        board = e.call(
            "POST", f"{V1}/dashboards", maker, 201, params=params, json=dashboard_body(e, t)
        )
        ok = (204,) if method == "DELETE" else (200,)
        json = dashboard_body(e, t) if body else None
        return Req(method, f"{V1}/dashboards/{board['id']}", params=named(c, t), json=json, ok=ok)

    return make


FACTORIES: dict[tuple[str, str], Factory] = {
    ("GET", "/"): lambda e, c, t: Req("GET", "/"),
    ("GET", f"{V1}/health"): lambda e, c, t: Req("GET", f"{V1}/health"),
    # Signing in and sessions: the caller's own.
    ("POST", f"{V1}/auth/login"): lambda e, c, t: Req(
        "POST", f"{V1}/auth/login", json={"username": c.username, "password": PASSWORD}
    ),
    ("POST", f"{V1}/auth/token"): lambda e, c, t: Req(
        "POST", f"{V1}/auth/token", data={"username": c.username, "password": PASSWORD}
    ),
    ("POST", f"{V1}/auth/refresh"): lambda e, c, t: Req(
        "POST", f"{V1}/auth/refresh", json={"refresh_token": fresh_refresh(e, c)}
    ),
    ("POST", f"{V1}/auth/logout"): lambda e, c, t: Req(
        "POST", f"{V1}/auth/logout", json={"refresh_token": fresh_refresh(e, c)}
    ),
    ("GET", f"{V1}/auth/me"): lambda e, c, t: Req("GET", f"{V1}/auth/me"),
    ("GET", f"{V1}/users/me"): lambda e, c, t: Req("GET", f"{V1}/users/me"),
    ("PATCH", f"{V1}/users/me"): lambda e, c, t: Req(
        "PATCH", f"{V1}/users/me", json={"display_name": "Matrix"}
    ),
    ("POST", f"{V1}/users/me/password"): change_password,
    # Users
    ("GET", f"{V1}/users"): lambda e, c, t: Req("GET", f"{V1}/users", params={"tenant_id": t.id}),
    ("POST", f"{V1}/users"): lambda e, c, t: Req(
        "POST",
        f"{V1}/users",
        json={
            "username": e.unique("new-user"),
            "password": PASSWORD,
            "role": "viewer",
            "tenant_id": t.id,
        },
    ),
    ("GET", f"{V1}/users/{{user_id}}"): lambda e, c, t: Req("GET", f"{V1}/users/{t.user}"),
    ("PATCH", f"{V1}/users/{{user_id}}"): lambda e, c, t: Req(
        "PATCH", f"{V1}/users/{t.user}", json={"display_name": e.unique("Spare")}
    ),
    ("DELETE", f"{V1}/users/{{user_id}}"): throwaway_user,
    # API keys
    ("GET", f"{V1}/apikeys"): lambda e, c, t: Req(
        "GET", f"{V1}/apikeys", params={"tenant_id": t.id}
    ),
    ("POST", f"{V1}/apikeys"): lambda e, c, t: Req(
        "POST",
        f"{V1}/apikeys",
        json={"name": e.unique("key"), "role": "viewer", "tenant_id": t.id},
    ),
    ("DELETE", f"{V1}/apikeys/{{key_id}}"): throwaway_key,
    # Tenants
    ("GET", f"{V1}/tenants"): lambda e, c, t: Req("GET", f"{V1}/tenants"),
    ("POST", f"{V1}/tenants"): lambda e, c, t: Req(
        "POST", f"{V1}/tenants", json={"name": e.unique("Tenant")}
    ),
    ("GET", f"{V1}/tenants/{{tenant_id}}"): lambda e, c, t: Req("GET", f"{V1}/tenants/{t.id}"),
    ("PATCH", f"{V1}/tenants/{{tenant_id}}"): lambda e, c, t: Req(
        "PATCH", f"{V1}/tenants/{t.id}", json={"industry": "discrete"}
    ),
    ("DELETE", f"{V1}/tenants/{{tenant_id}}"): throwaway_tenant,
    # Assets
    ("GET", f"{V1}/assets"): lambda e, c, t: Req("GET", f"{V1}/assets", params={"tenant_id": t.id}),
    ("GET", f"{V1}/assets/tree"): lambda e, c, t: Req(
        "GET", f"{V1}/assets/tree", params={"tenant_id": t.id}
    ),
    ("POST", f"{V1}/assets"): lambda e, c, t: Req(
        "POST",
        f"{V1}/assets",
        json={"name": e.unique("Site"), "kind": "site", "tenant_id": t.id},
    ),
    ("GET", f"{V1}/assets/{{asset_id}}"): lambda e, c, t: Req(
        "GET", f"{V1}/assets/{t.asset}", params=named(c, t)
    ),
    ("PATCH", f"{V1}/assets/{{asset_id}}"): lambda e, c, t: Req(
        "PATCH", f"{V1}/assets/{t.asset}", params=named(c, t), json={"attributes": {"floor": 1}}
    ),
    ("DELETE", f"{V1}/assets/{{asset_id}}"): throwaway_asset,
    # Products
    ("GET", f"{V1}/products"): lambda e, c, t: Req(
        "GET", f"{V1}/products", params={"tenant_id": t.id}
    ),
    ("POST", f"{V1}/products"): lambda e, c, t: Req(
        "POST",
        f"{V1}/products",
        json={"key": e.unique("p"), "name": "Product", "tenant_id": t.id},
    ),
    ("POST", f"{V1}/products/import"): lambda e, c, t: Req(
        "POST",
        f"{V1}/products/import",
        params={"key": e.unique("imported"), "name": "Imported", "tenant_id": t.id},
        json=TEMPERATURE_MODE_TSL,
    ),
    ("GET", f"{V1}/products/{{product_id}}"): lambda e, c, t: Req(
        "GET", f"{V1}/products/{t.product}", params=named(c, t)
    ),
    ("PATCH", f"{V1}/products/{{product_id}}"): lambda e, c, t: Req(
        "PATCH", f"{V1}/products/{t.product}", params=named(c, t), json={"description": "x"}
    ),
    ("DELETE", f"{V1}/products/{{product_id}}"): throwaway_product,
    ("GET", f"{V1}/products/{{product_id}}/tsl"): lambda e, c, t: Req(
        "GET", f"{V1}/products/{t.product}/tsl", params=named(c, t)
    ),
    ("PUT", f"{V1}/products/{{product_id}}/tsl"): lambda e, c, t: Req(
        "PUT", f"{V1}/products/{t.product}/tsl", params=named(c, t), json=TEMPERATURE_MODE_TSL
    ),
    # Devices
    ("GET", f"{V1}/devices"): lambda e, c, t: Req(
        "GET", f"{V1}/devices", params={"tenant_id": t.id}
    ),
    ("POST", f"{V1}/devices"): lambda e, c, t: Req(
        "POST",
        f"{V1}/devices",
        json={"name": e.unique("dev"), "product_id": t.product, "tenant_id": t.id},
    ),
    ("GET", f"{V1}/devices/{{device_id}}"): lambda e, c, t: Req(
        "GET", f"{V1}/devices/{t.device}", params=named(c, t)
    ),
    ("PATCH", f"{V1}/devices/{{device_id}}"): lambda e, c, t: Req(
        "PATCH", f"{V1}/devices/{t.device}", params=named(c, t), json={"label": "Matrix"}
    ),
    ("DELETE", f"{V1}/devices/{{device_id}}"): throwaway_device,
    ("POST", f"{V1}/devices/{{device_id}}/token"): lambda e, c, t: Req(
        "POST", f"{V1}/devices/{t.device}/token", params=named(c, t)
    ),
    ("GET", f"{V1}/devices/{{device_id}}/series"): lambda e, c, t: Req(
        "GET", f"{V1}/devices/{t.device}/series", params=named(c, t)
    ),
    # No downlink here (no broker, not behind a gateway): an allowed write is a 409.
    ("POST", f"{V1}/devices/{{device_id}}/properties/{{identifier}}"): lambda e, c, t: Req(
        "POST",
        f"{V1}/devices/{t.device}/properties/mode",
        json={"value": 1, "timeout_s": 1},
        ok=(409,),
    ),
    ("POST", f"{V1}/devices/{{device_id}}/commands"): lambda e, c, t: Req(
        "POST",
        f"{V1}/devices/{t.device}/commands",
        json={"kind": "write", "name": "mode", "value": 1, "timeout_s": 1},
        ok=(409,),
    ),
    ("GET", f"{V1}/devices/{{device_id}}/commands"): lambda e, c, t: Req(
        "GET", f"{V1}/devices/{t.device}/commands", params={"status": "queued"}
    ),
    ("GET", f"{V1}/commands/{{command_id}}"): recorded_command,
    # Telemetry
    ("GET", f"{V1}/devices/{{device_id}}/latest"): lambda e, c, t: Req(
        "GET", f"{V1}/devices/{t.device}/latest"
    ),
    ("GET", f"{V1}/devices/{{device_id}}/timeseries"): lambda e, c, t: Req(
        "GET", f"{V1}/devices/{t.device}/timeseries", params={"keys": "temperature"}
    ),
    ("GET", f"{V1}/devices/{{device_id}}/history"): lambda e, c, t: Req(
        "GET", f"{V1}/devices/{t.device}/history", params={"keys": "temperature"}
    ),
    # once=true: one snapshot then close (a live stream would never answer in full).
    ("GET", f"{V1}/devices/{{device_id}}/stream"): lambda e, c, t: Req(
        "GET", f"{V1}/devices/{t.device}/stream", params={"once": "true"}
    ),
    ("POST", f"{V1}/query/latest"): lambda e, c, t: Req(
        "POST", f"{V1}/query/latest", json={"series": [{"device": t.device}]}
    ),
    ("POST", f"{V1}/query/timeseries"): lambda e, c, t: Req(
        "POST",
        f"{V1}/query/timeseries",
        json={"series": [{"device": t.device, "properties": ["temperature"]}], "start": 0},
    ),
    ("POST", f"{V1}/telemetry"): lambda e, c, t: Req(
        "POST",
        f"{V1}/telemetry",
        params={"tenant_id": t.id},
        json=[{"device": t.device, "ts": now_ms(), "values": {"temperature": 21.5}}],
    ),
    ("POST", f"{V1}/{{token}}/telemetry"): lambda e, c, t: Req(
        "POST", f"{V1}/{t.ingest_token}/telemetry", json={"temperature": 22.5}
    ),
    ("POST", f"{V1}/{{token}}/attributes"): lambda e, c, t: Req(
        "POST", f"{V1}/{t.ingest_token}/attributes", json={"firmware": "1.2.3"}
    ),
    # Sessions and TOTP of the caller. The account has no TOTP on: enabling with a wrong
    # code and disabling are refused as bad input (422), never as forbidden.
    ("GET", f"{V1}/auth/sessions"): lambda e, c, t: Req("GET", f"{V1}/auth/sessions"),
    ("DELETE", f"{V1}/auth/sessions/{{session_id}}"): fresh_session_id,
    ("POST", f"{V1}/auth/totp/setup"): lambda e, c, t: Req("POST", f"{V1}/auth/totp/setup"),
    ("POST", f"{V1}/auth/totp/enable"): lambda e, c, t: Req(
        "POST", f"{V1}/auth/totp/enable", json={"code": "000000"}, ok=TOTP_REFUSED
    ),
    ("POST", f"{V1}/auth/totp/disable"): lambda e, c, t: Req(
        "POST",
        f"{V1}/auth/totp/disable",
        json={"password": PASSWORD, "code": "000000"},
        ok=TOTP_REFUSED,
    ),
    # Administering another user of the tenant.
    ("POST", f"{V1}/users/{{user_id}}/unlock"): lambda e, c, t: Req(
        "POST", f"{V1}/users/{t.user}/unlock"
    ),
    ("POST", f"{V1}/users/{{user_id}}/totp:reset"): lambda e, c, t: Req(
        "POST", f"{V1}/users/{t.user}/totp:reset"
    ),
    ("POST", f"{V1}/users/{{user_id}}/sessions:revoke"): lambda e, c, t: Req(
        "POST", f"{V1}/users/{t.user}/sessions:revoke"
    ),
    # Quotas
    ("GET", f"{V1}/tenants/{{tenant_id}}/usage"): lambda e, c, t: Req(
        "GET", f"{V1}/tenants/{t.id}/usage"
    ),
    ("GET", f"{V1}/tenant-profiles"): lambda e, c, t: Req("GET", f"{V1}/tenant-profiles"),
    ("POST", f"{V1}/tenant-profiles"): lambda e, c, t: Req(
        "POST", f"{V1}/tenant-profiles", json={"name": e.unique("profile")}
    ),
    ("GET", f"{V1}/tenant-profiles/{{profile_id}}"): lambda e, c, t: Req(
        "GET", f"{V1}/tenant-profiles/{e.profile}"
    ),
    ("PATCH", f"{V1}/tenant-profiles/{{profile_id}}"): lambda e, c, t: Req(
        "PATCH", f"{V1}/tenant-profiles/{e.profile}", json={"description": "matrix"}
    ),
    ("DELETE", f"{V1}/tenant-profiles/{{profile_id}}"): throwaway_profile,
    # Audit and detection
    ("GET", f"{V1}/audit"): lambda e, c, t: Req("GET", f"{V1}/audit", params={"tenant_id": t.id}),
    ("GET", f"{V1}/security/events"): lambda e, c, t: Req(
        "GET", f"{V1}/security/events", params={"tenant_id": t.id}
    ),
    ("GET", f"{V1}/security/blocks"): lambda e, c, t: Req(
        "GET", f"{V1}/security/blocks", params={"tenant_id": t.id}
    ),
    ("POST", f"{V1}/security/blocks"): block_device,
    ("DELETE", f"{V1}/security/blocks/{{block_id}}"): throwaway_block,
    # Device credentials
    ("GET", f"{V1}/devices/{{device_id}}/credentials"): lambda e, c, t: Req(
        "GET", f"{V1}/devices/{t.device}/credentials", params=named(c, t)
    ),
    ("PUT", f"{V1}/devices/{{device_id}}/credentials/mqtt"): lambda e, c, t: Req(
        "PUT",
        f"{V1}/devices/{t.device}/credentials/mqtt",
        params=named(c, t),
        json={"username": e.unique("mqtt-user"), "password": MQTT_PASSWORD},
    ),
    ("DELETE", f"{V1}/devices/{{device_id}}/credentials/mqtt"): device_without("mqtt"),
    ("PUT", f"{V1}/devices/{{device_id}}/credentials/x509"): lambda e, c, t: Req(
        "PUT",
        f"{V1}/devices/{t.device}/credentials/x509",
        params=named(c, t),
        json={"fingerprint": fingerprint(e)},
    ),
    ("DELETE", f"{V1}/devices/{{device_id}}/credentials/x509"): device_without("x509"),
    # Notification targets
    ("GET", f"{V1}/notification-targets"): lambda e, c, t: Req(
        "GET", f"{V1}/notification-targets", params={"tenant_id": t.id}
    ),
    ("POST", f"{V1}/notification-targets"): lambda e, c, t: Req(
        "POST",
        f"{V1}/notification-targets",
        json={
            "name": e.unique("hook"),
            "kind": "webhook",
            "config": {"url": "http://127.0.0.1:9/hook"},
            "secret": "matrix-hmac-key-0123456789",
            "tenant_id": t.id,
        },
    ),
    ("GET", f"{V1}/notification-targets/{{target_id}}"): on_target("GET"),
    ("PATCH", f"{V1}/notification-targets/{{target_id}}"): on_target(
        "PATCH", json=lambda e: {"name": e.unique("renamed")}
    ),
    ("DELETE", f"{V1}/notification-targets/{{target_id}}"): on_target("DELETE"),
    # The test send reaches nobody (a closed port): an allowed caller gets ok=false, 200.
    ("POST", f"{V1}/notification-targets/{{target_id}}/test"): on_target("POST", "/test"),
    ("GET", "/static/{path:path}"): lambda e, c, t: Req("GET", "/static/yugong.css"),
    # Alarms
    ("GET", f"{V1}/alarms"): lambda e, c, t: Req("GET", f"{V1}/alarms", params={"tenant_id": t.id}),
    ("GET", f"{V1}/alarms/summary"): lambda e, c, t: Req(
        "GET", f"{V1}/alarms/summary", params={"tenant_id": t.id}
    ),
    ("GET", f"{V1}/alarms/stream"): lambda e, c, t: Req(
        "GET", f"{V1}/alarms/stream", params={"tenant_id": t.id, "once": "true"}
    ),
    ("GET", f"{V1}/alarms/{{alarm_id}}"): on_alarm("GET"),
    ("GET", f"{V1}/alarms/{{alarm_id}}/history"): on_alarm("GET", "/history"),
    ("POST", f"{V1}/alarms/{{alarm_id}}/ack"): on_alarm("POST", "/ack"),
    ("POST", f"{V1}/alarms/{{alarm_id}}/clear"): on_alarm("POST", "/clear"),
    ("POST", f"{V1}/alarms/{{alarm_id}}/assign"): on_alarm("POST", "/assign"),
    ("POST", f"{V1}/alarms/{{alarm_id}}/comments"): on_alarm(
        "POST", "/comments", json={"text": "matrix"}
    ),
    # Rules
    ("GET", f"{V1}/rules"): lambda e, c, t: Req("GET", f"{V1}/rules", params={"tenant_id": t.id}),
    ("POST", f"{V1}/rules"): lambda e, c, t: Req(
        "POST", f"{V1}/rules", params={"tenant_id": t.id}, json=rule_spec(e), ok=(201,)
    ),
    ("POST", f"{V1}/rules:import"): lambda e, c, t: Req(
        "POST", f"{V1}/rules:import", params={"tenant_id": t.id}, json=[rule_spec(e)]
    ),
    ("GET", f"{V1}/rules:export"): lambda e, c, t: Req(
        "GET", f"{V1}/rules:export", params={"tenant_id": t.id}
    ),
    ("POST", f"{V1}/rules:dry-run"): lambda e, c, t: Req(
        "POST",
        f"{V1}/rules:dry-run",
        params={"tenant_id": t.id},
        json={"spec": rule_spec(e), "start": now_ms() - 60_000, "end": now_ms()},
    ),
    ("GET", f"{V1}/rules/{{rule_id}}"): on_rule("GET"),
    ("PUT", f"{V1}/rules/{{rule_id}}"): on_rule("PUT", body=True),
    ("DELETE", f"{V1}/rules/{{rule_id}}"): on_rule("DELETE"),
    ("GET", f"{V1}/rules/{{rule_id}}/versions"): on_rule("GET", "/versions"),
    ("POST", f"{V1}/rules/{{rule_id}}/enable"): on_rule("POST", "/enable"),
    ("POST", f"{V1}/rules/{{rule_id}}/disable"): on_rule("POST", "/disable"),
    # Components: the catalog is the platform's; invoking reads the caller's own series.
    ("GET", f"{V1}/components"): lambda e, c, t: Req("GET", f"{V1}/components"),
    ("GET", f"{V1}/components/{{name}}"): lambda e, c, t: Req(
        "GET", f"{V1}/components/energy.power_factor"
    ),
    ("GET", f"{V1}/components/{{name}}/{{version}}"): lambda e, c, t: Req(
        "GET", f"{V1}/components/energy.power_factor/1.0.0"
    ),
    ("POST", f"{V1}/components/{{name}}/{{version}}:invoke"): invoke_component,
    # Dashboards: every role composes its own; owners and admins change them.
    ("GET", f"{V1}/dashboards"): lambda e, c, t: Req(
        "GET", f"{V1}/dashboards", params={"tenant_id": t.id}
    ),
    ("POST", f"{V1}/dashboards"): lambda e, c, t: Req(
        "POST", f"{V1}/dashboards", params={"tenant_id": t.id}, json=dashboard_body(e, t), ok=(201,)
    ),
    ("GET", f"{V1}/dashboards/{{dashboard_id}}"): on_dashboard("GET"),
    ("PUT", f"{V1}/dashboards/{{dashboard_id}}"): on_dashboard("PUT", body=True),
    ("DELETE", f"{V1}/dashboards/{{dashboard_id}}"): on_dashboard("DELETE"),
}

# Routes with no "other tenant": public, the caller's own account, device-token ingest, and
# the tenant list / creation (platform-wide by nature).
OWN_ONLY = {route for route, action in ROUTE_ACTIONS.items() if action is None} | {
    ("GET", f"{V1}/tenants"),
    ("POST", f"{V1}/tenants"),
    ("GET", f"{V1}/tenant-profiles"),
    ("POST", f"{V1}/tenant-profiles"),
    ("GET", f"{V1}/tenant-profiles/{{profile_id}}"),
    ("PATCH", f"{V1}/tenant-profiles/{{profile_id}}"),
    ("DELETE", f"{V1}/tenant-profiles/{{profile_id}}"),
    ("GET", f"{V1}/components"),
    ("GET", f"{V1}/components/{{name}}"),
    ("GET", f"{V1}/components/{{name}}/{{version}}"),
}


def cases() -> Iterator[Any]:
    for route in sorted(ROUTE_ACTIONS, key=lambda r: (r[1], r[0])):
        for role in Role:
            for side in ("own",) if route in OWN_ONLY else ("own", "other"):
                yield pytest.param(route, role, side, id=f"{route[0]} {route[1]}|{role}|{side}")


# The tests -------------------------------------------------------------------------------


def test_every_route_is_in_the_matrix(env: Env) -> None:
    routes = app_routes(env.app)
    missing = sorted(routes - ROUTE_ACTIONS.keys())
    stale = sorted(ROUTE_ACTIONS.keys() - routes)
    assert not missing, f"routes missing from ROUTE_ACTIONS (permissions.py): {missing}"
    assert not stale, f"ROUTE_ACTIONS names routes that do not exist: {stale}"
    unknown = {r: a for r, a in ROUTE_ACTIONS.items() if a is not None and a not in ACTIONS}
    assert not unknown, f"ROUTE_ACTIONS names unknown actions: {unknown}"
    untested = sorted(ROUTE_ACTIONS.keys() - FACTORIES.keys())
    assert not untested, f"no request factory in test_authz_matrix.py for: {untested}"


@pytest.mark.parametrize(("route", "role", "side"), list(cases()))
def test_matrix(env: Env, route: tuple[str, str], role: Role, side: str) -> None:
    factory = FACTORIES.get(route)
    assert factory is not None, f"no request factory in test_authz_matrix.py for {route}"
    action = ROUTE_ACTIONS[route]
    caller = env.callers[role]
    target = env.a if side == "own" else env.b
    req = factory(env, caller, target)
    r = env.client.request(
        req.method,
        req.path,
        headers=caller.headers,
        params=req.params,
        json=req.json,
        data=req.data,
    )
    if req.after is not None:
        req.after(r)
    what = f"{route[0]} {route[1]} as {role} on the {side} tenant ({action or 'no action'})"
    got = f"{r.status_code} {r.text[:300]}"
    assert r.status_code < 500, f"{what}: server error {got}"
    if caller.platform or (side == "own" and (action is None or allowed(role, action))):
        assert r.status_code in req.ok, f"{what}: should be allowed ({req.ok}), got {got}"
    elif side == "own":
        assert r.status_code == 403, f"{what}: the matrix refuses it, expected 403, got {got}"
    else:
        assert r.status_code in (403, 404), f"{what}: another tenant's data, got {got}"
