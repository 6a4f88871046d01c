"""Web anti-tampering: a manifest of the SHA-256 of every code file and web asset of the
installed package, checked at start and every ``integrity_check_interval_s``.

The manifest lives in ``{data_dir}/integrity.json`` and is made at the first start (or by
``yugong integrity build`` after an upgrade). It carries an HMAC under a key derived from
the platform's secret, so whoever changes a file cannot simply rewrite the manifest to
match. A changed, missing or added file is recorded as a ``tampered_file`` security event
(critical, so it raises an alarm); a web asset is hashed again each time it is served and a
tampered one is refused (``/static/...`` answers 503).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

import yugong
from yugong.core.settings import Settings
from yugong.security.events import SecurityEvents
from yugong.security.secrets import derive_key

log = logging.getLogger("yugong.security.integrity")

MANIFEST_FILE = "integrity.json"
WEB_ASSETS = "web/static"
CODE_SUFFIXES = frozenset({".py", ".html", ".css", ".js", ".mako", ".ini", ".json", ".svg"})
_SKIP_DIRS = frozenset({"__pycache__"})


def package_root() -> Path:
    return Path(yugong.__file__).resolve().parent


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


def scan(root: Path) -> dict[str, str]:
    """relative path -> sha256 of every code file and web asset under ``root``."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        base = Path(dirpath)
        in_assets = base.relative_to(root).as_posix().startswith(WEB_ASSETS)
        for name in filenames:
            path = base / name
            if in_assets or path.suffix in CODE_SUFFIXES:
                out[path.relative_to(root).as_posix()] = sha256_file(path)
    return out


@dataclass(frozen=True, slots=True)
class Report:
    files: int
    changed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    manifest_error: str | None = None

    @property
    def ok(self) -> bool:
        return not (self.changed or self.missing or self.extra or self.manifest_error)

    def problems(self) -> list[tuple[str, str]]:
        """(path, what happened) for each file that does not match."""
        return (
            [(p, "changed") for p in self.changed]
            + [(p, "missing") for p in self.missing]
            + [(p, "added") for p in self.extra]
        )


class Integrity:
    def __init__(
        self,
        settings: Settings,
        events: SecurityEvents | None = None,
        *,
        root: Path | None = None,
    ) -> None:
        self.root = root or package_root()
        self.path = settings.data_dir / MANIFEST_FILE
        self.events = events
        self._key = derive_key(settings.data_key or settings.signing_key(), b"yugong integrity v1")
        self._files: dict[str, str] | None = None
        self.tampered: set[str] = set()  # paths found wrong by the last check
        self.last: Report | None = None

    # The manifest --------------------------------------------------------------------------

    def _mac(self, files: dict[str, str]) -> str:
        body = orjson.dumps(files, option=orjson.OPT_SORT_KEYS)
        return hmac.new(self._key, body, hashlib.sha256).hexdigest()

    def build(self) -> int:
        """Hash the package now and write the manifest; returns the number of files."""
        files = scan(self.root)
        doc = {"version": 1, "root": str(self.root), "files": files, "mac": self._mac(files)}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
        os.replace(tmp, self.path)
        self._files = files
        log.info("integrity manifest of %d files written to %s", len(files), self.path)
        return len(files)

    def load(self) -> dict[str, str]:
        """The manifest's files, after checking its own HMAC; ``ValueError`` when it was
        changed, made under another key, or cannot be read."""
        try:
            doc: dict[str, Any] = orjson.loads(self.path.read_bytes())
            files = doc["files"]
            mac = doc["mac"]
        except (OSError, orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"integrity manifest {self.path} cannot be read: {exc}") from exc
        if not isinstance(files, dict) or not hmac.compare_digest(str(mac), self._mac(files)):
            raise ValueError(f"integrity manifest {self.path} was altered (its HMAC is wrong)")
        self._files = files
        return files

    def ensure(self) -> None:
        """Build the manifest at the first start; later starts check against it."""
        if not self.path.exists():
            self.build()

    # Checking ------------------------------------------------------------------------------

    def check(self) -> Report:
        """Compare the package with the manifest; record a ``tampered_file`` event per
        file newly found to differ (one alarm per file, not one per check)."""
        known = set(self.tampered)
        try:
            expected = self.load()
        except ValueError as exc:
            report = Report(0, manifest_error=str(exc))
            self._record(str(self.path), "manifest", str(exc))
        else:
            actual = scan(self.root)
            report = Report(
                len(actual),
                changed=sorted(p for p in expected if p in actual and actual[p] != expected[p]),
                missing=sorted(p for p in expected if p not in actual),
                extra=sorted(p for p in actual if p not in expected),
            )
            for path, what in report.problems():
                if path not in known:
                    self._record(path, what, f"{path} was {what} since the manifest was built")
        self.tampered = {p for p, _ in report.problems()}
        self.last = report
        return report

    def asset_ok(self, relpath: str, content: bytes) -> bool:
        """Whether ``content`` of the web asset ``relpath`` matches the manifest; a
        mismatch is recorded (and the caller must not serve it)."""
        files = self._files
        if files is None:
            try:
                files = self.load()
            except ValueError as exc:
                self._record(str(self.path), "manifest", str(exc))
                return False
        expected = files.get(relpath)
        ok = expected is not None and hmac.compare_digest(
            expected, hashlib.sha256(content).hexdigest()
        )
        if not ok:
            self.tampered.add(relpath)
            what = "changed" if expected is not None else "added"
            self._record(relpath, what, f"web asset {relpath} was {what}; not served")
        return ok

    def _record(self, subject: str, what: str, message: str) -> None:
        log.critical("integrity: %s", message)
        if self.events is not None:
            self.events.record(
                "tampered_file",
                "critical",
                subject=subject[:128],
                detail={"what": what, "message": message},
            )


__all__ = ["MANIFEST_FILE", "WEB_ASSETS", "Integrity", "Report", "package_root", "scan"]
