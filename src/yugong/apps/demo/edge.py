"""The demo's edge gateway: polls the simulated factory (Modbus PLCs, OPC UA CNCs) and
publishes Sparkplug B to the platform's embedded broker, as the demo tenant's gateway device.

Profiles are built in code from the factory layout; the platform provisions the devices
behind the gateway from their births."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from yugong.apps.demo.factory import (
    FLOAT_MAPS,
    PUMP_FAULT_INPUT,
    PUMP_RUNNING_COIL,
    FactoryLayout,
)
from yugong.apps.demo.provision import DEMO_SLUG, provision_gateway
from yugong.core.errors import NotFound
from yugong.edge.config import GatewayConfig, parse_config
from yugong.edge.gateway import EdgeGateway
from yugong.security import pki
from yugong.security.principal import SYSTEM

GROUP = "demo"


def _modbus_device(kind: str, name: str, port: int, interval: str) -> dict[str, Any]:
    points: list[dict[str, Any]] = [
        {"property": prop, "register": "holding", "address": addr, "type": "float32"}
        for prop, addr in FLOAT_MAPS[kind].items()
    ]
    if kind == "pump":
        points.append(
            {
                "property": "running",
                "register": "coil",
                "address": PUMP_RUNNING_COIL,
                "type": "bool",
            }
        )
        points.append(
            {
                "property": "fault",
                "register": "discrete_input",
                "address": PUMP_FAULT_INPUT,
                "type": "bool",
            }
        )
    return {
        "name": name,
        "protocol": "modbus_tcp",
        "connection": {"host": "127.0.0.1", "port": port, "timeout": 2},
        "interval": interval,
        "points": points,
    }


def _cnc_device(layout: FactoryLayout, name: str, interval: str) -> dict[str, Any]:
    props = {"spindle_speed": "SpindleSpeed", "state": "State", "part_count": "PartCount"}
    return {
        "name": name,
        "protocol": "opcua",
        "connection": {"endpoint": layout.opcua_endpoint, "timeout": 4},
        "interval": interval,
        "points": [
            {"property": prop, "node": f"ns=2;s={name}.{var}"} for prop, var in props.items()
        ],
    }


def gateway_config(
    layout: FactoryLayout,
    *,
    gateway: str,
    token: str,
    mqtt_address: tuple[str, int],
    host_id: str,
    buffer_path: Path,
    tls: dict[str, str] | None = None,
) -> GatewayConfig:
    """The gateway config for this factory, publishing as ``gateway`` with its ``token``, or
    over TLS (``tls``: ca_file, and cert_file/key_file to log in by client certificate)."""
    interval = f"{max(1, int(layout.period_s * 1000))}ms"
    host, port = mqtt_address
    by_cert = tls is not None and "cert_file" in tls
    return parse_config(
        {
            "gateway": gateway,
            "connectors": [
                {
                    "name": "plcs",
                    "protocol": "modbus",
                    "devices": [_modbus_device(k, n, p, interval) for k, n, p in layout.plcs()],
                },
                {
                    "name": "cnc-cell",
                    "protocol": "opcua",
                    "devices": [_cnc_device(layout, n, interval) for n in layout.cncs],
                },
            ],
            "buffer": {"path": str(buffer_path), "max_bytes": "64MiB", "synchronous": "normal"},
            "uplink": {
                "kind": "sparkplug",
                "broker": f"{'mqtts' if tls is not None else 'mqtt'}://{host}:{port}",
                "tls": tls,
                "username": None if by_cert else token,
                "group_id": GROUP,
                "host_id": host_id,
            },
            "health": {"interval": 10},
        }
    )


def edge_devices(platform: Any, gateway: str) -> list[str]:
    """Names of the devices the platform has behind the demo gateway (none yet: empty)."""
    reg = platform.registry
    tenant = next((t.id for t in reg.tenants.list(SYSTEM, limit=1000) if t.slug == DEMO_SLUG), None)
    if tenant is None:
        return []
    try:
        gw = reg.devices.get_by_name(SYSTEM, gateway, tenant_id=tenant)
    except NotFound:
        return []
    listing = reg.devices.list(SYSTEM, tenant_id=tenant, gateway_id=gw.id, limit=1000)
    return [d.name for d in listing.items]


def gateway_tls(platform: Any, gateway: str) -> dict[str, str]:
    """TLS for the demo gateway's uplink: it verifies the broker with the platform CA and
    logs in with a client certificate of its own, issued now and bound to its device."""
    settings = platform.settings
    paths = pki.pki_paths(settings.data_dir)
    files = pki.tls_files(settings)
    ca = files.ca_file if files is not None and files.ca_file is not None else paths.ca_cert
    if not paths.ca_key.exists():  # server files from elsewhere: verify only, log in by token
        return {"ca_file": str(ca)}
    reg = platform.registry
    tenant = next(t.id for t in reg.tenants.list(SYSTEM, limit=1000) if t.slug == DEMO_SLUG)
    device = reg.devices.get_by_name(SYSTEM, gateway, tenant_id=tenant)
    issued = pki.issue_device(
        paths, gateway, tenant=tenant, device_id=device.id, out_dir=paths.devices / DEMO_SLUG
    )
    reg.devices.set_certificate(
        SYSTEM, device.id, certificate=issued.cert_file.read_text(), tenant_id=tenant
    )
    return {
        "ca_file": str(paths.ca_cert),
        "cert_file": str(issued.cert_file),
        "key_file": str(issued.key_file),
    }


async def run_edge(
    platform: Any,
    layout: FactoryLayout,
    buffer_path: Path,
    *,
    announce_within: float = 20.0,
) -> None:
    """Run the demo gateway against ``layout`` until cancelled; once the devices behind it
    are provisioned (or ``announce_within`` seconds passed) print how many are connected."""
    tls_address = getattr(platform, "mqtt_tls_address", None)
    assert platform.mqtt_address or tls_address, "the demo's edge gateway needs the embedded broker"
    gw = await asyncio.to_thread(provision_gateway, platform)
    tls = None if tls_address is None else await asyncio.to_thread(gateway_tls, platform, gw.name)
    config = gateway_config(
        layout,
        gateway=gw.name,
        token=gw.token,
        mqtt_address=tls_address or platform.mqtt_address,
        host_id=platform.settings.sparkplug_host_id,
        buffer_path=buffer_path,
        tls=tls,
    )
    async with EdgeGateway(config):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + announce_within
        expected = {n for _, n, _ in layout.plcs()} | set(layout.cncs)
        names: set[str] = set()
        while loop.time() < deadline:
            names = expected & set(await asyncio.to_thread(edge_devices, platform, gw.name))
            if names == expected:
                break
            await asyncio.sleep(0.5)
        print(
            f"  Edge gateway {gw.name}: {len(names)} edge devices connected "
            f"(Modbus TCP PLCs and OPC UA CNCs, Sparkplug group {GROUP!r}"
            f"{', MQTT over TLS with a client certificate' if tls and 'cert_file' in tls else ''})",
            flush=True,
        )
        await asyncio.Event().wait()  # until cancelled
