"""Products in the console: the thing model as tables, a property edited through the form
(bad input shown beside its field), the raw TSL editor, import and export of a TSL file
(round trip to equal JSON), and who may do what."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from tests.integration.conftest import USER_PASSWORD, Api, TenantWorld, make_settings
from tests.web.test_console_access import CHEAP, csrf, sign_in
from yugong.api.app import create_app

HX = {"HX-Request": "true"}
PUMP_TSL: dict[str, Any] = {
    "schema": "https://iotx-tsl.oss-ap-southeast-1.aliyuncs.com/schema.json",
    "profile": {"productKey": "pump-x"},
    "properties": [
        {
            "identifier": "flow",
            "name": "Flow",
            "accessMode": "r",
            "desc": "kept as imported",
            "dataType": {"type": "float", "specs": {"min": "0", "max": "500", "unit": "m3/h"}},
        }
    ],
    "events": [{"identifier": "fault", "name": "Fault", "type": "alert", "outputData": []}],
    "services": [],
}


class Env:
    def __init__(self, app: Any, api: Api, world: TenantWorld, other: TenantWorld) -> None:
        self.app, self.api, self.world, self.other = app, api, world, other

    def browser(self, username: str) -> TestClient:
        b = TestClient(self.app, base_url="https://testserver")
        assert sign_in(b, username, USER_PASSWORD).status_code == 303
        b.headers.update({**csrf(b), **HX})
        return b


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    app = create_app(make_settings(tmp_path_factory.mktemp("products"), mqtt_embedded=False))
    with TestClient(app, base_url="https://testserver") as client:
        app.state.security.passwords.hasher = PasswordHasher(**CHEAP)
        api = Api(client)
        root = api.admin()
        world = api.setup_tenant(root, "Product Works")
        other = api.setup_tenant(root, "Product Other")
        for name, role in (("p-eng", "engineer"), ("p-viewer", "viewer"), ("p-op", "operator")):
            body = {
                "username": name,
                "password": USER_PASSWORD,
                "role": role,
                "tenant_id": world.tenant_id,
            }
            api.call("POST", "/api/v1/users", root, 201, json=body)
        yield Env(app, api, world, other)


def _tsl(env: Env, product_id: int) -> dict[str, Any]:
    got: dict[str, Any] = env.api.call(
        "GET", f"/api/v1/products/{product_id}/tsl", env.world.headers
    )
    return got


def test_product_list_and_model_tables(env: Env) -> None:
    b = env.browser("p-viewer")
    listing = b.get("/console/products", headers={"HX-Request": ""})
    assert listing.status_code == 200 and "sensor" in listing.text
    page = b.get(f"/console/products/{env.world.product_id}", headers={"HX-Request": ""})
    assert page.status_code == 200
    assert 'data-property="temperature"' in page.text and "°C" in page.text
    assert 'id="prop-form"' not in page.text  # a viewer sees no editor
    other = b.get(f"/console/products/{env.other.product_id}", headers={"HX-Request": ""})
    assert other.status_code == 404


def test_edit_a_property_through_the_form(env: Env) -> None:
    b = env.browser("p-eng")
    pid = env.world.product_id
    form = b.get(f"/console/products/{pid}?edit=temperature")
    assert 'value="temperature"' in form.text and 'name="original"' in form.text
    saved = b.post(
        f"/console/products/{pid}/properties",
        data={
            "original": "temperature",
            "identifier": "temperature",
            "name": "Temperature",
            "type": "float",
            "unit": "K",
            "min": "0",
            "max": "500",
            "step": "0.5",
            "access": "r",
        },
    )
    assert saved.status_code == 200 and "Temperature" in saved.text
    prop = next(p for p in _tsl(env, pid)["properties"] if p["identifier"] == "temperature")
    assert prop["name"] == "Temperature"
    assert prop["dataType"] == {
        "type": "float",
        "specs": {"min": 0, "max": 500, "step": 0.5, "unit": "K"},
    }
    added = b.post(
        f"/console/products/{pid}/properties",
        data={
            "identifier": "state",
            "name": "State",
            "type": "enum",
            "access": "rw",
            "enum": "0=idle\n1=busy",
        },
    )
    assert 'data-property="state"' in added.text
    state = next(p for p in _tsl(env, pid)["properties"] if p["identifier"] == "state")
    assert state["dataType"] == {"type": "enum", "specs": {"0": "idle", "1": "busy"}}
    assert state["accessMode"] == "rw"
    removed = b.post(f"/console/products/{pid}/properties/state/delete")
    assert removed.status_code == 200 and 'data-property="state"' not in removed.text
    assert "state" not in [p["identifier"] for p in _tsl(env, pid)["properties"]]


def test_bad_input_is_shown_beside_its_field(env: Env) -> None:
    b = env.browser("p-eng")
    pid = env.world.product_id
    before = _tsl(env, pid)
    bad = b.post(
        f"/console/products/{pid}/properties",
        data={
            "identifier": "pressure",
            "name": "Pressure",
            "type": "float",
            "min": "10",
            "max": "1",
            "access": "r",
        },
    )
    assert bad.status_code == 200
    assert 'id="err-min"' in bad.text and "must be &lt;= max" in bad.text
    assert 'id="prop-min" name="min" value="10"' in bad.text  # the input is kept
    assert 'aria-invalid="true" aria-describedby="err-min"' in bad.text
    wrong_id = b.post(
        f"/console/products/{pid}/properties",
        data={"identifier": "bad id!", "name": "X", "type": "int", "access": "r"},
    )
    assert 'id="err-identifier"' in wrong_id.text
    dup = b.post(
        f"/console/products/{pid}/properties",
        data={"identifier": "running", "name": "Again", "type": "int", "access": "r"},
    )
    assert 'id="err-identifier"' in dup.text and "duplicate" in dup.text
    labels = b.post(
        f"/console/products/{pid}/properties",
        data={"identifier": "s2", "name": "S2", "type": "enum", "access": "r", "enum": "idle"},
    )
    assert 'id="err-enum"' in labels.text
    assert _tsl(env, pid) == before  # nothing changed


def test_raw_tsl_editor_validates_like_the_api(env: Env) -> None:
    b = env.browser("p-eng")
    pid = env.world.product_id
    broken = b.post(f"/console/products/{pid}/tsl", data={"document": "{not json"})
    assert 'id="raw-errors"' in broken.text
    invalid = {"properties": [{"identifier": "x", "name": "X", "dataType": {"type": "nope"}}]}
    refused = b.post(f"/console/products/{pid}/tsl", data={"document": json.dumps(invalid)})
    assert "properties[0].dataType.type" in refused.text
    doc = _tsl(env, pid)
    doc["properties"].append(
        {"identifier": "humidity", "name": "Humidity", "dataType": {"type": "int"}}
    )
    ok = b.post(f"/console/products/{pid}/tsl", data={"document": json.dumps(doc)})
    assert 'data-property="humidity"' in ok.text
    assert _tsl(env, pid) == doc


def test_import_and_export_round_trip(env: Env) -> None:
    b = env.browser("p-eng")
    upload = {"file": ("pump.json", json.dumps(PUMP_TSL).encode(), "application/json")}
    made = b.post("/console/products/import", files=upload, data={"name": "Pump X"})
    assert made.status_code == 204
    target = made.headers["HX-Redirect"]
    pid = int(target.rsplit("/", 1)[1])
    exported = b.get(f"/console/products/{pid}/tsl.json")
    assert exported.status_code == 200
    assert exported.headers["content-disposition"] == 'attachment; filename="pump-x.tsl.json"'
    assert exported.json() == PUMP_TSL
    # The same key again replaces the model of that product.
    changed = {**PUMP_TSL, "events": []}
    upload = {"file": ("pump.json", json.dumps(changed).encode(), "application/json")}
    again = b.post("/console/products/import", files=upload)
    assert again.headers["HX-Redirect"] == target
    assert b.get(f"/console/products/{pid}/tsl.json").json() == changed
    bad = {"file": ("x.json", b'{"properties": [{"identifier": 1}]}', "application/json")}
    refused = b.post("/console/products/import", files=bad)
    assert refused.status_code == 200 and 'role="alert"' in refused.text
    assert "profile.productKey" in refused.text or "properties[0]" in refused.text
    not_json = {"file": ("x.json", b"nope", "application/json")}
    assert "JSON" in b.post("/console/products/import", files=not_json).text


@pytest.mark.parametrize("user", ["p-viewer", "p-op"])
def test_readers_may_not_change_models(env: Env, user: str) -> None:
    b = env.browser(user)
    pid = env.world.product_id
    before = _tsl(env, pid)
    data = {"identifier": "z", "name": "Z", "type": "int", "access": "r"}
    assert b.post(f"/console/products/{pid}/properties", data=data).status_code == 403
    assert b.post(f"/console/products/{pid}/properties/running/delete").status_code == 403
    raw = {"document": json.dumps(before)}
    assert b.post(f"/console/products/{pid}/tsl", data=raw).status_code == 403
    upload = {"file": ("p.json", json.dumps(PUMP_TSL).encode(), "application/json")}
    assert b.post("/console/products/import", files=upload).status_code == 403
    assert b.get(f"/console/products/{pid}/tsl.json").status_code == 200  # reading is fine
    assert _tsl(env, pid) == before


def test_another_tenants_product_cannot_be_changed(env: Env) -> None:
    b = env.browser("p-eng")
    data = {"identifier": "z", "name": "Z", "type": "int", "access": "r"}
    pid = env.other.product_id
    assert b.post(f"/console/products/{pid}/properties", data=data).status_code == 404
    assert b.get(f"/console/products/{pid}/tsl.json").status_code == 404
