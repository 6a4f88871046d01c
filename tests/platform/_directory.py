"""An in-memory DeviceDirectory for ingest tests: bindings built by hand, no database."""

from __future__ import annotations

from collections.abc import Sequence

from yugong.platform.registry.bindings import DeviceBinding, PropertyBinding


class MemoryDirectory:
    def __init__(self) -> None:
        self.devices: dict[int, DeviceBinding] = {}
        self.tokens: dict[str, int] = {}
        self.seen: dict[int, int] = {}

    def add(self, binding: DeviceBinding, token: str | None = None) -> DeviceBinding:
        self.devices[binding.device] = binding
        if token:
            self.tokens[token] = binding.device
        return binding

    def by_token(self, token: str) -> DeviceBinding | None:
        device = self.tokens.get(token)
        return self.devices.get(device) if device is not None else None

    def by_id(self, device: int) -> DeviceBinding | None:
        return self.devices.get(device)

    def by_name(self, tenant: int, name: str) -> DeviceBinding | None:
        return next(
            (b for b in self.devices.values() if b.tenant == tenant and b.name == name), None
        )

    def touch(self, devices: Sequence[int], seen_us: int) -> None:
        for d in devices:
            self.seen[d] = seen_us

    def invalidate(self, device: int | None = None) -> None:
        pass


def press(
    device: int = 1, tenant: int = 1, name: str = "press-1", series_base: int | None = None
) -> DeviceBinding:
    """A press with one property of every kind; series ids start at ``series_base``."""
    base = series_base if series_base is not None else device * 100
    props = [
        PropertyBinding(
            "temperature", base + 1, "number", "double", min=-20.0, max=120.0, unit="°C"
        ),
        PropertyBinding("count", base + 2, "integer", "int", min=0),
        PropertyBinding("running", base + 3, "bool", "bool"),
        PropertyBinding("mode", base + 4, "enum", "enum", enum_values=frozenset({0, 1, 2})),
        PropertyBinding("note", base + 5, "text", "text", max_length=16),
        PropertyBinding("config", base + 6, "json", "struct"),
        PropertyBinding("changed", base + 7, "date", "date"),
    ]
    return DeviceBinding(
        tenant=tenant,
        device=device,
        name=name,
        product=1,
        gateway=None,
        properties={p.identifier: p for p in props},
    )
