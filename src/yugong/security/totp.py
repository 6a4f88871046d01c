"""The optional second factor: time-based one-time passwords (RFC 6238).

Six digits, 30-second steps, HMAC-SHA1: what every authenticator app understands. The
seed is stored sealed (:class:`SecretBox`, context ``user:<id>:totp``), so a copy of the
database alone does not yield it. A code is accepted for the current step and one step
either side (clock drift), and only for a step later than the last one accepted, so a
code seen over someone's shoulder cannot be replayed (RFC 6238 section 5.2).

Setting up is two calls: :meth:`Totp.setup` makes a seed (shown once, as a secret and an
``otpauth://`` URI for a QR code) and :meth:`Totp.enable` switches it on once the user
proves their app produces the right codes. From then on a login needs the code. These
changes reach the audit log through the audit hooks (``users.update``).
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyotp

from yugong.core.errors import Conflict, FieldError, Forbidden, InvalidInput, Unauthorized
from yugong.infra.db import Database
from yugong.security.models import User
from yugong.security.principal import Principal, Role
from yugong.security.secrets import SecretBox
from yugong.security.users import check_grant, visible_user

if TYPE_CHECKING:
    from yugong.security.sessions import Sessions

STEP_S = 30
DIGITS = 6
DRIFT_STEPS = 1  # steps accepted before and after the current one


class SecondFactorError(Unauthorized):
    """A login needs the code (missing) or the code was refused; says so machine-readably
    so a client knows to ask for it."""

    def extra(self) -> dict[str, Any]:
        return {**super().extra(), "second_factor": "totp"}


SECOND_FACTOR_REQUIRED = "a second factor is required: send the authenticator app's code as 'totp'"
SECOND_FACTOR_WRONG = "the second-factor code is wrong or was already used"


def seal_context(user_id: int) -> str:
    """Binds a sealed seed to its user: copied to another row it does not open."""
    return f"user:{user_id}:totp"


def new_secret() -> str:
    """A random base32 seed of 160 bits, the length RFC 4226 recommends."""
    return pyotp.random_base32(32)


def provisioning_uri(secret: str, username: str, issuer: str) -> str:
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_S).provisioning_uri(
        name=username, issuer_name=issuer
    )


def code_at(secret: str, step: int) -> str:
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_S).generate_otp(step)


def current_step(now: float | None = None) -> int:
    return int((time.time() if now is None else now) // STEP_S)


def accepted_step(
    secret: str, code: str, last_step: int | None, now: float | None = None
) -> int | None:
    """The time step ``code`` belongs to when it is valid now and not yet used, else None."""
    code = code.replace(" ", "").strip()
    if len(code) != DIGITS or not code.isascii() or not code.isdigit():
        return None
    step = current_step(now)
    found: int | None = None
    # Every candidate is compared, in constant time, whether or not one matched already.
    for candidate in range(step - DRIFT_STEPS, step + DRIFT_STEPS + 1):
        if hmac.compare_digest(code_at(secret, candidate), code) and (
            last_step is None or candidate > last_step
        ):
            found = candidate
    return found


@dataclass(frozen=True)
class TotpSetup:
    """A seed just made: shown this once, to be entered into an authenticator app."""

    secret: str
    uri: str


class Totp:
    """Setting up, enabling, disabling and (by an admin) resetting the second factor."""

    def __init__(
        self,
        db: Database,
        box: SecretBox,
        sessions: Sessions,
        *,
        issuer: str = "Yugong",
    ) -> None:
        self.db = db
        self.box = box
        self.sessions = sessions
        self.issuer = issuer

    def enabled(self, principal: Principal) -> bool:
        if principal.kind != "user":
            return False
        with self.db.session() as s:
            user = s.get(User, principal.id)
            return bool(user is not None and user.totp_enabled)

    def setup(self, principal: Principal) -> TotpSetup:
        """A new seed for the calling user, stored sealed but not yet in force. Calling it
        again before :meth:`enable` replaces the seed."""
        user_id = _self_id(principal)
        secret = new_secret()
        with self.db.session() as s:
            user = visible_user(s, principal, user_id)
            if user.totp_enabled:
                raise Conflict("the second factor is already enabled; disable it first")
            user.totp_secret = self.box.seal(secret, seal_context(user.id))
            user.totp_last_step = None
            uri = provisioning_uri(secret, user.username, self.issuer)
        return TotpSetup(secret=secret, uri=uri)

    def enable(self, principal: Principal, code: str) -> None:
        """Switch the second factor on, once ``code`` shows the app has the seed."""
        user_id = _self_id(principal)
        with self.db.session() as s:
            user = visible_user(s, principal, user_id)
            if user.totp_enabled:
                raise Conflict("the second factor is already enabled")
            if user.totp_secret is None:
                raise Conflict("no second factor set up: call POST /auth/totp/setup first")
            secret = self.box.open(user.totp_secret, seal_context(user.id))
            step = accepted_step(secret, code, user.totp_last_step)
            if step is None:
                raise InvalidInput(
                    "the code does not match: check the app's clock and enter the current code",
                    [FieldError("code", "wrong or already used")],
                )
            user.totp_last_step = step
            user.totp_enabled = True

    def disable(self, principal: Principal, password: str, code: str) -> None:
        """Switch the second factor off; needs the password and a current code. Wrong ones
        count as failed logins (and lock the account like them)."""
        user_id = _self_id(principal)
        with self.db.session() as s:
            enabled = visible_user(s, principal, user_id).totp_enabled
        if not enabled:
            raise Conflict("the second factor is not enabled")
        try:
            self.sessions.check_credentials(user_id, password, code, action="totp.disable")
        except SecondFactorError:
            raise InvalidInput(
                f"cannot disable the second factor: {SECOND_FACTOR_WRONG}",
                [FieldError("code", "wrong or already used")],
            ) from None
        except Unauthorized:
            raise InvalidInput(
                "cannot disable the second factor: the password is wrong",
                [FieldError("password", "does not match")],
            ) from None
        with self.db.session() as s:
            _clear(visible_user(s, principal, user_id))

    def reset(self, principal: Principal, user_id: int) -> None:
        """An admin removes a user's second factor (e.g. a lost phone); the user signs in
        with the password alone and may set up a new one."""
        principal.require("users:write")
        with self.db.session() as s:
            user = visible_user(s, principal, user_id)
            check_grant(principal, Role(user.role))
            _clear(user)


def _clear(user: User) -> None:
    user.totp_enabled = False
    user.totp_secret = None
    user.totp_last_step = None


def _self_id(principal: Principal) -> int:
    if principal.kind != "user":
        raise Forbidden("only a signed-in user has a second factor")
    return principal.id


__all__ = [
    "DIGITS",
    "SECOND_FACTOR_REQUIRED",
    "SECOND_FACTOR_WRONG",
    "STEP_S",
    "SecondFactorError",
    "Totp",
    "TotpSetup",
    "accepted_step",
    "code_at",
    "current_step",
    "new_secret",
    "provisioning_uri",
    "seal_context",
]
