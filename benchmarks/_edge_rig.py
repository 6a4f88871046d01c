"""Shared set-up for the end-to-end edge benchmarks: simulated devices in a Yugong edge
gateway (its own process, ``yugong edge run``) publishing Sparkplug B to Mosquitto, the
platform (BackgroundServer) in this process as primary host, a TCP proxy (its own process)
that can cut the uplink, and the broker's own loopback rate for comparison.

Every simulated point is a counter that steps by one per poll, so a point's values are its
sequence numbers: the store must hold exactly 1..N per series, nothing missing or twice.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from yugong.core.settings import Settings  # noqa: E402
from yugong.core.timeutil import now_us  # noqa: E402
from yugong.server import BackgroundServer  # noqa: E402

ADMIN_PASSWORD = "Bench-Platform-Pass-2026!"
MOSQUITTO = ("127.0.0.1", 1883)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------- platform
@dataclass
class PlatformRig:
    server: BackgroundServer
    tenant: int
    group: str
    host_id: str

    def series(self, devices: list[str], points: list[str]) -> dict[tuple[str, str], int]:
        """Series ids of every (device, point), once the births provisioned them."""
        from yugong.platform.ingest.sparkplug_host import identifier_for

        directory = self.server.platform.directory
        out: dict[tuple[str, str], int] = {}
        for d in devices:
            b = directory.by_name(self.tenant, d)
            if b is None:
                raise LookupError(d)
            if any(identifier_for(p) not in b.properties for p in points):
                directory.invalidate(b.device)  # cached before its birth declared them all
                raise LookupError(d)
            for p in points:
                out[(d, p)] = b.properties[identifier_for(p)].series
        return out

    def wait_series(
        self, devices: list[str], points: list[str], timeout_s: float = 60
    ) -> dict[tuple[str, str], int]:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return self.series(devices, points)
            except LookupError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the gateway's devices were not provisioned") from None
                time.sleep(0.5)


@contextmanager
def platform(data_dir: Path, run: str) -> Iterator[PlatformRig]:
    group, host_id = f"bench-{run}", f"host-{run}"
    settings = Settings(
        data_dir=data_dir,
        admin_password=ADMIN_PASSWORD,
        http_port=free_port(),
        mqtt_port=free_port(),
        secret_key="b" * 40,
        mqtt_url=f"mqtt://{MOSQUITTO[0]}:{MOSQUITTO[1]}",
        mqtt_topic_prefix=f"yugong-bench/{run}/devices",
        sparkplug_groups={group: "edge-bench"},
        sparkplug_host_id=host_id,
    )
    with BackgroundServer(settings) as srv, httpx.Client(base_url=srv.url, timeout=30) as c:
        r = c.post("/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD})
        r.raise_for_status()
        admin = {"Authorization": f"Bearer {r.json()['access_token']}"}
        r = c.post("/api/v1/tenants", headers=admin, json={"name": "Edge Bench"})
        r.raise_for_status()
        tenant = r.json()
        assert tenant["slug"] == "edge-bench", tenant
        yield PlatformRig(srv, int(tenant["id"]), group, host_id)


def store_latest_ts(rig: PlatformRig, series: list[int]) -> np.ndarray:
    t = rig.server.platform.store.latest(series)
    by = dict(zip(t.column("series").to_pylist(), t.column("ts").to_pylist(), strict=True))
    return np.array([by.get(s, 0) for s in series], dtype=np.int64)


def store_rows(rig: PlatformRig, series: list[int]) -> int:
    """Rows in the store for these series (count of a one-bucket aggregate)."""
    t = rig.server.platform.store.aggregate(series, 0, 2**62, 2**62, ("count",))
    return int(np.asarray(t.column("count")).sum()) if t.num_rows else 0


def wait_drained(rig: PlatformRig, series: list[int], quiet_s: float = 2.0) -> int:
    """Wait until no rows arrive for ``quiet_s``; returns the row count then."""
    rows, since = store_rows(rig, series), time.monotonic()
    while time.monotonic() - since < quiet_s:
        time.sleep(0.25)
        n = store_rows(rig, series)
        if n != rows:
            rows, since = n, time.monotonic()
    return rows


def store_values(rig: PlatformRig, series: list[int]) -> dict[int, np.ndarray]:
    """Every value of each series, in time order (one paged range over all of them)."""
    store = rig.server.platform.store
    sids: list[np.ndarray] = []
    vals: list[np.ndarray] = []
    after = None
    while True:
        page = store.range(series, 0, 2**62, limit=1_000_000, after=after)
        sids.append(np.asarray(page.table.column("series").to_numpy()))
        vals.append(np.asarray(page.table.column("value").to_numpy(zero_copy_only=False)))
        if page.next is None:
            break
        after = page.next
    sid, val = np.concatenate(sids), np.concatenate(vals)
    keys, starts = np.unique(sid, return_index=True)  # rows come sorted by series
    parts = np.split(val, starts[1:])
    out = {int(k): p for k, p in zip(keys, parts, strict=True)}
    return {s: out.get(s, np.empty(0)) for s in series}


# --------------------------------------------------------------------------- gateway
def gateway_config(
    rig: PlatformRig,
    work: Path,
    *,
    devices: int,
    points: int,
    interval_s: float,
    broker: tuple[str, int] = MOSQUITTO,
) -> tuple[Path, list[str], list[str]]:
    names = [f"dev-{i:03d}" for i in range(devices)]
    pts = [f"c{k:03d}" for k in range(points)]
    cfg: dict[str, Any] = {
        "gateway": "gw-bench",
        "connectors": [
            {
                "name": "sim",
                "protocol": "simulator",
                "simulated": [
                    {
                        "name": n,
                        "interval": interval_s,
                        "signals": [
                            {"point": p, "waveform": "counter", "low": 0, "high": 1e15} for p in pts
                        ],
                    }
                    for n in names
                ],
            }
        ],
        "buffer": {"path": str(work / "edge-buffer.sqlite"), "max_bytes": "2GiB"},
        "uplink": {
            "kind": "sparkplug",
            "broker": f"mqtt://{broker[0]}:{broker[1]}",
            "group_id": rig.group,
            "edge_node_id": "gw-bench",
            "host_id": rig.host_id,
        },
        "health": {"interval": 0, "device": "gw-bench-health"},
    }
    path = work / "gateway.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path, names, pts


@contextmanager
def gateway_process(config: Path) -> Iterator[subprocess.Popen[str]]:
    """``yugong edge run`` in its own process; SIGTERM stops it gracefully."""
    exe = Path(sys.executable).parent / "yugong"
    cmd = [str(exe), "edge", "run", "-c", str(config), "--log-level", "WARNING"]
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=config.parent)
    try:
        assert child.stdout is not None
        if "running" not in child.stdout.readline():
            raise RuntimeError("the gateway process did not start")
        yield child
    finally:
        child.terminate()
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


# --------------------------------------------------------------------------- TCP proxy
async def _proxy(listen: int, target: tuple[str, int]) -> None:
    """Forward 127.0.0.1:listen -> target; 'cut' on stdin drops every connection and refuses
    new ones, 'restore' accepts again."""
    conns: set[asyncio.StreamWriter] = set()
    up = [True]

    async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while data := await r.read(65536):
                w.write(data)
                await w.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            w.close()

    async def client(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        if not up[0]:
            w.transport.abort()
            return
        try:
            ur, uw = await asyncio.open_connection(*target)
        except OSError:
            w.transport.abort()
            return
        conns.update((w, uw))
        await asyncio.gather(pipe(r, uw), pipe(ur, w))
        conns.difference_update((w, uw))

    server = await asyncio.start_server(client, "127.0.0.1", listen)
    loop = asyncio.get_running_loop()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        if line.strip() == "cut":
            up[0] = False
            for w in list(conns):
                w.transport.abort()  # RST, like a link that went away
            conns.clear()
        elif line.strip() == "restore":
            up[0] = True
        sys.stdout.write("ok\n")
        sys.stdout.flush()
    server.close()


class Proxy:
    def __init__(self, target: tuple[str, int] = MOSQUITTO) -> None:
        self.port = free_port()
        cmd = [sys.executable, __file__, "--proxy", str(self.port), f"{target[0]}:{target[1]}"]
        self.child = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.child.stdout is not None
        if self.child.stdout.readline().strip() != "ready":
            raise RuntimeError("proxy did not start")

    def _say(self, word: str) -> None:
        assert self.child.stdin is not None and self.child.stdout is not None
        self.child.stdin.write(word + "\n")
        self.child.stdin.flush()
        self.child.stdout.readline()

    def cut(self) -> None:
        self._say("cut")

    def restore(self) -> None:
        self._say("restore")

    def close(self) -> None:
        assert self.child.stdin is not None
        self.child.stdin.close()
        self.child.wait(timeout=10)


# --------------------------------------------------------------------------- broker loopback
def mosquitto_loopback(messages: int = 200_000, payload_bytes: int = 1000) -> float:
    """Messages/s Mosquitto relays on loopback between its own C clients (mosquitto_pub -l
    -> mosquitto_sub, QoS 0, 1 kB): received messages over the first-to-last arrival time."""
    topic = f"yugong-bench/loopback/{time.time_ns()}"
    sub = subprocess.Popen(
        ["mosquitto_sub", "-h", MOSQUITTO[0], "-p", str(MOSQUITTO[1]), "-t", topic, "-q", "0"],
        stdout=subprocess.PIPE,
    )
    assert sub.stdout is not None
    stamps: list[float] = []

    def count() -> None:
        assert sub.stdout is not None
        for _ in sub.stdout:
            stamps.append(time.perf_counter())

    reader = threading.Thread(target=count, daemon=True)
    reader.start()
    time.sleep(0.5)  # subscribed
    line = b"x" * (payload_bytes - 1) + b"\n"
    pub = subprocess.Popen(
        ["mosquitto_pub", "-h", MOSQUITTO[0], "-p", str(MOSQUITTO[1]), "-t", topic, "-l"],
        stdin=subprocess.PIPE,
    )
    assert pub.stdin is not None
    pub.stdin.write(line * messages)
    pub.stdin.close()
    quiet = time.perf_counter()
    seen = 0
    while time.perf_counter() - quiet < 1.0:  # until nothing arrives for a second
        time.sleep(0.1)
        if len(stamps) != seen:
            seen, quiet = len(stamps), time.perf_counter()
    pub.kill()
    sub.kill()
    pub.wait()
    sub.wait()
    if len(stamps) < 2:
        raise RuntimeError("loopback: nothing arrived")
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])


def now() -> int:
    return now_us()


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--proxy":
        host, port = sys.argv[3].rsplit(":", 1)
        asyncio.run(_proxy(int(sys.argv[2]), (host, int(port))))
