"""Console dashboards over HTTP: every role lists, composes and saves its own; a shared
dashboard is read-only to others of the tenant; refusals and bad widgets show their error in
the page; another tenant's dashboards are not found."""

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
from yugong.security.principal import Role

HX = {"HX-Request": "true"}


class World:
    def __init__(self, app: Any, api: Api, plant: TenantWorld, other: TenantWorld) -> None:
        self.app, self.api, self.plant, self.other = app, api, plant, other

    def browser(self, username: str) -> TestClient:
        b = TestClient(self.app, base_url="https://testserver")
        assert sign_in(b, username, USER_PASSWORD).status_code == 303
        return b


def user(role: Role) -> str:
    return f"d-{role.value.replace('_', '-')}"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    settings = make_settings(tmp_path_factory.mktemp("dash"), mqtt_embedded=False)
    app = create_app(settings)
    with TestClient(app, base_url="https://testserver") as client:
        app.state.security.passwords.hasher = PasswordHasher(**CHEAP)
        api = Api(client)
        root = api.admin()
        plant = api.setup_tenant(root, "Dash Works")
        other = api.setup_tenant(root, "Dash Other")
        for role in Role:
            if role is Role.PLATFORM_ADMIN:
                continue
            body = {
                "username": user(role),
                "password": USER_PASSWORD,
                "role": role.value,
                "tenant_id": plant.tenant_id,
            }
            api.call("POST", "/api/v1/users", root, 201, json=body)
        body = {"username": "d-other", "password": USER_PASSWORD, "role": "tenant_admin"}
        api.call("POST", "/api/v1/users", root, 201, json={**body, "tenant_id": other.tenant_id})
        yield World(app, api, plant, other)


def save(b: TestClient, **form: Any) -> Any:
    if "widgets" in form and not isinstance(form["widgets"], str):
        form["widgets"] = json.dumps(form["widgets"])
    return b.post("/console/dashboards/save", data=form, headers={**csrf(b), **HX})


def widgets(world: World) -> list[dict[str, Any]]:
    dev = world.plant.device_id
    return [
        {"kind": "trend", "device": dev, "properties": ["temperature"], "range": "1h"},
        {"kind": "value", "device": dev, "property": "temperature", "title": "Now"},
        {"kind": "alarms", "limit": 5},
    ]


@pytest.mark.parametrize("role", [r for r in Role if r is not Role.PLATFORM_ADMIN])
def test_every_role_composes_and_saves_its_own(world: World, role: Role) -> None:
    b = world.browser(user(role))
    listing = b.get("/console/dashboards")
    assert listing.status_code == 200 and 'href="/console/dashboards/new"' in listing.text
    editor = b.get("/console/dashboards/new")
    assert editor.status_code == 200 and 'id="dash-editor"' in editor.text
    assert "/static/dashboards.js" in editor.text
    # The device picker offers the tenant's devices, and only those.
    assert f'<option value="{world.plant.device_id}">' in editor.text
    assert f'<option value="{world.other.device_id}">' not in editor.text

    saved = save(b, name=f"Board of {role.value}", widgets=widgets(world))
    assert saved.status_code == 200, saved.text
    target = saved.headers["HX-Redirect"]
    assert target.startswith("/console/dashboards/")
    view = b.get(target)
    assert view.status_code == 200
    assert f"Board of {role.value}" in view.text
    assert 'data-dash-chart="trend"' in view.text
    assert f"/api/v1/devices/{world.plant.device_id}/history" in view.text
    assert f"/api/v1/devices/{world.plant.device_id}/latest?keys=temperature" in view.text
    assert "data-dash-alarms=" in view.text
    assert 'id="dash-edit"' in view.text
    assert b.get(f"{target}/edit").status_code == 200


def test_bad_widgets_show_an_error_naming_the_field(world: World) -> None:
    b = world.browser(user(Role.OPERATOR))
    dev = world.plant.device_id
    bad = [
        {"kind": "value", "device": dev, "property": "temperature"},
        {"kind": "value", "device": dev, "property": "temperature"},
        {"kind": "value", "device": dev, "property": "nope"},
    ]
    r = save(b, name="Broken", widgets=bad)
    assert r.status_code == 200 and "HX-Redirect" not in r.headers
    assert 'role="alert"' in r.text and "widgets[2].property" in r.text
    assert "未保存" in r.text  # the page's language
    foreign = [{"kind": "value", "device": world.other.device_id, "property": "temperature"}]
    r = save(b, name="Foreign", widgets=foreign)
    assert "widgets[0].device" in r.text and "HX-Redirect" not in r.headers
    r = save(b, name="Garbled", widgets="[not json")
    assert 'role="alert"' in r.text and "HX-Redirect" not in r.headers
    r = save(b, name="", widgets=[])
    assert "name: is required" in r.text


def test_shared_is_read_only_to_others_private_is_hidden(world: World) -> None:
    owner = world.browser(user(Role.ENGINEER))
    shared = save(owner, name="Shared line", widgets=widgets(world), shared="1")
    shared_id = int(shared.headers["HX-Redirect"].rsplit("/", 1)[1])
    private = save(owner, name="Private line", widgets=[])
    private_id = int(private.headers["HX-Redirect"].rsplit("/", 1)[1])

    viewer = world.browser(user(Role.VIEWER))
    listing = viewer.get("/console/dashboards").text
    assert "Shared line" in listing and "Private line" not in listing
    view = viewer.get(f"/console/dashboards/{shared_id}")
    assert view.status_code == 200 and 'id="dash-edit"' not in view.text
    assert "只读" in view.text
    assert viewer.get(f"/console/dashboards/{shared_id}/edit").status_code == 403
    assert viewer.get(f"/console/dashboards/{private_id}").status_code == 404
    # Saving over it or deleting it is refused, with the reason in the page.
    r = save(viewer, name="Taken", widgets=[], dashboard_id=str(shared_id))
    assert r.status_code == 200 and "HX-Redirect" not in r.headers and "owner" in r.text
    r = viewer.post(f"/console/dashboards/{shared_id}/delete", headers={**csrf(viewer), **HX})
    assert r.status_code == 200 and 'role="alert"' in r.text

    # The tenant admin may change and delete anyone's.
    admin = world.browser(user(Role.TENANT_ADMIN))
    assert "Private line" in admin.get("/console/dashboards").text
    r = admin.post(f"/console/dashboards/{private_id}/delete", headers={**csrf(admin), **HX})
    assert r.headers["HX-Redirect"] == "/console/dashboards"
    assert owner.get(f"/console/dashboards/{private_id}").status_code == 404
    # The owner edits their own: the editor holds the widgets as saved.
    editor = owner.get(f"/console/dashboards/{shared_id}/edit")
    assert editor.status_code == 200 and "temperature" in editor.text
    r = save(owner, name="Shared line 2", widgets=[], shared="1", dashboard_id=str(shared_id))
    assert r.headers["HX-Redirect"] == f"/console/dashboards/{shared_id}"


def test_another_tenant_sees_nothing(world: World) -> None:
    owner = world.browser(user(Role.OPERATOR))
    made = save(owner, name="Ours only", widgets=[], shared="1")
    board = made.headers["HX-Redirect"]
    stranger = world.browser("d-other")
    assert stranger.get(board).status_code == 404
    assert "Ours only" not in stranger.get("/console/dashboards").text
    r = save(stranger, name="Hijack", widgets=[], dashboard_id=board.rsplit("/", 1)[1])
    assert "HX-Redirect" not in r.headers and 'role="alert"' in r.text


def test_unsafe_console_posts_need_the_csrf_token(world: World) -> None:
    b = world.browser(user(Role.VIEWER))
    r = b.post("/console/dashboards/save", data={"name": "x", "widgets": "[]"})
    assert r.status_code == 403
