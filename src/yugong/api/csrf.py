"""Cookie sessions for the browser console, protected against cross-site request forgery.

``POST /api/v1/auth/login?cookie=true`` sets two cookies beside the usual token answer:

- ``yugong_session``: the access token; HttpOnly (scripts cannot read it), SameSite=Strict,
  Secure over HTTPS;
- ``yugong_csrf``: an HMAC of that access token under the signing key, readable by the
  page's own script.

A request authenticated by the session cookie with an unsafe method (anything but GET,
HEAD, OPTIONS) must repeat the CSRF cookie's value in ``X-CSRF-Token`` (double submit,
compared in constant time). Because the token is tied to the session by an HMAC, a cookie
planted by a sibling site does not pass either. Requests with ``Authorization`` or
``X-API-Key`` carry no ambient credentials and need no CSRF token.
"""

from __future__ import annotations

import hashlib
import hmac

from fastapi import Request, Response

from yugong.core.errors import Forbidden

SESSION_COOKIE = "yugong_session"
CSRF_COOKIE = "yugong_csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def csrf_token(signing_key: str, access_token: str) -> str:
    key = b"yugong csrf:" + signing_key.encode()  # not the raw token-signing key
    return hmac.new(key, access_token.encode(), hashlib.sha256).hexdigest()


def set_session_cookies(
    response: Response, request: Request, signing_key: str, access_token: str, max_age: int
) -> None:
    secure = request.url.scheme == "https"
    common = {"max_age": max_age, "path": "/", "secure": secure, "samesite": "strict"}
    response.set_cookie(SESSION_COOKIE, access_token, httponly=True, **common)  # type: ignore[arg-type]
    response.set_cookie(CSRF_COOKIE, csrf_token(signing_key, access_token), **common)  # type: ignore[arg-type]


def clear_session_cookies(response: Response, request: Request) -> None:
    secure = request.url.scheme == "https"
    for name in (SESSION_COOKIE, CSRF_COOKIE):
        response.delete_cookie(name, path="/", secure=secure, samesite="strict")


def check_csrf(request: Request, signing_key: str, access_token: str) -> None:
    """Refuse an unsafe request authenticated by the session cookie without the token."""
    if request.method in SAFE_METHODS:
        return
    sent = request.headers.get(CSRF_HEADER)
    if not sent:
        raise Forbidden(
            f"CSRF token missing: send the {CSRF_COOKIE} cookie's value in {CSRF_HEADER} "
            "with requests that change something"
        )
    expected = csrf_token(signing_key, access_token)
    if not hmac.compare_digest(sent.encode(), expected.encode()):
        raise Forbidden(f"CSRF token in {CSRF_HEADER} does not match this session")


__all__ = [
    "CSRF_COOKIE",
    "CSRF_HEADER",
    "SESSION_COOKIE",
    "check_csrf",
    "clear_session_cookies",
    "csrf_token",
    "set_session_cookies",
]
