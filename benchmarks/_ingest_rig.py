"""Shared set-up for the ingest benchmarks: a device directory built by hand and a store."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from yugong.platform.registry.bindings import DeviceBinding, PropertyBinding

PROPS = 10


class BenchDirectory:
    """A fixed set of devices, each with PROPS float properties (series device*100 + k)."""

    def __init__(self, devices: int = 4, tenant: int = 1) -> None:
        self.devices: dict[int, DeviceBinding] = {}
        for d in range(1, devices + 1):
            props = {
                f"p{k}": PropertyBinding(
                    f"p{k}", d * 100 + k, "number", "double", min=-1e9, max=1e9
                )
                for k in range(PROPS)
            }
            self.devices[d] = DeviceBinding(tenant, d, f"dev-{d}", 1, None, props)

    def by_token(self, token: str) -> DeviceBinding | None:
        return self.devices.get(int(token[4:])) if token.startswith("tok-") else None

    def by_id(self, device: int) -> DeviceBinding | None:
        return self.devices.get(device)

    def by_name(self, tenant: int, name: str) -> DeviceBinding | None:
        return next((b for b in self.devices.values() if b.name == name), None)

    def touch(self, devices: Sequence[int], seen_us: int) -> None:
        pass

    def invalidate(self, device: int | None = None) -> None:
        pass


_SCRATCH = tempfile.TemporaryDirectory(prefix="yugong-bench-")  # removed at exit


def store_url() -> str:
    """A fresh DuckDB file in this run's scratch directory."""
    path = Path(tempfile.mkdtemp(dir=_SCRATCH.name)) / "ts.duckdb"
    return f"duckdb:///{path}"
