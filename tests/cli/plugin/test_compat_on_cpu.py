"""The verl compatibility layer (`verl_maxpo.integration.compat`): every touch point exists in the installed verl,
and a hook whose verl name is gone is skipped with one warning instead of breaking verl."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
import warnings
from pathlib import Path

import pytest

from verl_maxpo.integration import compat
from verl_maxpo.tools import check

ROOT = Path(__file__).resolve().parents[3]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}

# A later verl with `compute_advantage_for_multi_trajectories` renamed (in v1/utils.py and in trainer_base.py, which
# imports it): verl's own source, renamed at import time by a loader that sits behind the plugin's hooks.
RENAME_PROBE = r'''
import importlib.abc, importlib.machinery, json, sys, warnings

OLD = "compute_advantage_for_multi_trajectories"
RENAMED = {"verl.trainer.ppo.v1.utils", "verl.trainer.ppo.v1.trainer_base"}


class RenamingLoader(importlib.machinery.SourceFileLoader):
    """verl's own source with the function renamed everywhere it appears, as a later verl might ship it."""

    def get_code(self, fullname):
        source = self.get_data(self.path).replace(OLD.encode(), OLD.encode() + b"_v2")
        return compile(source, self.path, "exec", dont_inherit=True)


class Rename(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name not in RENAMED:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        spec.loader = RenamingLoader(name, spec.origin)
        return spec


with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import verl  # loads the plugin, which leaves its import hooks in front of sys.meta_path

    at = next(i for i, f in enumerate(sys.meta_path) if f is importlib.machinery.PathFinder)
    sys.meta_path.insert(at, Rename())  # behind the plugin's hooks, as verl's own files are
    import verl.trainer.ppo.v1.utils as utils
    from verl.trainer.ppo import core_algos
    from verl.trainer.ppo.v1 import trainer_base
out = {
    "renamed": hasattr(utils, OLD + "_v2") and not hasattr(utils, OLD),
    "untouched": not getattr(utils.__dict__[OLD + "_v2"], "_verl_maxpo_sessions", False)
    and trainer_base.__dict__[OLD + "_v2"] is utils.__dict__[OLD + "_v2"],
    "maxpo": "maxpo" in core_algos.ADV_ESTIMATOR_REGISTRY,
    "warnings": [f"{w.category.__name__}: {w.message}" for w in caught if "verl-maxpo" in str(w.message)],
}
print("RESULT=" + json.dumps(out))
'''


def test_every_touch_point_exists_in_the_installed_verl() -> None:
    rows = compat.report()
    assert [r["key"] for r in rows] == [p.key for p in compat.TOUCH_POINTS]
    assert all(r["ok"] for r in rows), [r for r in rows if not r["ok"]]


def test_a_missing_name_skips_the_hook_with_one_warning() -> None:
    module = types.ModuleType("verl.trainer.ppo.v1.utils")  # no compute_advantage_for_multi_trajectories
    module.compute_advantage = object()
    calls = []
    compat._WARNED.discard("v1_sessions")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert compat.apply("v1_sessions", module, calls.append) is False
        assert compat.apply("v1_sessions", module, calls.append) is False  # once per process
    assert calls == []
    assert len(caught) == 1 and caught[0].category is RuntimeWarning
    assert "verl-maxpo check" in str(caught[0].message) and "compute_advantage_for_multi_trajectories" in str(
        caught[0].message
    )
    compat._WARNED.discard("v1_sessions")


def test_a_failing_patch_is_a_warning_not_an_error() -> None:
    module = types.ModuleType("verl.utils.distributed")
    module.initialize_global_process_group_ray = lambda **_: None

    def broken(_module: types.ModuleType) -> None:
        raise KeyError("boom")

    compat._WARNED.discard("process_group")
    with pytest.warns(RuntimeWarning, match="verl-maxpo check"):
        assert compat.apply("process_group", module, broken) is False
    compat._WARNED.discard("process_group")


def test_check_reads_a_source_tree_and_names_what_is_missing(tmp_path, capsys) -> None:
    (tmp_path / "verl" / "plugin" / "platform").mkdir(parents=True)
    (tmp_path / "verl" / "__init__.py").write_text("")
    (tmp_path / "verl" / "plugin" / "__init__.py").write_text("")
    (tmp_path / "verl" / "plugin" / "platform" / "__init__.py").write_text(
        "try:\n    from .platform_manager import PlatformRegistry\nexcept ImportError:\n    PlatformRegistry = None\n"
    )
    assert check.main(["--verl-source", str(tmp_path), "--json"]) == 1
    rows = {r["key"]: r for r in json.loads(capsys.readouterr().out)["touch_points"]}
    assert rows["platform_registry"]["ok"] and not rows["estimator_registry"]["ok"]
    assert "not found" in rows["estimator_registry"]["detail"]


def test_check_refuses_a_folder_without_verl(tmp_path, run_main, assert_refused) -> None:
    assert_refused(run_main(check.main, "--verl-source", tmp_path), "--verl-source", code=2)


@pytest.mark.slow
def test_renamed_v1_utilities_still_import_with_one_warning() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", RENAME_PROBE], capture_output=True, text=True, env=ENV, timeout=300, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT="))
    out = json.loads(line.removeprefix("RESULT="))
    assert out["renamed"] and out["untouched"] and out["maxpo"], out
    assert len(out["warnings"]) == 1 and out["warnings"][0].startswith("RuntimeWarning"), out["warnings"]
    assert "verl-maxpo check" in out["warnings"][0]
