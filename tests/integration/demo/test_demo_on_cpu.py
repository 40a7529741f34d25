"""`verl-maxpo demo` on CPU: the --quick smoke run, its output folder, interruptions, reproducibility across
processes and worker counts, and verl's pieces in the RL step."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch
from verl.trainer.ppo import core_algos

from verl_maxpo.core.estimators import maxpo_advantages, pkpo_advantages
from verl_maxpo.core.table import ARMS, arm_reads_k
from verl_maxpo.tasks.addition import AdditionTask, build_policy, response_log_probs, warm_start
from verl_maxpo.tools.demo import config as demo_config
from verl_maxpo.tools.demo import gradvar as demo_gradvar
from verl_maxpo.tools.demo import main as demo
from verl_maxpo.tools.demo import rl as demo_rl

pytestmark = pytest.mark.slow  # runs the demo

ARMS_AB = tuple(ARMS)  # every arm of the table, in the A/B and in the variance section
QUICK_ARGS = ["--quick", "--no-progress", "--estimators", ",".join(ARMS_AB)]
SHORT_WARM_START = ["--sft-max-steps", "25"]  # for tests of the output folder, not of the numbers
REPO = Path(demo.__file__).parents[1]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "verl_maxpo", "demo", *QUICK_ARGS, *args]


def tables(summary_md: str) -> str:
    """summary.md's tables: from the first table to the provenance section (which names the command, the worker
    count and the wall time)."""
    return summary_md.split("## Held-out")[1].split("## What these numbers depend on")[0]


@pytest.fixture(scope="module")
def quick_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("quick") / "out"
    assert demo.main([*QUICK_ARGS, "--workers", "1", "--out", str(out)]) == 0
    return out


def test_quick_run_writes_logs_dumps_report_and_summary(quick_out: Path) -> None:
    q = demo_config.QUICK
    for arm in ARMS_AB:
        run = quick_out / "runs" / f"{arm}_seed0"
        meta = json.loads((run / "meta.json").read_text())
        assert meta == {
            "adv_estimator": ARMS[arm].estimator,
            "k": 4 if arm_reads_k(ARMS[arm]) else None,  # the launcher's meaning too: grpo and maxrl read no k
            "n": 8,
            "seed": 0,
            "config_name": arm,
            "val_n": q["val_n"],
            "settings": {"maxpo_top2": {"objective": "top_m", "m": "2"}, "maxpo_ml": {"objective": "ml"}}.get(arm, {}),
        }
        # verl's file logger format: {"step": s, "data": {...}}, training metrics under verl's names at every step,
        # val/ at 0, 2, 4
        log = read_jsonl(run / "train_log.jsonl")
        assert all(set(row) == {"step", "data"} for row in log)
        train_steps = [r["step"] for r in log if "actor/pg_loss" in r["data"]]
        val_steps = [r["step"] for r in log if "val/pass@1" in r["data"]]
        assert train_steps == list(range(1, q["steps"] + 1))
        assert val_steps == [0, 2, 4]
        prefixes = ("critic/", "actor/", "batch/", "response_length/", "val/")
        assert all(k.startswith(prefixes) for r in log for k in r["data"])
        for r in log:
            if "val/pass@1" in r["data"]:
                d = r["data"]
                assert 0.0 <= d["val/pass@1"] <= d["val/pass@4"] <= d["val/pass@8"] <= 1.0
        # verl validation dumps: one line per sample with input/output/gts/score/step
        assert sorted(p.name for p in (run / "val").iterdir()) == ["0.jsonl", "2.jsonl", "4.jsonl"]
        rows = read_jsonl(run / "val" / "4.jsonl")
        assert len(rows) == q["val_prompts"] * q["val_n"]
        assert set(rows[0]) == {"input", "output", "gts", "score", "step"}
        assert all(r["step"] == 4 for r in rows)
        assert all(r["score"] == float(r["output"] == r["gts"]) for r in rows)
        assert all(r["input"].endswith("=") and len(r["gts"]) == q["digits"] + 1 for r in rows)
        assert len({r["input"] for r in rows}) == q["val_prompts"]
    # the warm start left pass@1 above zero (sparse, not absent, rewards), and step 0 is the same checkpoint
    step0 = {
        read_jsonl(quick_out / "runs" / f"{a}_seed0" / "train_log.jsonl")[0]["data"]["val/pass@1"] for a in ARMS_AB
    }
    assert len(step0) == 1 and 0.0 < step0.pop() < 0.6
    # report logic: markdown + PNG curves; the demo's own summary with tables and gradient variance
    pngs = list(quick_out.glob("*.png"))
    assert (quick_out / "training.png").is_file()  # the report plots the demo's training logs (verl's names)
    assert pngs and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert "`runs/maxpo_seed0`" in (quick_out / "report.md").read_text()  # the published path, not the stage's
    summary = (quick_out / "summary.md").read_text()
    data = json.loads((quick_out / "summary.json").read_text())
    # fractions with 4 decimals, as report.md: the step-0 cell is the logged pass@1
    step0_cell = f"{data['table']['maxpo']['step0_pass@1'][0]:.4f}"
    for arm in ARMS_AB:
        assert f"| {arm} | {step0_cell} |" in summary
    assert set(data["gradvar"]) == {"warm start", *(f"after 4 {a} steps" for a in ARMS_AB)}
    # the variance section covers every arm of the table that verl has, not only the A/B's
    every_arm = demo_gradvar.gradvar_arms(4, core_algos.ADV_ESTIMATOR_REGISTRY)
    assert every_arm == ["maxpo", "maxpo_top2", "maxpo_ml", "pkpo", "pkpo_loo", "maxrl", "grpo"]
    ws = data["gradvar"]["warm start"]
    assert list(ws) == every_arm
    # rel_var is None (JSON null, "unresolved*" in summary.md) where the mean gradient is not resolved
    assert all((ws[a]["rel_var"] is None or ws[a]["rel_var"] > 0) and -1 <= ws[a]["cos_mean"] <= 1 for a in every_arm)
    assert data["gradvar_skipped"] == {}  # every arm runs at k = 4
    # maxpo and pkpo estimate the same gradient: their means point the same way even from few draws
    assert ws["maxpo"]["cos_to_pkpo_mean"] > 0.5
    # what a reader needs to reproduce the tables
    prov = data["provenance"]
    assert prov["torch_threads_per_run"] == 1 and prov["workers"] == 1 and prov["seeds"] == [0]
    assert prov["packages"]["torch"] == torch.__version__ and prov["command"].startswith("verl-maxpo demo --quick")
    assert f"torch {torch.__version__}" in summary and prov["command"] in summary


def test_force_replaces_only_the_demos_own_files(quick_out: Path, tmp_path: Path) -> None:
    """Into a folder holding an earlier demo run and the user's files, the demo replaces exactly the files it wrote
    before (its manifest): the earlier arms' runs go, the user's files (top level and inside runs/) stay."""
    out = tmp_path / "out"
    shutil.copytree(quick_out, out)
    (out / "notes.txt").write_text("mine\n")
    (out / "runs" / "mine").mkdir()
    (out / "runs" / "mine" / "log.txt").write_text("mine too\n")
    (out / "pass_at_32.png").write_bytes(b"a user's plot")
    argv = [*QUICK_ARGS, *SHORT_WARM_START, "--workers", "1", "--out", str(out), "--estimators", "maxpo", "--force"]
    assert demo.main(argv) == 0
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["maxpo_seed0", "mine"]
    assert (out / "notes.txt").read_text() == "mine\n" and (out / "runs/mine/log.txt").read_text() == "mine too\n"
    assert (out / "pass_at_32.png").read_bytes() == b"a user's plot"
    assert json.loads((out / "summary.json").read_text())["table"].keys() == {"maxpo"}
    assert not [p for p in out.iterdir() if "partial" in p.name]


def _wait_for(pattern: str, root: Path, proc: subprocess.Popen, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while not list(root.glob(pattern)):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"no {pattern} after {seconds} s"
        time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_run_leaves_the_earlier_output_whole(quick_out: Path, tmp_path: Path, sig: int) -> None:
    """Killed mid-run (two workers busy), the demo leaves OUT exactly as it was, no stage and no worker behind."""
    out = tmp_path / "out"
    shutil.copytree(quick_out, out)
    before = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    proc = subprocess.Popen(
        cli(*SHORT_WARM_START, "--out", str(out), "--workers", "2", "--force"),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    _wait_for(".verl_maxpo-partial-*/runs/*/val/0.jsonl", out, proc)
    workers = psutil.Process(proc.pid).children()
    assert len(workers) >= 2  # the spawn pool (and its resource tracker)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, err.decode()[-2000:]
    _, alive = psutil.wait_procs(workers, timeout=30)
    assert not alive
    assert b"Traceback" not in err and b"interrupted" in err
    after = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before


def test_ctrl_c_during_start_up_leaves_nothing(tmp_path: Path) -> None:
    """Ctrl-C while verl is still being imported: exit 130, one line, no traceback, no folder created."""
    out = tmp_path / "out"
    proc = subprocess.Popen(cli("--out", str(out)), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _wait_for(".out.verl_maxpo-partial-*", tmp_path, proc)  # the stage exists: the demo's start-up has begun
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err.decode()[-2000:]
    assert b"Traceback" not in err and b"interrupted" in err
    assert list(tmp_path.iterdir()) == []


def test_tables_do_not_depend_on_hash_seed_workers_or_folder(quick_out: Path, tmp_path: Path) -> None:
    """Another process (another PYTHONHASHSEED), two workers instead of one, and `--out .`: the same bytes."""
    here = tmp_path / "here"
    here.mkdir()
    seed = str(int(os.environ.get("PYTHONHASHSEED", "0") or 0) + 1)
    env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cli("--out", ".", "--workers", "2"), cwd=here, env=env, capture_output=True, timeout=900)
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    assert b"Warning" not in proc.stderr, proc.stderr.decode()[-3000:]  # verl's warnings are in demo.log
    for arm in ARMS_AB:
        a, b = quick_out / "runs" / f"{arm}_seed0", here / "runs" / f"{arm}_seed0"
        assert (a / "train_log.jsonl").read_bytes() == (b / "train_log.jsonl").read_bytes()
        for step in (0, 2, 4):
            assert (a / "val" / f"{step}.jsonl").read_bytes() == (b / "val" / f"{step}.jsonl").read_bytes()
    first, second = (json.loads((d / "summary.json").read_text()) for d in (quick_out, here))
    assert first["gradvar"] == second["gradvar"] and first["table"] == second["table"]
    assert tables((quick_out / "summary.md").read_text()) == tables((here / "summary.md").read_text())
    assert second["provenance"]["workers"] == 2


def test_fixed_step_warm_start_draws_only_training_batches() -> None:
    """Without a target (tiny-assets), warm_start is plain AdamW on the seeded batch stream, nothing else drawn."""
    task = AdditionTask(2, 8, seed=0)
    ours, manual = build_policy(task, 0, torch.device("cpu")), build_policy(task, 0, torch.device("cpu"))
    done = warm_start(ours, task, steps=3, seed=5, batch=16)
    rng, opt = np.random.default_rng([5, 2]), torch.optim.AdamW(manual.parameters(), lr=3e-3, weight_decay=0.0)
    for _ in range(3):
        loss = -response_log_probs(manual, *task.encode(task.train_pairs(rng, 16), torch.device("cpu"))).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert done.steps == 3 and done.loss == pytest.approx(loss.item()) and np.isnan(done.train_pass1)
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), manual.state_dict().values(), strict=True))
    seen = []
    stopped = warm_start(ours, task, steps=30, seed=5, batch=16, target=1.0, on_step=lambda s, p: seen.append(p))
    assert stopped.steps == 30 and len(seen) == 30 and np.isnan(seen[23]) and not np.isnan(seen[24])


# --- the RL step uses verl's registry and loss functions ------------------------------------------------------


@pytest.fixture(scope="module")
def small_batch() -> tuple[torch.nn.Module, demo_rl.Rollout, demo_config.DemoConfig]:
    cfg = demo_config.parse_config(["--quick", "--prompts-per-step", "4"])
    task = AdditionTask(2, 8, seed=0)
    model = build_policy(task, seed=0, device=torch.device("cpu"))
    pairs = task.train_pairs(np.random.default_rng(0), 4)
    batch = demo_rl.rollout(model, task, pairs, cfg.n, 1.0, torch.Generator().manual_seed(0))
    # make the rewards non-trivial and varied per group, whatever the random model sampled
    batch.scores = torch.tensor(
        [1.0, 0, 0, 0, 0, 0, 0, 0] + [1.0, 1, 0, 0, 0, 0, 0, 0] + [1.0, 1, 1, 1, 1, 0, 0, 0] + [0.0] * 8
    )
    return model, batch, cfg


def test_rl_step_uses_the_estimator_registered_in_verl(small_batch, monkeypatch: pytest.MonkeyPatch) -> None:
    model, batch, cfg = small_batch
    seen = {}

    def fake_estimator(token_level_rewards, response_mask, index, config=None, **kwargs):
        seen["k"] = config.maxpo.k
        seq = torch.arange(1, response_mask.shape[0] + 1, dtype=torch.float32)  # distinct, all positive
        adv = seq.unsqueeze(1) * response_mask
        return adv, adv

    calls = {"agg_loss": 0, "vanilla": 0}
    real_agg, real_vanilla = core_algos.agg_loss, core_algos.POLICY_LOSS_REGISTRY["vanilla"]

    def spy_agg(*a, **kw):
        calls["agg_loss"] += 1
        return real_agg(*a, **kw)

    def spy_vanilla(*a, **kw):
        calls["vanilla"] += 1
        return real_vanilla(*a, **kw)

    monkeypatch.setitem(core_algos.ADV_ESTIMATOR_REGISTRY, "maxpo", fake_estimator)
    monkeypatch.setitem(core_algos.POLICY_LOSS_REGISTRY, "vanilla", spy_vanilla)
    monkeypatch.setattr(core_algos, "agg_loss", spy_agg)
    algo, actor = demo_rl.verl_configs("maxpo", cfg)
    loss, metrics, data = demo_rl.policy_gradient_loss(model, batch, algo, actor)

    mask = batch.response_mask
    expected_adv = torch.arange(1, mask.shape[0] + 1, dtype=torch.float32).unsqueeze(1) * mask
    assert seen["k"] == cfg.k
    assert torch.equal(data.batch["advantages"], expected_adv)
    assert calls == {"agg_loss": 1, "vanilla": 1}
    # on-policy ratio 1: the vanilla clipped loss is -A, token-mean aggregated
    assert loss.item() == pytest.approx(-(expected_adv.sum() / mask.sum()).item(), rel=1e-6)
    assert metrics["critic/advantages/mean"] == pytest.approx((expected_adv.sum() / mask.sum()).item())
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    model.zero_grad(set_to_none=True)


@pytest.mark.parametrize("arm", ["maxpo", "grpo", "pkpo"])
def test_rl_step_advantages_match_the_estimators(small_batch, arm: str) -> None:
    model, batch, cfg = small_batch
    algo, actor = demo_rl.verl_configs(arm, cfg)
    with torch.no_grad():
        _, _, data = demo_rl.policy_gradient_loss(model, batch, algo, actor)
    adv = data.batch["advantages"]
    mask = batch.response_mask
    if arm == "grpo":  # verl's GRPO: (r - mean) / (std + eps), std unbiased
        g = batch.scores.view(-1, 8)
        want = ((g - g.mean(1, keepdim=True)) / (g.std(1, keepdim=True) + 1e-6)).reshape(-1)
    else:
        fn = maxpo_advantages if arm == "maxpo" else pkpo_advantages
        want = fn(batch.scores, batch.uid, cfg.k)
    torch.testing.assert_close(adv, want.unsqueeze(1) * mask, rtol=1e-5, atol=1e-6)
    if arm == "maxpo":  # worked example of the math note: one correct of 8, k=4 -> [1, -1/7 x 7]
        torch.testing.assert_close(adv[:8, 0], torch.tensor([1.0] + [-1 / 7] * 7))
    # the all-wrong group carries no signal for any estimator
    assert adv[24:].abs().sum().item() == 0.0


def test_every_arm_builds_verls_config_from_the_table(small_batch) -> None:
    """algorithm.adv_estimator is the arm's estimator and algorithm.maxpo is k plus the arm's fixed options."""
    _, _, cfg = small_batch
    for name, arm in ARMS.items():
        algo, _ = demo_rl.verl_configs(name, cfg)
        assert algo.adv_estimator == arm.estimator
        assert dict(algo.maxpo) == {"k": cfg.k, "norm_by_std": False, **arm.options}
        meta = demo_rl.run_meta(name, 3, cfg)
        assert (meta.config_name, meta.adv_estimator, meta.seed) == (name, arm.estimator, 3)
        assert meta.settings == {key: str(value) for key, value in arm.options.items()}
    assert demo_rl.run_meta("grpo", 0, cfg).k is None and demo_rl.run_meta("maxpo", 0, cfg).k == cfg.k


def test_task_reward_and_response_mask() -> None:
    task = AdditionTask(2, 4, seed=0)
    prompts, targets = task.encode(np.array([[47, 85]]), torch.device("cpu"))
    assert task.decode(prompts) == ["47+85="] and task.decode(targets) == ["132"]
    eos = task.eos
    right = targets[0]
    early_eos = torch.tensor([right[0], eos, right[1], right[2]])
    responses = torch.stack([right, early_eos])
    assert task.score(responses, targets.expand(2, -1)).tolist() == [1.0, 0.0]
    assert task.response_mask(responses).tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert task.decode(responses, task.response_mask(responses)) == ["132", "1"]


def test_held_out_prompts_are_never_trained_on() -> None:
    task = AdditionTask(1, 20, seed=0)  # 20 of 100 pairs held out, so collisions would be frequent
    held = {tuple(p) for p in task.val_pairs.tolist()}
    train = {tuple(p) for p in task.train_pairs(np.random.default_rng(0), 2000).tolist()}
    assert len(held) == 20 and not (held & train) and len(train) == 80


def test_options_are_checked_and_frozen() -> None:
    parse = demo_config.parse_config
    with pytest.raises(SystemExit):
        parse(["--n", "4", "--k", "4"])
    with pytest.raises(SystemExit):  # pkpo (in the default arms) has no k = 1: refused before any work
        parse(["--k", "1"])
    assert parse(["--k", "1", "--estimators", "maxpo,grpo"]).k == 1
    cfg = parse(["--quick", "--steps", "7", "--workers", "3", "--out", "rel"])
    assert cfg.steps == 7 and cfg.digits == demo_config.QUICK["digits"] and cfg.arms == ("maxpo", "grpo", "pkpo")
    assert cfg.workers == 3 and cfg.out == Path.cwd() / "rel" and cfg.val_ks == [1, 4, 8]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.steps = 8  # type: ignore[misc]
    assert parse([]).workers == demo_config.usable_cores() == len(os.sched_getaffinity(0))


def test_gradient_variance_covers_every_registered_arm_defined_at_k() -> None:
    registry = {"maxpo", "grpo", "pkpo", "pkpo_loo"}
    assert demo_gradvar.gradvar_arms(4, registry) == [a for a in ARMS if ARMS[a].estimator in registry]
    assert "pkpo" not in demo_gradvar.gradvar_arms(1, registry)  # pkpo has no k = 1
    assert "maxpo_top2" not in demo_gradvar.gradvar_arms(1, registry)  # its m = 2 > k = 1
    assert demo_gradvar.gradvar_arms(4, {"maxpo", "grpo"}) == [
        a for a in ARMS if ARMS[a].estimator in {"maxpo", "grpo"}
    ]


def test_list_options_take_both_forms_and_arms_come_from_the_table() -> None:
    spaced = demo_config.parse_config(["--estimators", "maxpo", "pkpo_loo", "--k", "2"])
    mixed = demo_config.parse_config(["--estimators", "maxpo,pkpo_loo", "--k", "2"])
    assert spaced.arms == mixed.arms == ("maxpo", "pkpo_loo")
    assert demo_config.parse_config(["--estimators", ",".join(ARMS), "--k", "2"]).arms == tuple(ARMS)
    with pytest.raises(SystemExit):  # pkpo_loo reads k like maxpo: n >= k+1
        demo_config.parse_config(["--estimators", "pkpo_loo", "--k", "8"])
    sparse = demo_config.parse_config(["--preset", "sparse"])
    assert sparse.sft_target == demo_config.PRESETS["sparse"]["sft_target"] < 0.15
    assert demo_config.parse_config(["--preset", "sparse", "--sft-target", "0.2"]).sft_target == 0.2
