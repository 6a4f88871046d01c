"""``yugong edge run -c gateway.yaml`` and ``yugong edge check -c gateway.yaml``.

``check`` validates the config and every profile without connecting to anything and prints
what the gateway would do: per device its poll groups and, for Modbus, the coalesced read
requests. ``run`` runs the gateway until SIGINT/SIGTERM, then stops gracefully (polling
stops, held windows and queued batches are flushed into the buffer).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from yugong.core.errors import YugongError
from yugong.edge.config import GatewayConfig, ResolvedConnector, load_config, resolve
from yugong.edge.profiles import DeviceProfile, Point
from yugong.edge.registers import Block, plan
from yugong.edge.secrets import KEY_ENV, KEY_FILE_ENV, edge_key, seal

Handler = Callable[[argparse.Namespace, Any], int]
AddCommand = Callable[[Any, str, Handler, str], argparse.ArgumentParser]


def add_edge_commands(subparsers: Any, add: AddCommand) -> None:
    """Register ``edge run`` and ``edge check`` under the main parser's subcommands."""
    edge = subparsers.add_parser("edge", help="the edge gateway").add_subparsers(
        dest="edge", required=True
    )
    run = add(edge, "run", cmd_edge_run, "run the edge gateway")
    run.add_argument("-c", "--config", dest="gateway_config", required=True, help="gateway YAML")
    run.add_argument("--log-level", default="INFO")
    check = add(edge, "check", cmd_edge_check, "validate a gateway config and print its plan")
    check.add_argument("-c", "--config", dest="gateway_config", required=True, help="gateway YAML")
    add(edge, "seal", cmd_edge_seal, "seal a secret (read from stdin) for a gateway config")


def cmd_edge_seal(args: argparse.Namespace, settings: Any = None) -> int:
    """Read one secret from stdin (not the command line: it would stay in shell history)
    and print it sealed with YUGONG_EDGE_KEY, ready to paste into a gateway YAML."""
    key = edge_key()
    if key is None:
        print(f"yugong edge seal: set {KEY_ENV} (or {KEY_FILE_ENV}) first", file=sys.stderr)
        return 2
    plain = sys.stdin.readline().rstrip("\r\n")
    if not plain:
        print("yugong edge seal: nothing to seal on stdin", file=sys.stderr)
        return 2
    print(seal(plain, key))
    return 0


def cmd_edge_check(args: argparse.Namespace, settings: Any = None) -> int:
    cfg = load_config(args.gateway_config)
    resolved = resolve(cfg)  # raises a ProfileError naming each bad point
    print_plan(cfg, resolved, sys.stdout)
    return 0


def cmd_edge_run(args: argparse.Namespace, settings: Any = None) -> int:
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s"
    )
    cfg = load_config(args.gateway_config)
    resolved = resolve(cfg)
    asyncio.run(_run(cfg, resolved))
    return 0


async def _run(cfg: GatewayConfig, resolved: list[ResolvedConnector]) -> None:
    from yugong.edge.gateway import EdgeGateway

    gateway = EdgeGateway(cfg, connectors=resolved)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await gateway.start()
    print(f"gateway {cfg.gateway} running", flush=True)
    try:
        await stop.wait()
    finally:
        await gateway.stop()


# --------------------------------------------------------------------------- the plan
def print_plan(cfg: GatewayConfig, resolved: list[ResolvedConnector], out: TextIO) -> None:
    w = out.write
    devices = sum(len(rc.device_names) for rc in resolved)
    w(f"gateway {cfg.gateway}: {len(resolved)} connectors, {devices} devices\n")
    for rc in resolved:
        w(f"connector {rc.name} ({rc.config.protocol})\n")
        for p in rc.profiles:
            _print_device(p, out)
        for d in rc.simulated:
            w(f"  device {d.name}: simulated, every {d.interval_s:g}s: ")
            w(", ".join(f"{s.point} ({s.waveform})" for s in d.signals) + "\n")
    steps = [s.name or s.kind for s in cfg.processing.steps]
    w(f"processing: {' -> '.join(steps) if steps else 'none'}\n")
    b = cfg.buffer
    w(f"buffer: {b.path} (max {b.max_bytes} bytes, {b.policy})\n")
    u = cfg.uplink
    if u.kind == "sparkplug":
        node = u.edge_node_id or cfg.gateway
        w(f"uplink: sparkplug {u.broker} group {u.group_id} node {node}")
        w(f" host {u.host_id}\n" if u.host_id else "\n")
    else:
        w(f"uplink: {u.kind}\n")


def _print_device(p: DeviceProfile, out: TextIO) -> None:
    w = out.write
    groups = p.poll_groups()
    w(f"  device {p.name} ({p.protocol}): {len(p.points)} points\n")
    for group, interval_us in sorted(groups.items()):
        points = [pt for pt in p.points if pt.group == group]
        w(f"    group {group} every {interval_us / 1e6:g}s: {len(points)} points\n")
        if not p.is_modbus:
            for pt in points:
                where = pt.node or pt.path or ""
                w(f"      {pt.property} {where}\n")
            continue
        for b in _modbus_plan(p, points):
            w(
                f"      FC{b.function_code} {b.space} {b.start}..{b.end} "
                f"({b.count}): {', '.join(b.properties)}\n"
            )
    if p.is_modbus:
        w(f"    {len(_modbus_plan(p, p.points))} requests per cycle\n")


def _modbus_plan(p: DeviceProfile, points: Sequence[Point]) -> list[Block]:
    conn: Any = p.connection
    return plan(
        points, max_registers=conn.max_registers, max_bits=conn.max_bits, max_gap=conn.max_gap
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m yugong.edge.cli run|check -c FILE``: the same commands, standalone."""
    parser = argparse.ArgumentParser(prog="yugong")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(parent: Any, name: str, handler: Handler, help_: str) -> argparse.ArgumentParser:
        sp: argparse.ArgumentParser = parent.add_parser(name, help=help_, description=help_)
        sp.set_defaults(handler=handler)
        return sp

    add_edge_commands(sub, add)
    given = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(given if given[:1] == ["edge"] else ["edge", *given])
    try:
        handler: Handler = args.handler
        return handler(args, None)
    except YugongError as exc:
        print(f"yugong: {exc.detail}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
