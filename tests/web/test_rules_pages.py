"""The rules pages over HTTP: create a rule through the form (the spec the API would store),
a wrong field shows the API's own error beside that field, edit makes a new version, enable
and disable, roles (a viewer reads but gets no form and is refused a save), tenant scope,
and a dry-run that finds the would-be alarms in ingested history."""

from __future__ import annotations

import html
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


class World:
    def __init__(self, app: Any, api: Api, plant: TenantWorld, other: TenantWorld) -> None:
        self.app, self.api, self.plant, self.other = app, api, plant, other

    def browser(self, username: str) -> TestClient:
        b = TestClient(self.app, base_url="https://testserver")
        assert sign_in(b, username, USER_PASSWORD).status_code == 303
        return b


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    settings = make_settings(tmp_path_factory.mktemp("rules-web"), mqtt_embedded=False)
    app = create_app(settings)
    with TestClient(app, base_url="https://testserver") as client:
        app.state.security.passwords.hasher = PasswordHasher(**CHEAP)
        api = Api(client)
        root = api.admin()
        plant = api.setup_tenant(root, "Rule Works")
        other = api.setup_tenant(root, "Rule Elsewhere")
        for name, role in (("r-eng", "engineer"), ("r-view", "viewer")):
            body = {
                "username": name,
                "password": USER_PASSWORD,
                "role": role,
                "tenant_id": plant.tenant_id,
            }
            api.call("POST", "/api/v1/users", root, 201, json=body)
        yield World(app, api, plant, other)


def form(**kw: str) -> dict[str, str]:
    base = {
        "name": "Too hot",
        "target_kind": "product",
        "product": "sensor",
        "severity": "major",
        "kind": "threshold",
        "property": "temperature",
        "op": ">",
        "value": "80",
        "hysteresis": "2",
        "enabled": "on",
        # Fields of other kinds, as a browser sends them hidden: left out of the spec.
        "for": "",
        "window": "10m",
        "expression": "",
    }
    return {**base, **kw}


def post(b: TestClient, path: str, data: dict[str, str]) -> Any:
    return b.post(path, data=data, headers={**csrf(b), **HX})


def rule_named(world: World, name: str) -> dict[str, Any]:
    page = world.api.call("GET", "/api/v1/rules", world.plant.headers, params={"search": name})
    found = [r for r in page["items"] if r["name"] == name]
    assert found, f"no rule {name!r}"
    return dict(found[0])


def test_create_through_the_form_stores_the_apis_spec(world: World) -> None:
    b = world.browser("r-eng")
    page = b.get("/console/rules/new")
    assert page.status_code == 200 and 'name="kind"' in page.text
    # The pickers come from the registry.
    assert '<option value="sensor"' in page.text

    made = post(b, "/console/rules", form())
    assert made.status_code == 204, made.text
    rule = rule_named(world, "Too hot")
    assert made.headers["HX-Redirect"] == f"/console/rules/{rule['id']}"
    assert rule["spec"] == {
        "name": "Too hot",
        "description": "",
        "target": {"product": "sensor"},
        "severity": "major",
        "condition": {"kind": "threshold", "property": "temperature", "op": ">", "value": 80.0},
        "clear": {"hysteresis": 2.0, "manual": False},
        "actions": [],
        "enabled": True,
    }
    shown = b.get(f"/console/rules/{rule['id']}")
    assert shown.status_code == 200
    assert "property: temperature" in shown.text  # the YAML
    assert 'id="rule-form"' in shown.text and 'value="Too hot"' in shown.text
    listing = b.get("/console/rules")
    assert f'href="/console/rules/{rule["id"]}"' in listing.text and "阈值" in listing.text


def _error_beside(html: str, field: str) -> str:
    found = re.search(rf'data-error-for="{field}">([^<]*)<', html)
    assert found, f"no error beside {field}: {html[:2000]}"
    return found.group(1)


def test_a_wrong_field_shows_the_apis_error_beside_it(world: World) -> None:
    b = world.browser("r-eng")
    cases = [
        (form(name="Bad property", property="humidity"), "condition.property", "property"),
        (form(name="Bad value", value="hot"), "condition.value", "value"),
        (form(name="Bad duration", kind="sustained", **{"for": "soon"}), "condition.for", "for"),
        (form(name="Bad target", product="no-such-product"), "target.product", "target"),
        (
            form(name="Bad expression", kind="expression", expression="temperature >"),
            None,
            "expression",
        ),
        (form(name=""), "name", "name"),
    ]
    for data, loc, field in cases:
        answer = post(b, "/console/rules", data)
        assert answer.status_code == 200, answer.text
        shown = html.unescape(_error_beside(answer.text, field))
        # The API, given the spec the form built, says the same about the same field.
        api = world.api.client.post(
            "/api/v1/rules", headers=world.plant.headers, json=_spec_of(data)
        )
        assert api.status_code == 422, api.text
        errors = api.json()["errors"]
        wanted = [e["msg"] for e in errors if loc is None or e["loc"] == loc]
        assert wanted and shown == wanted[0], (field, shown, errors)
        # Nothing was stored.
        page = world.api.call(
            "GET", "/api/v1/rules", world.plant.headers, params={"search": data["name"] or "x"}
        )
        assert all(r["name"] != data["name"] for r in page["items"]) or data["name"] == ""


def _spec_of(data: dict[str, str]) -> dict[str, Any]:
    from yugong.web.pages.rules import build_spec

    return build_spec(data)


def test_a_duplicate_name_is_refused_beside_the_name(world: World) -> None:
    b = world.browser("r-eng")
    assert post(b, "/console/rules", form(name="Twice")).status_code == 204
    again = post(b, "/console/rules", form(name="Twice"))
    assert again.status_code == 200 and _error_beside(again.text, "name") == "already exists"


def test_edit_makes_a_new_version_and_keeps_actions(world: World) -> None:
    spec = {
        "name": "With action",
        "target": {"device": world.plant.device_id},
        "severity": "minor",
        "condition": {"kind": "threshold", "property": "temperature", "op": "<", "value": 0},
        "actions": [{"kind": "metric", "property": "cold"}],
    }
    made = world.api.call("POST", "/api/v1/rules", world.plant.headers, 201, json=spec)
    b = world.browser("r-eng")
    page = b.get(f"/console/rules/{made['id']}")
    assert f'<option value="{world.plant.device_id}" selected>' in page.text
    edited = post(
        b,
        f"/console/rules/{made['id']}",
        form(
            name="With action",
            target_kind="device",
            device=str(world.plant.device_id),
            kind="sustained",
            op="<",
            value="-5",
            **{"for": "5m"},
        ),
    )
    assert edited.status_code == 204, edited.text
    now = world.api.call("GET", f"/api/v1/rules/{made['id']}", world.plant.headers)
    assert now["version"] == 2
    assert now["spec"]["condition"] == {
        "kind": "sustained",
        "property": "temperature",
        "op": "<",
        "value": -5.0,
        "for": 300.0,
    }
    assert now["spec"]["actions"][0]["kind"] == "metric"
    history = b.get(f"/console/rules/{made['id']}").text
    assert history.count("<details>") == 2  # both versions listed
    bad = post(b, f"/console/rules/{made['id']}", form(name="With action", value=""))
    assert _error_beside(bad.text, "kind").endswith("needs a value")


def test_enable_and_disable(world: World) -> None:
    made = post(world.browser("r-eng"), "/console/rules", form(name="Switch me"))
    assert made.status_code == 204
    rule = rule_named(world, "Switch me")
    b = world.browser("r-eng")
    off = post(b, f"/console/rules/{rule['id']}/disable", {})
    assert off.status_code == 200 and 'class="status off"' in off.text
    assert f'hx-post="/console/rules/{rule["id"]}/enable"' in off.text
    assert rule_named(world, "Switch me")["enabled"] is False
    on = post(b, f"/console/rules/{rule['id']}/enable", {})
    assert 'class="status on"' in on.text
    assert rule_named(world, "Switch me")["enabled"] is True


def test_viewer_reads_but_may_not_write(world: World) -> None:
    rule = world.api.call(
        "POST",
        "/api/v1/rules",
        world.plant.headers,
        201,
        json=_spec_of(form(name="For viewers")),
    )
    v = world.browser("r-view")
    listing = v.get("/console/rules")
    assert listing.status_code == 200 and "For viewers" in listing.text
    assert "/console/rules/new" not in listing.text and "/disable" not in listing.text
    page = v.get(f"/console/rules/{rule['id']}")
    assert page.status_code == 200 and 'id="rule-form"' not in page.text
    assert "dry-run-form" in page.text  # reading includes dry-runs
    assert v.get("/console/rules/new").status_code == 403
    assert post(v, "/console/rules", form(name="Viewer's")).status_code == 403
    assert post(v, f"/console/rules/{rule['id']}", form(name="Viewer's")).status_code == 403
    assert post(v, f"/console/rules/{rule['id']}/disable", {}).status_code == 403
    assert rule_named(world, "For viewers")["enabled"] is True


def test_another_tenants_rule_is_not_found(world: World) -> None:
    theirs = world.api.call(
        "POST", "/api/v1/rules", world.other.headers, 201, json=_spec_of(form(name="Theirs"))
    )
    b = world.browser("r-eng")
    assert b.get(f"/console/rules/{theirs['id']}").status_code == 404
    assert post(b, f"/console/rules/{theirs['id']}/disable", {}).status_code == 404
    dry = b.get(
        f"/console/rules/{theirs['id']}/dry-run",
        params={"device": world.other.device_id, "range": "hour"},
    )
    assert dry.status_code == 404


def test_dry_run_finds_the_would_be_alarms_in_history(world: World) -> None:
    now = int(time.time() * 1000)
    # An hour ago, a minute a sample: 20 degrees, then 95 for five minutes, then 20 again.
    values = [95.0 if 20 <= i < 25 else 20.0 for i in range(40)]
    rows = [
        {"ts": now - 3_000_000 + i * 60_000, "values": {"temperature": v}}
        for i, v in enumerate(values)
    ]
    world.api.call("POST", f"/api/v1/{world.plant.token}/telemetry", json=rows)

    def stored() -> bool:
        body = world.api.call(
            "GET",
            f"/api/v1/devices/{world.plant.device_id}/history",
            world.plant.headers,
            params={"keys": "temperature", "start": now - 3_600_000, "end": now + 1000},
        )
        return sum(1 for _ in body["series"][0]["ts"]) >= 40

    world.api.wait_for(stored)
    b = world.browser("r-view")
    rule = rule_named(world, "Too hot")
    dry = b.get(
        f"/console/rules/{rule['id']}/dry-run",
        params={"device": world.plant.device_id, "range": "hour"},
    )
    assert dry.status_code == 200, dry.text
    body = dry.json()
    assert body["property"] == "temperature"
    assert body["history"] == f"/api/v1/devices/{world.plant.device_id}/history"
    assert len(body["alarms"]) == 1, body
    alarm = body["alarms"][0]
    assert alarm["raised_at"] == now - 3_000_000 + 20 * 60_000
    assert alarm["cleared_at"] == now - 3_000_000 + 25 * 60_000
    assert alarm["value"] == 95.0
    # Another device of the product has no history: nothing to mark.
    other = world.api.call(
        "POST",
        "/api/v1/devices",
        world.plant.headers,
        201,
        json={"name": "quiet-one", "product_id": world.plant.product_id},
    )
    quiet = b.get(
        f"/console/rules/{rule['id']}/dry-run", params={"device": other["id"], "range": "hour"}
    )
    assert quiet.json()["alarms"] == []
    page = b.get(f"/console/rules/{rule['id']}")
    assert f'<option value="{other["id"]}">quiet-one</option>' in page.text
    bad = b.get(f"/console/rules/{rule['id']}/dry-run", params={"device": 1, "range": "year"})
    assert bad.status_code == 422
