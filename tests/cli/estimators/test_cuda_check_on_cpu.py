"""scripts/cuda_check.py on the CPU, in a subprocess where verl, Ray and pandas cannot be imported (the GPU machine
has neither): its exactness records, timings and refusals."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from verl_maxpo.core.table import ESTIMATORS

pytestmark = pytest.mark.slow  # every test runs the script in a fresh interpreter

REPO = Path(__file__).resolve().parents[3]
SCRIPT = REPO / "scripts" / "cuda_check.py"
# Runs the script with an import hook that refuses verl, ray and pandas, so any import of them fails loudly.
BLOCKED_RUN = """
import runpy, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("verl", "ray", "pandas"):
            raise ImportError(f"blocked in this test: {name}")
        return None
sys.meta_path.insert(0, Block())
sys.argv = [sys.argv[1], *sys.argv[2:]]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def run(*args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCKED_RUN, str(SCRIPT), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd="/",  # not the repo: the script must find the package itself
        env={"PATH": "/usr/bin:/bin", **(env or {})},  # no PYTHONPATH either
    )


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("cuda_check")
    proc = run("--device", "cpu", "--out", out, "--repeats", "1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert (out / "cuda_check.md").read_text().startswith("# Estimator check on cpu")
    return json.loads((out / "cuda_check.json").read_text())


def test_every_estimator_is_exact_against_its_reference(report: dict) -> None:
    assert report["ok"] is True and report["device"] == "cpu"
    assert report["package"] == str(REPO / "verl_maxpo")  # this checkout, found without PYTHONPATH
    done = [r for r in report["exactness"] if r["status"] != "skipped"]
    # a case is skipped only where k is too small for it, never for an option the estimators lack
    skipped = {r["reason"] for r in report["exactness"] if r["status"] == "skipped"}
    assert skipped <= {"m > k"} | {f"needs k >= {spec.min_k}" for spec in ESTIMATORS.values()}, skipped
    objectives = {r["case"] for r in done if "objective=" in r["case"]}
    assert {c.split("objective=")[1].split()[0] for c in objectives} == {"max", "top_m", "ml", "weights"}
    assert all(r["status"] == "ok" for r in done), [r for r in done if r["status"] != "ok"]
    assert all(r["max_error"] < 1e-9 for r in done)
    # every estimator of the table is checked on both batches, and against brute force on the small one
    for name in ESTIMATORS:
        mine = [r for r in done if r["case"] == name]
        assert {r["batch"].split()[0] for r in mine} == {"small", "large"}, name
        assert all(r["reference"] == "brute force" for r in mine if r["batch"].startswith("small")), name
    # maxpo is centered: its group sums are ~0 on the device at every size; pkpo is not
    maxpo = [r for r in done if r["case"] == "maxpo"]
    assert all(r["centered"] and r["max_group_sum"] < 1e-9 for r in maxpo)
    assert not any(r["centered"] for r in done if r["case"] == "pkpo")
    # the large batch has pass/fail groups: the closed forms are used there, not only the CPU run of itself
    assert any("closed form" in r["reference"] for r in maxpo if r["batch"].startswith("large"))


def test_timings_cover_the_three_shapes(report: dict) -> None:
    shapes = {(r["groups"], r["n"]) for r in report["timing"]}
    assert shapes == {(1024, 16), (256, 64), (64, 256)}
    assert all(r["median_ms"] > 0 and r["baseline_ms"] > 0 for r in report["timing"])
    assert all(r["ratio"] == pytest.approx(r["median_ms"] / r["baseline_ms"]) for r in report["timing"])
    assert {r["case"] for r in report["timing"]} >= set(ESTIMATORS)


def test_cuda_without_a_gpu_is_refused(tmp_path: Path) -> None:
    proc = run("--device", "cuda", "--out", tmp_path / "x")
    assert proc.returncode == 2 and "--device" in proc.stderr and "cuda" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("args", "needle"),
    [([], "--out is required"), (["--out", "{file}"], "not a folder"), (["--out", "{dir}", "--k", "99"], "--k")],
)
def test_bad_arguments_exit_2(tmp_path: Path, args: list[str], needle: str) -> None:
    (tmp_path / "file").write_text("keep me")
    args = [a.format(file=tmp_path / "file", dir=tmp_path / "d") for a in args]
    proc = run("--device", "cpu", *args)
    assert proc.returncode == 2 and needle in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and (tmp_path / "file").read_text() == "keep me"
