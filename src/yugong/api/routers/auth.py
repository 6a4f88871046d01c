"""Signing in: password login (JSON, or the OAuth2 form behind the OpenAPI "Authorize"
button) with the optional TOTP second factor, token refresh, one's sessions, logout, and who
am I."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Form, Query, Request, Response, status
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel, Field

from yugong.api.csrf import clear_session_cookies, set_session_cookies
from yugong.api.deps import PrincipalDep, SecurityDep
from yugong.security.permissions import ACTIONS, allowed
from yugong.security.principal import Role
from yugong.security.sessions import SessionInfo
from yugong.security.tokens import TokenPair

router = APIRouter(prefix="/auth", tags=["auth"])


_LOGIN_RESPONSES: dict[int | str, dict[str, object]] = {
    401: {
        "description": "Wrong credentials; with `second_factor: totp` in the problem, the "
        "account needs a TOTP code (missing or wrong)."
    },
    429: {"description": "Locked after repeated failures; Retry-After says for how many seconds."},
}


class LoginIn(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)
    totp: str | None = Field(
        None,
        max_length=16,
        description="The 6-digit code of the authenticator app, when the account has TOTP on.",
    )


class RefreshIn(BaseModel):
    refresh_token: str = Field(min_length=1, max_length=4096)


class LogoutIn(BaseModel):
    refresh_token: str | None = Field(
        None,
        max_length=4096,
        description="End this session only; without it every session of the caller ends.",
    )


class TokenOut(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 (a token type, not a secret)
    expires_in: int = Field(description="Seconds until the access token expires.")

    @classmethod
    def of(cls, pair: TokenPair) -> TokenOut:
        return cls(
            access_token=pair.access_token,
            refresh_token=pair.refresh_token,
            expires_in=pair.expires_in,
        )


class MeOut(BaseModel):
    kind: Literal["user", "api_key", "device", "system"]
    id: int
    tenant_id: int | None
    role: Role
    name: str
    permissions: list[str] = Field(description="Actions this caller may perform.")
    totp_enabled: bool = Field(False, description="Signing in needs a TOTP code.")


class SessionOut(BaseModel):
    id: str = Field(description="Identifies the session, e.g. to end it.")
    started_at: datetime
    refreshed_at: datetime | None = Field(description="Last token refresh, if any.")
    expires_at: datetime = Field(description="When it ends unless refreshed.")

    @classmethod
    def of(cls, info: SessionInfo) -> SessionOut:
        return cls(**asdict(info))


class TotpSetupOut(BaseModel):
    secret: str = Field(description="Base32 seed, for typing into an authenticator app.")
    uri: str = Field(description="otpauth:// URI, for a QR code.")


class TotpCode(BaseModel):
    code: str = Field(min_length=1, max_length=16)


class TotpDisable(BaseModel):
    password: str = Field(min_length=1, max_length=1024)
    code: str = Field(min_length=1, max_length=16)


class TotpStatus(BaseModel):
    totp_enabled: bool


@router.post("/login", summary="Sign in with username and password", responses=_LOGIN_RESPONSES)
def login(
    body: LoginIn,
    security: SecurityDep,
    request: Request,
    response: Response,
    cookie: Annotated[
        bool, Query(description="Also start a cookie session for the browser (CSRF-protected).")
    ] = False,
) -> TokenOut:
    pair = security.sessions.login(body.username, body.password, body.totp)
    if cookie:
        key = security.settings.signing_key()
        set_session_cookies(response, request, key, pair.access_token, pair.expires_in)
    return TokenOut.of(pair)


@router.post(
    "/token",
    summary="Sign in (OAuth2 password form, for the Authorize button)",
    responses=_LOGIN_RESPONSES,
)
def token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    security: SecurityDep,
    totp: Annotated[str | None, Form(max_length=16)] = None,
) -> TokenOut:
    return TokenOut.of(security.sessions.login(form.username, form.password, totp))


@router.post("/refresh", summary="Exchange a refresh token for a new pair")
def refresh(body: RefreshIn, security: SecurityDep) -> TokenOut:
    return TokenOut.of(security.sessions.refresh(body.refresh_token))


@router.post(
    "/logout", status_code=status.HTTP_204_NO_CONTENT, summary="End a session or all of them"
)
def logout(
    principal: PrincipalDep,
    security: SecurityDep,
    request: Request,
    response: Response,
    body: LogoutIn | None = None,
) -> None:
    security.sessions.logout(principal, body.refresh_token if body else None)
    clear_session_cookies(response, request)  # a cookie session ends here too


@router.get("/me", summary="The caller and what it may do")
def me(principal: PrincipalDep, security: SecurityDep) -> MeOut:
    return MeOut(
        kind=principal.kind,
        id=principal.id,
        tenant_id=principal.tenant,
        role=principal.role,
        name=principal.name,
        permissions=[a for a in ACTIONS if allowed(principal.role, a)],
        totp_enabled=security.totp.enabled(principal),
    )


# Sessions ------------------------------------------------------------------------------------

_SESSIONS_NOTE = (
    "A session is one sign-in and the refresh tokens that follow from it. Ending one makes "
    "its refresh token useless at once; access tokens already issued from it stay valid "
    "until they expire (they are short-lived), unless the user is deactivated or changes "
    "password, which ends them at once."
)


@router.get("/sessions", summary="My active sessions", description=_SESSIONS_NOTE)
def list_sessions(principal: PrincipalDep, security: SecurityDep) -> list[SessionOut]:
    return [SessionOut.of(i) for i in security.sessions.list_sessions(principal)]


@router.delete(
    "/sessions/{session_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="End one of my sessions",
    description=_SESSIONS_NOTE,
)
def end_session(session_id: str, principal: PrincipalDep, security: SecurityDep) -> None:
    security.sessions.revoke_session(principal, session_id)


# TOTP second factor --------------------------------------------------------------------------


@router.post(
    "/totp/setup",
    summary="Start setting up TOTP",
    description="Makes a new seed (shown only now). It is not in force until "
    "POST /auth/totp/enable confirms a code from the app.",
)
def totp_setup(principal: PrincipalDep, security: SecurityDep) -> TotpSetupOut:
    setup = security.totp.setup(principal)
    return TotpSetupOut(secret=setup.secret, uri=setup.uri)


@router.post("/totp/enable", summary="Turn TOTP on with a code from the app")
def totp_enable(body: TotpCode, principal: PrincipalDep, security: SecurityDep) -> TotpStatus:
    security.totp.enable(principal, body.code)
    return TotpStatus(totp_enabled=True)


@router.post(
    "/totp/disable",
    summary="Turn TOTP off",
    description="Needs the password and a current code; wrong ones count as failed logins.",
)
def totp_disable(body: TotpDisable, principal: PrincipalDep, security: SecurityDep) -> TotpStatus:
    security.totp.disable(principal, body.password, body.code)
    return TotpStatus(totp_enabled=False)
