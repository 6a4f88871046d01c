"""``yugong certs``: the platform CA, server certificates (HTTPS, MQTT over TLS) and device
client certificates. Acts as the platform itself, like the other console commands."""

from __future__ import annotations

import argparse
import ipaddress
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature

from yugong.core.errors import InvalidInput
from yugong.core.settings import Settings
from yugong.security import pki

Handler = Callable[[argparse.Namespace, Settings], int]
AddCommand = Callable[[Any, str, Handler, str], argparse.ArgumentParser]


def _paths(settings: Settings) -> pki.PkiPaths:
    return pki.pki_paths(settings.data_dir)


def _hosts(args: argparse.Namespace) -> list[str] | None:
    """--hosts a,b c: comma- or space-separated."""
    if not args.hosts:
        return None
    return [h for item in args.hosts for h in item.split(",") if h.strip()]


def _print_issued(what: str, issued: pki.Issued) -> None:
    print(f"{what}: {issued.cert_file}")
    print(f"  key:         {issued.key_file} (mode 0600)")
    print(f"  expires:     {issued.not_after:%Y-%m-%d %H:%M} UTC")
    print(f"  fingerprint: {issued.fingerprint}")


def _tls_note(settings: Settings, paths: pki.PkiPaths) -> None:
    if settings.tls_cert_file is not None and settings.tls_cert_file != paths.server_cert:
        print(
            f"note: tls_cert_file is set ({settings.tls_cert_file}); the server uses that "
            f"file, not {paths.server_cert}"
        )


def cmd_certs_init(args: argparse.Namespace, settings: Settings) -> int:
    paths = _paths(settings)
    ca = pki.create_ca(paths, days=args.ca_days, force=args.force)
    print(f"CA created: {paths.ca_cert} ({ca.subject.rfc4514_string()})")
    print(f"  key:         {paths.ca_key} (mode 0600; keep it safe, it signs every certificate)")
    print(f"  expires:     {ca.not_valid_after_utc:%Y-%m-%d} UTC")
    _print_issued("server certificate", pki.issue_server(paths, _hosts(args), days=args.days))
    print(f"HTTPS and MQTT over TLS are on at the next start; clients trust {paths.ca_cert}")
    _tls_note(settings, paths)
    return 0


def cmd_certs_issue_server(args: argparse.Namespace, settings: Settings) -> int:
    paths = _paths(settings)
    _print_issued("server certificate", pki.issue_server(paths, _hosts(args), days=args.days))
    _tls_note(settings, paths)
    return 0


def cmd_certs_rotate(args: argparse.Namespace, settings: Settings) -> int:
    """A new server certificate from the same CA, written over the one in use; a running
    server loads it for new connections within seconds (or at once on SIGHUP)."""
    paths = _paths(settings)
    files = pki.tls_files(settings)
    if files is None:
        raise InvalidInput("no server certificate to rotate: run `yugong certs init` first")
    current = pki.load_cert(files.cert_file)
    ca = pki.load_cert(paths.ca_cert)
    try:
        current.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise InvalidInput(
            f"{files.cert_file} was not issued by the platform CA ({paths.ca_cert}); "
            "renew it where it came from"
        ) from None
    hosts = _hosts(args) or [h for h in pki.san_names(current) if ":" not in h or _is_ip(h)]
    issued = pki.issue_server(
        paths, hosts, days=args.days, cert_file=files.cert_file, key_file=files.key_file
    )
    _print_issued("server certificate rotated", issued)
    print(
        f"  replaces:    {pki.fingerprint(current)}\n"
        f"a running server uses it for new connections within {pki.RELOAD_INTERVAL_S:.0f}s "
        "(SIGHUP: at once); open connections carry on"
    )
    return 0


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def store_device_cert(
    admin: Any, paths: pki.PkiPaths, tenant_id: int, device_id: int, issued: pki.Issued
) -> None:
    """Bind the certificate to the device in the registry (the broker finds the device by
    its fingerprint) and record the issuance in the audit log."""
    from yugong.security.principal import SYSTEM

    admin.registry.devices.ca_file = paths.ca_cert
    admin.registry.devices.set_certificate(
        SYSTEM, device_id, certificate=issued.cert_file.read_text(), tenant_id=tenant_id
    )
    admin.security.audit.record(
        "devices.certificate_issued",
        tenant_id=tenant_id,
        target_type="device",
        target_id=device_id,
        detail={"fingerprint": issued.fingerprint, "not_after": issued.not_after.isoformat()},
        actor_kind="system",
        actor_name="yugong certs",
    )


def cmd_certs_issue_device(args: argparse.Namespace, settings: Settings) -> int:
    from yugong.cli_admin import AdminContext
    from yugong.security.principal import SYSTEM

    paths = _paths(settings)
    if not paths.ca_cert.exists():
        raise InvalidInput(f"no CA in {paths.folder}: run `yugong certs init` first")
    with AdminContext(settings) as admin:
        tenant_id = admin.tenant_id(args.tenant)
        assert tenant_id is not None
        ref: str = args.device
        device = (
            admin.registry.devices.get(SYSTEM, int(ref), tenant_id=tenant_id)
            if ref.isdigit()
            else admin.registry.devices.get_by_name(SYSTEM, ref, tenant_id=tenant_id)
        )
        out = Path(args.out) if args.out else None
        issued = pki.issue_device(
            paths,
            device.name,
            tenant=tenant_id,
            device_id=device.id,
            out_dir=out,
            days=args.days,
        )
        store_device_cert(admin, paths, tenant_id, device.id, issued)
    _print_issued(f"client certificate for device {device.id} ({device.name})", issued)
    print(f"  identity:    {pki.device_urn(tenant_id, device.id)}")
    print(f"  trust:       {paths.ca_cert} (the device verifies the server with it)")
    return 0


def _describe(label: str, path: Path | None) -> None:
    if path is None:
        print(f"{label:<13} (none)")
        return
    if not path.exists():
        print(f"{label:<13} {path} (missing)")
        return
    info = pki.inspect(path)
    state = "EXPIRED" if info.expired else f"{info.days_left} days left"
    print(f"{label:<13} {path}")
    print(f"  subject:     {info.subject}")
    print(f"  issuer:      {info.issuer}")
    print(f"  expires:     {info.not_after:%Y-%m-%d %H:%M} UTC ({state})")
    if info.hosts:
        print(f"  names:       {', '.join(info.hosts)}")
    print(f"  fingerprint: {info.fingerprint}")


def cmd_certs_show(args: argparse.Namespace, settings: Settings) -> int:
    paths = _paths(settings)
    files = pki.tls_files(settings)
    print(f"PKI folder:   {paths.folder}")
    _describe("CA", paths.ca_cert if paths.ca_cert.exists() else None)
    _describe("server", files.cert_file if files else None)
    if files is None:
        print("TLS is off: run `yugong certs init` or set tls_cert_file and tls_key_file")
    else:
        print(f"client CA:    {files.ca_file or '(none: no client certificates accepted)'}")
    return 0


def add_certs_commands(sub: Any, add: AddCommand) -> None:
    certs = sub.add_parser("certs", help="TLS certificates").add_subparsers(
        dest="certs", required=True
    )

    def hosts_days(sp: argparse.ArgumentParser, days: int) -> None:
        sp.add_argument(
            "--hosts",
            nargs="+",
            help="server DNS names and IPs (default: localhost 127.0.0.1 and this host's name)",
        )
        sp.add_argument("--days", type=int, default=days, help=f"validity (default {days})")

    init = add(certs, "init", cmd_certs_init, "create the platform CA and a server certificate")
    hosts_days(init, pki.SERVER_DAYS)
    init.add_argument("--ca-days", type=int, default=pki.CA_DAYS, help="CA validity")
    init.add_argument(
        "--force", action="store_true", help="replace an existing CA (its certificates die)"
    )
    hosts_days(
        add(certs, "issue-server", cmd_certs_issue_server, "issue a new server certificate"),
        pki.SERVER_DAYS,
    )
    rotate = add(
        certs, "rotate", cmd_certs_rotate, "replace the server certificate in use (same CA)"
    )
    hosts_days(rotate, pki.SERVER_DAYS)
    dev = add(certs, "issue-device", cmd_certs_issue_device, "issue a device's client certificate")
    dev.add_argument("device", help="device id or name")
    dev.add_argument("--tenant", required=True, help="tenant id or slug")
    dev.add_argument(
        "--days", type=int, default=pki.DEVICE_DAYS, help=f"validity (default {pki.DEVICE_DAYS})"
    )
    dev.add_argument("--out", help="folder for DEVICE.pem and DEVICE.key (default pki/devices)")
    add(certs, "show", cmd_certs_show, "show the CA and server certificate and their expiry")
