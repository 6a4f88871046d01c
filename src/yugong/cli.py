"""The ``yugong`` command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from yugong import __version__
from yugong.core.errors import YugongError
from yugong.core.settings import Settings, load_settings

Handler = Callable[[argparse.Namespace, Settings], int]


def _settings(args: argparse.Namespace, **overrides: Any) -> Settings:
    return load_settings(args.config, **overrides)


def _print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    widths = {c: max([len(c), *(len(str(r.get(c, ""))) for r in rows)]) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for r in rows:
        print("  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns))


# server, demo -------------------------------------------------------------------------------


def cmd_server(args: argparse.Namespace, settings: Settings) -> int:
    from yugong.server import configure_logging, serve

    configure_logging(args.log_level)

    async def announce(platform: Any) -> None:
        _announce(settings, platform)

    with _sigterm_as_exit():
        asyncio.run(serve(settings, announce))
    return 0


def _announce(settings: Settings, platform: Any) -> None:
    from yugong.security.pki import tls_files
    from yugong.server import http_url

    url = http_url(settings)
    print(f"\nYugong {__version__} is running.")
    print(f"  Console / API docs: {url}/   {url}/docs")
    if platform.mqtt_address:
        print(f"  MQTT (embedded):    mqtt://{platform.mqtt_address[0]}:{platform.mqtt_address[1]}")
    elif settings.mqtt_url:
        print(f"  MQTT (external):    {settings.mqtt_url.split('@')[-1]}")
    tls_address = getattr(platform, "mqtt_tls_address", None)
    if tls_address:
        print(f"  MQTT over TLS:      mqtts://{tls_address[0]}:{tls_address[1]}")
    files = tls_files(settings)
    if files is not None:
        print(f"  TLS certificate:    {files.cert_file}   (clients trust the CA that issued it)")
    password_file = settings.data_dir / "initial-admin-password"
    if platform.generated_admin_password:
        print(
            f"  Login: {settings.admin_username} / {platform.generated_admin_password}"
            f"   (generated at first start; kept in {password_file})"
        )
    elif password_file.exists():
        print(
            f"  Login: {settings.admin_username} / {password_file.read_text().strip()}"
            f"   (the first password, from {password_file}, unless changed since)"
        )
    else:
        print(f"  Login: {settings.admin_username} (password as set earlier)")
    sys.stdout.flush()


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from yugong.apps.demo.edge import run_edge
    from yugong.apps.demo.factory import FactoryProcess, make_layout
    from yugong.apps.demo.plant import run_plant
    from yugong.apps.demo.provision import provision_demo
    from yugong.server import configure_logging, serve

    configure_logging(args.log_level)
    overrides: dict[str, Any] = {}
    for key in ("http_port", "mqtt_port", "mqtt_tls_port"):
        port = getattr(settings, key)
        if not _port_free(settings.http_host if key == "http_port" else settings.mqtt_host, port):
            overrides[key] = _free_port("127.0.0.1")
            print(f"port {port} is taken: {key.replace('_', ' ')} moves to {overrides[key]}")
    if settings.mqtt_url:
        overrides["mqtt_url"] = None  # the demo plant publishes to the embedded broker
    settings = settings.model_copy(update=overrides)
    # The demo runs with TLS on: a platform CA and server certificate under data_dir.
    from yugong.security.pki import client_ssl_context, ensure_pki, pki_paths

    tls_files = ensure_pki(settings)
    ca_file = tls_files.ca_file or pki_paths(settings.data_dir).ca_cert
    # The demo runs whatever code is checked out: its integrity manifest follows the code
    # (a production install rebuilds it with `yugong integrity build` after an upgrade).
    from yugong.security.integrity import Integrity

    Integrity(settings).build()

    # The factory floor behind the edge gateway: Modbus PLCs and OPC UA CNCs, own process.
    factory = FactoryProcess(make_layout(pumps=3, motors=2, meters=2, cncs=2))

    async def after_start(platform: Any) -> None:
        devices = await asyncio.to_thread(provision_demo, platform, machines=args.machines)
        _announce(settings, platform)
        print(
            f"  Demo tenant: 'Demo Plant' with {len(devices)} simulated machines "
            "(device tokens below; each publishes once a second)"
        )
        for d in devices[:20]:
            print(f"    {d.name:<16} {d.product:<15} token {d.token}")
        if len(devices) > 20:
            print(
                f"    ... and {len(devices) - 20} more; `yugong device token NAME --tenant "
                "demo` issues a new token for any of them"
            )
        print("  Stop with Ctrl+C.\n")
        sys.stdout.flush()
        assert platform.mqtt_address or platform.mqtt_tls_address
        await asyncio.to_thread(factory.start)
        buffer = settings.data_dir / "demo-edge-buffer.sqlite"
        tls = None
        host, port = platform.mqtt_address or platform.mqtt_tls_address
        if platform.mqtt_tls_address and ca_file.exists():  # else: the plain port
            tls = client_ssl_context(ca_file)
            host, port = platform.mqtt_tls_address
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(run_plant(host, port, devices, tls=tls))
            tasks.create_task(run_edge(platform, factory.layout, buffer))

    try:
        with _sigterm_as_exit():
            asyncio.run(serve(settings, after_start))
    finally:
        factory.stop()
    return 0


@contextlib.contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    """SIGTERM (a service manager's stop, `kill`) ends the process like Ctrl+C does: the
    server shuts down, then cleanup runs. Without this the server re-raises SIGTERM after its
    shutdown and the default action kills the process before its ``finally`` blocks."""

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(0)

    try:
        before = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread: nothing to install
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


# db, config, bench --------------------------------------------------------------------------


def cmd_db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    from yugong.infra.migrate import upgrade

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.registry_url)
    print("database schema is up to date")
    return 0


def cmd_config_show(args: argparse.Namespace, settings: Settings) -> int:
    data = settings.model_dump(mode="json")
    for secret in ("secret_key", "admin_password"):
        if data.get(secret):
            data[secret] = "***"
    print(json.dumps(data, indent=2, ensure_ascii=False))
    return 0


def cmd_config_docs(args: argparse.Namespace, settings: Settings) -> int:
    from yugong.core.config_docs import configuration_markdown

    sys.stdout.write(configuration_markdown())
    return 0


def _benchmarks_dir() -> Path:
    for candidate in (
        Path.cwd() / "benchmarks",
        Path(__file__).resolve().parents[2] / "benchmarks",
    ):
        if candidate.is_dir():
            return candidate
    raise YugongError("benchmarks/ not found: run `yugong bench` from a source checkout")


def cmd_bench(args: argparse.Namespace, settings: Settings) -> int:
    folder = _benchmarks_dir()
    names = args.names or sorted(p.stem for p in folder.glob("*.py") if not p.stem.startswith("_"))
    failed = 0
    for name in names:
        script = folder / f"{name}.py"
        if not script.exists():
            print(f"no benchmark named {name!r} in {folder}", file=sys.stderr)
            failed += 1
            continue
        print(f"# {name}", flush=True)
        # Our own benchmark scripts, run with this interpreter.
        failed += subprocess.call([sys.executable, str(script)], env=os.environ) != 0  # noqa: S603
    return 1 if failed else 0


# tenants, users, devices --------------------------------------------------------------------
# These act as the platform itself (no login): they are for the operator at the console of
# the machine, who already holds the database.


def _open(settings: Settings) -> Any:
    from yugong.cli_admin import AdminContext

    return AdminContext(settings)


def cmd_tenant_create(args: argparse.Namespace, settings: Settings) -> int:
    with _open(settings) as ctx:
        t = ctx.create_tenant(args.name, industry=args.industry, retention_days=args.retention_days)
    print(f"tenant {t['id']} created: {t['name']}")
    return 0


def cmd_tenant_list(args: argparse.Namespace, settings: Settings) -> int:
    with _open(settings) as ctx:
        _print_table(ctx.list_tenants(), ["id", "name", "slug", "industry", "retention_days"])
    return 0


def cmd_user_create(args: argparse.Namespace, settings: Settings) -> int:
    password = args.password or os.environ.get("YUGONG_NEW_PASSWORD")
    if password is None:
        password = getpass.getpass(f"password for {args.username}: ")
    with _open(settings) as ctx:
        u = ctx.create_user(args.username, password, role=args.role, tenant=args.tenant)
    print(f"user {u['id']} created: {u['username']} ({u['role']})")
    return 0


def cmd_user_list(args: argparse.Namespace, settings: Settings) -> int:
    with _open(settings) as ctx:
        _print_table(ctx.list_users(args.tenant), ["id", "username", "role", "tenant_id"])
    return 0


def cmd_user_set_password(args: argparse.Namespace, settings: Settings) -> int:
    password = args.password or getpass.getpass(f"new password for {args.username}: ")
    with _open(settings) as ctx:
        ctx.set_password(args.username, password)
    print(f"password of {args.username} changed")
    return 0


def cmd_product_import(args: argparse.Namespace, settings: Settings) -> int:
    document = json.loads(Path(args.file).read_text(encoding="utf-8"))
    with _open(settings) as ctx:
        product, created = ctx.import_product(args.tenant, document, key=args.key, name=args.name)
    print(
        f"product {product['id']} {'created' if created else 'updated'}: {product['key']} "
        f"(model version {product['version']})"
    )
    return 0


def cmd_device_create(args: argparse.Namespace, settings: Settings) -> int:
    with _open(settings) as ctx:
        d, token = ctx.create_device(args.tenant, args.name, args.product)
    print(f"device {d['id']} created: {d['name']}\naccess token (shown once): {token}")
    return 0


def cmd_device_list(args: argparse.Namespace, settings: Settings) -> int:
    with _open(settings) as ctx:
        _print_table(
            ctx.list_devices(args.tenant), ["id", "name", "product", "online", "last_seen_at"]
        )
    return 0


def cmd_device_token(args: argparse.Namespace, settings: Settings) -> int:
    with _open(settings) as ctx:
        token = ctx.rotate_token(args.tenant, args.device)
    print(f"new access token (shown once): {token}")
    return 0


# parser -------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="yugong", description="Yugong industrial internet platform")
    p.add_argument("--version", action="version", version=f"yugong {__version__}")
    p.add_argument("-c", "--config", help="YAML settings file (or YUGONG_CONFIG)")
    sub = p.add_subparsers(dest="command", required=True)

    def add(parent: Any, name: str, handler: Handler, help_: str) -> argparse.ArgumentParser:
        sp: argparse.ArgumentParser = parent.add_parser(name, help=help_, description=help_)
        sp.set_defaults(handler=handler)
        return sp

    for name, handler, help_ in (
        ("server", cmd_server, "run the platform"),
        ("demo", cmd_demo, "run the platform with a simulated plant"),
    ):
        sp = add(sub, name, handler, help_)
        sp.add_argument("--host", help="HTTP listen address")
        sp.add_argument("--port", type=int, help="HTTP listen port")
        sp.add_argument("--log-level", default="INFO")
        if name == "demo":
            sp.add_argument("--machines", type=int, default=12, help="simulated machines")

    db = sub.add_parser("db", help="database schema").add_subparsers(dest="db", required=True)
    add(db, "upgrade", cmd_db_upgrade, "create or migrate the registry schema")

    cfg = sub.add_parser("config", help="settings").add_subparsers(dest="cfg", required=True)
    add(cfg, "show", cmd_config_show, "print the effective settings")
    add(cfg, "docs", cmd_config_docs, "print the configuration reference (Markdown)")

    bench = add(sub, "bench", cmd_bench, "run benchmarks (each prints one JSON line)")
    bench.add_argument("names", nargs="*", help="benchmark names (default: all)")

    tenant = sub.add_parser("tenant", help="tenants").add_subparsers(dest="t", required=True)
    tc = add(tenant, "create", cmd_tenant_create, "create a tenant (an enterprise)")
    tc.add_argument("name")
    tc.add_argument("--industry", default=None)
    tc.add_argument("--retention-days", type=int, default=None)
    add(tenant, "list", cmd_tenant_list, "list tenants")

    user = sub.add_parser("user", help="users").add_subparsers(dest="u", required=True)
    uc = add(user, "create", cmd_user_create, "create a user")
    uc.add_argument("username")
    uc.add_argument("--role", default="tenant_admin")
    uc.add_argument("--tenant", help="tenant id or slug (none for a platform admin)")
    uc.add_argument("--password", help="else YUGONG_NEW_PASSWORD or a prompt")
    ul = add(user, "list", cmd_user_list, "list users")
    ul.add_argument("--tenant")
    us = add(user, "set-password", cmd_user_set_password, "set a user's password")
    us.add_argument("username")
    us.add_argument("--password")

    from yugong.edge.cli import add_edge_commands

    add_edge_commands(sub, add)

    from yugong.cli_audit import add_audit_commands

    add_audit_commands(sub, add)

    from yugong.cli_certs import add_certs_commands

    add_certs_commands(sub, add)

    from yugong.cli_rules import add_rules_commands

    add_rules_commands(sub, add)

    from yugong.cli_components import add_component_commands

    add_component_commands(sub, add)

    product = sub.add_parser("product", help="products").add_subparsers(dest="p", required=True)
    pi = add(product, "import", cmd_product_import, "create or update a product from TSL JSON")
    pi.add_argument("file", help="TSL thing-model JSON file")
    pi.add_argument("--tenant", required=True, help="tenant id or slug")
    pi.add_argument("--key", help="product key (default: profile.productKey)")
    pi.add_argument("--name", help="product name (default: the key)")

    device = sub.add_parser("device", help="devices").add_subparsers(dest="d", required=True)
    dc = add(device, "create", cmd_device_create, "create a device; prints its access token")
    dc.add_argument("name")
    dc.add_argument("--tenant", required=True, help="tenant id or slug")
    dc.add_argument("--product", required=True, help="product key")
    dl = add(device, "list", cmd_device_list, "list a tenant's devices")
    dl.add_argument("--tenant", required=True)
    dt = add(device, "token", cmd_device_token, "issue a new access token for a device")
    dt.add_argument("device", help="device id or name")
    dt.add_argument("--tenant", required=True)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    overrides: dict[str, Any] = {}
    if getattr(args, "host", None):
        overrides["http_host"] = args.host
    if getattr(args, "port", None):
        overrides["http_port"] = args.port
    try:
        settings = _settings(args, **overrides)
        handler: Handler = args.handler
        return handler(args, settings)
    except YugongError as exc:
        print(f"yugong: {exc.detail}", file=sys.stderr)
        for e in exc.errors if len(exc.errors) > 1 else ():
            print(f"  {e.loc}: {e.msg}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError) as exc:
        print(f"yugong: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
