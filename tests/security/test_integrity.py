"""Web anti-tampering: the manifest of code and web assets, checks at start and on demand,
a tampered asset refused, and the CLI. Tampering happens on a copy of the package so the
installed code is never touched."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.security.test_headers_csrf import platform_settings, running_app
from yugong.cli import main as cli_main
from yugong.security.integrity import WEB_ASSETS, Integrity, package_root
from yugong.security.models import SecurityEvent


@pytest.fixture
def pkg(tmp_path: Path) -> Path:
    """A copy of the installed package (code and web assets) to tamper with."""
    root = tmp_path / "pkg"
    shutil.copytree(package_root(), root, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def test_manifest_covers_code_and_assets_and_detects_changes(tmp_path: Path, pkg: Path) -> None:
    integrity = Integrity(platform_settings(tmp_path / "data"), root=pkg)
    n = integrity.build()
    files = integrity.load()
    assert n == len(files) and "server.py" in files and f"{WEB_ASSETS}/yugong.css" in files
    assert integrity.check().ok

    (pkg / "server.py").write_text((pkg / "server.py").read_text() + "\n# injected\n")
    (pkg / "cli_admin.py").unlink()
    (pkg / "backdoor.py").write_text("import os\n")
    report = integrity.check()
    assert not report.ok
    assert report.changed == ["server.py"]
    assert report.missing == ["cli_admin.py"]
    assert report.extra == ["backdoor.py"]
    assert integrity.tampered == {"server.py", "cli_admin.py", "backdoor.py"}


def test_a_rewritten_manifest_is_detected(tmp_path: Path, pkg: Path) -> None:
    settings = platform_settings(tmp_path / "data")
    integrity = Integrity(settings, root=pkg)
    integrity.build()
    (pkg / "server.py").write_text("evil = True\n")
    doc = orjson.loads(integrity.path.read_bytes())
    doc["files"]["server.py"] = hashlib.sha256(b"evil = True\n").hexdigest()  # no key: no MAC
    integrity.path.write_bytes(orjson.dumps(doc))
    report = Integrity(settings, root=pkg).check()
    assert not report.ok and report.manifest_error and "HMAC" in report.manifest_error


def test_tampering_found_at_start_is_a_critical_event_and_an_alarm(
    tmp_path: Path, pkg: Path
) -> None:
    settings = platform_settings(tmp_path / "data")
    # The platform checks the installed package; give it a manifest that disagrees on one
    # file, signed with the platform's key (as if that file changed after the build).
    real = Integrity(settings)
    real.build()
    files = real.load()
    files["server.py"] = "0" * 64
    doc = {"version": 1, "root": str(real.root), "files": files, "mac": real._mac(files)}
    real.path.write_bytes(orjson.dumps(doc))

    with running_app(settings) as c:
        app: Any = c.app
        sec = app.state.security
        with sec.db.session() as s:
            rows = s.query(SecurityEvent).filter_by(kind="tampered_file").all()
            found = {e.subject: e for e in rows}  # (others may edit the tree meanwhile)
            assert found["server.py"].severity == "critical"
            assert found["server.py"].detail["alarm"] is True
        assert "server.py" in app.state.platform.integrity.tampered


def test_tampered_web_asset_is_not_served(tmp_path: Path, pkg: Path) -> None:
    settings = platform_settings(tmp_path / "data")
    with running_app(settings) as c:
        app: Any = c.app
        sec = app.state.security
        integrity = Integrity(settings, sec.events, root=pkg)
        integrity.build()
        app.state.integrity = integrity

        ok = c.get("/static/yugong.css")
        assert ok.status_code == 200 and ok.headers["content-type"].startswith("text/css")
        assert ok.content == (pkg / WEB_ASSETS / "yugong.css").read_bytes()
        assert c.get("/static/../server.py").status_code == 404
        assert c.get("/static/nothing.css").status_code == 404

        css = pkg / WEB_ASSETS / "yugong.css"
        css.write_text(css.read_text() + "body{background:url(https://evil.example/x)}")
        r = c.get("/static/yugong.css")
        assert r.status_code == 503
        assert "integrity manifest" in r.json()["detail"]
        assert b"evil.example" not in r.content
        (pkg / WEB_ASSETS / "new.js").write_text("alert(1)")
        assert c.get("/static/new.js").status_code == 503  # not in the manifest
        with sec.db.session() as s:
            subjects = {
                e.subject for e in s.query(SecurityEvent).filter_by(kind="tampered_file").all()
            }
        assert {f"{WEB_ASSETS}/yugong.css", f"{WEB_ASSETS}/new.js"} <= subjects


def test_cli_build_and_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("YUGONG_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("YUGONG_SECRET_KEY", "c" * 40)
    assert cli_main(["integrity", "check"]) == 1  # no manifest yet
    assert cli_main(["integrity", "build"]) == 0
    assert cli_main(["integrity", "check"]) == 0
    assert "integrity ok" in capsys.readouterr().out
    manifest = tmp_path / "integrity.json"
    doc = orjson.loads(manifest.read_bytes())
    doc["files"]["server.py"] = "f" * 64
    manifest.write_bytes(orjson.dumps(doc))
    assert cli_main(["integrity", "check"]) == 1
    assert "altered" in capsys.readouterr().err
