"""Reading YAML files with errors that say where: ``file:line:column``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from yugong.core.errors import FieldError, InvalidInput


def read_yaml(path: Path, error: type[InvalidInput] = InvalidInput) -> Any:
    """The parsed document; an unreadable file or invalid YAML raises ``error`` naming the
    file (and the line and column of a syntax error)."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise error(
            f"{path}: cannot read: {e.strerror or e}", [FieldError(str(path), "cannot read")]
        ) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        problem = getattr(e, "problem", None) or str(e)
        raise error(
            f"{where}: not valid YAML: {problem}", [FieldError(where, f"not valid YAML: {problem}")]
        ) from None
