"""Secrets at rest (TOTP seeds, connector passwords): AES-256-GCM under a key from settings.

Stored form: ``v1:<base64url(nonce | ciphertext+tag)>``. The key is ``data_key`` when set,
else derived from ``secret_key`` with HKDF, so a deployment needs no second secret but can
rotate them separately. A value that was tampered with, or encrypted under another key,
fails to open with :class:`SecretError` rather than yielding garbage.
"""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from yugong.core.errors import YugongError
from yugong.core.settings import Settings

_PREFIX = "v1:"


class SecretError(YugongError):
    status = 500
    title = "Secret cannot be decrypted"


def derive_key(material: str, purpose: bytes = b"yugong data key v1") -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(
        material.encode()
    )


class SecretBox:
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("a SecretBox key is 32 bytes")
        self._aead = AESGCM(key)

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretBox:
        return cls(derive_key(settings.data_key or settings.signing_key()))

    def seal(self, plain: str, context: str = "") -> str:
        """Encrypt ``plain``; ``context`` (e.g. ``user:7:totp``) binds it to its place, so
        a sealed value copied to another row does not open there."""
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, plain.encode(), context.encode())
        return _PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, stored: str, context: str = "") -> str:
        if not stored.startswith(_PREFIX):
            raise SecretError("not a sealed secret (unknown format)")
        try:
            raw = base64.urlsafe_b64decode(stored[len(_PREFIX) :].encode())
            plain = self._aead.decrypt(raw[:12], raw[12:], context.encode())
        except (InvalidTag, ValueError) as exc:
            raise SecretError("sealed secret does not open with this key (tampered?)") from exc
        return plain.decode()


__all__ = ["SecretBox", "SecretError", "derive_key"]
