"""Sealed secrets in gateway configs and device profiles: connector and uplink passwords
need not sit in YAML files in clear.

A value written as ``sealed:v1:...`` (made by ``yugong edge seal``) is opened when the file is
loaded, with the key in the environment variable ``YUGONG_EDGE_KEY`` (or the file named by
``YUGONG_EDGE_KEY_FILE``), AES-256-GCM as the platform seals its own secrets. A sealed value
without a key, or one that does not open with it, stops loading with an error naming where
the value is; the value itself is never logged.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from yugong.core.errors import FieldError, InvalidInput
from yugong.security.secrets import SecretBox, SecretError, derive_key

PREFIX = "sealed:"
KEY_ENV = "YUGONG_EDGE_KEY"
KEY_FILE_ENV = "YUGONG_EDGE_KEY_FILE"
_CONTEXT = "yugong edge config"
_MIN_KEY = 32


def edge_key() -> str | None:
    """The sealing key from the environment (a file wins over the variable), or None."""
    path = os.environ.get(KEY_FILE_ENV)
    if path:
        try:
            key = Path(path).read_text(encoding="utf-8").strip()
        except OSError as e:
            raise InvalidInput(
                f"{KEY_FILE_ENV}={path}: cannot read the key file: {e.strerror or e}",
                [FieldError(KEY_FILE_ENV, "cannot read")],
            ) from None
    else:
        key = os.environ.get(KEY_ENV, "")
    if not key:
        return None
    if len(key) < _MIN_KEY:
        raise InvalidInput(
            f"the edge sealing key must be at least {_MIN_KEY} characters",
            [FieldError(KEY_FILE_ENV if path else KEY_ENV, "too short")],
        )
    return key


def _box(key: str) -> SecretBox:
    return SecretBox(derive_key(key, b"yugong edge config key v1"))


def seal(plain: str, key: str) -> str:
    return PREFIX + _box(key).seal(plain, _CONTEXT)


def open_sealed(data: Any, source: str, error: type[InvalidInput] = InvalidInput) -> Any:
    """``data`` with every ``sealed:`` string opened (a new structure; ``data`` is kept);
    problems raise ``error`` naming ``source`` and the field."""
    box: SecretBox | None = None

    def walk(value: Any, where: str) -> Any:
        nonlocal box
        if isinstance(value, str) and value.startswith(PREFIX):
            if box is None:
                key = edge_key()
                if key is None:
                    raise error(
                        f"{source}: {where} is sealed, but neither {KEY_ENV} nor "
                        f"{KEY_FILE_ENV} is set",
                        [FieldError(where, "sealed value without a key")],
                    )
                box = _box(key)
            try:
                return box.open(value[len(PREFIX) :], _CONTEXT)
            except SecretError:
                raise error(
                    f"{source}: {where} does not open with the edge sealing key (sealed with "
                    "another key, or altered)",
                    [FieldError(where, "cannot be unsealed")],
                ) from None
        if isinstance(value, Mapping):
            return {k: walk(v, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return value

    return walk(data, "")


__all__ = ["KEY_ENV", "KEY_FILE_ENV", "PREFIX", "edge_key", "open_sealed", "seal"]
