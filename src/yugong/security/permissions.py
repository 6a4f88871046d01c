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
)

_ALL = frozenset(ACTIONS)
_READ = frozenset(a for a in ACTIONS if a.endswith(":read"))
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
    },
    Role.OPERATOR: _READ | {"telemetry:write"},
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
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render_markdown(), end="")
