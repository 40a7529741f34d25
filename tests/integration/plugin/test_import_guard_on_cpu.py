"""What importing the estimator and the plugin pulls in, and what a command says when its install extra is missing.

A verl worker imports `verl`, which loads our `verl.plugins` entry point in every process (Ray actors too): that
must stay as light as the core install (pyproject.toml's dependencies), never loading the demo, report or bench
code nor their packages. Each check runs in a fresh interpreter, since this test process has imported everything.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
# Modules that belong to the optional commands: the plugin must load none of them.
OUR_OPTIONAL = (
    "verl_maxpo.tools.demo.main",
    "verl_maxpo.tools.report.main",
    "verl_maxpo.tools.bench",
    "verl_maxpo.tasks.addition",
)
OPTIONAL_PACKAGES = ("matplotlib", "tqdm", "transformers", "tokenizers", "omegaconf", "pyarrow", "datasets")
# Makes the named top-level packages unimportable, as if their extra had not been installed.
BLOCKER = """
import sys
class _Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, _Blocker())
"""


def loaded_modules(code: str, env: dict[str, str] | None = None) -> set[str]:
    """sys.modules after running `code` in a fresh interpreter."""
    script = f"{code}\nimport json, sys\nprint('MODULES=' + json.dumps(sorted(sys.modules)))"
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env={**ENV, **(env or {})}, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("MODULES="))
    return set(json.loads(line.removeprefix("MODULES=")))


def run_blocked(blocked: list[str], code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", f"BLOCKED = {blocked!r}\n{BLOCKER}\n{code}"],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=120,
        cwd=ROOT,
    )


@pytest.mark.slow
def test_estimators_import_neither_verl_nor_plotting():
    mods = loaded_modules("import verl_maxpo.core.estimators")
    assert "verl_maxpo.core.estimators" in mods and "torch" in mods
    assert not {m for m in mods if m.split(".")[0] in ("verl", "matplotlib", "ray", "transformers")}
    assert not {m for m in mods if m.startswith(OUR_OPTIONAL)}


@pytest.mark.slow
def test_verl_loading_the_plugin_pulls_in_no_demo_or_report_code():
    # The adapter registers into verl's core_algos, so what core_algos itself imports is verl's, not ours.
    without = loaded_modules(
        "import verl\nfrom verl.trainer.ppo import core_algos", env={"VERL_USE_EXTERNAL_PLUGINS": "none"}
    )
    with_plugin = loaded_modules(
        "import verl\nfrom verl.trainer.ppo import core_algos\n"
        "assert 'maxpo' in core_algos.ADV_ESTIMATOR_REGISTRY, 'the plugin did not register maxpo'"
    )
    added = with_plugin - without
    assert "verl_maxpo.plugin" not in without and {"verl_maxpo.plugin", "verl_maxpo.core.estimators"} <= added
    assert not {m for m in with_plugin if m.startswith(OUR_OPTIONAL)}, "the plugin loads a command's code"
    assert "matplotlib" not in with_plugin
    assert not {m for m in added if m.split(".")[0] in OPTIONAL_PACKAGES}, "the plugin adds an optional package"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("blocked", "argv", "extra"),
    [
        (["matplotlib"], ["report", "."], "report"),
        (["transformers"], ["demo"], "demo"),
        (["omegaconf", "tqdm"], ["demo", "--seeds", "1"], "demo"),
        (["tqdm"], ["bench", "--quick"], "bench"),
    ],
)
def test_a_command_without_its_extra_names_the_extra(blocked, argv, extra):
    proc = run_blocked(blocked, f"from verl_maxpo.cli.main import main\nsys.exit(main({argv!r}))")
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert f"verl-maxpo[{extra}]" in proc.stderr and blocked[0] in proc.stderr
    assert proc.stdout == ""  # stopped before any work


@pytest.mark.slow
def test_a_prep_script_without_the_data_extra_names_it(tmp_path):
    argv = ["prepare", "gsm8k", "--out-dir", str(tmp_path / "out")]
    proc = run_blocked(["pyarrow"], f"from verl_maxpo.cli.main import main\nsys.exit(main({argv!r}))")
    assert proc.returncode == 3 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "pyarrow" in proc.stderr and 'pip install "verl-maxpo[data]"' in proc.stderr
    assert not (tmp_path / "out").exists()


def test_a_missing_module_mid_run_is_named_only_for_optional_packages():
    from verl_maxpo.runs.extras import missing_module_message

    hint = missing_module_message("report", ModuleNotFoundError("x", name="matplotlib.backends"))
    assert hint is not None and "verl-maxpo[report]" in hint
    # bench's own extra is named, although omegaconf is also in demo's
    assert 'verl-maxpo[bench]"' in missing_module_message("bench", ModuleNotFoundError("x", name="omegaconf"))
    # a core package (or one of ours) missing is a broken install: no extra to suggest, the traceback goes through
    assert missing_module_message("demo", ModuleNotFoundError("x", name="torch")) is None
    assert missing_module_message("demo", ModuleNotFoundError("x", name="verl_maxpo.nothing")) is None


def test_extras_module_matches_pyproject():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    from verl_maxpo.runs.extras import COMMAND_EXTRAS, EXTRA_MODULES

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = project["optional-dependencies"]
    distribution = {"matplotlib": "matplotlib", "hydra": "hydra-core"}  # module -> distribution where they differ
    for extra, modules in EXTRA_MODULES.items():
        declared = {req.split(">")[0].split("=")[0].split("[")[0].strip() for req in extras[extra]}
        assert {distribution.get(m, m) for m in modules} == declared, extra
    assert set(extras["all"][0].split("[")[1].rstrip("]").split(",")) == set(EXTRA_MODULES)
    assert "verl-maxpo[all]" in extras["test"]
    assert {e for e in COMMAND_EXTRAS.values() if e} <= set(extras)
    core = {req.split(">")[0].split("[")[0] for req in project["dependencies"]}
    assert core == {"verl", "torch", "numpy", "pandas", "psutil"}
    assert project["entry-points"]["verl.plugins"] == {"maxpo": "verl_maxpo.plugin"}
    assert project["scripts"] == {"verl-maxpo": "verl_maxpo.cli.main:main"}


def test_ctrl_c_while_a_command_is_imported_exits_130_without_a_traceback(monkeypatch, capsys) -> None:
    import verl_maxpo.cli.main as cli

    def interrupted(name: str):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli.importlib, "import_module", interrupted)
    assert cli.main(["demo", "--quick"]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "Traceback" not in err
