"""A third party's package adds components through the ``yugong.components`` entry point,
and any component runs alone as a microservice answering over real HTTP."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

PLUGIN = Path(__file__).parent / "plugin_pkg"
YUGONG = [sys.executable, "-m", "yugong.cli"]


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test package installed by pip into a folder of its own (not this environment)."""
    target = tmp_path_factory.mktemp("site")
    build = tmp_path_factory.mktemp("build")
    source = shutil.copytree(PLUGIN, build / "acme-wear")  # builds leave files beside sources
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            str(target),
            str(source),
        ],
        check=True,
        cwd=build,
    )
    assert list(target.glob("acme_wear-0.3.0.dist-info"))
    return target


def env_with(path: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "YUGONG_COMPONENT_TOKEN"}
    if path is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(path), env.get("PYTHONPATH")]))
    return env


def yugong(*args: str, path: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*YUGONG, *args], capture_output=True, text=True, env=env_with(path), timeout=120
    )


def test_installed_package_adds_its_component(plugin_path: Path) -> None:
    without = yugong("component", "list")
    assert without.returncode == 0, without.stderr
    assert "acme.wear_rate" not in without.stdout

    listed = yugong("component", "list", "--industry", "automotive", path=plugin_path)
    assert listed.returncode == 0, listed.stderr
    assert "acme.wear_rate" in listed.stdout and "hybrid" in listed.stdout
    shown = yugong("component", "show", "acme.wear_rate", path=plugin_path)
    assert shown.returncode == 0, shown.stderr
    assert '"origin": "acme-wear 0.3.0"' in shown.stdout
    assert '"x-unit": "mm"' in shown.stdout
    missing = yugong("component", "show", "acme.nothing", path=plugin_path)
    assert missing.returncode == 2 and "no component named 'acme.nothing'" in missing.stderr


class Service:
    def __init__(self, proc: subprocess.Popen[str], port: int) -> None:
        self.proc = proc
        self.url = f"http://127.0.0.1:{port}"


def serve(name: str, path: Path | None = None, token: str | None = None) -> Iterator[Service]:
    port = free_port()
    env = env_with(path)
    if token:
        env["YUGONG_COMPONENT_TOKEN"] = token
    proc = subprocess.Popen(
        [*YUGONG, "component", "serve", name, "--port", str(port), "--log-level", "warning"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    service = Service(proc, port)
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, f"serve exited: {proc.stdout.read() if proc.stdout else ''}"
        try:
            if httpx.get(f"{service.url}/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "component service did not start"
        time.sleep(0.1)
    try:
        yield service
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture
def wear_service(plugin_path: Path) -> Iterator[Service]:
    yield from serve("acme.wear_rate", plugin_path)


def test_plugin_component_serves_alone(wear_service: Service) -> None:
    url = wear_service.url
    spec = httpx.get(f"{url}/openapi.json").json()
    body = spec["paths"]["/invoke"]["post"]["requestBody"]["content"]["application/json"]
    inputs = body["schema"]["properties"]["inputs"]
    assert inputs["required"] == ["hours", "wear"]
    assert inputs["properties"]["limit"]["x-unit"] == "mm"
    assert httpx.get(f"{url}/").json()["name"] == "acme.wear_rate"

    # Wear grows 0.02 mm per hour from 0.10 mm; 0.16 mm at 3 h leaves 7 h to 0.30 mm.
    r = httpx.post(
        f"{url}/invoke",
        json={"inputs": {"hours": [0, 1, 2, 3], "wear": [0.10, 0.12, 0.14, 0.16]}},
    )
    assert r.status_code == 200, r.text
    out = r.json()["outputs"]
    assert out["rate"] == pytest.approx(0.02) and out["hours_left"] == pytest.approx(7.0)
    # Minutes and micrometres are converted into the declared hours and millimetres.
    r = httpx.post(
        f"{url}/invoke",
        json={
            "inputs": {
                "hours": {"value": [0, 60, 120, 180], "unit": "min"},
                "wear": {"value": [100, 120, 140, 160], "unit": "um"},
            }
        },
    )
    assert r.json()["outputs"]["rate"] == pytest.approx(0.02)


@pytest.mark.parametrize(
    ("body", "loc", "words"),
    [
        ({"inputs": {"hours": [0, 1], "wear": [[0.1, 0.2]]}}, "inputs.wear", "1-D array"),
        ({"inputs": {"hours": [0, 1], "wear": [0.1, -0.2]}}, "inputs.wear", "below the minimum"),
        ({"inputs": {"hours": {"value": [0, 1]}, "wear": [0.1, 0.2]}}, "inputs.hours", "unit"),
        ({"inputs": {"hours": [0, 1], "wear": [0.1, 0.2, 0.3]}}, "inputs.wear", "3 values"),
        ({"inputs": {"hours": [0], "wear": [0.1]}}, "inputs.hours", "at least 2"),
        ({"inputs": {"wear": [0.1, 0.2]}}, "inputs.hours", "missing"),
        ({"inputs": {"hours": [0, 1], "wear": [0.1, 0.2], "speed": 3}}, "inputs.speed", "unknown"),
        (
            {"inputs": {"hours": {"value": [0, 1], "unit": "kg"}, "wear": [0.1, 0.2]}},
            "inputs.hours",
            "different dimensions",
        ),
        (
            {"inputs": {"hours": [0, 1], "wear": [0.1, 0.2], "limit": 0}},
            "inputs.limit",
            "greater than",
        ),
    ],
)
def test_bad_input_names_the_input(wear_service: Service, body: dict, loc: str, words: str) -> None:
    r = httpx.post(f"{wear_service.url}/invoke", json=body)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["errors"][0]["loc"] == loc
    assert words in problem["detail"], problem["detail"]


def test_malformed_bodies_are_refused(wear_service: Service) -> None:
    url = f"{wear_service.url}/invoke"
    assert httpx.post(url, content=b"{not json").status_code == 422
    assert httpx.post(url, json=[1, 2]).status_code == 422
    r = httpx.post(url, json={"hours": [0, 1]})
    assert r.status_code == 422 and "unknown key hours" in r.json()["detail"]
    big = b'{"inputs": {"hours": [' + b"1," * (40 * 1024 * 1024) + b"1]}}"
    assert httpx.post(url, content=big, timeout=60).status_code == 413
    assert httpx.get(f"{wear_service.url}/health").status_code == 200  # still serving


def test_token_guards_a_served_component(plugin_path: Path) -> None:
    for service in serve("acme.wear_rate", plugin_path, token="s3cret-token-for-test"):
        body = {"inputs": {"hours": [0, 1], "wear": [0.1, 0.2]}}
        assert httpx.post(f"{service.url}/invoke", json=body).status_code == 401
        auth = {"Authorization": "Bearer s3cret-token-for-test"}
        r = httpx.post(f"{service.url}/invoke", json=body, headers=auth)
        assert r.status_code == 200, r.text
        assert httpx.get(f"{service.url}/health").status_code == 200
