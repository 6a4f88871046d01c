"""User accounts, scoped by tenant and guarded by the permission matrix.

Every method takes the calling :class:`Principal` first. Users of another tenant are
reported as not found, so a tenant cannot learn which ids exist elsewhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal, get_args

from sqlalchemy import column, func, select, table
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from yugong.core.errors import Conflict, FieldError, Forbidden, InvalidInput, NotFound
from yugong.infra.db import Database, utcnow
from yugong.platform import quotas_profiles as quotas
from yugong.security.models import User
from yugong.security.passwords import PasswordPolicy, Passwords
from yugong.security.permissions import can_grant
from yugong.security.principal import Principal, Role

if TYPE_CHECKING:  # sessions imports the TOTP module, which imports this one
    from yugong.security.audit import AuditLog
    from yugong.security.sessions import Sessions

Locale = Literal["zh-CN", "en"]
LOCALES: tuple[str, ...] = get_args(Locale)
USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{2,63}$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MAX_PAGE = 1000

_tenants = table("tenants", column("id"))


@dataclass(frozen=True)
class UserInfo:
    """A user as callers see it: everything except the password hash."""

    id: int
    tenant_id: int | None
    username: str
    email: str | None
    display_name: str
    role: Role
    active: bool
    locale: str
    created_at: datetime
    last_login_at: datetime | None
    totp_enabled: bool = False
    locked_until: datetime | None = None  # set while sign-ins are refused after failures

    @classmethod
    def of(cls, u: User) -> UserInfo:
        locked = u.locked_until if u.locked_until and u.locked_until > utcnow() else None
        return cls(
            id=u.id,
            tenant_id=u.tenant_id,
            username=u.username,
            email=u.email,
            display_name=u.display_name,
            role=Role(u.role),
            active=u.active,
            locale=u.locale,
            created_at=u.created_at,
            last_login_at=u.last_login_at,
            totp_enabled=u.totp_enabled,
            locked_until=locked,
        )


def parse_role(value: Role | str, loc: str = "role") -> Role:
    try:
        return Role(value)
    except ValueError:
        allowed = ", ".join(r.value for r in Role)
        raise InvalidInput(
            f"unknown role {value!r}", [FieldError(loc, f"must be one of: {allowed}")]
        ) from None


def _check_profile(email: str | None, locale: str | None, display_name: str | None) -> None:
    errors: list[FieldError] = []
    if email and (len(email) > 255 or not EMAIL_RE.match(email)):
        errors.append(FieldError("email", "not an email address"))
    if locale is not None and locale not in LOCALES:
        errors.append(FieldError("locale", f"must be one of: {', '.join(LOCALES)}"))
    if display_name is not None and len(display_name) > 128:
        errors.append(FieldError("display_name", "at most 128 characters"))
    if errors:
        raise InvalidInput("; ".join(f"{e.loc}: {e.msg}" for e in errors), errors)


def check_grant(principal: Principal, role: Role) -> None:
    if not can_grant(principal.role, role):
        raise Forbidden(f"role {principal.role.value} may not grant role {role.value}")


def placement(principal: Principal, role: Role, tenant_id: int | None) -> int | None:
    """The tenant a new user or key with ``role`` goes to: platform admins belong to no
    tenant; everyone else to the caller's tenant (a platform caller names it)."""
    if role is Role.PLATFORM_ADMIN:
        if tenant_id is not None:
            raise InvalidInput(
                "a platform admin belongs to no tenant",
                [FieldError("tenant_id", "must be empty for role platform_admin")],
            )
        if not principal.is_platform:
            raise Forbidden("only platform admins may create platform admins")
        return None
    if principal.tenant is None and tenant_id is None:
        raise InvalidInput(
            f"role {role.value} needs a tenant",
            [FieldError("tenant_id", f"required for role {role.value}")],
        )
    return principal.tenant_for(tenant_id)


def ensure_tenant(s: Session, tenant_id: int | None) -> None:
    if tenant_id is None:
        return
    if s.execute(select(_tenants.c.id).where(_tenants.c.id == tenant_id)).first() is None:
        raise NotFound(f"tenant {tenant_id} not found", [FieldError("tenant_id", "not found")])


def visible_user(s: Session, principal: Principal, user_id: int) -> User:
    """The user row, if the caller's tenant may see it; other tenants' users are "not
    found"."""
    user = s.get(User, user_id)
    if user is None or (principal.tenant is not None and user.tenant_id != principal.tenant):
        raise NotFound(f"user {user_id} not found")
    return user


class Users:
    def __init__(
        self,
        db: Database,
        passwords: Passwords,
        sessions: Sessions,
        policy: PasswordPolicy | None = None,
        audit: AuditLog | None = None,
    ) -> None:
        self.db = db
        self.passwords = passwords
        self.sessions = sessions
        self.policy = policy or PasswordPolicy()
        self.audit = audit

    # Reading -------------------------------------------------------------------------------

    def get(self, principal: Principal, user_id: int) -> UserInfo:
        if principal.kind == "user" and principal.id == user_id:
            pass  # everyone may read their own account
        else:
            principal.require("users:read")
        with self.db.session() as s:
            return UserInfo.of(self._visible(s, principal, user_id))

    def me(self, principal: Principal) -> UserInfo:
        """The calling user's own account."""
        user_id = self._self_id(principal)
        with self.db.session() as s:
            return UserInfo.of(self._visible(s, principal, user_id))

    def list(
        self,
        principal: Principal,
        *,
        tenant_id: int | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[UserInfo]:
        """Users of the caller's tenant, by id. Platform callers see every user unless they
        name a tenant."""
        principal.require("users:read")
        if not 1 <= limit <= MAX_PAGE or offset < 0:
            raise InvalidInput(
                "bad paging", [FieldError("limit", f"1..{MAX_PAGE}; offset must be >= 0")]
            )
        q = select(User).order_by(User.id).limit(limit).offset(offset)
        if principal.tenant is not None or tenant_id is not None:
            q = q.where(User.tenant_id == principal.tenant_for(tenant_id))
        with self.db.session() as s:
            return [UserInfo.of(u) for u in s.scalars(q)]

    def count_platform_admins(self) -> int:
        with self.db.session() as s:
            return int(
                s.scalar(
                    select(func.count())
                    .select_from(User)
                    .where(User.role == Role.PLATFORM_ADMIN.value, User.active.is_(True))
                )
                or 0
            )

    # Writing -------------------------------------------------------------------------------

    def create(
        self,
        principal: Principal,
        *,
        username: str,
        password: str,
        role: Role | str,
        tenant_id: int | None = None,
        email: str | None = None,
        display_name: str = "",
        locale: str = "zh-CN",
        active: bool = True,
    ) -> UserInfo:
        principal.require("users:write")
        new_role = parse_role(role)
        check_grant(principal, new_role)
        tenant = placement(principal, new_role, tenant_id)
        if not USERNAME_RE.match(username):
            raise InvalidInput(
                f"invalid username {username!r}",
                [
                    FieldError(
                        "username",
                        "3-64 characters: letters, digits and . _ @ -, starting with a "
                        "letter or digit",
                    )
                ],
            )
        _check_profile(email, locale, display_name)
        self.policy.check(password, username)
        password_hash = self.passwords.hash(password)
        try:
            with self.db.session() as s:
                ensure_tenant(s, tenant)
                quotas.check_can_add(s, tenant, "users")  # the tenant profile's max_users
                self._ensure_free(s, username)
                user = User(
                    tenant_id=tenant,
                    username=username,
                    email=email,
                    display_name=display_name,
                    role=new_role.value,
                    password_hash=password_hash,
                    active=active,
                    locale=locale,
                )
                s.add(user)
                s.flush()
                return UserInfo.of(user)
        except IntegrityError:
            # Lost a race with another request creating the same username.
            raise Conflict(
                f"username {username!r} is taken", [FieldError("username", "already exists")]
            ) from None

    def update(
        self,
        principal: Principal,
        user_id: int,
        *,
        email: str | None = None,
        display_name: str | None = None,
        locale: str | None = None,
        role: Role | str | None = None,
        active: bool | None = None,
        password: str | None = None,
    ) -> UserInfo:
        """Change another user's account (administration). ``password`` sets a new one and
        ends the user's sessions."""
        principal.require("users:write")
        _check_profile(email, locale, display_name)
        new_role = None if role is None else parse_role(role)
        end_sessions = False
        with self.db.session() as s:
            user = self._visible(s, principal, user_id)
            check_grant(principal, Role(user.role))  # may not edit someone above the caller
            is_self = principal.kind == "user" and principal.id == user.id
            if new_role is not None and new_role.value != user.role:
                if is_self:
                    raise Forbidden("you cannot change your own role")
                check_grant(principal, new_role)
                if (new_role is Role.PLATFORM_ADMIN) != (user.tenant_id is None):
                    raise InvalidInput(
                        "platform admins belong to no tenant; other roles to one",
                        [FieldError("role", "cannot move a user between platform and tenant")],
                    )
                user.role = new_role.value
                end_sessions = True
            if active is not None and active != user.active:
                if is_self and not active:
                    raise Forbidden("you cannot deactivate yourself")
                user.active = active
                end_sessions = end_sessions or not active
            if password is not None:
                self.policy.check(password, user.username)
                user.password_hash = self.passwords.hash(password)
                user.password_changed_at = utcnow()
                end_sessions = True
            if email is not None:
                user.email = email or None
            if display_name is not None:
                user.display_name = display_name
            if locale is not None:
                user.locale = locale
            info = UserInfo.of(user)
        if end_sessions:
            self.sessions.revoke_user_sessions(user_id)
        return info

    def update_me(
        self,
        principal: Principal,
        *,
        email: str | None = None,
        display_name: str | None = None,
        locale: str | None = None,
    ) -> UserInfo:
        """Change one's own profile; any role may."""
        user_id = self._self_id(principal)
        _check_profile(email, locale, display_name)
        with self.db.session() as s:
            user = self._visible(s, principal, user_id)
            if email is not None:
                user.email = email or None
            if display_name is not None:
                user.display_name = display_name
            if locale is not None:
                user.locale = locale
            return UserInfo.of(user)

    def change_password(self, principal: Principal, current: str, new: str) -> None:
        """Change one's own password; all sessions end, including the current one."""
        user_id = self._self_id(principal)
        with self.db.session() as s:
            user = self._visible(s, principal, user_id)
            if not self.passwords.verify(user.password_hash, current):
                raise InvalidInput(
                    "the current password is wrong",
                    [FieldError("current_password", "does not match")],
                )
            self.policy.check(new, user.username, loc="new_password")
            if new == current:
                raise InvalidInput(
                    "the new password must differ from the current one",
                    [FieldError("new_password", "same as the current password")],
                )
            user.password_hash = self.passwords.hash(new)
            user.password_changed_at = utcnow()
        self.sessions.revoke_user_sessions(user_id)

    def unlock(self, principal: Principal, user_id: int) -> UserInfo:
        """Lift a lockout after failed logins and clear the failure count."""
        principal.require("users:write")
        with self.db.session() as s:
            user = self._visible(s, principal, user_id)
            check_grant(principal, Role(user.role))
            was_locked = user.locked_until is not None and user.locked_until > utcnow()
            user.failed_logins, user.locked_until = 0, None
            info = UserInfo.of(user)
        self._audit("users.unlock", principal, info, {"was_locked": was_locked})
        return info

    def revoke_sessions(self, principal: Principal, user_id: int) -> int:
        """End every session of a user: their refresh tokens are refused from now on.
        Returns how many refresh tokens were revoked."""
        principal.require("users:write")
        with self.db.session() as s:
            user = self._visible(s, principal, user_id)
            check_grant(principal, Role(user.role))
            info = UserInfo.of(user)
        n = self.sessions.revoke_user_sessions(user_id)
        self._audit("users.revoke_sessions", principal, info, {"revoked_tokens": n})
        return n

    def _audit(
        self, action: str, principal: Principal, target: UserInfo, detail: dict[str, object]
    ) -> None:
        if self.audit is not None:
            self.audit.record(
                action,
                tenant_id=target.tenant_id,
                target_type="user",
                target_id=target.id,
                actor_kind=principal.kind,
                actor_id=principal.id,
                actor_name=principal.name,
                detail=detail,
            )

    def delete(self, principal: Principal, user_id: int) -> None:
        principal.require("users:write")
        with self.db.session() as s:
            user = self._visible(s, principal, user_id)
            check_grant(principal, Role(user.role))
            if principal.kind == "user" and principal.id == user.id:
                raise Forbidden("you cannot delete yourself")
            s.delete(user)

    # Helpers -------------------------------------------------------------------------------

    @staticmethod
    def _self_id(principal: Principal) -> int:
        if principal.kind != "user":
            raise Forbidden("only a signed-in user can change their own account")
        return principal.id

    _visible = staticmethod(visible_user)

    @staticmethod
    def _ensure_free(s: Session, username: str) -> None:
        if s.scalars(select(User.id).where(User.username == username)).first() is not None:
            raise Conflict(
                f"username {username!r} is taken", [FieldError("username", "already exists")]
            )
