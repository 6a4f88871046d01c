"""The asset tree: site -> workshop -> line -> equipment."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, cast

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, ConfigDict, Field, field_validator

from yugong.api.deps import Limit, Offset, PrincipalDep, RegistryDep, TenantQuery
from yugong.platform.registry.records import AssetNode

router = APIRouter(prefix="/assets", tags=["assets"])

AssetKind = Literal["site", "workshop", "line", "equipment"]


class AssetOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    tenant_id: int
    parent_id: int | None
    kind: AssetKind
    name: str
    attributes: dict[str, Any]
    created_at: datetime


class AssetPage(BaseModel):
    items: list[AssetOut]
    total: int
    limit: int
    offset: int


class AssetNodeOut(BaseModel):
    id: int
    kind: AssetKind
    name: str
    attributes: dict[str, Any]
    children: list[AssetNodeOut]

    @classmethod
    def of(cls, node: AssetNode) -> AssetNodeOut:
        return cls(
            id=node.id,
            kind=cast(AssetKind, node.kind),
            name=node.name,
            attributes=dict(node.attributes),
            children=[cls.of(c) for c in node.children],
        )


class AssetCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128)
    kind: AssetKind
    parent_id: int | None = Field(
        None,
        description="A site has none; a workshop's parent is a site, a line's a "
        "workshop, an equipment's a line.",
    )
    attributes: dict[str, Any] = Field(default_factory=dict)
    tenant_id: int | None = Field(None, description="Platform admins only: the tenant.")


class AssetUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=128)
    parent_id: int | None = Field(None, description="Move under another parent of the right kind.")
    attributes: dict[str, Any] | None = Field(None, description="Replaces all attributes.")

    @field_validator("name", "attributes", mode="before")
    @classmethod
    def _not_null(cls, v: Any) -> Any:
        # Omit a field to leave it unchanged; null is only meaningful where allowed.
        if v is None:
            raise ValueError("may not be null")
        return v


@router.get("", summary="List assets")
def list_assets(
    principal: PrincipalDep,
    registry: RegistryDep,
    parent_id: int | None = None,
    kind: AssetKind | None = None,
    search: Annotated[str | None, Query(max_length=128)] = None,
    tenant_id: TenantQuery = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> AssetPage:
    extra: dict[str, Any] = {} if parent_id is None else {"parent_id": parent_id}
    page = registry.assets.list(
        principal,
        tenant_id=tenant_id,
        kind=kind,
        search=search,
        limit=limit,
        offset=offset,
        **extra,
    )
    return AssetPage(
        items=[AssetOut.model_validate(a) for a in page.items],
        total=page.total,
        limit=page.limit,
        offset=page.offset,
    )


@router.get("/tree", summary="The asset tree (or the subtree under root_id)")
def asset_tree(
    principal: PrincipalDep,
    registry: RegistryDep,
    root_id: int | None = None,
    tenant_id: TenantQuery = None,
) -> list[AssetNodeOut]:
    nodes = registry.assets.tree(principal, root_id=root_id, tenant_id=tenant_id)
    return [AssetNodeOut.of(n) for n in nodes]


@router.post("", status_code=status.HTTP_201_CREATED, summary="Create an asset")
def create_asset(body: AssetCreate, principal: PrincipalDep, registry: RegistryDep) -> AssetOut:
    return AssetOut.model_validate(registry.assets.create(principal, **body.model_dump()))


@router.get("/{asset_id}", summary="Get an asset")
def get_asset(
    asset_id: int, principal: PrincipalDep, registry: RegistryDep, tenant_id: TenantQuery = None
) -> AssetOut:
    return AssetOut.model_validate(registry.assets.get(principal, asset_id, tenant_id=tenant_id))


@router.patch("/{asset_id}", summary="Rename, move or re-attribute an asset")
def update_asset(
    asset_id: int,
    body: AssetUpdate,
    principal: PrincipalDep,
    registry: RegistryDep,
    tenant_id: TenantQuery = None,
) -> AssetOut:
    changes = body.model_dump(exclude_unset=True)
    return AssetOut.model_validate(
        registry.assets.update(principal, asset_id, tenant_id=tenant_id, **changes)
    )


@router.delete(
    "/{asset_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete an asset without children (its devices become unplaced)",
)
def delete_asset(
    asset_id: int, principal: PrincipalDep, registry: RegistryDep, tenant_id: TenantQuery = None
) -> None:
    registry.assets.delete(principal, asset_id, tenant_id=tenant_id)
