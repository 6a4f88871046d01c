"""Who is calling: every service call carries a Principal and is scoped by it.

The permission matrix lives in :mod:`yugong.security.permissions`; services call
``principal.require(action)`` and ``principal.tenant_for(tenant)`` rather than trusting the
HTTP layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from yugong.core.errors import Forbidden


class Role(StrEnum):
    PLATFORM_ADMIN = "platform_admin"
    TENANT_ADMIN = "tenant_admin"
    ENGINEER = "engineer"
    OPERATOR = "operator"
    VIEWER = "viewer"
    APP_DEVELOPER = "app_developer"


@dataclass(frozen=True)
class Principal:
    kind: Literal["user", "api_key", "device", "system"]
    id: int
    tenant: int | None  # None only for platform-wide principals (platform admin, system)
    role: Role
    name: str

    @property
    def is_platform(self) -> bool:
        return self.tenant is None and self.role is Role.PLATFORM_ADMIN

    def require(self, action: str) -> None:
        from yugong.security.permissions import allowed

        if not allowed(self.role, action):
            raise Forbidden(f"role {self.role.value} may not {action}")

    def tenant_for(self, tenant: int | None = None) -> int:
        """The tenant this call acts on. Tenant principals act only on their own tenant
        (asking for another is refused); platform principals must name one."""
        if self.tenant is not None:
            if tenant is not None and tenant != self.tenant:
                raise Forbidden("not allowed to act on another tenant")
            return self.tenant
        if tenant is None:
            raise Forbidden("a platform-wide caller must name the tenant (tenant_id)")
        return tenant

    def can_see_tenant(self, tenant: int) -> bool:
        return self.tenant is None or self.tenant == tenant


SYSTEM = Principal(kind="system", id=0, tenant=None, role=Role.PLATFORM_ADMIN, name="system")
