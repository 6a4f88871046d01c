"""Password hashing (argon2id) and the password policy.

Hashes carry their own parameters, so raising the cost later only needs a new
:class:`PasswordHasher`; :meth:`Passwords.verify` reports when a stored hash should be
replaced by one made with the current parameters.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass
from typing import TYPE_CHECKING

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from yugong.core.errors import FieldError, InvalidInput

if TYPE_CHECKING:
    from yugong.core.settings import Settings


@dataclass(frozen=True)
class PasswordPolicy:
    """Rules a new password must follow. Length beats composition rules (NIST SP 800-63B),
    so only character classes are optional."""

    min_length: int = 10
    max_length: int = 256  # argon2 has no limit; this bounds the work one request can cause
    min_classes: int = 1  # of: lower, upper, digit, other
    forbid_username: bool = True

    @classmethod
    def from_settings(cls, settings: Settings) -> PasswordPolicy:
        """The deployment's policy (``password_min_length``, ``password_min_classes``)."""
        return cls(
            min_length=settings.password_min_length, min_classes=settings.password_min_classes
        )

    def problems(self, password: str, username: str | None = None) -> list[str]:
        """Every rule the password breaks, as sentences; empty when it is acceptable."""
        found: list[str] = []
        if len(password) < self.min_length:
            found.append(f"must be at least {self.min_length} characters long")
        if len(password) > self.max_length:
            found.append(f"must be at most {self.max_length} characters long")
        if password.strip() == "":
            found.append("must not be blank")
        classes = sum(
            (
                any(c.islower() for c in password),
                any(c.isupper() for c in password),
                any(c.isdigit() for c in password),
                any(not c.isalnum() for c in password),
            )
        )
        if classes < self.min_classes:
            found.append(
                f"must mix at least {self.min_classes} of: lower case, upper case, digits, "
                "other characters"
            )
        if (
            self.forbid_username
            and username
            and len(username) >= 3
            and username.casefold() in password.casefold()
        ):
            found.append("must not contain the username")
        return found

    def check(self, password: str, username: str | None = None, *, loc: str = "password") -> None:
        """Raise :class:`InvalidInput` naming each broken rule."""
        found = self.problems(password, username)
        if found:
            raise InvalidInput(
                f"password {'; '.join(found)}",
                [FieldError(loc, f"password {p}") for p in found],
            )


class Passwords:
    """Hash and verify with argon2id; ``needs_rehash`` tells when to upgrade a stored hash."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self.hasher = hasher or PasswordHasher()
        # Verified against when the user does not exist, so a miss costs what a hit costs.
        self._dummy = self.hasher.hash(secrets.token_urlsafe(16))

    def hash(self, password: str) -> str:
        return self.hasher.hash(password)

    def verify(self, stored_hash: str | None, password: str) -> bool:
        """True when ``password`` matches; with ``stored_hash`` None, burn the same time
        and return False."""
        try:
            return self.hasher.verify(stored_hash or self._dummy, password) and (
                stored_hash is not None
            )
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored_hash: str) -> bool:
        try:
            return self.hasher.check_needs_rehash(stored_hash)
        except (InvalidHashError, ValueError):
            return True


_SYMBOLS = "-_.=@"  # safe in shells and YAML without quoting
_ALPHABET = string.ascii_letters + string.digits + _SYMBOLS


def generate_password(length: int = 20) -> str:
    """A random password with all four character classes (lower, upper, digit, other), so it
    passes any policy; about 120 bits at 20 characters."""
    while True:
        pw = "".join(secrets.choice(_ALPHABET) for _ in range(length))
        if (
            any(c.islower() for c in pw)
            and any(c.isupper() for c in pw)
            and any(c.isdigit() for c in pw)
            and any(c in _SYMBOLS for c in pw)
        ):
            return pw
