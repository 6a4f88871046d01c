"""The component library in the console: catalog search, a component's page, and its "try
it" form on literal values (power factor of 3 kW and 4 kvar is 0.6), a wrong input shown
beside that input, array outputs as charts, and a stored series as an input."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from tests.integration.conftest import USER_PASSWORD, Api, TenantWorld, make_settings
from tests.web.test_console_access import CHEAP, csrf, sign_in
from yugong.api.app import create_app

HX = {"HX-Request": "true"}
SAMPLES = [20.0, 22.0, 24.0, 22.0, 20.0, 18.0, 16.0, 18.0]


class Env:
    def __init__(self, app: Any, world: TenantWorld, other: TenantWorld) -> None:
        self.app, self.world, self.other = app, world, other

    def browser(self) -> TestClient:
        b = TestClient(self.app, base_url="https://testserver")
        assert sign_in(b, "k-viewer", USER_PASSWORD).status_code == 303
        b.headers.update(csrf(b))
        return b


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    app = create_app(make_settings(tmp_path_factory.mktemp("components"), mqtt_embedded=False))
    with TestClient(app, base_url="https://testserver") as client:
        app.state.security.passwords.hasher = PasswordHasher(**CHEAP)
        api = Api(client)
        root = api.admin()
        world = api.setup_tenant(root, "Component Works")
        other = api.setup_tenant(root, "Component Other")
        api.call(
            "POST",
            "/api/v1/users",
            root,
            201,
            json={
                "username": "k-viewer",
                "password": USER_PASSWORD,
                "role": "viewer",
                "tenant_id": world.tenant_id,
            },
        )
        now = int(time.time() * 1000)
        rows = [
            {"ts": now - 600_000 + i * 1000, "values": {"temperature": v}}
            for i, v in enumerate(SAMPLES)
        ]
        api.call("POST", f"/api/v1/{world.token}/telemetry", json=rows)
        api.call(
            "POST",
            f"/api/v1/{other.token}/telemetry",
            json=[{"ts": now, "values": {"temperature": 1.0}}],
        )
        yield Env(app, world, other)


def _value(html: str, output: str) -> float:
    row = re.search(rf'data-output="{output}".*?data-value="([^"]+)"', html, re.S)
    assert row, f"no value for {output}"
    return float(row.group(1))


def test_catalog_search(env: Env) -> None:
    b = env.browser()
    page = b.get("/console/components")
    assert page.status_code == 200 and 'data-component="energy.power_factor"' in page.text
    found = b.get("/console/components", params={"q": "power factor"}, headers=HX)
    assert 'data-component="energy.power_factor"' in found.text
    assert 'data-component="spc.capability"' not in found.text
    stats = b.get("/console/components", params={"category": "statistical"}, headers=HX)
    assert 'data-component="spc.capability"' in stats.text
    assert 'data-component="energy.power_factor"' not in stats.text
    pharma = b.get("/console/components", params={"industry": "pharma"}, headers=HX)
    assert 'data-component="spc.capability"' in pharma.text
    assert 'data-component="vibration.spectrum"' not in pharma.text


def test_component_page(env: Env) -> None:
    page = env.browser().get("/console/components/energy.power_factor")
    assert page.status_code == 200
    text = page.text
    assert "IEEE Std 1459" in text  # references
    assert "kvar" in text and "kVA" in text  # units of inputs and outputs
    assert 'name="in.p"' in text and 'name="in.q"' in text
    assert env.browser().get("/console/components/no.such").status_code == 404


def test_try_with_literal_values(env: Env) -> None:
    b = env.browser()
    r = b.post(
        "/console/components/energy.power_factor/1.0.0/try",
        data={"in.p": "3", "in.q": "4"},
        headers=HX,
    )
    assert r.status_code == 200
    assert _value(r.text, "pf") == pytest.approx(0.6)
    assert _value(r.text, "s") == pytest.approx(5.0)
    # A unit given beside the value is converted: 3000 W is 3 kW.
    r = b.post(
        "/console/components/energy.power_factor/1.0.0/try",
        data={"in.p": "3000", "in.p.unit": "W", "in.q": "4"},
        headers=HX,
    )
    assert _value(r.text, "pf") == pytest.approx(0.6)


def test_a_wrong_input_shows_its_error(env: Env) -> None:
    b = env.browser()
    r = b.post(
        "/console/components/energy.power_factor/1.0.0/try",
        data={"in.p": "abc", "in.q": "4"},
        headers=HX,
    )
    assert r.status_code == 200 and 'id="err-in-p"' in r.text and 'id="err-in-q"' not in r.text
    r = b.post(
        "/console/components/vibration.spectrum/1.0.0/try",
        data={"in.x": "1, 2, 3, 4", "in.sample_rate": "100"},
        headers=HX,
    )
    assert 'id="err-in-x"' in r.text and "needs at least 16 samples" in r.text
    assert "data-output" not in r.text
    r = b.post("/console/components/energy.power_factor/1.0.0/try", data={"in.q": "4"}, headers=HX)
    assert 'id="err-in-p"' in r.text  # missing


def test_array_outputs_are_charted_against_frequency(env: Env) -> None:
    b = env.browser()
    x = ", ".join(str((i % 4) - 1.5) for i in range(64))
    r = b.post(
        "/console/components/vibration.spectrum/1.0.0/try",
        data={"in.x": x, "in.sample_rate": "100"},
        headers=HX,
    )
    charts = re.findall(r"data-chart='([^']+)'", r.text)
    assert len(charts) == 1
    chart = json.loads(charts[0].replace("&#34;", '"'))
    assert chart["name"] == "amplitude" and chart["xname"] == "frequency"
    assert chart["xunit"] == "Hz" and len(chart["x"]) == len(chart["y"])


def test_a_stored_series_as_input(env: Env) -> None:
    b = env.browser()
    page = b.get("/console/components/vibration.features")
    pick = f"{env.world.device_id}:temperature"
    assert f'value="{pick}"' in page.text
    assert f'value="{env.other.device_id}:temperature"' not in page.text  # tenant scope
    r = b.post(
        "/console/components/vibration.features/1.0.0/try",
        data={"in.x.mode": "series", "in.x.series": pick, "in.x.range": "3600"},
        headers=HX,
    )
    mean = sum(SAMPLES) / len(SAMPLES)
    rms = (sum((v - mean) ** 2 for v in SAMPLES) / len(SAMPLES)) ** 0.5
    assert _value(r.text, "rms") == pytest.approx(rms, rel=1e-4)
    # Another tenant's device is refused beside the input.
    r = b.post(
        "/console/components/vibration.features/1.0.0/try",
        data={
            "in.x.mode": "series",
            "in.x.series": f"{env.other.device_id}:temperature",
            "in.x.range": "3600",
        },
        headers=HX,
    )
    assert "data-output" not in r.text and 'role="alert"' in r.text
