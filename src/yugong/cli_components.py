"""``yugong component list|show|serve|docs``: the component library from the command line;
``serve`` runs one component as its own HTTP microservice."""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Callable
from typing import Any

from yugong.core.settings import Settings

TOKEN_ENV = "YUGONG_COMPONENT_TOKEN"  # noqa: S105 - the variable name, not a secret


def _catalog() -> Any:
    from yugong.platform.components import Catalog

    return Catalog.discover()


def cmd_component_list(args: argparse.Namespace, settings: Settings) -> int:
    found = _catalog().search(category=args.category, industry=args.industry, text=args.q)
    for comp in found:
        print(f"{comp.name:34} {comp.version:8} {comp.category.value:12} {comp.title}")
    return 0


def cmd_component_show(args: argparse.Namespace, settings: Settings) -> int:
    print(
        json.dumps(_catalog().get(args.name, args.version).describe(), indent=2, ensure_ascii=False)
    )
    return 0


def cmd_component_docs(args: argparse.Namespace, settings: Settings) -> int:
    from yugong.platform.components.docs import catalog_markdown

    print(catalog_markdown(_catalog()), end="")
    return 0


def cmd_component_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from yugong.api.component_app import create_component_app

    comp = _catalog().get(args.name, args.version)
    token = os.environ.get(TOKEN_ENV) or None
    if token is None and args.host not in ("127.0.0.1", "localhost", "::1"):
        logging.getLogger(__name__).warning(
            "serving %s on %s without a token: set %s to require one",
            comp.name,
            args.host,
            TOKEN_ENV,
        )
    app = create_component_app(comp, token=token)
    print(
        f"{comp.name} {comp.version} on http://{args.host}:{args.port} (OpenAPI at /docs)",
        flush=True,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level.lower())
    return 0


def add_component_commands(sub: Any, add: Callable[..., argparse.ArgumentParser]) -> None:
    comp = sub.add_parser("component", help="industrial component library")
    cmds = comp.add_subparsers(dest="comp", required=True)
    ls = add(cmds, "list", cmd_component_list, "list components")
    ls.add_argument("--category", help="mechanism, statistical, data-driven or hybrid")
    ls.add_argument("--industry", help="an industry tag, e.g. energy")
    ls.add_argument("-q", help="words to find in names and documentation")
    show = add(cmds, "show", cmd_component_show, "print a component's description (JSON)")
    show.add_argument("name")
    show.add_argument("--version", default=None, help="default: the newest")
    add(cmds, "docs", cmd_component_docs, "print the catalog reference (Markdown)")
    serve = add(cmds, "serve", cmd_component_serve, "run one component as an HTTP microservice")
    serve.add_argument("name")
    serve.add_argument("--version", default=None, help="default: the newest")
    serve.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, required=True, help="listen port")
    serve.add_argument("--log-level", default="INFO")
