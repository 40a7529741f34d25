"""The run-folder claim (verl_maxpo.runs.claim): the A/B recipes' Hydra callback, and the rules the launcher shares.

The rules run on configs composed from this checkout's recipes; the callback itself runs in verl's own entry point
(`python -m verl.trainer.main_ppo`), stopped right after it by a config that verl's validate_config rejects.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from verl_maxpo.core.table import ARMS, arm_reads_k
from verl_maxpo.runs import claim as claims
from verl_maxpo.runs.folder import RunFolder, RunFolderError
from verl_maxpo.runs.names import run_name

ROOT = Path(__file__).resolve().parents[3]
SEARCHPATH = f"hydra.searchpath=[pkg://verl.trainer.config,file://{ROOT}/recipes/shared]"
# verl's validate_config refuses this before Ray starts: 128 prompts x 16 samples do not split over 7 GPUs.
STOP_VERL = ["actor_rollout_ref.actor.use_dynamic_bsz=false", "trainer.n_gpus_per_node=7"]


def compose(task: str, folder: str, overrides: list[str]) -> dict:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "recipes" / folder), version_base=None):
        return claims.resolved(hydra_compose(config_name=task, overrides=[SEARCHPATH, *overrides]))


@pytest.fixture(scope="module")
def gsm8k(tmp_path_factory) -> dict:
    run_dir = tmp_path_factory.mktemp("runs") / "r"
    return compose("gsm8k", "math", ["estimator=maxpo", f"run_dir={run_dir}"])


def test_run_names_are_defined_once():
    assert run_name("maxpo", 1, "gsm8k", 4) == "gsm8k_maxpo_k4_seed1"
    assert run_name("grpo", 3, "code") == "code_grpo_seed3"
    assert run_name("pkpo", 2) == "pkpo_seed2"  # the demo's runs/<arm>_seed<s>


@pytest.mark.parametrize("arm", list(ARMS))
def test_every_estimator_file_names_its_run_with_run_name(arm):
    cfg = compose("gsm8k", "math", [f"estimator={arm}", "k=3", "seed=5"])
    k = 3 if arm_reads_k(ARMS[arm]) else None
    assert cfg["trainer"]["experiment_name"] == run_name(arm, 5, "gsm8k", k)
    assert cfg["trainer"]["validation_data_dir"] == f"outputs/{run_name(arm, 5, 'gsm8k', k)}/val"


def test_plan_reads_the_meta_of_the_composed_run(gsm8k):
    claim = claims.plan(gsm8k, "maxpo", ["estimator=maxpo", "k=4", "trainer.total_epochs=1"])
    meta = claim.meta
    assert (meta.adv_estimator, meta.k, meta.n, meta.val_n, meta.seed, meta.config_name) == ("maxpo", 4, 16, 16, 1,
                                                                                              "gsm8k")  # fmt: skip
    assert meta.settings["override.0"] == "trainer.total_epochs=1" and "override.1" not in meta.settings
    assert claim.folder.path == Path(gsm8k["run_dir"]) and not claim.reuse


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"k": 16}, "rollout.n"),  # n = 16 < k + 1
        ({"n": 1, "arm": "grpo"}, "rollout.n"),
        ({"objective": "ml"}, "objective"),  # the maxpo arm's name, another objective
        ({"objective": "fancy", "name": "mine"}, "objective"),  # a bad option, whatever the name
        ({"adv": "grpo"}, "adv_estimator"),
        ({"bogus": True, "name": "mine"}, "bogus"),
    ],
    ids=["n-below-k+1", "grpo-n-1", "ml-under-maxpo-name", "bad-objective", "grpo-under-maxpo-name", "unknown-option"],
)
def test_plan_refuses_what_must_not_train(gsm8k, change, key):
    cfg = copy.deepcopy(gsm8k)
    maxpo = cfg["algorithm"]["maxpo"]
    maxpo["k"] = change.get("k", maxpo["k"])
    if "objective" in change:
        maxpo["objective"] = change["objective"]
    if "bogus" in change:
        maxpo["bogus"] = True
    if "adv" in change:
        cfg["algorithm"]["adv_estimator"] = change["adv"]
    cfg["actor_rollout_ref"]["rollout"]["n"] = change.get("n", 16)
    if "name" in change:
        cfg["trainer"]["experiment_name"] = change["name"]
    with pytest.raises(claims.ClaimError, match=key):
        claims.plan(cfg, change.get("arm", "maxpo"), [])


def test_another_objective_trains_under_its_own_name(gsm8k):
    cfg = copy.deepcopy(gsm8k)
    cfg["algorithm"]["maxpo"]["objective"] = "ml"
    cfg["trainer"]["experiment_name"] = "gsm8k_my_ml_run"
    assert claims.plan(cfg, "maxpo", []).meta.adv_estimator == "maxpo"


def test_a_folder_with_results_needs_resume_or_force(gsm8k, tmp_path):
    cfg = {**gsm8k, "run_dir": str(tmp_path / "run")}
    cfg["trainer"] = {**cfg["trainer"], "default_local_dir": str(tmp_path / "run" / "checkpoints")}
    claims.check(claims.plan(cfg, "maxpo", []), write=True)
    RunFolder(tmp_path / "run").release()
    (tmp_path / "run" / "val" / "0.jsonl").write_text("{}\n")
    before = sorted(p.name for p in (tmp_path / "run").rglob("*"))
    with pytest.raises(RunFolderError, match="results"):
        claims.check(claims.plan(cfg, "maxpo", []), write=False)
    assert sorted(p.name for p in (tmp_path / "run").rglob("*")) == before
    claims.check(claims.plan(cfg, "maxpo", ["trainer.resume_mode=auto"]), write=False)
    claims.check(claims.plan({**cfg, "force": True}, "maxpo", []), write=False)
    other = copy.deepcopy(cfg)
    other["actor_rollout_ref"]["rollout"]["n"] = 32
    with pytest.raises(RunFolderError, match="other settings"):
        claims.check(claims.plan(other, "maxpo", ["trainer.resume_mode=auto"]), write=False)


HOLDER = """
import sys, time
from pathlib import Path
from verl_maxpo.runs.folder import RunFolder
RunFolder(Path(sys.argv[1])).hold()
print("held", flush=True)
time.sleep(60)
"""


def verl_entry(folder: str, task: str, *overrides: str, cwd: Path) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "verl.trainer.main_ppo", "--config-path", str(ROOT / "recipes" / folder),
            "--config-name", task, SEARCHPATH, *overrides]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(argv, capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


@pytest.mark.slow
def test_a_hand_run_through_verls_entry_point_claims_its_folder(tmp_path):
    """verl's own entry point, no launcher: the callback writes meta.json and holds the folder; verl then fails on
    purpose (validate_config), so without the callback no meta.json would exist."""
    run_dir = tmp_path / "run"
    proc = verl_entry("math", "gsm8k", "estimator=pkpo", f"run_dir={run_dir}", "k=8", *STOP_VERL, cwd=tmp_path)
    assert proc.returncode != 0 and "real_train_batch_size" in proc.stderr + proc.stdout, proc.stderr[-2000:]
    meta = json.loads((run_dir / "meta.json").read_text())
    assert (meta["adv_estimator"], meta["k"], meta["n"], meta["config_name"]) == ("pkpo", 8, 16, "gsm8k")
    assert meta["settings"]["arm"] == "pkpo" and (run_dir / "val").is_dir()
    # A second hand run with other settings is refused with exit 2 and one error line, the folder left as it was.
    before = (run_dir / "meta.json").read_bytes()
    proc = verl_entry("math", "gsm8k", "estimator=pkpo", f"run_dir={run_dir}", "k=2", *STOP_VERL, cwd=tmp_path)
    assert proc.returncode == 2 and "other settings" in proc.stderr and "Traceback" not in proc.stderr
    assert (run_dir / "meta.json").read_bytes() == before


@pytest.mark.slow
def test_verls_entry_point_refuses_n_below_k_plus_1_before_verl_starts(tmp_path):
    start = time.monotonic()
    proc = verl_entry("math", "gsm8k", f"run_dir={tmp_path}/run", "k=16", cwd=tmp_path)
    took = time.monotonic() - start
    assert proc.returncode == 2 and "actor_rollout_ref.rollout.n" in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and not (tmp_path / "run").exists()
    print(f"refused in {took:.1f} s (the old launcher path: ~42 s)")
    assert took < 30  # before Ray and the model: import verl + compose (~10 s here), never a training start


@pytest.mark.slow
def test_a_folder_held_by_a_live_run_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(run_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        proc = verl_entry("math", "gsm8k", f"run_dir={run_dir}", *STOP_VERL, cwd=tmp_path)
        assert proc.returncode == 2 and f"pid {holder.pid}" in proc.stderr, proc.stderr[-2000:]
        assert not (run_dir / "meta.json").exists()
    finally:
        holder.kill()
        holder.wait()
    assert RunFolder(run_dir).holder() is None  # released when the process ended


@pytest.mark.slow
def test_a_code_run_refused_for_its_sandbox_claims_no_folder(tmp_path):
    """The code recipe checks where programs run before the claim: a refusal leaves no run folder behind."""
    proc = verl_entry("code", "code", f"run_dir={tmp_path}/run", cwd=tmp_path)
    assert proc.returncode == 2 and "reward.sandbox_fusion.url" in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "run").exists()
    local = "reward.custom_reward_function.reward_kwargs.allow_local_exec=true"
    proc = verl_entry("code", "code", f"run_dir={tmp_path}/run", local, *STOP_VERL, cwd=tmp_path)
    assert proc.returncode != 0 and json.loads((tmp_path / "run" / "meta.json").read_text())["config_name"] == "code"
