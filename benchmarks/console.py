"""First contentful paint of the web console's pages in Debian's chromium, with a tenant of
1,000 devices, against a bare HTML page served by a local http.server in the same run.

Starts a whole platform (BackgroundServer), creates one tenant, one product and the devices
through the API, signs in through the API with a cookie session (``?cookie=true``) and hands
the cookies to the browser, then loads each page of PAGES ``--loads`` times and reports the
median FCP (``performance.getEntriesByName('first-contentful-paint')``). A page that answers
404 is noted and skipped. Target: 1500 ms per page.

``history_chart_ms``: one device holds a day of 1 Hz samples (86,400); the median time from
starting to load its page to its history chart drawn with the day (the chart marks itself
``data-mode`` once drawn). ``history_api_ms``: the history request alone, same run.
Target: 1000 ms.

    python benchmarks/console.py [--devices 1000] [--loads 5]

Needs /usr/bin/chromium (or $YUGONG_CHROMIUM) and the playwright package; Playwright's own
browser builds are not used.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import http.server
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(__file__))

import httpx
from playwright.sync_api import Browser, BrowserContext, sync_playwright

from _common import emit, note
from yugong.core.settings import Settings
from yugong.server import BackgroundServer

PAGES = ["/console/", "/console/devices"]
TARGET_FCP_MS = 1500
TARGET_CHART_MS = 1000
DAY_S = 86_400
PASSWORD = "Bench-Pass-2026!"
USER = "plant-admin"
# As tests/browser/conftest.py: no sandbox (root in containers), no network of its own.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TSL = {
    "properties": [
        {
            "identifier": "temperature",
            "name": "Temperature",
            "accessMode": "r",
            "dataType": {"type": "float", "specs": {"min": "-40", "max": "125", "unit": "°C"}},
        },
        {
            "identifier": "running",
            "name": "Running",
            "accessMode": "r",
            "dataType": {"type": "bool", "specs": {"0": "off", "1": "on"}},
        },
    ],
    "events": [],
    "services": [],
}
BASELINE_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>baseline</title></head>
<body><h1>Baseline</h1><p>A bare static page, for comparison.</p></body></html>
"""
# The FCP of the current document; waits for the entry if paint has not been reported yet.
FCP_JS = """() => new Promise((resolve) => {
    const now = performance.getEntriesByName('first-contentful-paint');
    if (now.length) return resolve(now[0].startTime);
    new PerformanceObserver((list) => {
        const e = list.getEntriesByName('first-contentful-paint');
        if (e.length) resolve(e[0].startTime);
    }).observe({type: 'paint', buffered: true});
    setTimeout(() => resolve(null), 10000);
})"""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def baseline_server(folder: Path) -> Iterator[str]:
    """A plain http.server on 127.0.0.1 serving ``folder``; yields its base URL."""
    (folder / "index.html").write_text(BASELINE_HTML, encoding="utf-8")
    handler = functools.partial(QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, name="baseline-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def call(c: httpx.Client, method: str, path: str, expect: int = 200, **kw: Any) -> Any:
    r = c.request(method, path, **kw)
    if r.status_code != expect:
        raise SystemExit(f"{method} {path}: {r.status_code} {r.text}")
    return r.json()


def setup_tenant(c: httpx.Client) -> tuple[int, dict[str, str]]:
    """A tenant with its admin and one product; (product id, the tenant admin's headers)."""
    token = call(c, "POST", "/api/v1/auth/login", json={"username": "admin", "password": PASSWORD})
    admin = {"Authorization": f"Bearer {token['access_token']}"}
    tenant = call(c, "POST", "/api/v1/tenants", 201, headers=admin, json={"name": "Bench Plant"})
    call(
        c,
        "POST",
        "/api/v1/users",
        201,
        headers=admin,
        json={
            "username": USER,
            "password": PASSWORD,
            "role": "tenant_admin",
            "tenant_id": tenant["id"],
        },
    )
    token = call(c, "POST", "/api/v1/auth/login", json={"username": USER, "password": PASSWORD})
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    product = call(
        c,
        "POST",
        "/api/v1/products/import",
        201,
        headers=headers,
        params={"name": "Sensor", "key": "sensor"},
        json=TSL,
    )
    return int(product["id"]), headers


async def create_devices(
    base_url: str, headers: dict[str, str], product: int, n: int, concurrency: int = 16
) -> None:
    """``n`` devices through POST /api/v1/devices (the API has no bulk create), many at once."""
    limit = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=60) as c:

        async def one(i: int) -> None:
            async with limit:
                r = await c.post(
                    "/api/v1/devices",
                    json={"name": f"line{i // 100 + 1}-dev-{i + 1:04d}", "product_id": product},
                )
                if r.status_code != 201:
                    raise SystemExit(f"creating device {i + 1}: {r.status_code} {r.text}")

        await asyncio.gather(*(one(i) for i in range(n)))


def signed_in_context(browser: Browser, base_url: str) -> BrowserContext:
    """A browser context holding the cookie session the API starts with ``?cookie=true``."""
    context = browser.new_context(locale="en-US", viewport={"width": 1366, "height": 800})
    with httpx.Client(base_url=base_url, timeout=30) as c:
        call(
            c,
            "POST",
            "/api/v1/auth/login",
            params={"cookie": "true"},
            json={"username": USER, "password": PASSWORD},
        )
        cookies: list[Any] = []
        for k in c.cookies.jar:  # as the server set them: HttpOnly and SameSite kept
            same_site = str(k.get_nonstandard_attr("SameSite") or "").capitalize()
            cookie = {"name": k.name, "value": k.value or "", "url": base_url}
            cookie["httpOnly"] = k.has_nonstandard_attr("HttpOnly")
            if same_site in ("Strict", "Lax", "None"):
                cookie["sameSite"] = same_site
            cookies.append(cookie)
        context.add_cookies(cookies)
    me = context.request.get(base_url + "/api/v1/auth/me")  # the browser's cookies suffice
    if not me.ok:
        raise SystemExit(f"the cookie session is not accepted: {me.status} {me.text()}")
    return context


def fcp_ms(context: BrowserContext, url: str, loads: int) -> float | None:
    """Median FCP of ``loads`` loads of ``url``, each in a new tab (None: a 404)."""
    samples = []
    for _ in range(loads):
        page = context.new_page()
        try:
            r = page.goto(url, wait_until="load")
            if r is not None and r.status == 404:
                return None
            if r is None or not r.ok:
                raise SystemExit(f"{url}: {r.status if r else 'no answer'}")
            if page.url != url:
                note(f"{url} ended at {page.url}: its FCP is that page's")
            value = page.evaluate(FCP_JS)
            if value is None:
                raise SystemExit(f"{url}: chromium reported no first-contentful-paint")
            samples.append(float(value))
        finally:
            page.close()
    return round(statistics.median(samples), 1)


def load_day(c: httpx.Client, headers: dict[str, str], device: int) -> int:
    """A day of 1 Hz temperature for ``device``, ending now, as JSON columns."""
    end_ms = int(time.time() * 1000)
    ts = [end_ms - (DAY_S - i) * 1000 for i in range(DAY_S)]
    values = [20 + 10 * ((i % 3600) / 3600) for i in range(DAY_S)]
    body = {"device": device, "columns": {"ts": ts, "temperature": values}}
    out = call(c, "POST", "/api/v1/telemetry", headers=headers, json=body)
    return int(out["accepted"])


def chart_ms(context: BrowserContext, url: str, loads: int) -> float:
    """Median time from navigation start to the history chart drawn (``data-mode`` set)."""
    samples = []
    for _ in range(loads):
        page = context.new_page()
        try:
            page.goto(url, wait_until="commit")
            page.wait_for_function(
                "() => document.getElementById('history-chart')?.dataset.mode", timeout=30_000
            )
            samples.append(float(page.evaluate("performance.now()")))
        finally:
            page.close()
    return round(statistics.median(samples), 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--loads", type=int, default=5, help="loads per page (median)")
    args = ap.parse_args()
    chromium = os.environ.get("YUGONG_CHROMIUM", "/usr/bin/chromium")
    if not os.access(chromium, os.X_OK):
        raise SystemExit(f"{chromium} is needed (apt-get install chromium, or make chromium)")

    scratch = tempfile.TemporaryDirectory(prefix="yugong-bench-console-")
    data = Path(scratch.name)
    settings = Settings(
        data_dir=data / "platform",
        mqtt_embedded=False,
        http_port=free_port(),
        admin_password=PASSWORD,
        secret_key="c" * 40,
    )
    out: dict[str, Any] = {"devices": args.devices, "loads": args.loads}
    (data / "baseline").mkdir()
    with (
        BackgroundServer(settings) as srv,
        baseline_server(data / "baseline") as baseline_url,
        httpx.Client(base_url=srv.url, timeout=60) as c,
    ):
        product, headers = setup_tenant(c)
        t = time.perf_counter()
        asyncio.run(create_devices(srv.url, headers, product, args.devices))
        out["create_devices_s"] = round(time.perf_counter() - t, 2)
        listed = call(c, "GET", "/api/v1/devices", headers=headers, params={"limit": 1})
        note(f"{listed.get('total')} devices listed; created in {out['create_devices_s']} s")
        device = int(listed["items"][0]["id"])
        out["history_samples"] = load_day(c, headers, device)
        time.sleep(1.0)  # the ingest writer flushes in batches
        t = time.perf_counter()
        call(
            c,
            "GET",
            f"/api/v1/devices/{device}/history",
            headers=headers,
            params={"keys": "temperature", "points": 2000},
        )
        out["history_api_ms"] = round((time.perf_counter() - t) * 1000, 1)

        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=chromium, headless=True, args=CHROMIUM_ARGS
            )
            try:
                bare = browser.new_context(locale="en-US", viewport={"width": 1366, "height": 800})
                out["baseline_fcp_ms"] = fcp_ms(bare, baseline_url + "/index.html", args.loads)
                bare.close()
                context = signed_in_context(browser, srv.url)
                pages: dict[str, float] = {}
                skipped: list[str] = []
                out["history_chart_ms"] = chart_ms(
                    context, f"{srv.url}/console/devices/{device}", args.loads
                )
                for path in PAGES:
                    value = fcp_ms(context, srv.url + path, args.loads)
                    if value is None:
                        note(f"{path} answers 404 (not built yet): skipped")
                        skipped.append(path)
                    else:
                        pages[path] = value
                context.close()
            finally:
                browser.close()
    out["fcp_ms"] = pages
    out["skipped"] = skipped
    out["target_fcp_ms"] = TARGET_FCP_MS
    out["target_history_chart_ms"] = TARGET_CHART_MS
    out["over_target"] = sorted(p for p, v in pages.items() if v > TARGET_FCP_MS)
    if out["history_chart_ms"] > TARGET_CHART_MS:
        out["over_target"].append("history_chart")
    emit(out)


if __name__ == "__main__":
    main()
