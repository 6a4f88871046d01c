"""Thing models in TSL, the thing specification language JSON used by Alibaba Cloud IoT and
many platforms and device SDKs after it.

:func:`parse` validates a document and returns a :class:`ThingModel`; the original document is
kept as given, so export returns exactly what was imported (extra keys such as ``desc`` or
``functionType`` included). Validation errors name the path of the offending value, e.g.
``properties[2].dataType.specs.min: must be <= max``.

Shape::

    {"schema": "...", "profile": {"productKey": "..."},
     "properties": [{"identifier", "name", "accessMode": "r"|"rw", "required",
                     "dataType": {"type": "int|float|double|bool|enum|text|date|struct|array",
                                  "specs": {...}}}],
     "events": [{"identifier", "name", "type": "info|alert|error", "outputData": [...],
                 "method"}],
     "services": [{"identifier", "name", "callType": "async|sync", "inputData": [...],
                   "outputData": [...], "method"}]}
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, cast, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from yugong.core.errors import FieldError, InvalidInput

__all__ = [
    "DataType",
    "Event",
    "Param",
    "Property",
    "Service",
    "ThingModel",
    "TslType",
    "empty_document",
    "parse",
]

TslType = Literal["int", "float", "double", "bool", "enum", "text", "date", "struct", "array"]
TSL_TYPES: tuple[str, ...] = get_args(TslType)
IDENTIFIER_PATTERN = r"^[A-Za-z0-9_]{1,50}$"
DEFAULT_SCHEMA = "https://iotx-tsl.oss-ap-southeast-1.aliyuncs.com/schema.json"


# Result types ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataType:
    """A validated data type; only the fields of its ``type`` are set."""

    type: TslType
    min: float | None = None
    max: float | None = None
    step: float | None = None
    unit: str | None = None
    unit_name: str | None = None
    enum: Mapping[int, str] | None = None  # enum values, and bool's 0/1 labels
    length: int | None = None  # text
    fields: tuple[Param, ...] | None = None  # struct
    size: int | None = None  # array
    item: DataType | None = None  # array


@dataclass(frozen=True)
class Param:
    identifier: str
    name: str
    data_type: DataType | None  # None: a bare reference to a property (Aliyun ``get`` service)


@dataclass(frozen=True)
class Property:
    identifier: str
    name: str
    access_mode: Literal["r", "rw"]
    required: bool
    data_type: DataType

    @property
    def writable(self) -> bool:
        return self.access_mode == "rw"


@dataclass(frozen=True)
class Event:
    identifier: str
    name: str
    type: Literal["info", "alert", "error"]
    output: tuple[Param, ...]
    method: str | None


@dataclass(frozen=True)
class Service:
    identifier: str
    name: str
    call_type: Literal["async", "sync"]
    input: tuple[Param, ...]
    output: tuple[Param, ...]
    method: str | None


@dataclass(frozen=True)
class ThingModel:
    """A validated thing model plus the document it came from (kept unchanged)."""

    document: Mapping[str, Any]
    properties: tuple[Property, ...]
    events: tuple[Event, ...]
    services: tuple[Service, ...]

    def to_json(self) -> dict[str, Any]:
        """The document as imported (a copy the caller may change)."""
        return copy.deepcopy(dict(self.document))

    def get_property(self, identifier: str) -> Property | None:
        return next((p for p in self.properties if p.identifier == identifier), None)

    @property
    def property_ids(self) -> tuple[str, ...]:
        return tuple(p.identifier for p in self.properties)


# Wire models: one per node, validated one node at a time so errors carry our own paths ---------


class _Node(BaseModel):
    # TSL exports carry more keys (desc, functionType, ...): keep them, don't judge them.
    model_config = ConfigDict(extra="allow", frozen=True)


class _Doc(_Node):
    properties: list[Any] = Field(default_factory=list)
    events: list[Any] = Field(default_factory=list)
    services: list[Any] = Field(default_factory=list)
    profile: dict[str, Any] | None = None
    schema_: str | None = Field(None, alias="schema")


class _Named(_Node):
    identifier: str = Field(pattern=IDENTIFIER_PATTERN)
    name: str = Field(min_length=1)


class _PropertyIn(_Named):
    accessMode: Literal["r", "rw"] = "rw"
    required: bool = False
    dataType: dict[str, Any]


class _ParamIn(_Named):
    dataType: dict[str, Any]


class _EventIn(_Named):
    type: Literal["info", "alert", "error"] = "info"
    outputData: list[Any] = Field(default_factory=list)
    method: str | None = None


class _ServiceIn(_Named):
    callType: Literal["async", "sync"] = "async"
    inputData: list[Any] = Field(default_factory=list)
    outputData: list[Any] = Field(default_factory=list)
    method: str | None = None


class _DataTypeIn(_Node):
    type: TslType
    specs: Any = None


def _number(v: Any) -> Any:
    # Aliyun exports numbers as strings ("min": "0"); empty strings mean "not set".
    if isinstance(v, str):
        v = v.strip()
        return None if v == "" else v
    return v


class _NumberSpecs(_Node):
    min: float | None = None
    max: float | None = None
    step: float | None = None
    unit: str | None = None
    unitName: str | None = None

    _strip = field_validator("min", "max", "step", mode="before")(_number)

    @field_validator("min", "max", "step")
    @classmethod
    def _finite(cls, v: float | None) -> float | None:
        if v is not None and not math.isfinite(v):
            raise ValueError("must be a finite number")
        return v


class _TextSpecs(_Node):
    length: int | None = Field(None, gt=0)

    _strip = field_validator("length", mode="before")(_number)


class _ArraySpecs(_Node):
    size: int = Field(gt=0)
    item: dict[str, Any]

    _strip = field_validator("size", mode="before")(_number)


M = TypeVar("M", bound=BaseModel)


def _loc(parts: tuple[str | int, ...]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class _Checker:
    """Walks a document, collecting every error with its path."""

    def __init__(self) -> None:
        self.errors: list[FieldError] = []

    def fail(self, path: str, msg: str) -> None:
        self.errors.append(FieldError(path, msg))

    def model(self, cls: type[M], data: Any, path: str) -> M | None:
        if not isinstance(data, Mapping):
            self.fail(path, f"must be an object, not {type(data).__name__}")
            return None
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            for err in exc.errors():
                sub = _loc(tuple(err["loc"]))
                where = f"{path}.{sub}" if path and sub else (path or sub)
                self.fail(where, _message(err))
            return None

    def unique(self, items: list[Any], path: str) -> None:
        seen: dict[str, int] = {}
        for i, item in enumerate(items):
            ident = getattr(item, "identifier", None)
            if ident is None:
                continue
            if ident in seen:
                self.fail(
                    f"{path}[{i}].identifier",
                    f"duplicate identifier {ident!r} (also at {path}[{seen[ident]}])",
                )
            else:
                seen[ident] = i

    def data_type(self, raw: Any, path: str) -> DataType | None:
        dt = self.model(_DataTypeIn, raw, path)
        if dt is None:
            return None
        specs, spath = dt.specs, f"{path}.specs"
        t = dt.type
        if t in ("int", "float", "double"):
            ns = self.model(_NumberSpecs, {} if specs is None else specs, spath)
            if ns is None:
                return None
            ok = True
            if ns.min is not None and ns.max is not None and ns.min > ns.max:
                self.fail(f"{spath}.min", "must be <= max")
                ok = False
            if ns.step is not None and ns.step <= 0:
                self.fail(f"{spath}.step", "must be > 0")
                ok = False
            if t == "int":
                for key in ("min", "max"):
                    v = getattr(ns, key)
                    if v is not None and not float(v).is_integer():
                        self.fail(f"{spath}.{key}", "must be an integer for type int")
                        ok = False
            if not ok:
                return None
            return DataType(
                t, min=ns.min, max=ns.max, step=ns.step, unit=ns.unit, unit_name=ns.unitName
            )
        if t in ("bool", "enum"):
            labels = self.labels(specs, spath, t)
            return None if labels is None else DataType(t, enum=labels)
        if t == "text":
            ts = self.model(_TextSpecs, {} if specs is None else specs, spath)
            return None if ts is None else DataType(t, length=ts.length)
        if t == "date":
            if specs not in (None, {}) and not isinstance(specs, Mapping):
                self.fail(spath, "must be an object")
                return None
            return DataType(t)
        if t == "struct":
            if not isinstance(specs, list) or not specs:
                self.fail(spath, "must be a non-empty list of fields")
                return None
            fields = self.params(specs, spath, allow_refs=False)
            return None if fields is None else DataType(t, fields=fields)
        # array
        arr = self.model(_ArraySpecs, specs, spath)
        if arr is None:
            return None
        item = self.data_type(arr.item, f"{spath}.item")
        if item is None:
            return None
        if item.type == "array":
            self.fail(f"{spath}.item.type", "arrays of arrays are not supported")
            return None
        return DataType(t, size=arr.size, item=item)

    def labels(self, specs: Any, path: str, t: str) -> dict[int, str] | None:
        if not isinstance(specs, Mapping) or not specs:
            self.fail(path, 'must be an object mapping values to labels, e.g. {"0": "off"}')
            return None
        out: dict[int, str] = {}
        for key, label in specs.items():
            try:
                value = int(str(key))
            except ValueError:
                self.fail(f"{path}.{key}", "keys must be integers")
                continue
            if t == "bool" and value not in (0, 1):
                self.fail(f"{path}.{key}", "bool keys must be 0 and 1")
                continue
            if not isinstance(label, str):
                self.fail(f"{path}.{key}", "label must be a string")
                continue
            out[value] = label
        if t == "bool" and len(out) == len(specs) and set(out) != {0, 1}:
            self.fail(path, "bool needs labels for both 0 and 1")
            return None
        return out if len(out) == len(specs) else None

    def params(self, raw: list[Any], path: str, *, allow_refs: bool) -> tuple[Param, ...] | None:
        before = len(self.errors)
        items: list[Param] = []
        for i, entry in enumerate(raw):
            where = f"{path}[{i}]"
            if allow_refs and isinstance(entry, str):
                # Aliyun's ``get`` service lists property identifiers as plain strings.
                items.append(Param(entry, entry, None))
                continue
            p = self.model(_ParamIn, entry, where)
            if p is None:
                continue
            dt = self.data_type(p.dataType, f"{where}.dataType")
            if dt is not None:
                items.append(Param(p.identifier, p.name, dt))
        self.unique(items, path)
        return tuple(items) if len(self.errors) == before else None


def _message(err: Any) -> str:
    msg = str(err["msg"])
    if err["type"] == "missing":
        return "is required"
    if err["type"] == "string_pattern_mismatch":
        return "must be 1-50 letters, digits or underscores"
    return msg[0].lower() + msg[1:] if msg else msg


def parse(document: Any) -> ThingModel:
    """Validate a TSL document. Raises :class:`InvalidInput` listing every error by path."""
    check = _Checker()
    doc = check.model(_Doc, document, "")
    if doc is None:
        raise InvalidInput("invalid thing model", check.errors)

    properties: list[Property] = []
    for i, raw in enumerate(doc.properties):
        where = f"properties[{i}]"
        p = check.model(_PropertyIn, raw, where)
        if p is None:
            continue
        dt = check.data_type(p.dataType, f"{where}.dataType")
        if dt is not None:
            properties.append(Property(p.identifier, p.name, p.accessMode, p.required, dt))
    check.unique(properties, "properties")

    events: list[Event] = []
    for i, raw in enumerate(doc.events):
        where = f"events[{i}]"
        e = check.model(_EventIn, raw, where)
        if e is None:
            continue
        out = check.params(e.outputData, f"{where}.outputData", allow_refs=False)
        if out is not None:
            events.append(Event(e.identifier, e.name, e.type, out, e.method))
    check.unique(events, "events")

    services: list[Service] = []
    for i, raw in enumerate(doc.services):
        where = f"services[{i}]"
        s = check.model(_ServiceIn, raw, where)
        if s is None:
            continue
        inp = check.params(s.inputData, f"{where}.inputData", allow_refs=True)
        out = check.params(s.outputData, f"{where}.outputData", allow_refs=False)
        if inp is not None and out is not None:
            services.append(Service(s.identifier, s.name, s.callType, inp, out, s.method))
    check.unique(services, "services")

    if check.errors:
        first = check.errors[0]
        more = f" (and {len(check.errors) - 1} more)" if len(check.errors) > 1 else ""
        raise InvalidInput(f"invalid thing model: {first.loc}: {first.msg}{more}", check.errors)
    return ThingModel(
        copy.deepcopy(dict(cast(Mapping[str, Any], document))),
        tuple(properties),
        tuple(events),
        tuple(services),
    )


def empty_document(product_key: str) -> dict[str, Any]:
    """A thing model with nothing in it yet, in the usual TSL shape."""
    return {
        "schema": DEFAULT_SCHEMA,
        "profile": {"productKey": product_key},
        "properties": [],
        "events": [],
        "services": [],
    }
