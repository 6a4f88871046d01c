"""Rules as people manage them: create, update (each change a new version), enable, disable,
delete, import and export as YAML or JSON, and dry-run against stored history.

A spec is checked twice: by :class:`RuleSpec` (its shape), then against the registry: the
target exists in the tenant, and every property the condition reads exists in the target's
thing model with a type the condition can use. Every problem is an :class:`InvalidInput`
naming the field (``condition.property``, ``target.product``, ...).

:meth:`RuleService.active_rules` resolves the enabled rules' targets to devices and series
(one device; every device of a product; every device under an asset and its descendants).
The runner calls it again whenever a rule changes (``on_change`` listeners) and on a periodic
refresh, which is how device, product and asset changes reach running rules.
"""

from __future__ import annotations

import builtins
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import yaml
from pydantic import ValidationError
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from yugong.core.errors import Conflict, FieldError, InvalidInput, NotFound
from yugong.core.expr import compile_expr
from yugong.infra.db import Database, utcnow
from yugong.platform.registry.models import Asset, Device, Product, Series
from yugong.platform.registry.records import Listing
from yugong.platform.rules.models import Rule, RuleState, RuleVersion
from yugong.platform.rules.spec import RuleSpec
from yugong.platform.rules.types import ActiveRule
from yugong.security.principal import Principal

log = logging.getLogger(__name__)

READ_ACTION = "rules:read"
WRITE_ACTION = "rules:write"
MAX_LIMIT = 1000
MAX_IMPORT = 1000
MAX_DRY_RUN_DAYS = 31
MAX_DRY_RUN_US = MAX_DRY_RUN_DAYS * 86_400 * 1_000_000
Format = Literal["yaml", "json"]

# TSL types whose samples are numbers in the ``value`` column.
NUMBERS = frozenset({"int", "float", "double"})
VALUES = NUMBERS | {"bool", "enum", "date"}
# What each condition kind needs of the properties it reads.
_NEEDS: dict[str, frozenset[str] | None] = {
    "threshold": VALUES,
    "sustained": VALUES,
    "count": VALUES,
    "rate": NUMBERS,
    "deviation": NUMBERS,
    "expression": VALUES,
    "state_change": None,  # any type
    "no_data": None,
}


@dataclass(frozen=True)
class RuleRecord:
    id: int
    tenant_id: int
    name: str
    version: int
    enabled: bool
    spec: Mapping[str, Any]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class RuleVersionRecord:
    rule_id: int
    version: int
    spec: Mapping[str, Any]
    created_at: datetime
    created_by: str


def _record(r: Rule) -> RuleRecord:
    return RuleRecord(
        r.id, r.tenant_id, r.name, r.version, r.enabled, r.spec, r.created_at, r.updated_at
    )


def _invalid(loc: str, msg: str) -> InvalidInput:
    return InvalidInput(f"{loc}: {msg}", [FieldError(loc, msg)])


def parse_spec(document: Any, loc: str = "") -> RuleSpec:
    """A :class:`RuleSpec` from JSON/YAML data, or :class:`InvalidInput` naming each field."""
    if isinstance(document, RuleSpec):
        return document
    if not isinstance(document, Mapping):
        raise _invalid(loc or "spec", "must be an object")
    try:
        return RuleSpec.model_validate(dict(document))
    except ValidationError as exc:
        errors = []
        for e in exc.errors():
            # Drop the discriminator's tag (``condition.sustained.for`` -> ``condition.for``).
            parts = [str(p) for p in e["loc"]]
            if len(parts) > 1 and parts[0] == "condition" and parts[1] in _NEEDS:
                del parts[1]
            where = ".".join(p for p in [loc, *parts] if p) or (loc or "spec")
            errors.append(FieldError(where, e["msg"]))
        summary = "; ".join(f"{fe.loc}: {fe.msg}" for fe in errors)
        raise InvalidInput(f"invalid rule: {summary}", errors) from None
    except InvalidInput as exc:  # the expression compiler's own errors
        raise InvalidInput(
            exc.detail, [FieldError(f"{loc}.condition.expression".lstrip("."), exc.detail)]
        ) from None


def dump_spec(spec: RuleSpec) -> dict[str, Any]:
    """The spec as stored and exported: by the names people write (``for``, ``window``)."""
    return spec.model_dump(mode="json", by_alias=True, exclude_none=True)


def condition_properties(spec: RuleSpec) -> tuple[str, ...]:
    """The properties the condition reads; empty: every property (``no_data`` without one)."""
    c = spec.condition
    if c.kind == "expression":
        return tuple(sorted(compile_expr(c.expression).names))
    prop = getattr(c, "property", None)
    return (prop,) if prop else ()


def parse_documents(text: str | bytes, fmt: Format | None = None) -> list[Any]:
    """One rule or a list of rules from YAML or JSON text (JSON is YAML too)."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise _invalid("body", "must be UTF-8 text") from None
    try:
        data = json.loads(text) if fmt == "json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise _invalid("body", f"not valid {fmt or 'YAML/JSON'}: {exc}") from None
    if isinstance(data, Mapping) and isinstance(data.get("rules"), list):
        data = data["rules"]
    items = data if isinstance(data, list) else [data]
    if not items:
        raise _invalid("body", "no rules in the document")
    if len(items) > MAX_IMPORT:
        raise _invalid("body", f"at most {MAX_IMPORT} rules per import")
    return items


def render_documents(specs: Sequence[Mapping[str, Any]], fmt: Format) -> str:
    if fmt == "json":
        return json.dumps(list(specs), indent=2, ensure_ascii=False) + "\n"
    return yaml.safe_dump(list(specs), sort_keys=False, allow_unicode=True)


class RuleService:
    """Rules of every tenant, scoped by the caller's principal. ``audit`` (an
    :class:`~yugong.security.audit.AuditLog`) records every change; ``store`` is needed
    for dry-runs only."""

    def __init__(self, db: Database, *, store: Any = None, audit: Any = None) -> None:
        self._db = db
        self.store = store
        self.audit = audit
        self._listeners: builtins.list[Callable[[], None]] = []

    # change notification ---------------------------------------------------------------

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` (from any thread) after every committed rule change."""
        self._listeners.append(listener)

    def _changed(self) -> None:
        for listener in self._listeners:
            try:
                listener()
            except Exception:
                log.exception("rule change listener failed")

    def _audit(self, s: Session, action: str, rule: Rule, **detail: Any) -> None:
        if self.audit is not None:
            self.audit.record(
                f"rules.{action}",
                tenant_id=rule.tenant_id,
                target_type="rule",
                target_id=rule.id,
                detail={"name": rule.name, "version": rule.version, **detail},
                session=s,
            )

    # reads -------------------------------------------------------------------------------

    @staticmethod
    def _get(s: Session, p: Principal, rule_id: int, tenant_id: int | None) -> Rule:
        tenant = None if (p.is_platform and tenant_id is None) else p.tenant_for(tenant_id)
        rule = s.get(Rule, rule_id)
        if rule is None or (tenant is not None and rule.tenant_id != tenant):
            raise NotFound(f"rule {rule_id} not found")
        return rule

    def get(self, p: Principal, rule_id: int, *, tenant_id: int | None = None) -> RuleRecord:
        p.require(READ_ACTION)
        with self._db.session() as s:
            return _record(self._get(s, p, rule_id, tenant_id))

    def list(
        self,
        p: Principal,
        *,
        tenant_id: int | None = None,
        enabled: bool | None = None,
        search: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> Listing[RuleRecord]:
        p.require(READ_ACTION)
        if not 1 <= limit <= MAX_LIMIT:
            raise _invalid("limit", f"must be between 1 and {MAX_LIMIT}")
        if offset < 0:
            raise _invalid("offset", "must be >= 0")
        q = select(Rule).where(Rule.tenant_id == p.tenant_for(tenant_id))
        if enabled is not None:
            q = q.where(Rule.enabled == enabled)
        if search:
            q = q.where(Rule.name.contains(search, autoescape=True))
        with self._db.session() as s:
            total = s.scalar(select(func.count()).select_from(q.subquery())) or 0
            rows = s.scalars(q.order_by(Rule.id).limit(limit).offset(offset)).all()
            return Listing([_record(r) for r in rows], total, limit, offset)

    def versions(
        self, p: Principal, rule_id: int, *, tenant_id: int | None = None
    ) -> builtins.list[RuleVersionRecord]:
        p.require(READ_ACTION)
        with self._db.session() as s:
            self._get(s, p, rule_id, tenant_id)
            rows = s.scalars(
                select(RuleVersion)
                .where(RuleVersion.rule_id == rule_id)
                .order_by(RuleVersion.version)
            ).all()
            return [
                RuleVersionRecord(v.rule_id, v.version, v.spec, v.created_at, v.created_by)
                for v in rows
            ]

    # writes ------------------------------------------------------------------------------

    def create(self, p: Principal, document: Any, *, tenant_id: int | None = None) -> RuleRecord:
        p.require(WRITE_ACTION)
        tenant = p.tenant_for(tenant_id)
        spec = parse_spec(document)
        with self._db.session() as s:
            check_against_registry(s, tenant, spec)
            self._check_name(s, tenant, spec.name)
            now = utcnow()
            rule = Rule(
                tenant_id=tenant,
                name=spec.name,
                version=1,
                enabled=spec.enabled,
                spec=dump_spec(spec),
                created_at=now,
                updated_at=now,
            )
            s.add(rule)
            s.flush()
            s.add(RuleVersion(rule_id=rule.id, version=1, spec=rule.spec, created_by=p.name))
            self._audit(s, "create", rule)
            out = _record(rule)
        self._changed()
        return out

    def update(
        self, p: Principal, rule_id: int, document: Any, *, tenant_id: int | None = None
    ) -> RuleRecord:
        """Replace the spec: a new version (unchanged specs keep their version)."""
        p.require(WRITE_ACTION)
        spec = parse_spec(document)
        with self._db.session() as s:
            rule = self._get(s, p, rule_id, tenant_id)
            check_against_registry(s, rule.tenant_id, spec)
            if spec.name != rule.name:
                self._check_name(s, rule.tenant_id, spec.name)
            stored = dump_spec(spec)
            if stored == rule.spec:
                return _record(rule)
            rule.version += 1
            rule.name, rule.spec, rule.enabled = spec.name, stored, spec.enabled
            rule.updated_at = utcnow()
            s.add(
                RuleVersion(rule_id=rule.id, version=rule.version, spec=stored, created_by=p.name)
            )
            self._audit(s, "update", rule)
            out = _record(rule)
        self._changed()
        return out

    def set_enabled(
        self, p: Principal, rule_id: int, enabled: bool, *, tenant_id: int | None = None
    ) -> RuleRecord:
        """Switch a rule on or off; not a new version (the spec is unchanged)."""
        p.require(WRITE_ACTION)
        with self._db.session() as s:
            rule = self._get(s, p, rule_id, tenant_id)
            if rule.enabled != enabled:
                rule.enabled = enabled
                rule.spec = {**rule.spec, "enabled": enabled}
                rule.updated_at = utcnow()
                self._audit(s, "enable" if enabled else "disable", rule)
            out = _record(rule)
        self._changed()
        return out

    def delete(self, p: Principal, rule_id: int, *, tenant_id: int | None = None) -> None:
        p.require(WRITE_ACTION)
        with self._db.session() as s:
            rule = self._get(s, p, rule_id, tenant_id)
            self._audit(s, "delete", rule)
            s.execute(delete(RuleState).where(RuleState.rule_id == rule.id))
            s.execute(delete(RuleVersion).where(RuleVersion.rule_id == rule.id))
            s.delete(rule)
        self._changed()

    @staticmethod
    def _check_name(s: Session, tenant: int, name: str) -> None:
        taken = s.scalar(select(Rule.id).where(Rule.tenant_id == tenant, Rule.name == name))
        if taken is not None:
            raise Conflict(
                f"a rule named {name!r} already exists", [FieldError("name", "already exists")]
            )

    # import / export ---------------------------------------------------------------------

    def import_text(
        self,
        p: Principal,
        text: str | bytes,
        *,
        fmt: Format | None = None,
        tenant_id: int | None = None,
    ) -> builtins.list[RuleRecord]:
        """Create or update (by name) every rule in the document, all or nothing: every
        spec is validated before anything is written. Errors name ``[i].field``."""
        p.require(WRITE_ACTION)
        tenant = p.tenant_for(tenant_id)
        specs = [parse_spec(doc, f"[{i}]") for i, doc in enumerate(parse_documents(text, fmt))]
        names = [sp.name for sp in specs]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup is not None:
            raise _invalid(f"[{names.index(dup)}].name", f"{dup!r} appears more than once")
        with self._db.session() as s:
            for i, spec in enumerate(specs):
                try:
                    check_against_registry(s, tenant, spec)
                except InvalidInput as exc:
                    raise InvalidInput(
                        f"[{i}] {exc.detail}",
                        [FieldError(f"[{i}].{e.loc}", e.msg) for e in exc.errors],
                    ) from None
        out: builtins.list[RuleRecord] = []
        for spec in specs:
            with self._db.session() as s:
                existing = s.scalar(
                    select(Rule.id).where(Rule.tenant_id == tenant, Rule.name == spec.name)
                )
            if existing is None:
                out.append(self.create(p, spec, tenant_id=tenant))
            else:
                out.append(self.update(p, existing, spec, tenant_id=tenant))
        return out

    def export_text(
        self,
        p: Principal,
        *,
        fmt: Format = "yaml",
        tenant_id: int | None = None,
        ids: Iterable[int] | None = None,
    ) -> str:
        """The tenant's rules (or the given ones) as a document :meth:`import_text` reads."""
        p.require(READ_ACTION)
        tenant = p.tenant_for(tenant_id)
        q = select(Rule).where(Rule.tenant_id == tenant).order_by(Rule.id)
        if ids is not None:
            q = q.where(Rule.id.in_(list(ids)))
        with self._db.session() as s:
            specs = [{**r.spec, "enabled": r.enabled} for r in s.scalars(q)]
        return render_documents(specs, fmt)

    # the running side --------------------------------------------------------------------

    def active_rules(self, tenant: int | None = None) -> builtins.list[ActiveRule]:
        """Enabled rules with their targets resolved to device -> property -> series."""
        q = select(Rule).where(Rule.enabled.is_(True))
        if tenant is not None:
            q = q.where(Rule.tenant_id == tenant)
        with self._db.session() as s:
            rules = list(s.scalars(q.order_by(Rule.id)))
            return resolve(
                s, [(r.id, r.version, r.tenant_id, RuleSpec.model_validate(r.spec)) for r in rules]
            )

    def versions_by_rule(self) -> dict[int, int]:
        with self._db.session() as s:
            return {rid: v for rid, v in s.execute(select(Rule.id, Rule.version))}

    def load_state(self) -> dict[int, tuple[int, bytes]]:
        """Saved engine state of each rule whose version is still current."""
        with self._db.session() as s:
            rows = s.execute(
                select(RuleState.rule_id, RuleState.version, RuleState.state)
                .join(Rule, Rule.id == RuleState.rule_id)
                .where(Rule.version == RuleState.version)
            ).all()
            return {rid: (v, bytes(state)) for rid, v, state in rows}

    def save_state(self, snapshot: Mapping[int, tuple[int, bytes]]) -> int:
        """Store the engine's snapshot (rules deleted meanwhile are skipped)."""
        if not snapshot:
            return 0
        with self._db.session() as s:
            alive = set(s.scalars(select(Rule.id).where(Rule.id.in_(list(snapshot)))))
            have = {
                r.rule_id: r
                for r in s.scalars(select(RuleState).where(RuleState.rule_id.in_(alive)))
            }
            now = utcnow()
            for rid in alive:
                version, state = snapshot[rid]
                row = have.get(rid)
                if row is None:
                    s.add(RuleState(rule_id=rid, version=version, state=state, saved_at=now))
                else:
                    row.version, row.state, row.saved_at = version, state, now
            return len(alive)

    def dry_run(
        self,
        p: Principal,
        rule: Any,
        start_us: int,
        end_us: int,
        *,
        tenant_id: int | None = None,
        tick_s: float = 1.0,
    ) -> builtins.list[Any]:
        """What the rule (an id or a spec) would have raised from ``start_us`` to ``end_us``
        on the stored history; see :mod:`yugong.platform.rules.dryrun`."""
        from yugong.platform.rules.runner import replay

        p.require(READ_ACTION)
        if self.store is None:
            raise Conflict("dry-run needs the time-series store")
        if end_us <= start_us:
            raise _invalid("end", "must be after start")
        if end_us - start_us > MAX_DRY_RUN_US:
            raise _invalid("end", f"a dry-run spans at most {MAX_DRY_RUN_DAYS} days")
        if isinstance(rule, int) and not isinstance(rule, bool):
            with self._db.session() as s:
                row = self._get(s, p, rule, tenant_id)
                tenant, rid, version = row.tenant_id, row.id, row.version
                spec = RuleSpec.model_validate(row.spec)
        else:
            tenant, rid, version = p.tenant_for(tenant_id), 0, 0
            spec = parse_spec(rule, "spec")
        with self._db.session() as s:
            if rid == 0:
                try:
                    check_against_registry(s, tenant, spec)
                except InvalidInput as exc:
                    raise InvalidInput(
                        exc.detail, [FieldError(f"spec.{e.loc}", e.msg) for e in exc.errors]
                    ) from None
            active = resolve(s, [(rid, version, tenant, spec)])
        return replay(active[0], self.store, start_us, end_us, tick_s=tick_s)


# Registry checks and target resolution ------------------------------------------------------


def _tsl_types(document: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for prop in document.get("properties") or ():
        data_type = prop.get("dataType") or {}
        out[str(prop.get("identifier"))] = str(data_type.get("type", ""))
    return out


def _asset_subtree(s: Session, tenant: int, root: int) -> set[int]:
    children: dict[int | None, list[int]] = {}
    for aid, parent in s.execute(
        select(Asset.id, Asset.parent_id).where(Asset.tenant_id == tenant)
    ):
        children.setdefault(parent, []).append(aid)
    found, todo = {root}, [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _target_devices(s: Session, tenant: int, spec: RuleSpec) -> list[tuple[int, int]]:
    """(device, product) pairs the target covers; the target must exist in the tenant."""
    t = spec.target
    q = select(Device.id, Device.product_id).where(Device.tenant_id == tenant)
    if t.device is not None:
        rows = s.execute(q.where(Device.id == t.device)).all()
        if not rows:
            raise _invalid("target.device", f"device {t.device} not found in the tenant")
    elif t.product is not None:
        product = s.scalar(
            select(Product.id).where(Product.tenant_id == tenant, Product.key == t.product)
        )
        if product is None:
            raise _invalid("target.product", f"no product with key {t.product!r} in the tenant")
        rows = s.execute(q.where(Device.product_id == product)).all()
    else:
        asset = s.get(Asset, t.asset)
        if asset is None or asset.tenant_id != tenant:
            raise _invalid("target.asset", f"asset {t.asset} not found in the tenant")
        rows = s.execute(q.where(Device.asset_id.in_(_asset_subtree(s, tenant, asset.id)))).all()
    return [(int(d), int(pr)) for d, pr in rows]


def _target_models(s: Session, tenant: int, spec: RuleSpec) -> list[dict[str, str]]:
    """The thing models (property -> TSL type) of the target."""
    t = spec.target
    if t.product is not None:
        _target_devices(s, tenant, spec)  # checks the product exists
        doc = s.scalar(
            select(Product.tsl).where(Product.tenant_id == tenant, Product.key == t.product)
        )
        return [_tsl_types(doc or {})]
    products = {pr for _, pr in _target_devices(s, tenant, spec)}
    if not products:
        return []
    docs = s.scalars(select(Product.tsl).where(Product.id.in_(products))).all()
    return [_tsl_types(d or {}) for d in docs]


def check_against_registry(s: Session, tenant: int, spec: RuleSpec) -> None:
    """The target exists; the properties the condition reads exist in its thing model (for
    an asset: in at least one model under it) and have a type the kind can use."""
    models = _target_models(s, tenant, spec)
    kind = spec.condition.kind
    loc = "condition.expression" if kind == "expression" else "condition.property"
    needs = _NEEDS[kind]
    for prop in condition_properties(spec):
        types = {m[prop] for m in models if prop in m}
        if models and not types:
            where = f"the thing model of {_target_text(spec)}"
            raise _invalid(loc, f"property {prop!r} is not in {where}")
        wrong = sorted(tp for tp in types if needs is not None and tp not in needs)
        if wrong:
            raise _invalid(
                loc,
                f"property {prop!r} is {wrong[0]}; a {kind} condition needs "
                + ("a number" if needs == NUMBERS else "a number, bool, enum or date"),
            )
    for i, action in enumerate(spec.actions):
        if action.kind == "metric" and not action.property:
            raise _invalid(f"actions.{i}.property", "a metric action names the property to write")
        if action.kind == "command" and not action.property:
            raise _invalid(f"actions.{i}.property", "a command action names the property to write")
        if action.kind == "webhook" and not action.target:
            raise _invalid(f"actions.{i}.target", "a webhook action names a notification target")
        if action.kind == "email" and not action.to:
            raise _invalid(f"actions.{i}.to", "an e-mail action needs at least one recipient")


def _target_text(spec: RuleSpec) -> str:
    t = spec.target
    if t.device is not None:
        return f"device {t.device}"
    if t.product is not None:
        return f"product {t.product!r}"
    return f"the devices under asset {t.asset}"


class _TenantIndex:
    """One tenant's devices, products, asset tree and series, read once per resolution."""

    def __init__(self, s: Session, tenant: int) -> None:
        self.devices = s.execute(
            select(Device.id, Device.product_id, Device.asset_id).where(Device.tenant_id == tenant)
        ).all()
        self.products = dict(
            s.execute(select(Product.key, Product.id).where(Product.tenant_id == tenant)).all()
        )
        self.children: dict[int | None, list[int]] = {}
        for aid, parent in s.execute(
            select(Asset.id, Asset.parent_id).where(Asset.tenant_id == tenant)
        ):
            self.children.setdefault(parent, []).append(aid)
        self.series: dict[int, dict[str, int]] = {}
        for device, prop, sid in s.execute(
            select(Series.device_id, Series.property, Series.id).where(Series.tenant_id == tenant)
        ):
            self.series.setdefault(int(device), {})[str(prop)] = int(sid)

    def covered(self, spec: RuleSpec) -> list[int]:
        t = spec.target
        if t.device is not None:
            return [d for d, _, _ in self.devices if d == t.device]
        if t.product is not None:
            product = self.products.get(t.product)
            return [d for d, pr, _ in self.devices if pr == product] if product else []
        found, todo = set(), [t.asset]
        if not any(t.asset in kids for kids in self.children.values()):
            return []  # the asset is gone (or another tenant's)
        while todo:
            node = todo.pop()
            if node not in found:
                found.add(node)
                todo += self.children.get(node, [])
        return [d for d, _, asset in self.devices if asset in found]


def resolve(s: Session, rules: Sequence[tuple[int, int, int, RuleSpec]]) -> list[ActiveRule]:
    """Targets to device -> property -> series for (id, version, tenant, spec) rules, with
    a few queries per tenant (not per rule). A rule whose target vanished covers no devices;
    devices lacking a property the condition reads are left out."""
    indexes: dict[int, _TenantIndex] = {}
    out: list[ActiveRule] = []
    for rid, version, tenant, spec in rules:
        index = indexes.get(tenant)
        if index is None:
            index = indexes[tenant] = _TenantIndex(s, tenant)
        wanted = condition_properties(spec)
        series: dict[int, dict[str, int]] = {}
        for device in index.covered(spec):
            props = index.series.get(device, {})
            if not wanted:
                series[device] = dict(props)
            elif all(w in props for w in wanted):
                series[device] = {w: props[w] for w in wanted}
        if not series:
            log.info("rule %s covers no devices now", rid)
        out.append(ActiveRule(rid, version, tenant, spec, series))
    return out


__all__ = [
    "READ_ACTION",
    "WRITE_ACTION",
    "RuleRecord",
    "RuleService",
    "RuleVersionRecord",
    "check_against_registry",
    "condition_properties",
    "dump_spec",
    "parse_documents",
    "parse_spec",
    "render_documents",
    "resolve",
]
