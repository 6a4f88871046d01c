"""User accounts of a tenant; a platform admin names the tenant with ``tenant_id``."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, Field

from yugong.api.deps import PrincipalDep, SecurityDep
from yugong.api.routers.auth import TokenOut
from yugong.security.principal import Role
from yugong.security.users import UserInfo

router = APIRouter(prefix="/users", tags=["users"])

Locale = Literal["zh-CN", "en"]


class UserOut(BaseModel):
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
    totp_enabled: bool = Field(False, description="Signing in needs a TOTP code.")
    locked_until: datetime | None = Field(
        None, description="Sign-ins refused until then after repeated failures."
    )

    @classmethod
    def of(cls, info: UserInfo) -> UserOut:
        return cls(**asdict(info))


class UserCreate(BaseModel):
    username: str = Field(min_length=3, max_length=64)
    password: str = Field(min_length=1, max_length=1024)
    role: Role
    tenant_id: int | None = Field(None, description="Platform admins only: the tenant.")
    email: str | None = Field(None, max_length=255)
    display_name: str = Field("", max_length=128)
    locale: Locale = "zh-CN"
    active: bool = True


class UserUpdate(BaseModel):
    email: str | None = Field(None, max_length=255, description="Empty string clears it.")
    display_name: str | None = Field(None, max_length=128)
    locale: Locale | None = None
    role: Role | None = None
    active: bool | None = None
    password: str | None = Field(
        None, max_length=1024, description="Set a new password; ends the user's sessions."
    )


class ProfileUpdate(BaseModel):
    email: str | None = Field(None, max_length=255, description="Empty string clears it.")
    display_name: str | None = Field(None, max_length=128)
    locale: Locale | None = None


class PasswordChange(BaseModel):
    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=1, max_length=1024)


@router.get("", summary="List users")
def list_users(
    principal: PrincipalDep,
    security: SecurityDep,
    tenant_id: int | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[UserOut]:
    users = security.users.list(principal, tenant_id=tenant_id, limit=limit, offset=offset)
    return [UserOut.of(u) for u in users]


@router.post("", status_code=status.HTTP_201_CREATED, summary="Create a user")
def create_user(body: UserCreate, principal: PrincipalDep, security: SecurityDep) -> UserOut:
    return UserOut.of(security.users.create(principal, **body.model_dump()))


@router.get("/me", summary="My account")
def get_me(principal: PrincipalDep, security: SecurityDep) -> UserOut:
    return UserOut.of(security.users.me(principal))


@router.patch("/me", summary="Change my profile")
def update_me(body: ProfileUpdate, principal: PrincipalDep, security: SecurityDep) -> UserOut:
    return UserOut.of(security.users.update_me(principal, **body.model_dump()))


@router.post(
    "/me/password",
    summary="Change my password",
    description="Every session ends, including this one; the answer is a fresh token pair.",
)
def change_password(
    body: PasswordChange, principal: PrincipalDep, security: SecurityDep
) -> TokenOut:
    security.users.change_password(principal, body.current_password, body.new_password)
    return TokenOut.of(security.sessions.issue(principal))


@router.get("/{user_id}", summary="Get a user")
def get_user(user_id: int, principal: PrincipalDep, security: SecurityDep) -> UserOut:
    return UserOut.of(security.users.get(principal, user_id))


@router.patch("/{user_id}", summary="Change a user")
def update_user(
    user_id: int, body: UserUpdate, principal: PrincipalDep, security: SecurityDep
) -> UserOut:
    return UserOut.of(
        security.users.update(principal, user_id, **body.model_dump(exclude_unset=True))
    )


@router.post("/{user_id}/unlock", summary="Lift a lockout after failed sign-ins")
def unlock_user(user_id: int, principal: PrincipalDep, security: SecurityDep) -> UserOut:
    return UserOut.of(security.users.unlock(principal, user_id))


@router.post(
    "/{user_id}/totp:reset",
    summary="Remove a user's TOTP second factor",
    description="For a lost authenticator: the user signs in with the password alone and "
    "may set up TOTP again.",
)
def reset_totp(user_id: int, principal: PrincipalDep, security: SecurityDep) -> UserOut:
    security.totp.reset(principal, user_id)
    return UserOut.of(security.users.get(principal, user_id))


@router.post(
    "/{user_id}/sessions:revoke",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="End every session of a user",
    description="Their refresh tokens are refused from now on; access tokens already issued "
    "stay valid until they expire (short-lived). Deactivate the user or set a new password "
    "to end those at once too.",
)
def revoke_sessions(user_id: int, principal: PrincipalDep, security: SecurityDep) -> None:
    security.users.revoke_sessions(principal, user_id)


@router.delete("/{user_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Delete a user")
def delete_user(user_id: int, principal: PrincipalDep, security: SecurityDep) -> None:
    security.users.delete(principal, user_id)
