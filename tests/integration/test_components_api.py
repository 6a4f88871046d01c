"""The component library through the platform's API: catalog, invocation on literal values
and on stored series (units from the thing model, tenant scope), and clear refusals."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.integration.conftest import Api, TenantWorld, make_settings
from yugong.api.app import create_app

T0_MS = 1_790_000_000_000
N = 200
V1 = "/api/v1"


class World:
    def __init__(self, api: Api, a: TenantWorld, b: TenantWorld, temps: np.ndarray) -> None:
        self.api, self.a, self.b, self.temps = api, a, b, temps

    def invoke(self, name: str, inputs: dict[str, Any], expect: int = 200, who: Any = None) -> Any:
        headers = (who or self.a).headers
        path = f"{V1}/components/{name}:invoke"
        return self.api.call("POST", path, headers, expect, json={"inputs": inputs})

    def series(self, prop: str = "temperature", device: int | None = None, **kw: Any) -> dict:
        spec = {"device": device or self.a.device_id, "property": prop, "start": T0_MS}
        return {"series": {**spec, "end": T0_MS + N * 1000, **kw}}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp: Path = tmp_path_factory.mktemp("components")
    settings = make_settings(tmp, mqtt_embedded=False)
    with TestClient(create_app(settings)) as client:
        api = Api(client)
        root = api.admin()
        a, b = api.setup_tenant(root, "Comp A"), api.setup_tenant(root, "Comp B")
        temps = 80 + 5 * np.sin(np.arange(N) / 7.0)
        rows = [
            {"ts": T0_MS + i * 1000, "values": {"temperature": float(t), "count": i, "label": "x"}}
            for i, t in enumerate(temps)
        ]
        api.call("POST", f"{V1}/{a.token}/telemetry", json=rows)

        def stored() -> bool:
            params = {"keys": "temperature", "start": T0_MS, "end": T0_MS + N * 1000}
            body = api.call(
                "GET", f"{V1}/devices/{a.device_id}/timeseries", a.headers, params=params
            )
            return len(body["series"][0]["ts"]) == N

        api.wait_for(stored)
        yield World(api, a, b, temps)


def test_catalog_lists_searches_and_details(world: World) -> None:
    call = world.api.call
    h = world.a.headers
    everything = call("GET", f"{V1}/components", h)
    names = [c["name"] for c in everything["components"]]
    assert names == sorted(names) and len(names) >= 30
    assert {"spc.capability", "vibration.envelope_spectrum", "steam.properties"} <= set(names)
    assert everything["categories"] == ["mechanism", "statistical", "data-driven", "hybrid"]
    mech = call("GET", f"{V1}/components", h, params={"category": "mechanism"})["components"]
    assert mech and {c["category"] for c in mech} == {"mechanism"}
    energy = call("GET", f"{V1}/components", h, params={"industry": "energy"})["components"]
    assert "energy.tariff_cost" in [c["name"] for c in energy]
    assert all("energy" in c["industries"] for c in energy)
    found = call("GET", f"{V1}/components", h, params={"q": "bearing defect"})["components"]
    assert "vibration.bearing_frequencies" in [c["name"] for c in found]
    bad = call("GET", f"{V1}/components", h, 422, params={"category": "magic"})
    assert "not one of mechanism" in bad["detail"]

    latest = call("GET", f"{V1}/components/energy.power_factor", h)
    assert latest["versions"] == ["1.0.0"] and latest["references"]
    assert latest["inputs"]["properties"]["p"]["x-unit"] == "kW"
    one = call("GET", f"{V1}/components/energy.power_factor/1.0.0", h)
    assert one["documentation"] == latest["documentation"]
    assert "no component named" in call("GET", f"{V1}/components/no.such", h, 404)["detail"]
    missing = call("GET", f"{V1}/components/energy.power_factor/9.0.0", h, 404)
    assert "has no version '9.0.0'" in missing["detail"]


def test_invoke_on_literal_values(world: World) -> None:
    # The power triangle 3-4-5: P = 3 kW, Q = 4 kvar -> S = 5 kVA, PF = 0.6.
    out = world.invoke(
        "energy.power_factor/1.0.0",
        {"p": {"value": 3000, "unit": "W"}, "q": {"value": 4000, "unit": "var"}},
    )
    assert out["component"] == "energy.power_factor" and out["elapsed_ms"] >= 0
    assert out["outputs"]["pf"] == pytest.approx(0.6)
    assert out["outputs"]["s"] == pytest.approx(5.0)
    refused = world.invoke("energy.power_factor/1.0.0", {"p": [1, 2], "q": "x"}, 422)
    assert refused["errors"][0]["loc"] == "inputs.q"
    body = {"inputs": {"p": 1, "q": 1}, "extra": 1}
    path = f"{V1}/components/energy.power_factor/1.0.0:invoke"
    assert (
        "unknown key extra"
        in world.api.call("POST", path, world.a.headers, 422, json=body)["detail"]
    )


def test_invoke_on_stored_series(world: World) -> None:
    temps = world.temps
    stored = world.invoke("vibration.features/1.0.0", {"x": world.series()})["outputs"]
    literal = world.invoke("vibration.features/1.0.0", {"x": temps.tolist()})["outputs"]
    assert stored == pytest.approx(literal)
    assert stored["peak_to_peak"] == pytest.approx(np.ptp(temps))

    # Timestamps of the same series, in epoch seconds: 200 s into 10 s buckets.
    out = world.invoke(
        "signal.resample/1.0.0",
        {"time": world.series(field="time"), "values": world.series(), "interval": 10},
    )["outputs"]
    assert out["count"] == [10] * 20
    assert out["values"] == pytest.approx(temps.reshape(20, 10).mean(axis=1))
    assert out["time"][0] == pytest.approx(T0_MS / 1000)


def test_stored_units_convert(world: World) -> None:
    temps = world.temps
    fixed = {"hot_out": 60, "cold_in": 20, "cold_out": 50}
    # The thing model says °C, the component wants degC: the values pass unchanged.
    stored = world.invoke("heat_exchanger.lmtd/latest", {"hot_in": world.series(), **fixed})
    literal = world.invoke("heat_exchanger.lmtd/latest", {"hot_in": temps.tolist(), **fixed})
    assert stored["outputs"]["lmtd"] == pytest.approx(literal["outputs"]["lmtd"])
    # A unit given beside the series overrides the thing model's: read as °F, converted.
    as_f = {**world.series(), "unit": "degF"}
    hot = {"value": temps.tolist(), "unit": "degF"}
    fixed_f = {"hot_out": 20, "cold_in": 0, "cold_out": 10}
    stored = world.invoke("heat_exchanger.lmtd/latest", {"hot_in": as_f, **fixed_f})
    literal = world.invoke("heat_exchanger.lmtd/latest", {"hot_in": hot, **fixed_f})
    assert stored["outputs"]["lmtd"] == pytest.approx(literal["outputs"]["lmtd"])
    assert stored["outputs"]["dt1"][0] == pytest.approx((temps[0] - 32) / 1.8 - 10)


@pytest.mark.parametrize(
    ("inputs", "status", "loc", "words"),
    [
        ({"p": "count", "q": 0}, 422, "inputs.p", "missing unit"),
        ({"p": "label", "q": 0}, 422, "inputs.p", "not numbers"),
        ({"p": "nothing", "q": 0}, 404, None, "has no property 'nothing'"),
        ({"p": {"end": T0_MS - 1}, "q": 0}, 422, "inputs.p", "end must be after start"),
        ({"p": {"start": 0, "end": 1000}, "q": 0}, 422, "inputs.p", "no samples"),
        ({"p": {"field": "speed"}, "q": 0}, 422, "inputs.p", "not one of value, time"),
        ({"p": {"device": 999_999}, "q": 0}, 404, None, "device 999999 not found"),
        ({"p": {"window": 3}, "q": 0}, 422, "inputs.p", "unknown key window"),
    ],
)
def test_bad_series_references(
    world: World, inputs: dict, status: int, loc: str | None, words: str
) -> None:
    p = inputs["p"]
    series = world.series(p) if isinstance(p, str) else world.series(**p)
    problem = world.invoke("energy.power_factor/1.0.0", {"p": series, "q": 0}, status)
    assert words in problem["detail"], problem["detail"]
    if loc:
        assert problem["errors"][0]["loc"] == loc


def test_series_stay_inside_their_tenant(world: World) -> None:
    # Tenant B names tenant A's device: as if it did not exist.
    problem = world.invoke("vibration.features/1.0.0", {"x": world.series()}, 404, who=world.b)
    assert "not found" in problem["detail"]
    assert str(round(world.temps[0], 3)) not in str(problem)
