"""The console's pages, one module each, in menu order. A module has a ``router`` and may
declare ``NAV``: the menu items it adds (see :class:`yugong.web.console.NavItem`)."""

from __future__ import annotations

import importlib
from types import ModuleType

PAGES = (
    "overview",
    "devices",
    "dashboards",
    "alarms",
    "rules",
    "commands",
    "products",
    "gateways",
    "components",
    "admin",
    "platform",
    "audit",
)


def all_pages() -> list[ModuleType]:
    return [importlib.import_module(f"yugong.web.pages.{name}") for name in PAGES]
