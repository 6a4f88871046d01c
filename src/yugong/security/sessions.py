"""Logging in and staying logged in: password login with lockout and the optional TOTP
second factor, access-token checks, refresh-token rotation with reuse detection, the list of
one's sessions, logout.

Each login starts a *family* of refresh tokens: one session. Refreshing revokes the
presented token and issues its successor in the same family. A revoked token presented again
means it was copied: the whole family is revoked, so both the thief and the user must log in
again. Ending a session (logout, ``DELETE /auth/sessions/{id}``, an admin's revoke) revokes
its family, so its refresh token is refused from then on; access tokens already issued from
it stay valid until they expire (``access_token_minutes``), unless the user is deactivated
or their password changes, which ends them at once.

Lockout: after ``after`` failed logins in a row an account is locked for
``base_s * 2 ** (failures - after)`` seconds, at most ``max_s``. While locked every attempt
is refused (HTTP 429 with Retry-After) without checking the password, so a correct password
does not open it; attempts while locked do not add to the count. Usernames that do not exist
are counted in memory the same way, so the answers do not tell which names exist.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, object_session

from yugong.core.errors import NotFound, RateLimited, Unauthorized
from yugong.infra.db import Database, utcnow
from yugong.security.context import current
from yugong.security.models import RefreshToken, User
from yugong.security.passwords import Passwords
from yugong.security.principal import Principal, Role
from yugong.security.secrets import SecretError
from yugong.security.tokens import TokenCodec, TokenPair, new_id
from yugong.security.totp import (
    SECOND_FACTOR_REQUIRED,
    SECOND_FACTOR_WRONG,
    SecondFactorError,
    accepted_step,
    seal_context,
)

if TYPE_CHECKING:
    from yugong.core.settings import Settings
    from yugong.security.audit import AuditLog
    from yugong.security.events import SecurityEvents
    from yugong.security.secrets import SecretBox

log = logging.getLogger(__name__)

LOGIN_FAILED = "invalid username or password"
LOCKED = "too many failed sign-in attempts; try again later"
_NAME_MAX = 128  # usernames are at most 64; longer input is cut for logs and counters


def user_principal(user: User) -> Principal:
    return Principal(
        kind="user",
        id=user.id,
        tenant=user.tenant_id,
        role=Role(user.role),
        name=user.username,
    )


@dataclass
class LoginLocked(RateLimited):
    """Refused because of repeated failures; the same for existing and unknown names."""

    retry_after: int = 1

    def extra(self) -> dict[str, Any]:
        return {**super().extra(), "retry_after": self.retry_after}


@dataclass(frozen=True)
class LockoutPolicy:
    after: int = 5  # failures in a row before the first lock
    base_s: float = 30.0
    max_s: float = 3600.0

    @classmethod
    def from_settings(cls, settings: Settings) -> LockoutPolicy:
        return cls(
            after=settings.login_lockout_after,
            base_s=settings.login_lockout_base_s,
            max_s=settings.login_lockout_max_s,
        )

    def lock_for(self, failures: int) -> float | None:
        """Seconds to lock after ``failures`` failures in a row; None below the threshold."""
        if failures < self.after:
            return None
        doublings = min(failures - self.after, 62)  # beyond that the cap applies anyway
        return min(self.base_s * 2.0**doublings, self.max_s)


class _Strangers:
    """Failure counts of usernames that do not exist, so they lock like real ones. Bounded:
    the least recently tried names are forgotten first."""

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._seen: OrderedDict[str, tuple[int, datetime | None]] = OrderedDict()

    def get(self, name: str) -> tuple[int, datetime | None]:
        with self._lock:
            return self._seen.get(name, (0, None))

    def put(self, name: str, failures: int, locked_until: datetime | None) -> None:
        with self._lock:
            self._seen[name] = (failures, locked_until)
            self._seen.move_to_end(name)
            while len(self._seen) > self.limit:
                self._seen.popitem(last=False)


@dataclass
class _Attempt:
    """What one credential check decided, acted on after its transaction commits."""

    name: str
    user_id: int | None = None
    tenant_id: int | None = None
    principal: Principal | None = None
    reason: str | None = None  # why refused; None when accepted
    failures: int = 0
    locked_for: float | None = None  # this failure locked the account for so long
    retry_after: float | None = None  # refused because locked, for so long still
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SessionInfo:
    """One login of a user (a refresh-token family) still in force."""

    id: str
    started_at: datetime  # issue time of the oldest token still kept
    refreshed_at: datetime | None  # when the current refresh token was issued by a refresh
    expires_at: datetime  # when the current refresh token expires


class Sessions:
    def __init__(
        self,
        db: Database,
        codec: TokenCodec,
        passwords: Passwords,
        *,
        lockout: LockoutPolicy | None = None,
        box: SecretBox | None = None,
        events: SecurityEvents | None = None,
        audit: AuditLog | None = None,
    ) -> None:
        self.db = db
        self.codec = codec
        self.passwords = passwords
        self.lockout = lockout or LockoutPolicy()
        self.box = box
        self.events = events
        self.audit = audit
        self._strangers = _Strangers()

    # Login ---------------------------------------------------------------------------------

    def verify_password(self, username: str, password: str, totp: str | None = None) -> Principal:
        """The user these credentials belong to. Failures read the same whether the name
        exists or not and cost about one hash verification; they count towards the lockout,
        and every attempt is audited."""
        return self._check(username[:_NAME_MAX], None, password, totp, "login")

    def check_credentials(
        self, user_id: int, password: str, totp: str | None, *, action: str
    ) -> Principal:
        """Re-check a signed-in user's password (and code) before a sensitive change, under
        the same lockout as a login."""
        with self.db.session() as s:
            user = s.get(User, user_id)
            name = user.username if user is not None else f"#{user_id}"
        return self._check(name, user_id, password, totp, action)

    def login(self, username: str, password: str, totp: str | None = None) -> TokenPair:
        principal = self.verify_password(username, password, totp)
        return self.issue(principal)

    def _check(
        self, name: str, user_id: int | None, password: str, totp: str | None, action: str
    ) -> Principal:
        now = utcnow()
        with self.db.session() as s:
            q = select(User).where(
                User.id == user_id if user_id is not None else User.username == name
            )
            user = s.scalars(q.with_for_update()).one_or_none()
            attempt = self._decide(user, name, password, totp, now)
        self._report(attempt, action)
        if attempt.reason is None and attempt.principal is not None:
            return attempt.principal
        if attempt.retry_after is not None:
            seconds = max(1, math.ceil(attempt.retry_after))
            raise LoginLocked(LOCKED, retry_after=seconds)
        if attempt.reason == "totp_missing":
            raise SecondFactorError(SECOND_FACTOR_REQUIRED)
        if attempt.reason == "totp_wrong":
            raise SecondFactorError(SECOND_FACTOR_WRONG)
        if attempt.reason == "totp_unreadable":
            raise Unauthorized(
                "the second factor cannot be checked; ask an administrator to reset it"
            )
        raise Unauthorized(LOGIN_FAILED)

    def _decide(
        self, user: User | None, name: str, password: str, totp: str | None, now: datetime
    ) -> _Attempt:
        a = _Attempt(name=name)
        if user is not None:
            a.user_id, a.tenant_id = user.id, user.tenant_id
            failures, locked_until = user.failed_logins, user.locked_until
        else:
            failures, locked_until = self._strangers.get(name)
        a.failures = failures
        if locked_until is not None and locked_until > now:
            a.reason = "locked"
            a.retry_after = (locked_until - now).total_seconds()
            return a  # the password is not even looked at
        ok = self.passwords.verify(user.password_hash if user is not None else None, password)
        if user is None:
            a.reason = "unknown_user"
        elif not ok:
            a.reason = "bad_password"
        elif not user.active:
            a.reason = "inactive"
        elif user.totp_enabled:
            a.reason = self._second_factor(user, totp)
        if a.reason is None:
            assert user is not None
            if self.passwords.needs_rehash(user.password_hash):
                user.password_hash = self.passwords.hash(password)
            user.failed_logins, user.locked_until = 0, None
            user.last_login_at = now
            a.principal = user_principal(user)
            return a
        if a.reason in ("totp_missing", "totp_unreadable"):
            return a  # the first step of a two-step login, or our fault: not a guess
        a.failures = failures + 1  # counts towards the lockout
        a.locked_for = self.lockout.lock_for(a.failures)
        until = None if a.locked_for is None else now + timedelta(seconds=a.locked_for)
        if user is not None:
            user.failed_logins, user.locked_until = a.failures, until
        else:
            self._strangers.put(name, a.failures, until)
        return a

    def _second_factor(self, user: User, code: str | None) -> str | None:
        """None when ``code`` is good (and marks it used), else why not."""
        if not code:
            return "totp_missing"
        if self.box is None or user.totp_secret is None:
            return "totp_unreadable"
        try:
            secret = self.box.open(user.totp_secret, seal_context(user.id))
        except SecretError:
            log.error("TOTP seed of user %s does not open (data key changed?)", user.id)
            return "totp_unreadable"
        step = accepted_step(secret, code, user.totp_last_step)
        if step is None:
            return "totp_wrong"
        # Marking the code used is bookkeeping, not a change to the account: a plain
        # UPDATE (under the row lock already held) keeps it out of the change audit.
        s = object_session(user)
        assert s is not None
        s.execute(
            update(User)
            .where(User.id == user.id)
            .values(totp_last_step=step)
            .execution_options(synchronize_session=False)
        )
        return None

    def _report(self, a: _Attempt, action: str) -> None:
        """Security events for failures and locks, and an audit entry for every attempt."""
        ip = current().source_ip
        if self.events is not None and a.reason is not None and a.reason != "totp_missing":
            kind = "totp_failed" if a.reason == "totp_wrong" else "login_failed"
            self.events.record(
                kind,
                tenant_id=a.tenant_id,
                source_ip=ip,
                subject=a.name,
                detail={"reason": a.reason, "failures": a.failures, "action": action},
            )
            if a.locked_for is not None:
                self.events.record(
                    "account_locked",
                    "critical",
                    tenant_id=a.tenant_id,
                    source_ip=ip,
                    subject=a.name,
                    detail={"failures": a.failures, "locked_s": a.locked_for},
                )
        if self.audit is not None:
            detail: dict[str, Any] = {}
            if a.reason is not None:
                detail["reason"] = a.reason
            if a.locked_for is not None:
                detail["locked_s"] = a.locked_for
            self.audit.record(
                action,
                outcome="ok" if a.reason is None else "refused",
                tenant_id=a.tenant_id,
                target_type="user",
                target_id=a.user_id,
                actor_kind="user",
                actor_id=a.user_id,
                actor_name=a.name,
                detail=detail,
            )

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

    def list_sessions(self, principal: Principal) -> list[SessionInfo]:
        """The calling user's sessions still in force, newest first."""
        user_id = _user_id(principal)
        now = utcnow()
        with self.db.session() as s:
            rows = s.scalars(
                select(RefreshToken)
                .where(RefreshToken.user_id == user_id)
                .order_by(RefreshToken.issued_at)
            ).all()
        families: dict[str, list[RefreshToken]] = {}
        for r in rows:
            families.setdefault(r.family, []).append(r)
        out: list[SessionInfo] = []
        for fam, tokens in families.items():
            live = [t for t in tokens if t.revoked_at is None and t.expires_at > now]
            if not live:
                continue
            head = live[-1]
            out.append(
                SessionInfo(
                    id=fam,
                    started_at=tokens[0].issued_at,
                    refreshed_at=head.issued_at if head is not tokens[0] else None,
                    expires_at=head.expires_at,
                )
            )
        return sorted(out, key=lambda i: i.started_at, reverse=True)

    def revoke_session(self, principal: Principal, session_id: str) -> None:
        """End one of the caller's sessions: its refresh token is refused from now on."""
        user_id = _user_id(principal)
        with self.db.session() as s:
            mine = s.scalars(
                select(RefreshToken.jti)
                .where(
                    RefreshToken.family == session_id,
                    RefreshToken.user_id == user_id,
                    RefreshToken.revoked_at.is_(None),
                )
                .limit(1)
            ).first()
            if mine is None:
                raise NotFound(f"session {session_id!r} not found")
            self._revoke_family(s, session_id, utcnow())

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


def _user_id(principal: Principal) -> int:
    if principal.kind != "user":
        raise Unauthorized("only users hold sessions")
    return principal.id


def _ts(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, UTC)
