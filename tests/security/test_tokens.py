from __future__ import annotations

import base64
import json
import time

import jwt
import pytest

from yugong.core.errors import Unauthorized
from yugong.security.principal import Role
from yugong.security.tokens import TokenCodec

KEY = "k" * 40


def codec(**kw: int) -> TokenCodec:
    return TokenCodec(KEY, **kw)


def test_roundtrip_carries_the_claims() -> None:
    c = codec()
    claims = c.claims("access", 7, 3, Role.ENGINEER)
    back = c.decode(c.encode(claims), "access")
    assert back == claims
    body = jwt.decode(c.encode(claims), KEY, algorithms=["HS256"])
    assert {"sub", "tenant", "role", "kind", "exp", "iat", "jti"} <= body.keys()
    assert body["sub"] == "7" and body["tenant"] == 3 and body["role"] == "engineer"
    assert body["exp"] - int(body["iat"]) == 30 * 60


def test_every_token_is_unique() -> None:
    c = codec()
    a = c.claims("access", 1, None, Role.PLATFORM_ADMIN)
    b = c.claims("access", 1, None, Role.PLATFORM_ADMIN)
    assert a.jti != b.jti


def test_expired_token_refused() -> None:
    c = codec(access_ttl_s=60, leeway_s=0)
    old = c.claims("access", 1, 1, Role.VIEWER, now=int(time.time()) - 61)
    with pytest.raises(Unauthorized, match="expired"):
        c.decode(c.encode(old), "access")


def test_tampered_token_refused() -> None:
    c = codec()
    token = c.encode(c.claims("access", 1, 1, Role.VIEWER))
    header, payload, sig = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    body["role"] = "platform_admin"
    forged = base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()
    with pytest.raises(Unauthorized, match="invalid token"):
        c.decode(f"{header}.{forged}.{sig}", "access")


def test_other_key_and_alg_none_refused() -> None:
    c = codec()
    claims = c.claims("access", 1, 1, Role.VIEWER).as_jwt()
    with pytest.raises(Unauthorized):
        c.decode(jwt.encode(claims, "x" * 40, algorithm="HS256"), "access")
    unsigned = jwt.encode(claims, None, algorithm="none")  # type: ignore[arg-type]
    with pytest.raises(Unauthorized):
        c.decode(unsigned, "access")
    with pytest.raises(Unauthorized):
        c.decode("not.a.jwt", "access")


def test_kind_must_match() -> None:
    c = codec()
    refresh = c.encode(c.claims("refresh", 1, 1, Role.VIEWER, family="f1"))
    with pytest.raises(Unauthorized):
        c.decode(refresh, "access")
    access = c.encode(c.claims("access", 1, 1, Role.VIEWER))
    with pytest.raises(Unauthorized):
        c.decode(access, "refresh")


def test_missing_claim_refused() -> None:
    c = codec()
    body = c.claims("access", 1, 1, Role.VIEWER).as_jwt()
    del body["jti"]
    with pytest.raises(Unauthorized):
        c.decode(jwt.encode(body, KEY, algorithm="HS256"), "access")
    body = c.claims("access", 1, 1, Role.VIEWER).as_jwt()
    body["role"] = "overlord"
    with pytest.raises(Unauthorized):
        c.decode(jwt.encode(body, KEY, algorithm="HS256"), "access")


def test_weak_key_rejected() -> None:
    with pytest.raises(ValueError, match="32 characters"):
        TokenCodec("short")
