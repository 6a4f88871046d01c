"""The device list's asset tree: choosing an asset lists the devices under it, its whole
subtree included, and an asset of another tenant lists nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.integration.conftest import USER_PASSWORD, Api, make_settings
from tests.web.test_console_access import sign_in
from yugong.api.app import create_app


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict]]:
    settings = make_settings(Path(tmp_path_factory.mktemp("tree")), mqtt_embedded=False)
    with TestClient(create_app(settings), base_url="https://testserver") as c:
        api = Api(c)
        root = api.admin()
        a = api.setup_tenant(root, "Tree Works")
        b = api.setup_tenant(root, "Tree Other")
        h = a.headers
        site = api.call("POST", "/api/v1/assets", h, 201, json={"name": "Suzhou", "kind": "site"})
        shop = api.call(
            "POST",
            "/api/v1/assets",
            h,
            201,
            json={"name": "Stamping", "kind": "workshop", "parent_id": site["id"]},
        )
        other_site = api.call(
            "POST", "/api/v1/assets", b.headers, 201, json={"name": "Elsewhere", "kind": "site"}
        )
        api.call("PATCH", f"/api/v1/devices/{a.device_id}", h, json={"asset_id": shop["id"]})
        spare = api.call(
            "POST",
            "/api/v1/devices",
            h,
            201,
            json={"name": "loose-dev", "product_id": a.product_id},
        )
        ids = {
            "site": site["id"],
            "shop": shop["id"],
            "other": other_site["id"],
            "device": a.device_id,
            "spare": spare["id"],
        }
        sign_in(c, "tree-works-admin", USER_PASSWORD)
        yield c, ids


def test_tree_filters_by_subtree(client: tuple[TestClient, dict]) -> None:
    c, ids = client
    page = c.get("/console/devices").text
    assert "Suzhou" in page and "Stamping" in page and "Elsewhere" not in page
    assert "loose-dev" in page and "tree-works-dev-1" in page
    under_site = c.get(f"/console/devices?asset={ids['site']}").text
    assert "tree-works-dev-1" in under_site and "loose-dev" not in under_site
    under_shop = c.get(f"/console/devices?asset={ids['shop']}").text
    assert "tree-works-dev-1" in under_shop
    foreign = c.get(f"/console/devices?asset={ids['other']}")
    assert foreign.status_code == 200 and "tree-works-dev-1" not in foreign.text
