"""Translation catalogs of the console: ``web/i18n/<locale>/*.json``, flat keys to text with
``{name}`` placeholders. Templates call ``t("key")``; no text is written in templates.

The locale is the signed-in user's saved one, else the ``yugong_lang`` cookie, else the
browser's Accept-Language, else Simplified Chinese.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from yugong.security.users import LOCALES

log = logging.getLogger(__name__)
DEFAULT_LOCALE = "zh-CN"
LANG_COOKIE = "yugong_lang"
CATALOG_DIR = Path(__file__).parent / "i18n"


@functools.cache
def catalog(locale: str) -> Mapping[str, str]:
    """All of a locale's texts: every ``i18n/<locale>/*.json`` (one file per part of the
    console), merged; a key defined twice is an error, not a silent override."""
    data: dict[str, str] = {}
    for part in sorted((CATALOG_DIR / locale).glob("*.json")):
        texts = json.loads(part.read_text("utf-8"))
        twice = sorted(set(texts) & set(data))
        if twice:
            raise ValueError(f"{part}: keys already defined in another file: {twice}")
        data.update(texts)
    return data


class Translator:
    """``t("alarms.title")`` in the chosen locale; a key missing there falls back to the
    default catalog, and a key missing everywhere shows as itself (and is logged once)."""

    def __init__(self, locale: str) -> None:
        self.locale = locale if locale in LOCALES else DEFAULT_LOCALE
        self._texts = catalog(self.locale)

    def __call__(self, key: str, **values: Any) -> str:
        text = self._texts.get(key)
        if text is None:
            text = catalog(DEFAULT_LOCALE).get(key)
            if text is None:
                _missing(key)
                return key
        return text.format(**values) if values else text


@functools.cache
def _missing(key: str) -> None:
    log.warning("console text %r is in no catalog", key)


def negotiate(saved: str | None, cookie: str | None, accept_language: str | None) -> str:
    """The locale to speak: the user's, the cookie's, the browser's first we have."""
    for choice in (saved, cookie):
        if choice in LOCALES:
            return str(choice)
    for part in (accept_language or "").split(","):
        tag = part.split(";")[0].strip().lower()
        if tag.startswith("zh"):
            return "zh-CN"
        if tag.startswith("en"):
            return "en"
    return DEFAULT_LOCALE
