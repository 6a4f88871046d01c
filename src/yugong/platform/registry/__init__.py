"""Registry: tenants, assets, products (thing models), devices, series.

``Registry(db)`` is the entry point; ``registry.directory`` serves cached device bindings
to ingest. Imported lazily so ``yugong.platform.registry.bindings`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .directory import RegistryDirectory
    from .records import ChangeEvent
    from .service import Registry

__all__ = ["ChangeEvent", "Registry", "RegistryDirectory"]


def __getattr__(name: str) -> Any:
    if name == "Registry":
        from .service import Registry

        return Registry
    if name == "RegistryDirectory":
        from .directory import RegistryDirectory

        return RegistryDirectory
    if name == "ChangeEvent":
        from .records import ChangeEvent

        return ChangeEvent
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
