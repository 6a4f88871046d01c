"""Helpers shared by the registry services: tenant scope, input checks, change hooks."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from yugong.core.errors import Conflict, FieldError, InvalidInput, NotFound
from yugong.security.principal import Principal

from .records import ChangeEvent

Notify = Callable[[ChangeEvent], None]
MAX_LIMIT = 1000
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class Unset:
    """Marks an optional argument that was not given (``None`` may be a real value)."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = Unset()


def scope(p: Principal, tenant_id: int | None) -> int | None:
    """The tenant a by-id lookup is limited to. Tenant principals: their own tenant.
    Platform principals: the tenant they name, or ``None`` meaning any tenant."""
    if p.is_platform and tenant_id is None:
        return None
    return p.tenant_for(tenant_id)


class TenantOwned(Protocol):
    tenant_id: Any


Owned = TypeVar("Owned", bound=TenantOwned)


def get_scoped(
    s: Session,
    model: type[Owned],
    p: Principal,
    object_id: int,
    tenant_id: int | None,
    label: str,
) -> Owned:
    """One object by id within the caller's scope; another tenant's object reads as
    not found, exactly like one that does not exist."""
    tenant = scope(p, tenant_id)
    obj = s.get(model, object_id)
    if obj is None or (tenant is not None and obj.tenant_id != tenant):
        raise NotFound(f"{label} {object_id} not found")
    return obj


def invalid(loc: str, msg: str) -> InvalidInput:
    return InvalidInput(f"{loc}: {msg}", [FieldError(loc, msg)])


def clean_name(value: Any, loc: str, max_len: int = 128) -> str:
    """A display name: text, trimmed, not empty, no control characters."""
    if not isinstance(value, str):
        raise invalid(loc, "must be a string")
    text = value.strip()
    if not text:
        raise invalid(loc, "must not be empty")
    if len(text) > max_len:
        raise invalid(loc, f"must be at most {max_len} characters")
    if _CONTROL.search(text):
        raise invalid(loc, "must not contain control characters")
    return text


def clean_attributes(value: Any, loc: str = "attributes") -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise invalid(loc, "must be an object with string keys")
    return dict(value)


def check_paging(limit: int, offset: int) -> None:
    if not 1 <= limit <= MAX_LIMIT:
        raise invalid("limit", f"must be between 1 and {MAX_LIMIT}")
    if offset < 0:
        raise invalid("offset", "must be >= 0")


@contextmanager
def unique_violation(message: str, loc: str) -> Iterator[None]:
    """Turn a unique-constraint race the checks above missed into a clear 409."""
    try:
        yield
    except IntegrityError as exc:
        raise Conflict(message, [FieldError(loc, "already exists")]) from exc
