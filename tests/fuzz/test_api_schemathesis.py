"""Schemathesis against the live OpenAPI document of a running platform.

The whole platform runs on a real socket; every operation of its OpenAPI document is called
with generated requests as a tenant admin of tenant A. Checks: no 5xx, and responses match
the declared schema. Afterwards the server still answers, and tenant B's data (device list,
latest values, a product's thing model) is byte-for-byte what it was before.
"""

from __future__ import annotations

import itertools
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import hypothesis.strategies as st
import pytest
from argon2 import PasswordHasher
from argon2.profiles import CHEAPEST
from hypothesis import HealthCheck, given, settings
from schemathesis import BaseSchema, Case, GenerationMode
from schemathesis.checks import not_a_server_error, response_schema_conformance
from schemathesis.openapi import from_url

from tests.conftest import TEMPERATURE_MODE_TSL, free_port
from yugong.api.app import create_app
from yugong.core.settings import Settings
from yugong.server import BackgroundServer

ADMIN_PASSWORD = "Root-Pass-2026!x"
PASSWORD = "Plain-Pass-2026!y"
EXAMPLES = 20  # per operation: the whole run stays well under 90 s on two cores


class Live:
    """The running platform, its root admin, tenant A (fuzzed) and tenant B (watched)."""

    def __init__(self, srv: BackgroundServer) -> None:
        self.srv = srv
        self.url = srv.url
        self.http = httpx.Client(base_url=srv.url, timeout=30)
        self.root = self.login(srv.settings.admin_username, ADMIN_PASSWORD)
        self._names = itertools.count()
        self.tenant_a = self.tenant("Fuzz A")
        self.tenant_b = self.tenant("Fuzz B")
        self.headers = self.tenant_admin(self.tenant_a)
        b = self.tenant_admin(self.tenant_b)
        self.b_headers = b
        self.populate(self.headers)
        self.product_b, self.device_b = self.populate(b)
        self.before: dict[str, bytes] = {}

    def call(self, method: str, path: str, headers: dict[str, str], expect: int, **kw: Any) -> Any:
        r = self.http.request(method, path, headers=headers, **kw)
        assert r.status_code == expect, f"setup {method} {path}: {r.status_code} {r.text}"
        return r.json() if r.content else None

    def login(self, username: str, password: str) -> dict[str, str]:
        body = self.call(
            "POST", "/api/v1/auth/login", {}, 200, json={"username": username, "password": password}
        )
        return {"Authorization": f"Bearer {body['access_token']}"}

    def tenant(self, name: str) -> int:
        return int(self.call("POST", "/api/v1/tenants", self.root, 201, json={"name": name})["id"])

    def tenant_admin(self, tenant: int) -> dict[str, str]:
        name = f"fuzz-admin-{next(self._names)}"
        body = {"username": name, "password": PASSWORD, "role": "tenant_admin", "tenant_id": tenant}
        self.call("POST", "/api/v1/users", self.root, 201, json=body)
        return self.login(name, PASSWORD)

    def populate(self, h: dict[str, str]) -> tuple[int, int]:
        """An asset, a product, a device with three temperatures; (product, device)."""
        self.call("POST", "/api/v1/assets", h, 201, json={"name": "Site", "kind": "site"})
        product = self.call("POST", "/api/v1/products/import", h, 201, json=TEMPERATURE_MODE_TSL)
        device = self.call(
            "POST", "/api/v1/devices", h, 201, json={"name": "dev-1", "product_id": product["id"]}
        )
        for i, value in enumerate((20.5, 21.0, 22.25)):
            sample = {"ts": 1_700_000_000_000 + i * 1000, "values": {"temperature": value}}
            self.call("POST", f"/api/v1/{device['token']}/telemetry", {}, 200, json=sample)
        return int(product["id"]), int(device["id"])

    def ensure_caller(self) -> None:
        """Generated requests may end the fuzzing admin's sessions, change its role or delete
        it: then carry on with a fresh tenant admin of A."""
        r = self.http.get("/api/v1/auth/me", headers=self.headers)
        if r.status_code != 200 or r.json().get("role") != "tenant_admin":
            self.headers = self.tenant_admin(self.tenant_a)

    def snapshot_b(self) -> dict[str, bytes]:
        paths = (
            "/api/v1/devices",
            f"/api/v1/devices/{self.device_b}/latest",
            f"/api/v1/products/{self.product_b}/tsl",
            f"/api/v1/products/{self.product_b}",
            "/api/v1/assets",
        )
        out = {}
        for path in paths:
            r = self.http.get(path, headers=self.b_headers)
            assert r.status_code == 200, f"{path}: {r.status_code} {r.text}"
            out[path] = r.content
        return out


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    data_dir: Path = tmp_path_factory.mktemp("fuzz")
    cfg = Settings(
        data_dir=data_dir,
        secret_key="f" * 40,
        admin_password=ADMIN_PASSWORD,
        http_port=free_port(),
        mqtt_embedded=False,
        ingest_flush_ms=20,
        device_offline_after_s=3600,  # B's device stays online throughout
    )
    with BackgroundServer(cfg) as srv:
        # argon2 at its cheapest: the fuzzer may force new sign-ins.
        srv.platform.security.passwords.hasher = PasswordHasher.from_parameters(CHEAPEST)
        world = Live(srv)
        try:
            yield world
        finally:
            world.http.close()


def _operations() -> list[tuple[str, str]]:
    """(method, path) of every operation in the OpenAPI document, read from the app at
    collection time (the document is built from the routes; nothing is started)."""
    app = create_app(Settings(data_dir=Path(tempfile.gettempdir()), secret_key="c" * 40))
    doc = app.openapi()
    return [
        (m.upper(), path)
        for path, ops in doc["paths"].items()
        for m, op in ops.items()
        if not _live_stream(op)
    ]


def _live_stream(op: dict[str, Any]) -> bool:
    """A Server-Sent Events stream never ends by itself, so a generated request would wait
    forever; its filters and refusals are tested in tests/integration/test_alarms_api.py."""
    content = op.get("responses", {}).get("200", {}).get("content", {})
    return list(content) == ["text/event-stream"]


OPERATIONS = _operations()


@pytest.fixture(scope="module")
def api_schema(live: Live) -> BaseSchema:
    return from_url(f"{live.url}/api/v1/openapi.json")


def test_tenant_b_before_fuzzing(live: Live) -> None:
    """Takes tenant B's picture; runs first (pytest keeps the order of the module)."""
    deadline = time.monotonic() + 10
    while True:  # the writer flushes every 20 ms
        r = live.http.get(f"/api/v1/devices/{live.device_b}/latest", headers=live.b_headers)
        assert r.status_code == 200, r.text
        values = {v["property"]: v["value"] for v in r.json()["values"]}
        if values.get("temperature") == 22.25 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert values == {"temperature": 22.25, "mode": None}
    # Write the devices' last-seen times now, not in the middle of the fuzzing.
    live.srv.platform.directory.flush_seen()
    live.before = live.snapshot_b()


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_api_fuzz(api_schema: BaseSchema, live: Live, method: str, path: str) -> None:
    operation = api_schema[path][method]
    cases = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    )

    @given(case=cases)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case: Case) -> None:
        try:
            case.call_and_validate(
                base_url=live.url,
                headers=live.headers,
                checks=[not_a_server_error, response_schema_conformance],
            )
        finally:
            live.ensure_caller()

    fuzz()


def test_server_still_answers_and_tenant_b_is_intact(live: Live) -> None:
    """Runs after the fuzzing: the server answers and B's data is byte-for-byte the same."""
    assert live.before, "test_tenant_b_before_fuzzing must run first"
    health = live.http.get("/api/v1/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    live.ensure_caller()
    assert live.http.get("/api/v1/auth/me", headers=live.headers).status_code == 200
    after = live.snapshot_b()
    for path, body in live.before.items():
        assert after[path] == body, f"tenant B's {path} changed while A was fuzzed"
