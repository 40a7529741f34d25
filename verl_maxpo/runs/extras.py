"""Which install extra (pyproject.toml) brings which optional package, so a command can say what to install.

The core install holds only what the estimator, the verl adapter and the plugin import (verl, torch, numpy,
pandas, psutil). Every other import of a command comes with an extra; when one is missing, `verl-maxpo <command>` stops
before any work with a one-line `pip install` hint instead of a traceback. Keep these lists equal to the
[project.optional-dependencies] of pyproject.toml (a test compares them).
"""

from __future__ import annotations

import importlib.util

# extra -> the top-level modules it provides that this project imports
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "report": ("matplotlib",),
    # also the CPU backend's tiny assets (`verl-maxpo tiny-assets`: model, tokenizer, parquet)
    "demo": ("transformers", "tokenizers", "omegaconf", "tqdm", "matplotlib", "pyarrow"),
    "bench": ("omegaconf", "tqdm"),
    "data": ("pyarrow", "tqdm", "datasets"),
    # verl-maxpo smol-assets: the demo's packages plus gguf (transformers dequantizes the GGUF with it)
    "smol": ("transformers", "tokenizers", "omegaconf", "tqdm", "matplotlib", "pyarrow", "gguf"),
}
# sub-command -> its extra (None: the core install is enough)
COMMAND_EXTRAS: dict[str, str | None] = {
    "check": None,
    "report": "report",
    "demo": "demo",
    "bench": "bench",
    "variance": "report",
    "tiny-assets": "demo",
    "smol-assets": "smol",
    "prepare": "data",
}
EXIT_MISSING_EXTRA = 3


def install_hint(extra: str) -> str:
    return f'pip install "verl-maxpo[{extra}]" (from a checkout: pip install -e ".[{extra}]")'


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken install, or a module object without a spec
        return False


def missing_for_command(command: str) -> str | None:
    """The message for the first missing package of `command`'s extra, or None when all are importable."""
    extra = COMMAND_EXTRAS.get(command)
    if extra is None:
        return None
    missing = [m for m in EXTRA_MODULES[extra] if not _importable(m)]
    if not missing:
        return None
    return f"verl-maxpo {command} needs {', '.join(missing)} (not installed); install the {extra!r} extra: " + (
        install_hint(extra)
    )


def missing_module_message(command: str, err: ModuleNotFoundError) -> str | None:
    """The same hint for a ModuleNotFoundError raised while `command` ran, if it names an optional package.

    A missing core module (torch, verl) or one of ours is a broken install, not a missing extra: None, so the
    caller lets its traceback through.
    """
    top = (err.name or "").split(".")[0]
    extras = [e for e, modules in EXTRA_MODULES.items() if top in modules]
    if not extras:
        return None
    extra = COMMAND_EXTRAS.get(command) or extras[0]
    return f"verl-maxpo {command} needs {top} (not installed); install the {extra!r} extra: {install_hint(extra)}"
