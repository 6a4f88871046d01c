"""Web console. Until the full console lands, the root page points people to the API."""

from __future__ import annotations

from html import escape

LANDING = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>Yugong 愚公</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:system-ui,sans-serif;max-width:44rem;margin:3rem auto;padding:0 1rem;
line-height:1.5}}code{{background:#f3f3f3;padding:.1rem .3rem}}</style></head>
<body><h1>愚公 Yugong <small>{version}</small></h1>
<p>工业互联网平台 — an open industrial internet platform.</p>
<ul>
<li><a href="/docs">API 文档 / API reference (OpenAPI)</a></li>
<li><a href="/api/v1/health">健康状态 / Health</a></li>
</ul>
<p>MQTT: <code>{mqtt}</code> — 设备以访问令牌作为用户名 / devices use their access token as
the MQTT username.</p>
</body></html>"""


def landing_page(version: str, mqtt: str) -> str:
    return LANDING.format(version=escape(version), mqtt=escape(mqtt))
