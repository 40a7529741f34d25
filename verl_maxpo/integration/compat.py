"""Every place verl-maxpo touches verl, in one table, and the one guarded step that applies each hook.

A hook whose verl names are missing (renamed or removed by a later verl) is skipped as a whole: verl is left
exactly as it was there, one RuntimeWarning names the touch point and `verl-maxpo check`, and no import fails.
`verl-maxpo check` prints each touch point's status for the installed verl (or for a verl source tree), read
statically from the source files: checking needs no import of verl's trainer, Ray or CUDA.

No verl import at module level: the plugin imports this inside `import verl`.
"""

from __future__ import annotations

import ast
import importlib.abc
import importlib.util
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from verl_maxpo.core.table import ESTIMATORS

Patch = Callable[[ModuleType], None]


@dataclass(frozen=True)
class TouchPoint:
    """One place where verl-maxpo reads, extends or replaces something of verl's.

    Attributes:
        key: short name used by the hooks and in warnings.
        module: the verl module.
        names: the names (``Class.attr`` for a class member) the hook needs; all must exist or it is skipped.
        action: what we do there.
        why: why we need to.
        when: "always" (every process with verl-maxpo installed), "cpu" (only with VERL_PLATFORM=cpu) or "use"
            (only when our code is used: the hf_cpu rollout, the demo).
        mentions: source text the module must contain (private instance attributes we set, which no static lookup
            of names can find).
    """

    key: str
    module: str
    names: tuple[str, ...]
    action: str
    why: str
    when: str
    mentions: tuple[str, ...] = ()


TOUCH_POINTS: tuple[TouchPoint, ...] = (
    TouchPoint(
        "estimator_registry",
        "verl.trainer.ppo.core_algos",
        ("register_adv_est", "ADV_ESTIMATOR_REGISTRY", "get_adv_estimator_fn"),
        f"register {', '.join(ESTIMATORS)} right after verl imports core_algos",
        "verl looks advantage estimators up by name in this registry",
        "always",
    ),
    TouchPoint(
        "v1_sessions",
        "verl.trainer.ppo.v1.utils",
        ("compute_advantage_for_multi_trajectories", "compute_advantage"),
        "wrap compute_advantage_for_multi_trajectories: our estimators score each agent session once",
        "verl hands non-GRPO estimators every row of a multi-output session as a separate sample",
        "always",
    ),
    TouchPoint(
        "v1_sessions_trainer",
        "verl.trainer.ppo.v1.trainer_base",
        ("compute_advantage_for_multi_trajectories",),
        "rebind the wrapped function when trainer_base was imported before the wrapper was installed",
        "trainer_base binds the name at its import",
        "always",
    ),
    TouchPoint(
        "platform_registry",
        "verl.plugin.platform",
        ("PlatformRegistry",),
        "register platform 'cpu' (never auto-detected)",
        "VERL_PLATFORM=cpu selects it",
        "always",
    ),
    TouchPoint(
        "platform_base",
        "verl.plugin.platform.platform_base",
        ("PlatformBase",),
        "subclass it as PlatformCPU (at registration, inside `import verl`)",
        "verl's platform interface",
        "always",
    ),
    TouchPoint(
        "rollout_registry",
        "verl.workers.rollout.base",
        ("_ROLLOUT_REGISTRY", "BaseRollout"),
        "add ('hf_cpu', 'async') to the private rollout registry dict; subclass BaseRollout",
        "verl 0.9.1 has no public registration for rollout adapters",
        "always",
    ),
    TouchPoint(
        "replica_registry",
        "verl.workers.rollout.replica",
        ("RolloutReplicaRegistry", "RolloutReplica", "TokenOutput"),
        "register the hf_cpu replica; subclass RolloutReplica and set its private server attributes",
        "verl builds rollout replicas by name from this registry",
        "always",
        mentions=("self._server_handle", "self._server_address"),
    ),
    TouchPoint(
        "process_group",
        "verl.utils.distributed",
        ("initialize_global_process_group_ray",),
        "rebind it with the backend defaulting to cpu:gloo",
        "its default backend on a CPU is 'cpu:gloo,cpu:gloo', which torch refuses",
        "cpu",
    ),
    TouchPoint(
        "placement_check",
        "verl.single_controller.ray.base",
        ("RayResourcePool.get_placement_groups",),
        "wrap it to check that Ray can place the bundles before waiting on them",
        "verl waits forever on a placement group Ray cannot place",
        "cpu",
        mentions=("self.pgs", "self._store", "self.max_colocate_count", "self.use_gpu"),
    ),
    TouchPoint(
        "unpinned_offload",
        "verl.workers.engine.fsdp.transformer_impl",
        ("CPUOffloadPolicy",),
        "replace it with the same policy, pin_memory=False",
        "pinning host memory needs an accelerator",
        "cpu",
    ),
    TouchPoint(
        "ray_trainer_advantage",
        "verl.trainer.ppo.ray_trainer",
        ("compute_advantage",),
        "call it (the demo computes advantages exactly as verl's trainer does)",
        "the demo's RL step",
        "use",
    ),
)
BY_KEY = {point.key: point for point in TOUCH_POINTS}

_WARNED: set[str] = set()


def missing_names(point: TouchPoint, module: ModuleType) -> list[str]:
    """The point's names that `module` lacks (empty when the hook can be applied)."""
    missing = []
    for dotted in point.names:
        owner: Any = module
        for part in dotted.split("."):
            owner = getattr(owner, part, _ABSENT)
            if owner is _ABSENT:
                missing.append(dotted)
                break
    return missing


_ABSENT = object()


def warn_skipped(point: TouchPoint, reason: str) -> None:
    """The one RuntimeWarning of a skipped hook (once per touch point and process)."""
    if point.key in _WARNED:
        return
    _WARNED.add(point.key)
    warnings.warn(
        f"verl-maxpo: skipped '{point.key}' ({point.action}): {reason}; verl is left unchanged there. "
        "Run `verl-maxpo check` to see every touch point against this verl.",
        RuntimeWarning,
        stacklevel=3,
    )


def apply(key: str, module: ModuleType, patch: Patch) -> bool:
    """The one guarded step: `patch(module)` when every name of touch point `key` exists, else one warning.

    Never raises (it runs inside verl's own imports): a patch that fails is reported the same way. Returns whether
    the patch ran to completion.
    """
    point = BY_KEY[key]
    missing = missing_names(point, module)
    if missing:
        warn_skipped(point, f"{module.__name__} has no {', '.join(missing)} (renamed in this verl?)")
        return False
    try:
        patch(module)
    except Exception as err:  # noqa: BLE001  reported; verl must keep working for runs that do not use us
        warn_skipped(point, f"{type(err).__name__}: {err}")
        return False
    return True


def apply_now(key: str, patch: Patch) -> bool:
    """Import the touch point's module and apply `patch` through `apply` (an import failure is a warning too)."""
    point = BY_KEY[key]
    try:
        module = importlib.import_module(point.module)
    except Exception as err:  # noqa: BLE001
        warn_skipped(point, f"cannot import {point.module} ({type(err).__name__}: {err})")
        return False
    return apply(key, module, patch)


class _PatchOnImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Applies a touch point's patch right after its module is first imported. Importing verl's heavy modules
    inside `import verl` (where the plugin runs) would be slow and circular, so patches to them wait for it."""

    def __init__(self, key: str, patch: Patch) -> None:
        self.key, self.name, self.patch, self._inner = key, BY_KEY[key].module, patch, None

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)  # find the real spec without finding ourselves again
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return None
        self._inner, spec.loader = spec.loader, self
        return spec

    def create_module(self, spec: Any) -> Any:
        return self._inner.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self._inner.exec_module(module)
        apply(self.key, module, self.patch)


def on_import(key: str, patch: Patch) -> None:
    """Apply `patch` to touch point `key`'s module now if it is imported, else right after its first import."""
    name = BY_KEY[key].module
    if name in sys.modules:
        apply(key, sys.modules[name], patch)
    elif not any(isinstance(f, _PatchOnImport) and f.key == key for f in sys.meta_path):
        sys.meta_path.insert(0, _PatchOnImport(key, patch))


# ------------------------------------------------------------------------------------------ static status


def module_file(root: Path, module: str) -> Path | None:
    """The source file of `module` under `root` (the folder holding the `verl` package), or None."""
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _defined(body: list[ast.stmt]) -> dict[str, ast.AST]:
    """Names bound at the top of a module or class body (through if/try/with blocks too)."""
    out: dict[str, ast.AST] = {}
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out[node.name] = node
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                for sub in ast.walk(target):
                    if isinstance(sub, ast.Name):
                        out[sub.id] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            out[node.target.id] = node
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                out[(alias.asname or alias.name).split(".")[0]] = node
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            blocks = [node.body, getattr(node, "orelse", []), getattr(node, "finalbody", [])]
            blocks += [h.body for h in getattr(node, "handlers", [])]
            for block in blocks:
                out.update(_defined(block))
    return out


def status(point: TouchPoint, root: Path) -> tuple[bool, str]:
    """(ok, detail) of one touch point in the verl source tree at `root`, read statically (no import)."""
    path = module_file(root, point.module)
    if path is None:
        return False, f"module {point.module} not found"
    text = path.read_text(encoding="utf-8")
    top = _defined(ast.parse(text).body)
    missing = []
    for dotted in point.names:
        head, _, member = dotted.partition(".")
        node = top.get(head)
        if node is None or (member and not (isinstance(node, ast.ClassDef) and member in _defined(node.body))):
            missing.append(dotted)
    missing += [f"text {m!r}" for m in point.mentions if m not in text]
    return (not missing, "ok" if not missing else "missing " + ", ".join(missing))


def installed_root() -> Path | None:
    """The folder holding the installed `verl` package (found without importing it), or None."""
    spec = importlib.util.find_spec("verl")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))).parent


def report(root: Path | None = None) -> list[dict[str, Any]]:
    """Every touch point's status in the verl at `root` (default: the installed one)."""
    root = root or installed_root()
    rows = []
    for point in TOUCH_POINTS:
        ok, detail = status(point, root) if root is not None else (False, "verl is not installed")
        rows.append(
            {
                "key": point.key,
                "module": point.module,
                "names": list(point.names),
                "when": point.when,
                "action": point.action,
                "why": point.why,
                "ok": ok,
                "detail": detail,
            }
        )
    return rows
