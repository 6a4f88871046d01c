"""The component catalog: every component installed, found through the entry-point group
``yugong.components``, so a third party's pip package adds components without touching Yugong.

An entry point may name a :class:`Component`, a module (every component defined in it), or a
callable returning components. A package that fails to load is logged and listed under
``errors``; the others still load.
"""

from __future__ import annotations

import logging
import types
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from yugong.core.errors import InvalidInput, NotFound
from yugong.platform.components.contract import Category, Component

log = logging.getLogger(__name__)
GROUP = "yugong.components"


@dataclass
class Catalog:
    components: dict[tuple[str, str], Component] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    @classmethod
    def discover(cls) -> Catalog:
        """Every component the installed packages declare."""
        catalog = cls()
        for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
            try:
                found = list(_components_of(ep.load()))
            except Exception as exc:  # a broken plug-in must not stop the platform
                log.warning(
                    "component entry point %s (%s) failed to load: %s", ep.name, ep.value, exc
                )
                catalog.errors.append(f"{ep.name}: {exc}")
                continue
            for comp in found:
                catalog.add(replace(comp, origin=_origin(ep)))
        log.info("component catalog: %d components", len(catalog.components))
        return catalog

    def add(self, comp: Component) -> None:
        if comp.key in self.components:
            other = self.components[comp.key].origin or "another package"
            msg = f"{comp.name} {comp.version} from {comp.origin} is already provided by {other}"
            log.warning("component %s", msg)
            self.errors.append(msg)
            return
        self.components[comp.key] = comp

    def __len__(self) -> int:
        return len(self.components)

    def get(self, name: str, version: str | None = None) -> Component:
        """One component; the newest version when ``version`` is None or ``latest``."""
        versions = self.versions(name)
        if not versions:
            raise NotFound(f"no component named {name!r}")
        if version in (None, "latest"):
            return versions[-1]
        for comp in versions:
            if comp.version == version:
                return comp
        have = ", ".join(c.version for c in versions)
        raise NotFound(f"component {name!r} has no version {version!r} (has {have})")

    def versions(self, name: str) -> list[Component]:
        found = [c for c in self.components.values() if c.name == name]
        return sorted(found, key=lambda c: tuple(int(p) for p in c.version.split(".")))

    def search(
        self,
        *,
        category: str | None = None,
        industry: str | None = None,
        text: str | None = None,
        all_versions: bool = False,
    ) -> list[Component]:
        """Components matching every given filter, by name; newest version only by default."""
        if category is not None:
            try:
                Category(category)
            except ValueError:
                known = ", ".join(c.value for c in Category)
                raise InvalidInput(f"category: {category!r} is not one of {known}") from None
        words = (text or "").lower().split()
        out = []
        for comp in self._listed(all_versions):
            if category is not None and comp.category != category:
                continue
            if industry is not None and industry.lower() not in comp.industries:
                continue
            if words and not all(w in _haystack(comp) for w in words):
                continue
            out.append(comp)
        return out

    def _listed(self, all_versions: bool) -> Iterator[Component]:
        names = sorted({c.name for c in self.components.values()})
        for name in names:
            versions = self.versions(name)
            yield from versions if all_versions else versions[-1:]

    def industries(self) -> list[str]:
        return sorted({i for c in self.components.values() for i in c.industries})


def _haystack(comp: Component) -> str:
    ports = [p.description for p in (*comp.inputs.values(), *comp.outputs.values())]
    return " ".join((comp.name, comp.title, comp.doc, *comp.industries, *ports)).lower()


def _components_of(obj: Any) -> Iterable[Component]:
    if isinstance(obj, Component):
        return [obj]
    if isinstance(obj, types.ModuleType):
        # Only those defined there: a module importing another's components does not repeat them.
        return [
            v
            for v in vars(obj).values()
            if isinstance(v, Component) and getattr(v.func, "__module__", None) == obj.__name__
        ]
    if callable(obj):
        found = list(obj())
        wrong = [f for f in found if not isinstance(f, Component)]
        if wrong:
            raise TypeError(f"returned {type(wrong[0]).__name__}, not Component")
        return found
    raise TypeError(f"{type(obj).__name__} is not a component, a module or a callable")


def _origin(ep: EntryPoint) -> str:
    dist = ep.dist
    return f"{dist.name} {dist.version}" if dist is not None else ep.value
