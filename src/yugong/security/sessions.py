"""Logging in and staying logged in: password login, access-token checks, refresh-token
rotation with reuse detection, logout.

Each login starts a *family* of refresh tokens. Refreshing revokes the presented token and
issues its successor in the same family. A revoked token presented again means it was copied:
the whole family is revoked, so both the thief and the user must log in again.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from yugong.core.errors import Unauthorized
from yugong.infra.db import Database, utcnow
from yugong.security.models import RefreshToken, User
from yugong.security.passwords import Passwords
from yugong.security.principal import Principal, Role
from yugong.security.tokens import TokenCodec, TokenPair, new_id

log = logging.getLogger(__name__)

LOGIN_FAILED = "invalid username or password"


def user_principal(user: User) -> Principal:
    return Principal(
        kind="user",
        id=user.id,
        tenant=user.tenant_id,
        role=Role(user.role),
        name=user.username,
    )


class Sessions:
    def __init__(self, db: Database, codec: TokenCodec, passwords: Passwords) -> None:
        self.db = db
        self.codec = codec
        self.passwords = passwords

    # Login ---------------------------------------------------------------------------------

    def verify_password(self, username: str, password: str) -> Principal:
        """The user these credentials belong to; every failure reads the same and costs
        about one hash verification, so responses do not reveal which usernames exist."""
        with self.db.session() as s:
            user = s.scalars(select(User).where(User.username == username)).one_or_none()
            ok = self.passwords.verify(user.password_hash if user else None, password)
            if user is None or not ok or not user.active:
                raise Unauthorized(LOGIN_FAILED)
            if self.passwords.needs_rehash(user.password_hash):
                user.password_hash = self.passwords.hash(password)
            user.last_login_at = utcnow()
            return user_principal(user)

    def login(self, username: str, password: str) -> TokenPair:
        principal = self.verify_password(username, password)
        return self.issue(principal)

    def issue(self, principal: Principal, family: str | None = None) -> TokenPair:
        """A fresh access/refresh pair for a user, starting a new family unless given one."""
        if principal.kind != "user":
            raise Unauthorized("only users hold sessions")
        with self.db.session() as s:
            return self._issue(s, principal, family or new_id())[0]

    def _issue(self, s: Session, p: Principal, family: str) -> tuple[TokenPair, str]:
        """The pair and the refresh token's id."""
        access = self.codec.claims("access", p.id, p.tenant, p.role)
        refresh = self.codec.claims("refresh", p.id, p.tenant, p.role, family=family)
        s.add(
            RefreshToken(
                jti=refresh.jti,
                user_id=p.id,
                family=family,
                issued_at=_ts(refresh.iat),
                expires_at=_ts(refresh.exp),
            )
        )
        pair = TokenPair(
            access_token=self.codec.encode(access),
            refresh_token=self.codec.encode(refresh),
            expires_in=self.codec.access_ttl_s,
        )
        return pair, refresh.jti

    # Access tokens -------------------------------------------------------------------------

    def authenticate(self, access_token: str) -> Principal:
        """The caller behind an access token. The user row is read each time so that a
        deactivated user, a changed role or a changed password takes effect at once."""
        claims = self.codec.decode(access_token, "access")
        with self.db.session() as s:
            user = s.get(User, claims.sub)
            if user is None or not user.active:
                raise Unauthorized("invalid token")
            if claims.iat < user.password_changed_at.timestamp():
                raise Unauthorized("token issued before the password was changed")
            return user_principal(user)

    # Refresh and logout --------------------------------------------------------------------

    def refresh(self, refresh_token: str) -> TokenPair:
        claims = self.codec.decode(refresh_token, "refresh")
        assert claims.family is not None
        refused: str | None = None
        with self.db.session() as s:
            row = s.scalars(
                select(RefreshToken).where(RefreshToken.jti == claims.jti).with_for_update()
            ).one_or_none()
            if row is None or row.user_id != claims.sub or row.family != claims.family:
                raise Unauthorized("invalid token")
            now = utcnow()
            if row.revoked_at is not None:
                # Committed before refusing: the family must stay revoked.
                self._revoke_family(s, row.family, now)
                if row.replaced_by is not None:
                    log.warning("refresh token reused for user %s; session ended", claims.sub)
                    refused = "refresh token already used; the session has been ended"
                else:
                    refused = "session ended; sign in again"
            else:
                if row.expires_at <= now:
                    raise Unauthorized("token expired")
                user = s.get(User, row.user_id)
                if user is None or not user.active:
                    raise Unauthorized("invalid token")
                pair, successor = self._issue(s, user_principal(user), row.family)
                row.revoked_at = now
                row.replaced_by = successor
        if refused is not None:
            raise Unauthorized(refused)
        return pair

    def logout(self, principal: Principal, refresh_token: str | None = None) -> int:
        """End the session the refresh token belongs to, or, without one, every session of
        the calling user. Returns how many tokens were revoked."""
        if principal.kind != "user":
            raise Unauthorized("only users hold sessions")
        with self.db.session() as s:
            now = utcnow()
            if refresh_token is None:
                return self._revoke_user(s, principal.id, now)
            claims = self.codec.decode(refresh_token, "refresh")
            if claims.sub != principal.id or claims.family is None:
                raise Unauthorized("refresh token does not belong to the caller")
            return self._revoke_family(s, claims.family, now)

    def revoke_user_sessions(self, user_id: int) -> int:
        with self.db.session() as s:
            return self._revoke_user(s, user_id, utcnow())

    @staticmethod
    def _revoke_family(s: Session, family: str, now: datetime) -> int:
        result = s.execute(
            update(RefreshToken)
            .where(RefreshToken.family == family, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        return int(getattr(result, "rowcount", 0) or 0)

    @staticmethod
    def _revoke_user(s: Session, user_id: int, now: datetime) -> int:
        result = s.execute(
            update(RefreshToken)
            .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        return int(getattr(result, "rowcount", 0) or 0)

    def purge_expired(self, before: datetime | None = None) -> int:
        """Delete refresh tokens that expired before ``before`` (default now); housekeeping."""
        cutoff = before or utcnow()
        with self.db.session() as s:
            result = s.execute(delete(RefreshToken).where(RefreshToken.expires_at < cutoff))
            return int(getattr(result, "rowcount", 0) or 0)


def _ts(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, UTC)
