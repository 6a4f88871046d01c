"""Signing in: password login (JSON, or the OAuth2 form behind the OpenAPI "Authorize"
button), token refresh, logout, and who am I."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, status
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel, Field

from yugong.api.deps import PrincipalDep, SecurityDep
from yugong.security.permissions import ACTIONS, allowed
from yugong.security.principal import Role
from yugong.security.tokens import TokenPair

router = APIRouter(prefix="/auth", tags=["auth"])


class LoginIn(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


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


@router.post("/login", summary="Sign in with username and password")
def login(body: LoginIn, security: SecurityDep) -> TokenOut:
    return TokenOut.of(security.sessions.login(body.username, body.password))


@router.post("/token", summary="Sign in (OAuth2 password form, for the Authorize button)")
def token(form: Annotated[OAuth2PasswordRequestForm, Depends()], security: SecurityDep) -> TokenOut:
    return TokenOut.of(security.sessions.login(form.username, form.password))


@router.post("/refresh", summary="Exchange a refresh token for a new pair")
def refresh(body: RefreshIn, security: SecurityDep) -> TokenOut:
    return TokenOut.of(security.sessions.refresh(body.refresh_token))


@router.post(
    "/logout", status_code=status.HTTP_204_NO_CONTENT, summary="End a session or all of them"
)
def logout(principal: PrincipalDep, security: SecurityDep, body: LogoutIn | None = None) -> None:
    security.sessions.logout(principal, body.refresh_token if body else None)


@router.get("/me", summary="The caller and what it may do")
def me(principal: PrincipalDep) -> MeOut:
    return MeOut(
        kind=principal.kind,
        id=principal.id,
        tenant_id=principal.tenant,
        role=principal.role,
        name=principal.name,
        permissions=[a for a in ACTIONS if allowed(principal.role, a)],
    )
