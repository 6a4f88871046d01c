"""Errors the services raise; the HTTP layer maps each to an RFC 9457 problem."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class FieldError:
    """One thing wrong with the input, naming where it is (e.g. ``values.temperature``)."""

    loc: str
    msg: str

    def as_dict(self) -> dict[str, str]:
        return {"loc": self.loc, "msg": self.msg}


@dataclass
class YugongError(Exception):
    """Base error: ``detail`` is a human sentence; ``errors`` names the offending fields."""

    detail: str
    errors: list[FieldError] = field(default_factory=list)
    status = 500
    title = "Internal error"

    def __post_init__(self) -> None:
        super().__init__(self.detail)

    def extra(self) -> dict[str, Any]:
        return {"errors": [e.as_dict() for e in self.errors]} if self.errors else {}


class InvalidInput(YugongError):
    status = 422
    title = "Invalid input"


class BadRequest(YugongError):
    status = 400
    title = "Bad request"


class NotFound(YugongError):
    status = 404
    title = "Not found"


class Conflict(YugongError):
    status = 409
    title = "Conflict"


class Unauthorized(YugongError):
    status = 401
    title = "Unauthorized"


class Forbidden(YugongError):
    status = 403
    title = "Forbidden"


class PayloadTooLarge(YugongError):
    status = 413
    title = "Payload too large"


class RateLimited(YugongError):
    status = 429
    title = "Too many requests"


class Unavailable(YugongError):
    status = 503
    title = "Service unavailable"
