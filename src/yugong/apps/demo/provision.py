"""Create (or bring up to date) the demo tenant: products, an asset tree and machines.

Idempotent: a second run reuses everything and issues the machines fresh access tokens (the
platform keeps only token hashes, so the simulator needs new ones)."""

from __future__ import annotations

from typing import Any

from yugong.apps.demo.plant import SimDevice
from yugong.apps.demo.products import PRODUCTS
from yugong.core.errors import NotFound
from yugong.platform.registry import Registry
from yugong.security.principal import SYSTEM

DEMO_SLUG = "demo"
# workshop -> (line, product keys on that line)
LAYOUT = {
    "机加工车间 Machining": ("1号线 Line 1", ["cnc-machine"]),
    "动力站 Utilities": ("空压与配电 Air & power", ["air-compressor", "energy-meter"]),
}
SHARE = {"cnc-machine": 0.5, "air-compressor": 0.25, "energy-meter": 0.25}


def _tenant(reg: Registry) -> int:
    for t in reg.tenants.list(SYSTEM, limit=1000):
        if t.slug == DEMO_SLUG:
            return t.id
    return reg.tenants.create(
        SYSTEM, name="Demo Plant 演示工厂", slug=DEMO_SLUG, industry="discrete", retention_days=30
    ).id


def _asset(reg: Registry, tenant: int, kind: str, name: str, parent: int | None) -> int:
    for a in reg.assets.list(SYSTEM, tenant_id=tenant, parent_id=parent, limit=1000):
        if a.name == name:
            return a.id
    return reg.assets.create(SYSTEM, tenant_id=tenant, kind=kind, name=name, parent_id=parent).id


def _counts(machines: int) -> dict[str, int]:
    counts = {k: max(1, int(machines * share)) for k, share in SHARE.items()}
    counts["cnc-machine"] += max(0, machines - sum(counts.values()))
    return counts


def provision_demo(platform: Any, *, machines: int = 12) -> list[SimDevice]:
    reg: Registry = platform.registry
    tenant = _tenant(reg)
    product_ids = {}
    for key, (name, tsl) in PRODUCTS.items():
        product, _ = reg.products.import_tsl(SYSTEM, tsl, key=key, name=name, tenant_id=tenant)
        product_ids[key] = product.id
    site = _asset(reg, tenant, "site", "郑州工厂 Zhengzhou plant", None)
    counts = _counts(machines)
    devices: list[SimDevice] = []
    for workshop_name, (line_name, keys) in LAYOUT.items():
        workshop = _asset(reg, tenant, "workshop", workshop_name, site)
        line = _asset(reg, tenant, "line", line_name, workshop)
        for key in keys:
            for i in range(1, counts[key] + 1):
                name = f"{key.split('-')[0]}-{i:02d}"
                equipment = _asset(reg, tenant, "equipment", name, line)
                try:
                    existing = reg.devices.get_by_name(SYSTEM, name, tenant_id=tenant)
                    token = reg.devices.rotate_token(SYSTEM, existing.id, tenant_id=tenant)
                except NotFound:
                    token = reg.devices.create(
                        SYSTEM,
                        name=name,
                        product_id=product_ids[key],
                        asset_id=equipment,
                        tenant_id=tenant,
                    ).token
                devices.append(SimDevice(name=name, product=key, token=token))
    return devices


GATEWAY_PRODUCT = "edge-gateway"
GATEWAY_NAME = "edge-gw-01"


def provision_gateway(platform: Any) -> SimDevice:
    """The demo's edge gateway device (its product marked gateway), with a fresh token: the
    gateway logs in to the embedded broker with it as a Sparkplug edge node of that name."""
    reg: Registry = platform.registry
    tenant = _tenant(reg)
    found = reg.products.list(SYSTEM, tenant_id=tenant, search=GATEWAY_PRODUCT, limit=1000)
    product = next((p for p in found.items if p.key == GATEWAY_PRODUCT), None)
    if product is None:
        product = reg.products.create(
            SYSTEM,
            key=GATEWAY_PRODUCT,
            name="边缘网关 Edge gateway",
            is_gateway=True,
            tenant_id=tenant,
        )
    site = _asset(reg, tenant, "site", "郑州工厂 Zhengzhou plant", None)
    try:
        existing = reg.devices.get_by_name(SYSTEM, GATEWAY_NAME, tenant_id=tenant)
        token = reg.devices.rotate_token(SYSTEM, existing.id, tenant_id=tenant)
    except NotFound:
        token = reg.devices.create(
            SYSTEM, name=GATEWAY_NAME, product_id=product.id, asset_id=site, tenant_id=tenant
        ).token
    return SimDevice(name=GATEWAY_NAME, product=GATEWAY_PRODUCT, token=token)
