"""Signed JWTs (HS256) for people: short access tokens and longer refresh tokens.

This module only encodes and checks signatures and claims; which refresh tokens are still
valid is kept in the database by :mod:`yugong.security.sessions`.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any, Literal

import jwt

from yugong.core.errors import Unauthorized
from yugong.security.principal import Role

TokenKind = Literal["access", "refresh"]
ISSUER = "yugong"
ALGORITHM = "HS256"
_REQUIRED = ["exp", "iat", "sub", "jti", "kind", "iss"]


@dataclass(frozen=True)
class Claims:
    sub: int  # user id
    tenant: int | None
    role: Role
    kind: TokenKind
    iat: float  # sub-second, so tokens from just before a password change can be told apart
    exp: int
    jti: str
    family: str | None = None  # refresh tokens only

    def as_jwt(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "iss": ISSUER,
            "sub": str(self.sub),
            "tenant": self.tenant,
            "role": self.role.value,
            "kind": self.kind,
            "iat": self.iat,
            "exp": self.exp,
            "jti": self.jti,
        }
        if self.family is not None:
            body["fam"] = self.family
        return body


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int  # seconds the access token lives
    token_type: str = "bearer"  # noqa: S105 (a token type, not a secret)


def new_id() -> str:
    return secrets.token_urlsafe(24)


class TokenCodec:
    """Makes and checks tokens with one signing key and lifetimes."""

    def __init__(
        self,
        key: str,
        *,
        access_ttl_s: int = 30 * 60,
        refresh_ttl_s: int = 14 * 86_400,
        leeway_s: int = 5,
    ) -> None:
        if len(key) < 32:
            raise ValueError("the signing key must be at least 32 characters")
        if access_ttl_s <= 0 or refresh_ttl_s <= 0:
            raise ValueError("token lifetimes must be positive")
        self._key = key
        self.access_ttl_s = access_ttl_s
        self.refresh_ttl_s = refresh_ttl_s
        self.leeway_s = leeway_s

    def claims(
        self,
        kind: TokenKind,
        user: int,
        tenant: int | None,
        role: Role,
        *,
        family: str | None = None,
        now: float | None = None,
    ) -> Claims:
        iat = round(time.time() if now is None else now, 6)
        ttl = self.access_ttl_s if kind == "access" else self.refresh_ttl_s
        return Claims(user, tenant, role, kind, iat, int(iat) + ttl, new_id(), family)

    def encode(self, claims: Claims) -> str:
        return jwt.encode(claims.as_jwt(), self._key, algorithm=ALGORITHM)

    def decode(self, token: str, kind: TokenKind) -> Claims:
        """Check signature, expiry, issuer and kind; any failure is :class:`Unauthorized`
        without saying which check failed."""
        try:
            body = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                leeway=self.leeway_s,
                options={"require": _REQUIRED},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("token expired") from None
        except jwt.PyJWTError:
            raise Unauthorized("invalid token") from None
        try:
            if body["kind"] != kind:
                raise ValueError("wrong kind")
            tenant = body.get("tenant")
            claims = Claims(
                sub=int(body["sub"]),
                tenant=None if tenant is None else int(tenant),
                role=Role(body["role"]),
                kind=kind,
                iat=float(body["iat"]),
                exp=int(body["exp"]),
                jti=str(body["jti"]),
                family=None if body.get("fam") is None else str(body["fam"]),
            )
        except (KeyError, TypeError, ValueError):
            raise Unauthorized("invalid token") from None
        if kind == "refresh" and claims.family is None:
            raise Unauthorized("invalid token")
        return claims
