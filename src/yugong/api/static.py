"""The console's static web assets (``/static/...``), each checked against the integrity
manifest as it is served: a changed or unknown file is refused with 503 and recorded as a
``tampered_file`` security event, never sent to a browser."""

from __future__ import annotations

import mimetypes
from pathlib import PurePosixPath
from typing import cast

from fastapi import APIRouter, Request, Response

from yugong.core.errors import NotFound, YugongError
from yugong.security.integrity import WEB_ASSETS, Integrity, package_root

router = APIRouter(include_in_schema=False)


class AssetTampered(YugongError):
    status = 503
    title = "Asset failed its integrity check"


@router.get("/static/{path:path}")
def static_asset(path: str, request: Request) -> Response:
    rel = PurePosixPath(path)
    if not path or rel.is_absolute() or ".." in rel.parts or path.startswith("."):
        raise NotFound(f"no asset {path!r}")
    integrity = cast(Integrity | None, getattr(request.app.state, "integrity", None))
    root = integrity.root if integrity is not None else package_root()
    file = root / WEB_ASSETS / rel
    if not file.is_file():
        raise NotFound(f"no asset {path!r}")
    content = file.read_bytes()  # the bytes checked are the bytes sent
    if integrity is None or not integrity.asset_ok(f"{WEB_ASSETS}/{rel.as_posix()}", content):
        raise AssetTampered(f"{path} does not match the integrity manifest and is not served")
    ctype = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
    return Response(content, media_type=ctype, headers={"cache-control": "no-cache"})
