"""Administration from the command line: acts as the platform itself on the configured
database (whoever can run this already holds the database files or credentials)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from types import TracebackType
from typing import Any, TypeVar

from yugong.core.errors import NotFound
from yugong.core.settings import Settings
from yugong.infra.db import Database
from yugong.infra.migrate import upgrade
from yugong.platform.registry import Registry
from yugong.security.principal import SYSTEM
from yugong.security.service import Security

PAGE = 500
T = TypeVar("T")


def _all(fetch: Callable[[int], list[T]]) -> list[T]:
    """Every item of a paged listing."""
    out: list[T] = []
    while True:
        page = fetch(len(out))
        out.extend(page)
        if len(page) < PAGE:
            return out


class AdminContext:
    def __init__(self, settings: Settings) -> None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        upgrade(settings.registry_url)
        self.db = Database(settings.registry_url)
        self.registry = Registry(self.db)
        self.security = Security(self.db, settings)

    def __enter__(self) -> AdminContext:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.db.dispose()

    def tenant_id(self, ref: str | int | None) -> int | None:
        """A tenant by id or slug."""
        if ref is None:
            return None
        text = str(ref)
        if text.isdigit():
            return self.registry.tenants.get(SYSTEM, int(text)).id
        for t in self._all_tenants():
            if t.slug == text or t.name == text:
                return t.id
        raise NotFound(f"tenant {text!r} not found (give its id or slug)")

    def _all_tenants(self) -> list[Any]:
        return _all(
            lambda offset: list(self.registry.tenants.list(SYSTEM, offset=offset, limit=PAGE))
        )

    def create_tenant(
        self, name: str, *, industry: str | None, retention_days: int | None
    ) -> dict[str, Any]:
        return asdict(
            self.registry.tenants.create(
                SYSTEM, name=name, industry=industry, retention_days=retention_days
            )
        )

    def list_tenants(self) -> list[dict[str, Any]]:
        return [asdict(t) for t in self._all_tenants()]

    def create_user(
        self, username: str, password: str, *, role: str, tenant: str | None
    ) -> dict[str, Any]:
        info = self.security.users.create(
            SYSTEM,
            username=username,
            password=password,
            role=role,
            tenant_id=self.tenant_id(tenant),
        )
        return asdict(info)

    def list_users(self, tenant: str | None) -> list[dict[str, Any]]:
        tenant_id = self.tenant_id(tenant)
        return [
            asdict(u)
            for u in _all(
                lambda offset: self.security.users.list(
                    SYSTEM, tenant_id=tenant_id, offset=offset, limit=PAGE
                )
            )
        ]

    def set_password(self, username: str, password: str) -> None:
        users = _all(lambda offset: self.security.users.list(SYSTEM, offset=offset, limit=PAGE))
        for u in users:
            if u.username == username:
                self.security.users.update(SYSTEM, u.id, password=password)
                return
        raise NotFound(f"user {username!r} not found")

    def import_product(
        self, tenant: str, document: dict[str, Any], *, key: str | None, name: str | None
    ) -> tuple[dict[str, Any], bool]:
        product, created = self.registry.products.import_tsl(
            SYSTEM, document, key=key, name=name, tenant_id=self.tenant_id(tenant)
        )
        return asdict(product), created

    def create_device(self, tenant: str, name: str, product_key: str) -> tuple[dict[str, Any], str]:
        tenant_id = self.tenant_id(tenant)
        product = next(
            (
                p
                for p in self.registry.products.list(SYSTEM, tenant_id=tenant_id, limit=PAGE)
                if p.key == product_key
            ),
            None,
        )
        if product is None:
            raise NotFound(f"product {product_key!r} not found in tenant {tenant}")
        creds = self.registry.devices.create(
            SYSTEM, name=name, product_id=product.id, tenant_id=tenant_id
        )
        return asdict(creds.device), creds.token

    def list_devices(self, tenant: str) -> list[dict[str, Any]]:
        tenant_id = self.tenant_id(tenant)
        products = {
            p.id: p.key
            for p in self.registry.products.list(SYSTEM, tenant_id=tenant_id, limit=PAGE)
        }
        rows = []
        for d in _all(
            lambda offset: list(
                self.registry.devices.list(SYSTEM, tenant_id=tenant_id, offset=offset, limit=PAGE)
            )
        ):
            row = asdict(d)
            row["product"] = products.get(d.product_id, d.product_id)
            rows.append(row)
        return rows

    def rotate_token(self, tenant: str, device: str) -> str:
        tenant_id = self.tenant_id(tenant)
        device_id = (
            int(device)
            if device.isdigit()
            else self.registry.devices.get_by_name(SYSTEM, device, tenant_id=tenant_id).id
        )
        return self.registry.devices.rotate_token(SYSTEM, device_id, tenant_id=tenant_id)
