"""Strict JSON for every file and stdout the commands write: never `NaN` or `Infinity`, which are not JSON.

Python's json module writes them by default, and a reader in another language (or `json.loads(..., parse_constant=
...)` in strict mode) then fails on the whole file. The commands keep their numbers finite where they can (ranges
checked before work, an unresolved ratio stored as None); what is left non-finite is written as null, which every
file's documentation reads as "not a finite number".
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

__all__ = ["dumps", "finite", "load_object"]


def finite(value: Any) -> Any:
    """`value` with every NaN or infinite float (also numpy's, inside dicts, lists and tuples) replaced by None."""
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(item) for item in value]
    if type(value).__module__ == "numpy" and hasattr(value, "tolist"):
        return finite(value.tolist())  # arrays and numpy scalars become Python lists and numbers
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """json.dumps of `finite(value)` with allow_nan=False: the text is always valid JSON."""
    return json.dumps(finite(value), allow_nan=False, **kwargs)


def load_object(path: Path) -> dict[str, Any] | None:
    """The JSON object stored at `path`, or None where there is none (missing, unreadable, not JSON, not an object):
    how a command reads back a manifest it may or may not have written."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None
