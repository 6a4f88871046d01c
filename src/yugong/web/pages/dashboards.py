"""Console page: dashboards (being built)."""

from __future__ import annotations

from fastapi import APIRouter

from yugong.web.console import PREFIX

router = APIRouter(prefix=PREFIX, include_in_schema=False)
