"""Render the configuration reference (docs/configuration.md) from :class:`Settings`, so the
docs always match the code (a test checks the file is current)."""

from __future__ import annotations

from yugong.core.settings import Settings


def configuration_markdown() -> str:
    lines = [
        "# Configuration reference",
        "",
        "Every setting can be given as an environment variable (`YUGONG_` + the name in capitals,",
        "e.g. `YUGONG_HTTP_PORT=9000`) or in a YAML file named by `YUGONG_CONFIG` or",
        "`yugong --config FILE` (keys as below, e.g. `http_port: 9000`). Environment variables",
        "win over the file. Generated from `yugong.core.settings.Settings`.",
        "",
        "| setting | environment variable | default | meaning |",
        "|---|---|---|---|",
    ]
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        shown = "(none)" if default is None else f"`{default}`"
        desc = (field.description or "").replace("|", "\\|")
        lines.append(f"| `{name}` | `YUGONG_{name.upper()}` | {shown} | {desc} |")
    return "\n".join(lines) + "\n"
