"""API keys for scripts and apps: ``ygk_<prefix>_<secret>``.

The prefix (8 characters) finds the row and is safe to show; the secret is stored only as a
SHA-256 digest (it is random, so a slow hash adds nothing) and compared in constant time.
The plain key is returned once, at creation.

Tenant and platform admins manage every key of their scope; other roles with ``apikeys:*``
manage only their own. A key never carries a role its creator could not grant.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError

from yugong.core.errors import FieldError, Forbidden, InvalidInput, NotFound, Unauthorized
from yugong.infra.db import Database, utcnow
from yugong.platform import quotas_profiles as quotas
from yugong.security.models import ApiKey, User
from yugong.security.principal import Principal, Role
from yugong.security.users import check_grant, ensure_tenant, parse_role, placement

KEY_MARK = "ygk_"
PREFIX_LEN = 8
_PREFIX_ALPHABET = string.ascii_lowercase + string.digits
# Writing last_used_at on every request would turn reads into writes; once a minute is
# enough to tell which keys are in use.
TOUCH_INTERVAL = timedelta(minutes=1)
MAX_PAGE = 1000


@dataclass(frozen=True)
class ApiKeyInfo:
    id: int
    tenant_id: int | None
    created_by: int
    name: str
    role: Role
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    @classmethod
    def of(cls, k: ApiKey) -> ApiKeyInfo:
        return cls(
            id=k.id,
            tenant_id=k.tenant_id,
            created_by=k.created_by,
            name=k.name,
            role=Role(k.role),
            prefix=k.prefix,
            created_at=k.created_at,
            expires_at=k.expires_at,
            revoked_at=k.revoked_at,
            last_used_at=k.last_used_at,
        )


@dataclass(frozen=True)
class NewApiKey:
    """A key just created: ``key`` is the only time the secret is seen."""

    key: str
    info: ApiKeyInfo


def looks_like_key(credential: str) -> bool:
    return credential.startswith(KEY_MARK)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _split(key: str) -> tuple[str, str]:
    mark, _, rest = key.partition(KEY_MARK)
    prefix, sep, secret = rest.partition("_")
    if mark or not sep or len(prefix) != PREFIX_LEN or not secret:
        raise Unauthorized("invalid API key")
    return prefix, secret


class ApiKeys:
    def __init__(self, db: Database) -> None:
        self.db = db

    def create(
        self,
        principal: Principal,
        *,
        name: str,
        role: Role | str | None = None,
        expires_at: datetime | None = None,
        tenant_id: int | None = None,
    ) -> NewApiKey:
        """A key owned by the calling user, with their role unless a lesser one is named.
        Platform admins may make a key for a tenant by naming it."""
        principal.require("apikeys:write")
        if principal.kind != "user":
            raise Forbidden("API keys are created by signed-in users")
        key_role = principal.role if role is None else parse_role(role)
        check_grant(principal, key_role)
        tenant = placement(principal, key_role, tenant_id)
        name = name.strip()
        if not 1 <= len(name) <= 128:
            raise InvalidInput("bad key name", [FieldError("name", "1-128 characters")])
        now = utcnow()
        if expires_at is not None:
            if expires_at.tzinfo is None:
                raise InvalidInput(
                    "expires_at needs a time zone",
                    [FieldError("expires_at", "give a time zone, e.g. Z or +08:00")],
                )
            if expires_at <= now:
                raise InvalidInput(
                    "expires_at is in the past", [FieldError("expires_at", "must be later")]
                )
        secret = secrets.token_urlsafe(32)
        for _ in range(5):  # prefixes are random; a clash is rare but possible
            prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(PREFIX_LEN))
            try:
                with self.db.session() as s:
                    ensure_tenant(s, tenant)
                    quotas.check_can_add(s, tenant, "api_keys")  # profile's max_api_keys
                    row = ApiKey(
                        tenant_id=tenant,
                        created_by=principal.id,
                        name=name,
                        role=key_role.value,
                        prefix=prefix,
                        secret_hash=_digest(secret),
                        created_at=now,
                        expires_at=expires_at,
                    )
                    s.add(row)
                    s.flush()
                    info = ApiKeyInfo.of(row)
                return NewApiKey(key=f"{KEY_MARK}{prefix}_{secret}", info=info)
            except IntegrityError:
                continue
        raise RuntimeError("could not find a free API key prefix")

    def list(
        self,
        principal: Principal,
        *,
        tenant_id: int | None = None,
        include_revoked: bool = False,
        limit: int = 100,
        offset: int = 0,
    ) -> list[ApiKeyInfo]:
        principal.require("apikeys:read")
        if not 1 <= limit <= MAX_PAGE or offset < 0:
            raise InvalidInput(
                "bad paging", [FieldError("limit", f"1..{MAX_PAGE}; offset must be >= 0")]
            )
        q = select(ApiKey).order_by(ApiKey.id).limit(limit).offset(offset)
        if not self._manages_all(principal):
            q = q.where(ApiKey.created_by == self._owner(principal))
        if principal.tenant is not None or tenant_id is not None:
            q = q.where(ApiKey.tenant_id == principal.tenant_for(tenant_id))
        if not include_revoked:
            q = q.where(ApiKey.revoked_at.is_(None))
        with self.db.session() as s:
            return [ApiKeyInfo.of(k) for k in s.scalars(q)]

    def revoke(self, principal: Principal, key_id: int) -> ApiKeyInfo:
        principal.require("apikeys:write")
        with self.db.session() as s:
            row = s.get(ApiKey, key_id)
            if row is None or not self._can_see(principal, row):
                raise NotFound(f"API key {key_id} not found")
            if row.revoked_at is None:
                row.revoked_at = utcnow()
            return ApiKeyInfo.of(row)

    def authenticate(self, key: str) -> Principal:
        """The caller behind a plain key; refused when unknown, revoked, expired, or when
        its creator has been deactivated."""
        prefix, secret = _split(key)
        now = utcnow()
        with self.db.session() as s:
            row = s.scalars(select(ApiKey).where(ApiKey.prefix == prefix)).one_or_none()
            # Compare against something even when the prefix is unknown.
            expected = row.secret_hash if row is not None else _digest(prefix)
            if not hmac.compare_digest(expected, _digest(secret)) or row is None:
                raise Unauthorized("invalid API key")
            if row.revoked_at is not None:
                raise Unauthorized("API key revoked")
            if row.expires_at is not None and row.expires_at <= now:
                raise Unauthorized("API key expired")
            creator = s.get(User, row.created_by)
            if creator is None or not creator.active:
                raise Unauthorized("API key owner is deactivated")
            if row.last_used_at is None or now - row.last_used_at >= TOUCH_INTERVAL:
                # Conditional, so concurrent requests write once.
                s.execute(
                    update(ApiKey)
                    .where(
                        ApiKey.id == row.id,
                        or_(
                            ApiKey.last_used_at.is_(None),
                            ApiKey.last_used_at <= now - TOUCH_INTERVAL,
                        ),
                    )
                    .values(last_used_at=now)
                    .execution_options(synchronize_session=False)
                )
            return Principal(
                kind="api_key", id=row.id, tenant=row.tenant_id, role=Role(row.role), name=row.name
            )

    # Scope ---------------------------------------------------------------------------------

    @staticmethod
    def _manages_all(principal: Principal) -> bool:
        return principal.role in (Role.PLATFORM_ADMIN, Role.TENANT_ADMIN)

    @staticmethod
    def _owner(principal: Principal) -> int:
        if principal.kind != "user":
            raise Forbidden("only signed-in users have API keys of their own")
        return principal.id

    def _can_see(self, principal: Principal, row: ApiKey) -> bool:
        if principal.tenant is not None and row.tenant_id != principal.tenant:
            return False
        if self._manages_all(principal):
            return True
        return principal.kind == "user" and row.created_by == principal.id
