"""One object that holds the registry services and keeps device directories current."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from yugong.infra.db import Database

from .assets import AssetService
from .bindings import DeviceBinding
from .devices import DeviceService
from .directory import RegistryDirectory
from .products import ProductService
from .records import ChangeEvent
from .tenants import TenantService

log = logging.getLogger(__name__)


class Registry:
    """``registry.tenants``, ``.assets``, ``.products``, ``.devices`` and ``.directory``.

    After every committed change the registry invalidates its own ``directory`` (or the one
    passed in) and calls ``on_change(device)`` for each device whose binding changed
    (``None``: all of them), so a ``DeviceDirectory.invalidate`` can be passed directly.
    ``on_event`` receives each :class:`ChangeEvent`, e.g. to delete the samples of the
    series a deletion returned.
    """

    def __init__(
        self,
        db: Database,
        on_change: Callable[[int | None], None] | None = None,
        *,
        directory: RegistryDirectory | None = None,
        on_event: Callable[[ChangeEvent], None] | None = None,
    ) -> None:
        self.db = db
        self.directory = directory if directory is not None else RegistryDirectory(db)
        self._on_change = on_change
        self._on_event = on_event
        self.tenants = TenantService(db, self._changed)
        self.assets = AssetService(db, self._changed)
        self.products = ProductService(db, self._changed)
        self.devices = DeviceService(db, self._changed)

    def store_client_attributes(self, device: DeviceBinding, values: dict[str, Any]) -> None:
        """Attribute sink for ingest: merge attributes a device reported about itself."""
        self.devices.store_client_attributes(device.tenant, device.device, values)

    def _changed(self, event: ChangeEvent) -> None:
        targets: list[int | None] = [None] if event.kind == "tenant" else list(event.devices)
        for device in targets:
            self.directory.invalidate(device)
        # The change is committed: a failing listener is logged, never turned into an error.
        try:
            if self._on_change is not None:
                for device in targets:
                    self._on_change(device)
            if self._on_event is not None:
                self._on_event(event)
        except Exception:
            log.exception("registry change listener failed for %s", event)
