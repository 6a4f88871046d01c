"""Every console page, as each kind of administrator sees it, has labelled controls: each
input, select and textarea has a <label for> or an aria-label; each button and link says
what it does; tables have header cells. So the console works with a keyboard and a screen
reader, not only a mouse."""

from __future__ import annotations

from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.integration.conftest import ADMIN_PASSWORD, USER_PASSWORD, Api, make_settings
from tests.web.test_console_access import sign_in
from yugong.api.app import create_app


class Controls(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.labels: set[str] = set()
        self.controls: list[dict[str, str | None]] = []
        self.open: list[dict[str, str | None]] = []  # buttons and links being read
        self.problems: list[str] = []
        self.tables = self.headers = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "label" and a.get("for"):
            self.labels.add(str(a["for"]))
        if tag in ("input", "select", "textarea") and a.get("type") not in ("hidden", "submit"):
            self.controls.append({"tag": tag, **a})
        if tag in ("button", "a"):
            self.open.append({"tag": tag, "text": "", **a})
        if tag == "table":
            self.tables += 1
        if tag == "th":
            self.headers += 1

    def handle_data(self, data: str) -> None:
        for item in self.open:
            item["text"] = (item["text"] or "") + data

    def handle_endtag(self, tag: str) -> None:
        if tag in ("button", "a") and self.open:
            item = self.open.pop()
            if not (item["text"] or "").strip() and not item.get("aria-label"):
                self.problems.append(f"<{tag}> without text: {item}")

    def check(self) -> list[str]:
        for c in self.controls:
            labelled = c.get("aria-label") or (c.get("id") and c["id"] in self.labels)
            if not labelled:
                self.problems.append(f"unlabelled <{c['tag']}> {c}")
        if self.tables and not self.headers:
            self.problems.append("a table without header cells")
        return self.problems


@pytest.fixture(scope="module")
def crawl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = make_settings(Path(tmp_path_factory.mktemp("a11y")), mqtt_embedded=False)
    with TestClient(create_app(settings), base_url="https://testserver") as c:
        api = Api(c)
        root = api.admin()
        world = api.setup_tenant(root, "Label Works")
        api.call(
            "POST",
            "/api/v1/rules",
            world.headers,
            201,
            json={
                "name": "Hot",
                "target": {"product": "sensor"},
                "condition": {
                    "kind": "threshold",
                    "property": "temperature",
                    "op": ">",
                    "value": 9,
                },
            },
        )
        c.world = world  # type: ignore[attr-defined]
        yield c


def pages(world: object) -> list[str]:
    device = world.device_id  # type: ignore[attr-defined]
    product = world.product_id  # type: ignore[attr-defined]
    return [
        "/console/login",
        "/console/",
        "/console/devices",
        f"/console/devices/{device}",
        f"/console/devices/{device}/commands",
        "/console/dashboards",
        "/console/dashboards/new",
        "/console/alarms",
        "/console/rules",
        "/console/rules/new",
        "/console/products",
        f"/console/products/{product}",
        "/console/gateways",
        "/console/components",
        "/console/components/spc.capability",
        "/console/admin",
        "/console/admin/users",
        "/console/admin/apikeys",
        f"/console/admin/credentials?device={device}",
        "/console/admin/security",
        "/console/audit",
    ]


@pytest.mark.parametrize(
    ("who", "password"), [("label-works-admin", USER_PASSWORD), ("admin", ADMIN_PASSWORD)]
)
def test_every_control_is_labelled(crawl: TestClient, who: str, password: str) -> None:
    c = crawl
    c.cookies.clear()
    assert sign_in(c, who, password).status_code == 303
    extra = ["/console/platform", "/console/admin/tenants", "/console/admin/profiles"]
    for path in pages(c.world) + (extra if who == "admin" else []):  # type: ignore[attr-defined]
        r = c.get(path)
        assert r.status_code == 200, f"{path}: {r.status_code}"
        parser = Controls()
        parser.feed(r.text)
        problems = parser.check()
        assert not problems, f"{path} as {who}: {problems[:5]}"
