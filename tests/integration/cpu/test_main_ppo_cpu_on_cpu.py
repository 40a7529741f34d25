"""verl's real entry point, `python -m verl.trainer.main_ppo`, trains on a CPU with the tiny recipes (slow).

Each run: 2 training steps + validation with the tiny assets, as a subprocess with a hard timeout, its own Ray
cluster (RAY_ADDRESS=local, a private Ray temp dir) torn down with it. A test-only trace (tests/support, first on
the run's PYTHONPATH, armed by VERL_MAXPO_TRACE_DIR in every process) records the advantages verl used and every
weight sync into the rollout.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch

from verl_maxpo.launch.main import SEARCHPATH

REPO = Path(__file__).resolve().parents[3]
SUPPORT = REPO / "tests" / "support"  # sitecustomize.py + verl_maxpo_trace.py
RUN_TIMEOUT_S = 420

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from verl_maxpo.tasks.tiny.assets import main

    out = tmp_path_factory.mktemp("tiny") / "assets"
    assert main(["--out", str(out)]) == 0
    return out


def run_in_own_group(cmd: list[str], env: dict[str, str], cwd: Path, what: str) -> subprocess.CompletedProcess:
    """Run `cmd` in its own process group; on timeout, and afterwards, everything in that group is killed."""
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        out, _ = proc.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"{what} ran over {RUN_TIMEOUT_S} s:\n{out[-4000:]}")
    finally:
        try:  # the run's own Ray processes share its process group; nothing else is touched
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return subprocess.CompletedProcess(cmd, proc.returncode, out, "")


def cpu_env(trace_dir: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SUPPORT), str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "VERL_PLATFORM": "cpu",
        "OMP_NUM_THREADS": "1",
        "RAY_ADDRESS": "local",  # never join another Ray cluster on this machine
        "VERL_MAXPO_TRACE_DIR": str(trace_dir),
        **extra,
    }


def run_main_ppo(recipe: str, assets: Path, run_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    """One main_ppo run in its own process group and Ray cluster; everything is killed on timeout."""
    ray_tmp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths must stay under ~107 chars
    env = cpu_env(run_dir / "trace", VERL_FILE_LOGGER_PATH=str(run_dir / "train_log.jsonl"))
    cmd = [
        sys.executable, "-m", "verl.trainer.main_ppo",
        "--config-path", str(REPO / "recipes" / "tiny"), "--config-name", recipe,
        SEARCHPATH,  # the recipe's recipes/shared is relative to the repository root; this runs in run_dir
        # The run folder (meta.json, val/, train_log.jsonl) is claimed by the recipes' callback; force: a test may
        # train twice into one folder.
        f"tiny_assets={assets}", f"run_dir={run_dir}", "force=true",
        f"+ray_kwargs.ray_init._temp_dir={ray_tmp}", *overrides,
    ]  # fmt: skip
    try:
        proc = run_in_own_group(cmd, env, Path(ray_tmp), f"main_ppo {recipe}")  # Hydra's outputs/ go there
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    (run_dir / "output.txt").write_text(proc.stdout)
    return proc


def train_steps(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines() if line.strip()]
    return [r for r in rows if "actor/pg_loss" in r.get("data", {})]


def traced(run_dir: Path, name: str, trace_dir: Path | None = None) -> list[dict]:
    path = (trace_dir or run_dir / "trace") / name
    return [json.loads(line) for line in path.read_text().splitlines()]


def group_sums(uid: list[str], adv: torch.Tensor) -> list[float]:
    sums: dict[str, float] = defaultdict(float)
    for u, a in zip(uid, adv.tolist(), strict=True):
        sums[u] += a
    return list(sums.values())


def check_trained(run_dir: Path, proc: subprocess.CompletedProcess, trace_dir: Path | None = None) -> None:
    """Exit 0, steps 1 and 2 with non-zero grad norms, a validation dump and 3 weight syncs that moved weights."""
    assert proc.returncode == 0, proc.stdout[-6000:]
    steps = train_steps(run_dir)
    assert [s["step"] for s in steps] == [1, 2], steps
    for s in steps:
        assert s["data"]["actor/grad_norm"] > 0
        assert s["data"]["timing_s/step"] > 0
    dumps = sorted((run_dir / "val").glob("*.jsonl"))
    assert dumps, "no validation dump"
    first = [json.loads(line) for line in dumps[0].read_text().splitlines()]
    assert len(first) == 16 * 4  # 16 test prompts x val_kwargs.n 4
    assert {"input", "output", "score"} <= set(first[0])
    syncs = traced(run_dir, "weights.jsonl", trace_dir)
    assert len(syncs) == 3  # before step 1, after step 1, after step 2
    assert syncs[0]["max_abs_change"] == 0.0
    assert syncs[-1]["max_abs_change"] > 1e-4, "the rollout's weights did not change after the updates"


def check_common(run_dir: Path, proc: subprocess.CompletedProcess, trace_dir: Path | None = None) -> list[dict]:
    """`check_trained`, then the v1 trainer's two advantage records."""
    check_trained(run_dir, proc, trace_dir)
    records = traced(run_dir, "advantages.jsonl", trace_dir)
    assert len(records) == 2
    return records


def test_main_ppo_trains_maxpo_on_cpu(assets: Path, tmp_path: Path) -> None:
    proc = run_main_ppo("tiny", assets, tmp_path)
    records = check_common(tmp_path, proc)
    for rec in records:
        check_maxpo(rec)
        # single-output agent loop: one row per session, so the session wrapper is the identity here
        assert len(set(rec["batch_keys"])) == 64 and all(k.endswith("_0") for k in rec["batch_keys"])


def check_maxpo(rec: dict) -> None:
    from verl_maxpo.core.estimators import maxpo_advantages

    assert rec["estimator"] == "maxpo"
    scores = torch.tensor(rec["score"], dtype=torch.float32)
    assert len(scores) == 64 and 0 < scores.mean() < 1  # partial credit: neither all 0 nor all 1
    used = torch.tensor(rec["advantage"])
    ours = maxpo_advantages(scores, np.array(rec["uid"], dtype=object), 2, norm_by_std=False)
    torch.testing.assert_close(used, ours, atol=1e-6, rtol=1e-5)
    assert used.abs().max() > 0
    assert max(abs(s) for s in group_sums(rec["uid"], used)) < 1e-5


def test_legacy_trainer_trains_maxpo_on_cpu(assets: Path, tmp_path: Path) -> None:
    """`trainer.use_v1=false` (verl's main_ppo_v0 TaskRunner) still trains: its own compute_advantage call."""
    proc = run_main_ppo("tiny", assets, tmp_path, "trainer.use_v1=false")
    assert "main_ppo_v0" in proc.stdout or "Legacy trainer" in proc.stdout, "did not run the legacy trainer"
    check_trained(tmp_path, proc)
    assert not (tmp_path / "trace" / "advantages.jsonl").exists()  # the v1 advantage step never ran
    records = traced(tmp_path, "compute_advantage.jsonl")
    assert len(records) == 2  # one call per step
    for rec in records:
        check_maxpo(rec)


def test_ab_launcher_trains_grpo_on_cpu_and_reports(assets: Path, tmp_path: Path) -> None:
    """The user's path: `verl-maxpo launch tiny` (here its grpo arm) builds nothing new (assets exist), runs
    preflight, trains through main_ppo (whose callback claims the run folder) and writes the report over the arm."""
    ray_tmp = tempfile.mkdtemp(prefix="rt", dir="/tmp")
    out_dir = tmp_path / "runs"
    env = cpu_env(tmp_path / "trace")
    cmd = [sys.executable, "-m", "verl_maxpo", "launch", "tiny", "--arms", "grpo", "--out", str(out_dir),
           f"tiny_assets={assets}", f"+ray_kwargs.ray_init._temp_dir={ray_tmp}"]  # fmt: skip
    try:
        proc = run_in_own_group(cmd, env, tmp_path, "verl-maxpo launch tiny")
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    run_dir = out_dir / "tiny_grpo_seed1"
    records = check_common(run_dir, proc, tmp_path / "trace")
    for rec in records:
        assert rec["estimator"] == "grpo"
        scores = np.array(rec["score"])
        uid = np.array(rec["uid"], dtype=object)
        means = {u: scores[uid == u].mean() for u in set(rec["uid"])}
        stds = {u: scores[uid == u].std(ddof=1) for u in set(rec["uid"])}  # torch.std, as verl's GRPO
        # the shared A/B base's GRPO: norm_adv_by_std_in_grpo true, epsilon 1e-6
        expected = np.array([(s - means[u]) / (stds[u] + 1e-6) for s, u in zip(scores, rec["uid"], strict=True)])
        np.testing.assert_allclose(rec["advantage"], expected, atol=1e-5, rtol=1e-5)
    meta = json.loads((run_dir / "meta.json").read_text())
    assert (meta["adv_estimator"], meta["n"], meta["k"], meta["config_name"]) == ("grpo", 4, None, "tiny")
    assert meta["settings"]["arm"] == "grpo"
    assert "=== " in (run_dir / "console.log").read_text()
    report = (out_dir / "report" / "report.md").read_text()
    assert "tiny_grpo_seed1" in report and "pass@1" in report


def test_main_ppo_fails_fast_when_ray_cannot_place_bundles(assets: Path, tmp_path: Path) -> None:
    """Too few logical CPUs: verl would wait on its placement group forever; the CPU backend stops it with a
    message naming the setting to raise."""
    proc = run_main_ppo("tiny", assets, tmp_path, "ray_kwargs.ray_init.num_cpus=3")
    assert proc.returncode != 0
    assert "PlacementError" in proc.stdout and "ray_kwargs.ray_init.num_cpus" in proc.stdout
    assert not (tmp_path / "trace" / "advantages.jsonl").exists()
