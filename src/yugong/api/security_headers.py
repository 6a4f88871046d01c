"""Security headers on every HTTP response (OWASP ASVS V14.4).

The content security policy allows only the platform's own origin. Inline ``<script>`` and
``<style>`` blocks of our HTML pages are allowed one by one by their SHA-256 (computed from
the page as it is sent), never with ``'unsafe-inline'`` for scripts. The API reference
(``/docs``, Swagger UI) also loads its script and style sheet from the jsDelivr CDN and sets
inline styles, so its page alone allows those. HSTS is sent only over HTTPS (on plain HTTP
a browser ignores it, and a development server must stay reachable).
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable

from starlette.types import Message, Receive, Scope, Send

from yugong.core.asgi import HttpMiddleware

BASE_CSP: dict[str, str] = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data:",
    "connect-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'self'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}
DOCS_PATHS = ("/docs", "/docs/oauth2-redirect")
DOCS_CDN = "https://cdn.jsdelivr.net"
DOCS_EXTRA: dict[str, str] = {
    "script-src": DOCS_CDN,
    "style-src": f"{DOCS_CDN} 'unsafe-inline'",
    "img-src": "https://fastapi.tiangolo.com",
}
HSTS = "max-age=31536000; includeSubDomains"
STATIC_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (
        b"permissions-policy",
        b"camera=(), microphone=(), geolocation=(), payment=(), usb=(), serial=()",
    ),
    (b"cross-origin-opener-policy", b"same-origin"),
)
_INLINE_SCRIPT = re.compile(rb"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.S | re.I)
_INLINE_STYLE = re.compile(rb"<style[^>]*>(.*?)</style>", re.S | re.I)
MAX_HTML = 2 * 1024 * 1024  # larger HTML is sent as is, with the base policy


def _hashes(pattern: re.Pattern[bytes], html: bytes) -> list[str]:
    out = []
    for m in pattern.finditer(html):
        digest = base64.b64encode(hashlib.sha256(m.group(1)).digest()).decode()
        out.append(f"'sha256-{digest}'")
    return out


def content_security_policy(path: str, html: bytes | None = None) -> str:
    """The policy for a response at ``path``; ``html`` adds its inline blocks' hashes."""
    csp = dict(BASE_CSP)
    if path in DOCS_PATHS:
        for k, v in DOCS_EXTRA.items():
            csp[k] = f"{csp[k]} {v}"
    if html:
        scripts, styles = _hashes(_INLINE_SCRIPT, html), _hashes(_INLINE_STYLE, html)
        if scripts:
            csp["script-src"] += " " + " ".join(scripts)
        if styles and "'unsafe-inline'" not in csp["style-src"]:
            csp["style-src"] += " " + " ".join(styles)
    return "; ".join(f"{k} {v}" for k, v in csp.items())


def _with(headers: Iterable[tuple[bytes, bytes]], extra: list[tuple[bytes, bytes]]) -> list:
    present = {k.lower() for k, _ in headers}
    return list(headers) + [(k, v) for k, v in extra if k not in present]


class SecurityHeaders(HttpMiddleware):
    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        https = scope.get("scheme") == "https"
        start: Message | None = None
        parts: list[bytes] = []

        def extra(html: bytes | None) -> list[tuple[bytes, bytes]]:
            out = list(STATIC_HEADERS)
            out.append((b"content-security-policy", content_security_policy(path, html).encode()))
            if https:
                out.append((b"strict-transport-security", HSTS.encode()))
            return out

        async def wrapped(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                headers = message.get("headers", [])
                ctype = dict(headers).get(b"content-type", b"")
                if ctype.startswith(b"text/html"):
                    start = message  # hold it: the policy depends on the page
                    return
                await send({**message, "headers": _with(headers, extra(None))})
                return
            if start is not None and message["type"] == "http.response.body":
                parts.append(message.get("body", b""))
                if message.get("more_body", False) and sum(map(len, parts)) < MAX_HTML:
                    return
                html = b"".join(parts)
                parts.clear()
                headers = _with(start.get("headers", []), extra(html))
                await send({**start, "headers": headers})
                start = None
                await send({**message, "body": html})
                return
            await send(message)

        await self.app(scope, receive, wrapped)


__all__ = ["SecurityHeaders", "content_security_policy"]
