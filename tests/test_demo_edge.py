"""The demo's factory floor behind its edge gateway: Modbus TCP PLCs and OPC UA CNCs in a
spawned process, polled by the demo gateway, published over Sparkplug B to the embedded
broker; the platform provisions the devices behind the gateway and stores their data."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.integration.conftest import make_settings
from yugong.apps.demo.edge import edge_devices, run_edge
from yugong.apps.demo.factory import FactoryProcess, float_registers, make_layout
from yugong.apps.demo.provision import DEMO_SLUG, GATEWAY_NAME, provision_gateway
from yugong.security.principal import SYSTEM
from yugong.server import BackgroundServer


def test_float_registers_are_big_endian_words() -> None:
    # 1.0f is 0x3F800000: high word first, as the gateway's float32 points expect.
    assert float_registers(np.array([1.0, -2.0])) == [0x3F80, 0x0000, 0xC000, 0x0000]


def _real(value: Any) -> bool:
    """A polled value, not the placeholder a birth carries before the first read."""
    return isinstance(value, int | float) and math.isfinite(value)


def _latest(platform: Any, name: str) -> dict[str, Any]:
    reg = platform.registry
    tenant = next(t.id for t in reg.tenants.list(SYSTEM, limit=1000) if t.slug == DEMO_SLUG)
    device = reg.devices.get_by_name(SYSTEM, name, tenant_id=tenant)
    refs = platform.query.resolve(SYSTEM, [(device.id, None)])
    return {row["property"]: row["value"] for row in platform.query.latest(refs)}


def test_factory_behind_the_demo_gateway(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    layout = make_layout(pumps=1, motors=1, meters=1, cncs=1, period_s=0.2)
    settings = make_settings(tmp_path / "platform")
    with FactoryProcess(layout), BackgroundServer(settings) as srv:
        platform = srv.platform

        out: list[str] = []  # what the demo printed (it announces once devices are up)

        async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
            edge = asyncio.create_task(run_edge(platform, layout, tmp_path / "edge.sqlite"))
            try:
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    assert not edge.done() or edge.exception() is None, edge.exception()
                    names = set(await asyncio.to_thread(edge_devices, platform, GATEWAY_NAME))
                    if {"pump-01", "cnc-ua-01"} <= names:
                        pump = await asyncio.to_thread(_latest, platform, "pump-01")
                        cnc = await asyncio.to_thread(_latest, platform, "cnc-ua-01")
                        if _real(pump.get("speed")) and _real(cnc.get("part_count")):
                            out.append(capsys.readouterr().out)
                            if "edge devices connected" in "".join(out):
                                return pump, cnc
                    await asyncio.sleep(0.3)
                raise AssertionError("the factory's data did not reach the platform")
            finally:
                edge.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await edge

        pump, cnc = asyncio.run(scenario())
        # Plausible signals: a running pump near its rated speed; the CNC's counter is real.
        assert 1300 < pump["speed"] < 1600, (pump, cnc)
        assert pump["running"] in (True, 1, 1.0)
        assert {"flow", "pressure", "fault"} <= set(pump)
        assert cnc["part_count"] >= 1000
        assert {"motor-01", "meter-01"} <= set(edge_devices(platform, GATEWAY_NAME))
        # A second provisioning reuses the gateway device (new token), like the demo restart.
        again = provision_gateway(platform)
        assert again.name == GATEWAY_NAME
