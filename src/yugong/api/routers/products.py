"""Products and their thing models (TSL JSON, imported and exported as is)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Response, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from yugong.api.deps import Limit, Offset, PrincipalDep, RegistryDep, TenantQuery
from yugong.platform.registry.records import ProductRecord

router = APIRouter(prefix="/products", tags=["products"])

TslBody = Annotated[
    dict[str, Any],
    Body(
        description="A TSL document: {schema, profile, properties, events, services}.",
        examples=[
            {
                "profile": {"productKey": "meter"},
                "properties": [
                    {
                        "identifier": "voltage",
                        "name": "Voltage",
                        "accessMode": "r",
                        "dataType": {
                            "type": "float",
                            "specs": {"min": "0", "max": "500", "unit": "V"},
                        },
                    }
                ],
                "events": [],
                "services": [],
            }
        ],
    ),
]


class ProductOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    tenant_id: int
    key: str
    name: str
    description: str
    is_gateway: bool
    version: int = Field(description="Bumped on every change of the thing model.")
    properties: int = Field(description="Number of properties in the thing model.")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, rec: ProductRecord) -> ProductOut:
        return cls(
            id=rec.id,
            tenant_id=rec.tenant_id,
            key=rec.key,
            name=rec.name,
            description=rec.description,
            is_gateway=rec.is_gateway,
            version=rec.version,
            properties=len(rec.tsl.get("properties") or ()),
            created_at=rec.created_at,
            updated_at=rec.updated_at,
        )


class ProductPage(BaseModel):
    items: list[ProductOut]
    total: int
    limit: int
    offset: int


class ProductCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_.\-]+$",
        description="Unique in the tenant, e.g. the productKey.",
    )
    name: str = Field(min_length=1, max_length=128)
    description: str = Field("", max_length=4000)
    is_gateway: bool = Field(False, description="Devices of this product can be gateways.")
    tsl: dict[str, Any] | None = Field(None, description="The thing model (TSL JSON).")
    tenant_id: int | None = Field(None, description="Platform admins only: the tenant.")


class ProductUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=128)
    description: str | None = Field(None, max_length=4000)
    is_gateway: bool | None = Field(None)

    @field_validator("name", "is_gateway", mode="before")
    @classmethod
    def _not_null(cls, v: Any) -> Any:
        # Omit a field to leave it unchanged; null is only meaningful where allowed.
        if v is None:
            raise ValueError("may not be null")
        return v


@router.get("", summary="List products")
def list_products(
    principal: PrincipalDep,
    registry: RegistryDep,
    search: Annotated[str | None, Query(max_length=128, description="In key or name.")] = None,
    is_gateway: bool | None = None,
    tenant_id: TenantQuery = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> ProductPage:
    page = registry.products.list(
        principal,
        tenant_id=tenant_id,
        search=search,
        is_gateway=is_gateway,
        limit=limit,
        offset=offset,
    )
    return ProductPage(
        items=[ProductOut.of(r) for r in page.items],
        total=page.total,
        limit=page.limit,
        offset=page.offset,
    )


@router.post("", status_code=status.HTTP_201_CREATED, summary="Create a product")
def create_product(
    body: ProductCreate, principal: PrincipalDep, registry: RegistryDep
) -> ProductOut:
    rec = registry.products.create(
        principal,
        key=body.key,
        name=body.name,
        description=body.description,
        is_gateway=body.is_gateway,
        tsl_document=body.tsl,
        tenant_id=body.tenant_id,
    )
    return ProductOut.of(rec)


@router.post(
    "/import",
    summary="Import a TSL thing model",
    description="Creates the product (201), or replaces the model of the product with that "
    "key (200). The key comes from `key` or the document's `profile.productKey`.",
    status_code=status.HTTP_201_CREATED,
    responses={200: {"description": "The model of an existing product was replaced."}},
)
def import_product(
    document: TslBody,
    response: Response,
    principal: PrincipalDep,
    registry: RegistryDep,
    key: Annotated[str | None, Query(max_length=64)] = None,
    name: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
    tenant_id: TenantQuery = None,
) -> ProductOut:
    rec, created = registry.products.import_tsl(
        principal, document, key=key, name=name, tenant_id=tenant_id
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    return ProductOut.of(rec)


@router.get("/{product_id}", summary="Get a product")
def get_product(
    product_id: int,
    principal: PrincipalDep,
    registry: RegistryDep,
    tenant_id: TenantQuery = None,
) -> ProductOut:
    return ProductOut.of(registry.products.get(principal, product_id, tenant_id=tenant_id))


@router.get(
    "/{product_id}/tsl",
    summary="Export the thing model",
    description="The TSL document exactly as it was imported.",
    response_class=JSONResponse,
    responses={200: {"content": {"application/json": {"schema": {"type": "object"}}}}},
)
def export_tsl(
    product_id: int,
    principal: PrincipalDep,
    registry: RegistryDep,
    tenant_id: TenantQuery = None,
) -> JSONResponse:
    doc = registry.products.export_tsl(principal, product_id, tenant_id=tenant_id)
    return JSONResponse(doc)


@router.put("/{product_id}/tsl", summary="Replace the thing model")
def replace_tsl(
    product_id: int,
    document: TslBody,
    principal: PrincipalDep,
    registry: RegistryDep,
    tenant_id: TenantQuery = None,
) -> ProductOut:
    return ProductOut.of(
        registry.products.update_model(principal, product_id, document, tenant_id=tenant_id)
    )


@router.patch("/{product_id}", summary="Change name, description or gateway flag")
def update_product(
    product_id: int,
    body: ProductUpdate,
    principal: PrincipalDep,
    registry: RegistryDep,
    tenant_id: TenantQuery = None,
) -> ProductOut:
    changes = body.model_dump(exclude_unset=True)
    return ProductOut.of(
        registry.products.update(principal, product_id, tenant_id=tenant_id, **changes)
    )


@router.delete(
    "/{product_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a product no device uses",
)
def delete_product(
    product_id: int,
    principal: PrincipalDep,
    registry: RegistryDep,
    tenant_id: TenantQuery = None,
) -> None:
    registry.products.delete(principal, product_id, tenant_id=tenant_id)
