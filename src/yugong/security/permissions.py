"""The permission matrix: which role may perform which action.

This table is the one place access rules are written down. Services ask
``principal.require(action)``; ``docs/permissions.md`` is rendered from it
(``python -m yugong.security.permissions > docs/permissions.md``).

Tenant scope is separate: every role except ``platform_admin`` acts only inside its own
tenant, whatever the table says.
"""

from __future__ import annotations

from yugong.security.principal import Role

ACTIONS: tuple[str, ...] = (
    "tenants:read",
    "tenants:write",
    "assets:read",
    "assets:write",
    "products:read",
    "products:write",
    "devices:read",
    "devices:write",
    "devices:credentials",
    "telemetry:read",
    "telemetry:write",
    "users:read",
    "users:write",
    "apikeys:read",
    "apikeys:write",
    "audit:read",
    "security:read",
    "security:write",
    "quotas:read",
    "notify:read",
    "notify:write",
    "alarms:read",
    "alarms:write",
    "rules:read",
    "rules:write",
    "components:read",
    "components:invoke",
    "dashboards:read",
    "dashboards:write",
)

_ALL = frozenset(ACTIONS)
# The audit log and security events are for administrators, not every reader.
_ADMIN_ONLY = frozenset({"audit:read", "security:read", "security:write", "quotas:read"})
# Notification targets (webhook URLs, mail servers): tenant admins and engineers.
_NOTIFY = frozenset({"notify:read", "notify:write"})
_READ = frozenset(a for a in ACTIONS if a.endswith(":read")) - _ADMIN_ONLY - _NOTIFY
# Running a component computes on values the caller gives or may already read: every role.
_READ |= {"components:invoke"}
# Every role composes its own dashboards (the service lets only owners and admins edit one).
_READ |= {"dashboards:write"}
# "apikeys:*" for roles below tenant admin means their own keys only (see apikeys service).
_OWN_KEYS = frozenset({"apikeys:read", "apikeys:write"})

PERMISSIONS: dict[Role, frozenset[str]] = {
    Role.PLATFORM_ADMIN: _ALL,
    Role.TENANT_ADMIN: _ALL - {"tenants:write"},
    Role.ENGINEER: _READ
    | {
        "assets:write",
        "products:write",
        "devices:write",
        "devices:credentials",
        "telemetry:write",
        "alarms:write",
        "rules:write",
    }
    | _NOTIFY,
    Role.OPERATOR: _READ | {"telemetry:write", "alarms:write"},
    Role.VIEWER: _READ,
    Role.APP_DEVELOPER: _READ | _OWN_KEYS,
}

DESCRIPTIONS: dict[Role, str] = {
    Role.PLATFORM_ADMIN: "Runs the platform: all tenants, all actions.",
    Role.TENANT_ADMIN: "Runs one enterprise: everything inside the tenant except editing tenants.",
    Role.ENGINEER: "Builds the model: assets, products, devices and their credentials.",
    Role.OPERATOR: "Runs the plant: reads everything, writes telemetry.",
    Role.VIEWER: "Reads dashboards and data.",
    Role.APP_DEVELOPER: "Builds apps: reads everything, manages its own API keys.",
}


# Every HTTP endpoint -> the action its service requires (None: public, self-service, or
# authenticated by a device access token). tests/security/test_authz_matrix.py fails when an
# endpoint is missing here, so a new route cannot escape the matrix.
ROUTE_ACTIONS: dict[tuple[str, str], str | None] = {
    ("GET", "/"): None,
    ("GET", "/api/v1/health"): None,
    ("POST", "/api/v1/auth/login"): None,
    ("POST", "/api/v1/auth/token"): None,
    ("POST", "/api/v1/auth/refresh"): None,
    ("POST", "/api/v1/auth/logout"): None,
    ("GET", "/api/v1/auth/me"): None,
    ("GET", "/api/v1/auth/sessions"): None,
    ("DELETE", "/api/v1/auth/sessions/{session_id}"): None,
    ("POST", "/api/v1/auth/totp/setup"): None,
    ("POST", "/api/v1/auth/totp/enable"): None,
    ("POST", "/api/v1/auth/totp/disable"): None,
    ("GET", "/api/v1/users"): "users:read",
    ("POST", "/api/v1/users"): "users:write",
    ("GET", "/api/v1/users/me"): None,
    ("PATCH", "/api/v1/users/me"): None,
    ("POST", "/api/v1/users/me/password"): None,
    ("GET", "/api/v1/users/{user_id}"): "users:read",
    ("PATCH", "/api/v1/users/{user_id}"): "users:write",
    ("DELETE", "/api/v1/users/{user_id}"): "users:write",
    ("POST", "/api/v1/users/{user_id}/unlock"): "users:write",
    ("POST", "/api/v1/users/{user_id}/totp:reset"): "users:write",
    ("POST", "/api/v1/users/{user_id}/sessions:revoke"): "users:write",
    ("GET", "/api/v1/apikeys"): "apikeys:read",
    ("POST", "/api/v1/apikeys"): "apikeys:write",
    ("DELETE", "/api/v1/apikeys/{key_id}"): "apikeys:write",
    ("GET", "/api/v1/tenants"): "tenants:read",
    ("POST", "/api/v1/tenants"): "tenants:write",
    ("GET", "/api/v1/tenants/{tenant_id}"): "tenants:read",
    ("PATCH", "/api/v1/tenants/{tenant_id}"): "tenants:write",
    ("DELETE", "/api/v1/tenants/{tenant_id}"): "tenants:write",
    ("GET", "/api/v1/tenants/{tenant_id}/usage"): "quotas:read",
    # Tenant profiles are tenant settings, the platform's: reading them is managing them.
    ("GET", "/api/v1/tenant-profiles"): "tenants:write",
    ("POST", "/api/v1/tenant-profiles"): "tenants:write",
    ("GET", "/api/v1/tenant-profiles/{profile_id}"): "tenants:write",
    ("PATCH", "/api/v1/tenant-profiles/{profile_id}"): "tenants:write",
    ("DELETE", "/api/v1/tenant-profiles/{profile_id}"): "tenants:write",
    ("GET", "/api/v1/assets"): "assets:read",
    ("GET", "/api/v1/assets/tree"): "assets:read",
    ("POST", "/api/v1/assets"): "assets:write",
    ("GET", "/api/v1/assets/{asset_id}"): "assets:read",
    ("PATCH", "/api/v1/assets/{asset_id}"): "assets:write",
    ("DELETE", "/api/v1/assets/{asset_id}"): "assets:write",
    ("GET", "/api/v1/products"): "products:read",
    ("POST", "/api/v1/products"): "products:write",
    ("POST", "/api/v1/products/import"): "products:write",
    ("GET", "/api/v1/products/{product_id}"): "products:read",
    ("PATCH", "/api/v1/products/{product_id}"): "products:write",
    ("DELETE", "/api/v1/products/{product_id}"): "products:write",
    ("GET", "/api/v1/products/{product_id}/tsl"): "products:read",
    ("PUT", "/api/v1/products/{product_id}/tsl"): "products:write",
    ("GET", "/api/v1/devices"): "devices:read",
    ("POST", "/api/v1/devices"): "devices:write",
    ("GET", "/api/v1/devices/{device_id}"): "devices:read",
    ("PATCH", "/api/v1/devices/{device_id}"): "devices:write",
    ("DELETE", "/api/v1/devices/{device_id}"): "devices:write",
    ("POST", "/api/v1/devices/{device_id}/token"): "devices:credentials",
    ("GET", "/api/v1/devices/{device_id}/series"): "devices:read",
    ("GET", "/api/v1/devices/{device_id}/credentials"): "devices:credentials",
    ("PUT", "/api/v1/devices/{device_id}/credentials/mqtt"): "devices:credentials",
    ("DELETE", "/api/v1/devices/{device_id}/credentials/mqtt"): "devices:credentials",
    ("PUT", "/api/v1/devices/{device_id}/credentials/x509"): "devices:credentials",
    ("DELETE", "/api/v1/devices/{device_id}/credentials/x509"): "devices:credentials",
    ("POST", "/api/v1/devices/{device_id}/properties/{identifier}"): "devices:write",
    ("POST", "/api/v1/devices/{device_id}/commands"): "devices:write",
    ("GET", "/api/v1/devices/{device_id}/commands"): "devices:read",
    ("GET", "/api/v1/commands/{command_id}"): "devices:read",
    ("GET", "/api/v1/devices/{device_id}/latest"): "telemetry:read",
    ("GET", "/api/v1/devices/{device_id}/timeseries"): "telemetry:read",
    ("GET", "/api/v1/devices/{device_id}/history"): "telemetry:read",
    ("GET", "/api/v1/devices/{device_id}/stream"): "telemetry:read",
    ("POST", "/api/v1/query/latest"): "telemetry:read",
    ("POST", "/api/v1/query/timeseries"): "telemetry:read",
    ("POST", "/api/v1/telemetry"): "telemetry:write",
    ("POST", "/api/v1/{token}/telemetry"): None,
    ("POST", "/api/v1/{token}/attributes"): None,
    ("GET", "/api/v1/audit"): "audit:read",
    ("GET", "/api/v1/security/events"): "security:read",
    ("GET", "/api/v1/security/blocks"): "security:read",
    ("POST", "/api/v1/security/blocks"): "security:write",
    ("DELETE", "/api/v1/security/blocks/{block_id}"): "security:write",
    ("GET", "/api/v1/alarms"): "alarms:read",
    ("GET", "/api/v1/alarms/summary"): "alarms:read",
    ("GET", "/api/v1/alarms/stream"): "alarms:read",
    ("GET", "/api/v1/alarms/{alarm_id}"): "alarms:read",
    ("GET", "/api/v1/alarms/{alarm_id}/history"): "alarms:read",
    ("POST", "/api/v1/alarms/{alarm_id}/ack"): "alarms:write",
    ("POST", "/api/v1/alarms/{alarm_id}/clear"): "alarms:write",
    ("POST", "/api/v1/alarms/{alarm_id}/assign"): "alarms:write",
    ("POST", "/api/v1/alarms/{alarm_id}/comments"): "alarms:write",
    ("GET", "/api/v1/rules"): "rules:read",
    ("POST", "/api/v1/rules"): "rules:write",
    ("POST", "/api/v1/rules:import"): "rules:write",
    ("GET", "/api/v1/rules:export"): "rules:read",
    ("POST", "/api/v1/rules:dry-run"): "rules:read",
    ("GET", "/api/v1/rules/{rule_id}"): "rules:read",
    ("PUT", "/api/v1/rules/{rule_id}"): "rules:write",
    ("DELETE", "/api/v1/rules/{rule_id}"): "rules:write",
    ("GET", "/api/v1/rules/{rule_id}/versions"): "rules:read",
    ("POST", "/api/v1/rules/{rule_id}/enable"): "rules:write",
    ("POST", "/api/v1/rules/{rule_id}/disable"): "rules:write",
    ("GET", "/api/v1/notification-targets"): "notify:read",
    ("POST", "/api/v1/notification-targets"): "notify:write",
    ("GET", "/api/v1/notification-targets/{target_id}"): "notify:read",
    ("PATCH", "/api/v1/notification-targets/{target_id}"): "notify:write",
    ("DELETE", "/api/v1/notification-targets/{target_id}"): "notify:write",
    ("POST", "/api/v1/notification-targets/{target_id}/test"): "notify:write",
    ("GET", "/api/v1/components"): "components:read",
    ("GET", "/api/v1/components/{name}"): "components:read",
    ("GET", "/api/v1/components/{name}/{version}"): "components:read",
    ("POST", "/api/v1/components/{name}/{version}:invoke"): "components:invoke",
    ("GET", "/api/v1/dashboards"): "dashboards:read",
    ("POST", "/api/v1/dashboards"): "dashboards:write",
    ("GET", "/api/v1/dashboards/{dashboard_id}"): "dashboards:read",
    ("PUT", "/api/v1/dashboards/{dashboard_id}"): "dashboards:write",
    ("DELETE", "/api/v1/dashboards/{dashboard_id}"): "dashboards:write",
    ("GET", "/static/{path:path}"): None,
}


def allowed(role: Role | str, action: str) -> bool:
    """Whether ``role`` may perform ``action``; unknown roles and actions are refused."""
    try:
        r = Role(role)
    except ValueError:
        return False
    return action in PERMISSIONS.get(r, frozenset())


def can_grant(granter: Role | str, role: Role | str) -> bool:
    """Whether a holder of ``granter`` may give ``role`` to a user or API key: never a role
    with a permission the granter lacks."""
    g, r = Role(granter), Role(role)
    return PERMISSIONS[r] <= PERMISSIONS[g]


def render_markdown() -> str:
    """The matrix as a Markdown document (kept in ``docs/permissions.md``)."""
    roles = list(Role)
    lines = [
        "# Permissions",
        "",
        "Generated from `yugong.security.permissions.PERMISSIONS` by",
        "`python -m yugong.security.permissions > docs/permissions.md`; a test keeps it current.",
        "",
        "Every role except `platform_admin` acts only inside its own tenant. A user or API key",
        "can be given a role only by someone who holds every permission of that role.",
        "Below `tenant_admin`, `apikeys:*` covers the caller's own keys only.",
        "",
        "| Role | Description |",
        "| --- | --- |",
    ]
    lines += [f"| `{r.value}` | {DESCRIPTIONS[r]} |" for r in roles]
    lines += [
        "",
        "| Action | " + " | ".join(f"`{r.value}`" for r in roles) + " |",
        "| --- |" + " :---: |" * len(roles),
    ]
    for action in ACTIONS:
        marks = " | ".join("✓" if allowed(r, action) else "" for r in roles)
        lines.append(f"| `{action}` | {marks} |")
    lines += _endpoint_lines()
    return "\n".join(lines) + "\n"


def _endpoint_lines() -> list[str]:
    lines = [
        "",
        "## Endpoints",
        "",
        "Generated from `ROUTE_ACTIONS`: the action each HTTP endpoint requires. A dash: public,",
        "the caller's own account or session, or a device authenticated by its access token.",
        "",
        "| Method | Path | Action |",
        "| --- | --- | --- |",
    ]
    order = ("GET", "POST", "PUT", "PATCH", "DELETE")

    def key(route: tuple[str, str]) -> tuple[str, int, str]:
        method, path = route
        return (path, order.index(method) if method in order else len(order), method)

    for (method, path), action in sorted(ROUTE_ACTIONS.items(), key=lambda kv: key(kv[0])):
        lines.append(f"| {method} | `{path}` | {f'`{action}`' if action else '-'} |")
    return lines


if __name__ == "__main__":
    print(render_markdown(), end="")
