"""The console's pages, one module each."""

from __future__ import annotations

from fastapi import APIRouter


def all_routers() -> list[APIRouter]:
    from yugong.web.pages import alarms, audit, devices, overview

    return [overview.router, devices.router, alarms.router, audit.router]
