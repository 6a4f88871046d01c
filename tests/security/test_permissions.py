from __future__ import annotations

from pathlib import Path

import pytest

from yugong.core.errors import Forbidden
from yugong.security.permissions import ACTIONS, PERMISSIONS, allowed, can_grant, render_markdown
from yugong.security.principal import Principal, Role

DOCS = Path(__file__).resolve().parents[2] / "docs" / "permissions.md"
# Reads every role has (and running components, composing dashboards); the audit log,
# security events and quotas are for administrators, notification targets for administrators
# and engineers.
EVERYONE = {"components:invoke", "dashboards:write"}
READS = ({a for a in ACTIONS if a.endswith(":read")} | EVERYONE) - {
    "audit:read",
    "security:read",
    "quotas:read",
    "notify:read",
}


def test_every_role_has_a_row_of_known_actions() -> None:
    assert set(PERMISSIONS) == set(Role)
    for actions in PERMISSIONS.values():
        assert actions <= set(ACTIONS)


def test_matrix_matches_the_roles_described() -> None:
    assert PERMISSIONS[Role.PLATFORM_ADMIN] == set(ACTIONS)
    assert PERMISSIONS[Role.TENANT_ADMIN] == set(ACTIONS) - {"tenants:write"}
    assert PERMISSIONS[Role.ENGINEER] == READS | {
        "assets:write",
        "products:write",
        "devices:write",
        "devices:credentials",
        "telemetry:write",
        "alarms:write",
        "rules:write",
        "notify:read",
        "notify:write",
    }
    assert PERMISSIONS[Role.OPERATOR] == READS | {"telemetry:write", "alarms:write"}
    assert PERMISSIONS[Role.VIEWER] == READS
    assert PERMISSIONS[Role.APP_DEVELOPER] == READS | {"apikeys:write"}


def test_allowed_refuses_unknowns() -> None:
    assert allowed(Role.VIEWER, "devices:read")
    assert allowed("operator", "telemetry:write")
    assert not allowed(Role.VIEWER, "devices:write")
    assert not allowed(Role.PLATFORM_ADMIN, "devices:explode")
    assert not allowed("superuser", "devices:read")


def test_can_grant_never_escalates() -> None:
    for granter in Role:
        for role in Role:
            if can_grant(granter, role):
                assert PERMISSIONS[role] <= PERMISSIONS[granter]
    assert can_grant(Role.TENANT_ADMIN, Role.TENANT_ADMIN)
    assert not can_grant(Role.TENANT_ADMIN, Role.PLATFORM_ADMIN)
    assert can_grant(Role.APP_DEVELOPER, Role.VIEWER)
    assert not can_grant(Role.APP_DEVELOPER, Role.OPERATOR)
    assert not can_grant(Role.OPERATOR, Role.APP_DEVELOPER)


@pytest.mark.parametrize("role", list(Role))
def test_principal_require_uses_the_matrix(role: Role) -> None:
    p = Principal(kind="user", id=1, tenant=1, role=role, name="x")
    for action in ACTIONS:
        if allowed(role, action):
            p.require(action)
        else:
            with pytest.raises(Forbidden, match=action):
                p.require(action)


def test_docs_are_up_to_date() -> None:
    assert DOCS.read_text(encoding="utf-8") == render_markdown(), (
        "docs/permissions.md is stale: run "
        "python -m yugong.security.permissions > docs/permissions.md"
    )


def test_markdown_has_a_row_per_action() -> None:
    text = render_markdown()
    for action in ACTIONS:
        assert f"| `{action}` |" in text
    assert text.count("✓") == sum(len(v) for v in PERMISSIONS.values())
