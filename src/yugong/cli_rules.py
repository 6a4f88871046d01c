"""``yugong rules import|export|list``: rules as YAML or JSON files, on the machine that holds
the database (as the platform-wide system principal; every change is audited)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from yugong.core.errors import InvalidInput
from yugong.core.settings import Settings
from yugong.security.principal import SYSTEM

Handler = Callable[[argparse.Namespace, Settings], int]


def _context(settings: Settings) -> Any:
    from yugong.cli_admin import AdminContext

    return AdminContext(settings)


def _service(ctx: Any) -> Any:
    from yugong.platform.rules.service import RuleService

    return RuleService(ctx.db, audit=ctx.security.audit)


def _format(path: str | None, given: str | None) -> Literal["yaml", "json"] | None:
    if given in ("yaml", "json"):
        return given  # type: ignore[return-value]
    if path and path.lower().endswith(".json"):
        return "json"
    if path and path.lower().endswith((".yaml", ".yml")):
        return "yaml"
    return None


def _tenant(ctx: Any, ref: str | None) -> int:
    tenant = ctx.tenant_id(ref)
    if tenant is not None:
        return int(tenant)
    tenants = ctx.registry.tenants.list(SYSTEM, limit=2)
    if len(tenants) != 1:
        raise InvalidInput("name the tenant with --tenant (id or slug)")
    return int(tenants.items[0].id)


def cmd_rules_import(args: argparse.Namespace, settings: Settings) -> int:
    text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
    with _context(settings) as ctx:
        out = _service(ctx).import_text(
            SYSTEM,
            text,
            fmt=_format(args.file, args.format),
            tenant_id=_tenant(ctx, args.tenant),
        )
    for r in out:
        print(f"rule {r.id} {r.name!r}: version {r.version}{'' if r.enabled else ' (disabled)'}")
    return 0


def cmd_rules_export(args: argparse.Namespace, settings: Settings) -> int:
    fmt = _format(args.output, args.format) or "yaml"
    with _context(settings) as ctx:
        text = _service(ctx).export_text(SYSTEM, fmt=fmt, tenant_id=_tenant(ctx, args.tenant))
    if args.output and args.output != "-":
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def cmd_rules_list(args: argparse.Namespace, settings: Settings) -> int:
    with _context(settings) as ctx:
        page = _service(ctx).list(SYSTEM, tenant_id=_tenant(ctx, args.tenant), limit=1000)
    print("id  version  enabled  name")
    for r in page.items:
        print(f"{r.id}  {r.version}  {'yes' if r.enabled else 'no'}  {r.name}")
    return 0


def add_rules_commands(sub: Any, add: Callable[..., argparse.ArgumentParser]) -> None:
    rules = sub.add_parser("rules", help="stream rules").add_subparsers(dest="r", required=True)
    imp = add(rules, "import", cmd_rules_import, "create or update rules from a YAML/JSON file")
    imp.add_argument("file", help="a YAML or JSON file with one rule or a list ('-': stdin)")
    imp.add_argument("--tenant", help="tenant id or slug (needed with several tenants)")
    imp.add_argument("--format", choices=("yaml", "json"), help="default: from the file name")
    exp = add(rules, "export", cmd_rules_export, "print a tenant's rules as YAML or JSON")
    exp.add_argument("--tenant", help="tenant id or slug (needed with several tenants)")
    exp.add_argument("--format", choices=("yaml", "json"), help="default: yaml")
    exp.add_argument("-o", "--output", help="write to this file instead of stdout")
    ls = add(rules, "list", cmd_rules_list, "list a tenant's rules")
    ls.add_argument("--tenant", help="tenant id or slug (needed with several tenants)")
