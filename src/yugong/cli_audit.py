"""``yugong audit verify|tail``, ``yugong integrity build|check`` and ``yugong secrets
rotate-key``: run on the machine, against the configured database and data directory (like
the other admin commands)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

from yugong.core.settings import Settings

Handler = Callable[[argparse.Namespace, Settings], int]


def _audit(settings: Settings) -> Any:
    from yugong.infra.db import Database
    from yugong.infra.migrate import upgrade
    from yugong.security.audit import AuditLog

    upgrade(settings.registry_url)
    db = Database(settings.registry_url)
    return db, AuditLog(db, head_file=settings.data_dir / "audit.head")


def cmd_audit_verify(args: argparse.Namespace, settings: Settings) -> int:
    db, audit = _audit(settings)
    try:
        result = audit.verify()
    finally:
        db.dispose()
    if result.ok:
        print(f"audit log intact: {result.entries} entries, chain and anchor verified")
        return 0
    print(
        f"audit log BROKEN at entry {result.first_bad}: {result.reason} "
        f"({result.entries} entries before it verified)",
        file=sys.stderr,
    )
    return 1


def cmd_audit_tail(args: argparse.Namespace, settings: Settings) -> int:
    db, audit = _audit(settings)
    try:
        rows, _ = audit.list(all_tenants=True, action=args.action, limit=args.lines)
    finally:
        db.dispose()
    for e in reversed(rows):
        who = f"{e.actor_kind}:{e.actor_name}"
        target = f"{e.target_type or ''}:{e.target_id or ''}".strip(":")
        print(
            f"{e.id:>7} {e.at.isoformat(timespec='seconds')} tenant={e.tenant_id} {who} "
            f"from={e.source_ip or '-'} {e.action} {target} {e.outcome} {e.detail or ''}"
        )
    return 0


def cmd_integrity_build(args: argparse.Namespace, settings: Settings) -> int:
    from yugong.security.integrity import Integrity

    integrity = Integrity(settings)
    n = integrity.build()
    print(f"integrity manifest of {n} files written to {integrity.path}")
    return 0


def cmd_integrity_check(args: argparse.Namespace, settings: Settings) -> int:
    from yugong.security.integrity import Integrity

    integrity = Integrity(settings)
    if not integrity.path.exists():
        print(f"no integrity manifest at {integrity.path}; run `yugong integrity build`")
        return 1
    report = integrity.check()
    if report.ok:
        print(f"integrity ok: {report.files} files match {integrity.path}")
        return 0
    if report.manifest_error:
        print(report.manifest_error, file=sys.stderr)
    for path, what in report.problems():
        print(f"{what}: {path}", file=sys.stderr)
    return 1


def sealed_columns() -> list[tuple[Any, str, Callable[[Any], str]]]:
    """Where secrets are kept sealed (SecretBox): (model, column, context of a row). Add a
    line here when a new secret is stored, so key rotation covers it."""
    from yugong.platform.notify.targets import seal_context as notification_context
    from yugong.platform.rules.models import NotificationTarget
    from yugong.security.models import User
    from yugong.security.totp import seal_context

    return [
        (User, "totp_secret", lambda row: seal_context(row.id)),
        (NotificationTarget, "secret", lambda row: notification_context(row.id)),
    ]


def cmd_secrets_rotate_key(args: argparse.Namespace, settings: Settings) -> int:
    """Re-seal every stored secret under the key of the current settings, opening it with
    the old key material. All or nothing: one value that does not open stops it all."""
    from sqlalchemy import select

    from yugong.infra.db import Database
    from yugong.infra.migrate import upgrade
    from yugong.security.secrets import SecretBox, SecretError, derive_key

    old_material = os.environ.get(args.old_key_env)
    if not old_material:
        print(f"set {args.old_key_env} to the old data_key (or old secret_key)", file=sys.stderr)
        return 2
    old, new = SecretBox(derive_key(old_material)), SecretBox.from_settings(settings)
    upgrade(settings.registry_url)
    db = Database(settings.registry_url)
    done = kept = 0
    try:
        with db.session() as s:
            for model, column, context in sealed_columns():
                for row in s.scalars(select(model).where(getattr(model, column).is_not(None))):
                    sealed, ctx = getattr(row, column), context(row)
                    try:
                        new.open(sealed, ctx)
                        kept += 1  # already under the new key
                        continue
                    except SecretError:
                        pass
                    try:
                        plain = old.open(sealed, ctx)
                    except SecretError as exc:
                        raise SystemExit(
                            f"{model.__tablename__}.{column} of row {row.id} opens with "
                            f"neither key; nothing was changed ({exc.detail})"
                        ) from exc
                    setattr(row, column, new.seal(plain, ctx))
                    done += 1
    except SystemExit as exc:
        print(f"yugong: {exc}", file=sys.stderr)
        return 1
    finally:
        db.dispose()
    print(f"{done} secrets re-sealed under the new key, {kept} already were")
    return 0


def add_audit_commands(sub: Any, add: Callable[..., argparse.ArgumentParser]) -> None:
    audit = sub.add_parser("audit", help="the audit log").add_subparsers(dest="a", required=True)
    add(audit, "verify", cmd_audit_verify, "check the hash chain (exit 1 when broken)")
    tail = add(audit, "tail", cmd_audit_tail, "print the newest audit entries")
    tail.add_argument("-n", "--lines", type=int, default=20, help="how many (default 20)")
    tail.add_argument("--action", help="only this action (e.g. login, devices)")

    integ = sub.add_parser("integrity", help="code and web asset integrity manifest")
    isub = integ.add_subparsers(dest="i", required=True)
    add(isub, "build", cmd_integrity_build, "hash the installed package into the manifest")
    add(isub, "check", cmd_integrity_check, "compare the package with the manifest")

    secrets = sub.add_parser("secrets", help="secrets at rest").add_subparsers(
        dest="sc", required=True
    )
    rot = add(secrets, "rotate-key", cmd_secrets_rotate_key, "re-seal secrets under a new key")
    rot.add_argument(
        "--old-key-env",
        default="YUGONG_OLD_DATA_KEY",
        help="environment variable holding the old data_key or secret_key",
    )
