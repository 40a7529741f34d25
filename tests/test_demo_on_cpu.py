"""`verl-maxpo demo` on CPU: the --quick smoke run, verl's pieces in the RL step, and seeded reproducibility."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from verl.trainer.ppo import core_algos

from verl_maxpo import demo
from verl_maxpo.estimators import maxpo_advantages, pkpo_advantages

pytestmark = pytest.mark.slow  # runs the demo

ESTIMATORS = ("maxpo", "grpo", "pkpo")
QUICK_ARGS = ["--quick", "--no-progress", "--threads", "2"]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def quick_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("quick")
    assert demo.main([*QUICK_ARGS, "--out", str(out)]) == 0
    return out


def test_quick_run_writes_logs_dumps_report_and_summary(quick_out: Path) -> None:
    q = demo.QUICK
    for est in ESTIMATORS:
        run = quick_out / "runs" / f"{est}_seed0"
        meta = json.loads((run / "meta.json").read_text())
        assert meta == {
            "adv_estimator": est,
            "k": None if est == "grpo" else 4,
            "n": 8,
            "seed": 0,
            "config_name": est,
            "val_n": q["val_n"],
            "settings": {},
        }
        # verl's file logger format: {"step": s, "data": {...}}, train/ at every step, val/ at 0, 2, 4
        log = read_jsonl(run / "train_log.jsonl")
        assert all(set(row) == {"step", "data"} for row in log)
        train_steps = [r["step"] for r in log if "train/pg_loss" in r["data"]]
        val_steps = [r["step"] for r in log if "val/pass@1" in r["data"]]
        assert train_steps == list(range(1, q["steps"] + 1))
        assert val_steps == [0, 2, 4]
        assert all(k.startswith(("train/", "val/")) for r in log for k in r["data"])
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
        read_jsonl(quick_out / "runs" / f"{e}_seed0" / "train_log.jsonl")[0]["data"]["val/pass@1"] for e in ESTIMATORS
    }
    assert len(step0) == 1 and 0.0 < step0.pop() < 0.6
    # report logic: markdown + PNG curves; the demo's own summary with tables and gradient variance
    pngs = list(quick_out.glob("*.png"))
    assert pngs and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert (quick_out / "report.md").read_text().strip()
    summary = (quick_out / "summary.md").read_text()
    for est in ESTIMATORS:
        assert f"| {est} |" in summary
    data = json.loads((quick_out / "summary.json").read_text())
    assert set(data["gradvar"]) == {"warm start", *(f"after 4 {e} steps" for e in ESTIMATORS)}
    ws = data["gradvar"]["warm start"]
    assert all(ws[e]["rel_var"] > 0 and -1 <= ws[e]["cos_mean"] <= 1 for e in ESTIMATORS)
    # maxpo and pkpo estimate the same gradient: their means point the same way even from few draws
    assert ws["maxpo"]["cos_to_pkpo_mean"] > 0.5


def test_force_replaces_only_the_demos_outputs(quick_out: Path, tmp_path: Path) -> None:
    """A non-empty --out is refused; with --force the earlier run's outputs go and unrelated files stay."""
    out = tmp_path / "out"
    shutil.copytree(quick_out, out)
    (out / "runs" / "grpo_seed0").rename(out / "runs" / "old_seed7")  # an earlier, different comparison
    (out / "pass_at_32.png").write_bytes(b"old")
    (out / "notes.txt").write_text("mine\n")
    with pytest.raises(SystemExit) as exc:
        demo.main([*QUICK_ARGS, "--out", str(out), "--estimators", "maxpo"])
    assert exc.value.code == 2 and (out / "runs" / "old_seed7").is_dir()
    assert demo.main([*QUICK_ARGS, "--out", str(out), "--estimators", "maxpo", "--force"]) == 0
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["maxpo_seed0"]
    assert not (out / "pass_at_32.png").exists() and (out / "notes.txt").read_text() == "mine\n"
    assert json.loads((out / "summary.json").read_text())["table"].keys() == {"maxpo"}
    assert "`runs/maxpo_seed0`" in (out / "report.md").read_text()  # the published path, not the partial one
    assert not list(tmp_path.glob(".out.partial-*"))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_run_leaves_the_earlier_output_whole(quick_out: Path, tmp_path: Path, sig: int) -> None:
    """Killed mid-run, the demo leaves OUT exactly as it was (and no partial folder behind)."""
    out = tmp_path / "out"
    shutil.copytree(quick_out, out)
    before = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    argv = [sys.executable, "-m", "verl_maxpo", "demo", *QUICK_ARGS, "--out", str(out), "--force"]
    proc = subprocess.Popen(argv, cwd=Path(demo.__file__).parents[1], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".out.partial-*/runs/*/val/0.jsonl")) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == (130 if sig == signal.SIGINT else 143)
    assert b"Traceback" not in err and b"left as it was" in err
    after = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert not list(tmp_path.glob(".out.partial-*")), err.decode()[-2000:]


def test_seeded_quick_run_is_reproducible(quick_out: Path, tmp_path: Path) -> None:
    assert demo.main([*QUICK_ARGS, "--out", str(tmp_path)]) == 0
    for est in ESTIMATORS:
        a, b = quick_out / "runs" / f"{est}_seed0", tmp_path / "runs" / f"{est}_seed0"
        assert (a / "train_log.jsonl").read_bytes() == (b / "train_log.jsonl").read_bytes()
        for step in (0, 2, 4):
            assert (a / "val" / f"{step}.jsonl").read_bytes() == (b / "val" / f"{step}.jsonl").read_bytes()
    first, second = (json.loads((d / "summary.json").read_text()) for d in (quick_out, tmp_path))
    assert first["gradvar"] == second["gradvar"] and first["table"] == second["table"]


# --- the RL step uses verl's registry and loss functions ------------------------------------------------------


@pytest.fixture(scope="module")
def small_batch() -> tuple[torch.nn.Module, demo.Rollout, object]:
    args = demo.parse_args(["--quick", "--prompts-per-step", "4"])
    task = demo.AdditionTask(2, 8, seed=0)
    model = demo.build_policy(task, seed=0, device=torch.device("cpu"))
    pairs = task.train_pairs(np.random.default_rng(0), 4)
    batch = demo.rollout(model, task, pairs, args.n, 1.0, torch.Generator().manual_seed(0))
    # make the rewards non-trivial and varied per group, whatever the random model sampled
    batch.scores = torch.tensor(
        [1.0, 0, 0, 0, 0, 0, 0, 0] + [1.0, 1, 0, 0, 0, 0, 0, 0] + [1.0, 1, 1, 1, 1, 0, 0, 0] + [0.0] * 8
    )
    return model, batch, args


def test_rl_step_uses_the_estimator_registered_in_verl(small_batch, monkeypatch: pytest.MonkeyPatch) -> None:
    model, batch, args = small_batch
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
    algo, actor = demo.verl_configs("maxpo", args)
    loss, metrics, data = demo.policy_gradient_loss(model, batch, "maxpo", algo, actor)

    mask = batch.response_mask
    expected_adv = torch.arange(1, mask.shape[0] + 1, dtype=torch.float32).unsqueeze(1) * mask
    assert seen["k"] == args.k
    assert torch.equal(data.batch["advantages"], expected_adv)
    assert calls == {"agg_loss": 1, "vanilla": 1}
    # on-policy ratio 1: the vanilla clipped loss is -A, token-mean aggregated
    assert loss.item() == pytest.approx(-(expected_adv.sum() / mask.sum()).item(), rel=1e-6)
    assert metrics["train/adv_mean"] == pytest.approx(expected_adv.sum(1).div(mask.sum(1)).mean().item())
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    model.zero_grad(set_to_none=True)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_rl_step_advantages_match_the_estimators(small_batch, estimator: str) -> None:
    model, batch, args = small_batch
    algo, actor = demo.verl_configs(estimator, args)
    with torch.no_grad():
        _, _, data = demo.policy_gradient_loss(model, batch, estimator, algo, actor)
    adv = data.batch["advantages"]
    mask = batch.response_mask
    if estimator == "grpo":  # verl's GRPO: (r - mean) / (std + eps), std unbiased
        g = batch.scores.view(-1, 8)
        want = ((g - g.mean(1, keepdim=True)) / (g.std(1, keepdim=True) + 1e-6)).reshape(-1)
    else:
        fn = maxpo_advantages if estimator == "maxpo" else pkpo_advantages
        want = fn(batch.scores, batch.uid, args.k)
    torch.testing.assert_close(adv, want.unsqueeze(1) * mask, rtol=1e-5, atol=1e-6)
    if estimator == "maxpo":  # worked example of the math note: one correct of 8, k=4 -> [1, -1/7 x 7]
        torch.testing.assert_close(adv[:8, 0], torch.tensor([1.0] + [-1 / 7] * 7))
    # the all-wrong group carries no signal for any estimator
    assert adv[24:].abs().sum().item() == 0.0


def test_task_reward_and_response_mask() -> None:
    task = demo.AdditionTask(2, 4, seed=0)
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
    task = demo.AdditionTask(1, 20, seed=0)  # 20 of 100 pairs held out, so collisions would be frequent
    held = {tuple(p) for p in task.val_pairs.tolist()}
    train = {tuple(p) for p in task.train_pairs(np.random.default_rng(0), 2000).tolist()}
    assert len(held) == 20 and not (held & train) and len(train) == 80


def test_options_are_checked() -> None:
    with pytest.raises(SystemExit):
        demo.parse_args(["--n", "4", "--k", "4"])
    with pytest.raises(SystemExit):  # pkpo (in the default estimators) has no k = 1: refused before any work
        demo.parse_args(["--k", "1"])
    assert demo.parse_args(["--k", "1", "--estimators", "maxpo,grpo"]).k == 1
    args = demo.parse_args(["--quick", "--steps", "7"])
    assert args.steps == 7 and args.digits == demo.QUICK["digits"] and args.estimators == list(ESTIMATORS)


def test_gradient_variance_adds_both_pkpo_baselines_when_registered() -> None:
    registry = {"maxpo": 1, "grpo": 1, "pkpo": 1, "pkpo_loo": 1}
    assert demo.gradvar_estimators(["maxpo", "grpo"], 4, registry) == ["maxpo", "grpo", "pkpo", "pkpo_loo"]
    assert demo.gradvar_estimators(["pkpo_loo", "maxpo"], 4, registry) == ["pkpo_loo", "maxpo", "pkpo"]
    assert demo.gradvar_estimators(["maxpo"], 1, registry) == ["maxpo", "pkpo_loo"]  # pkpo has no k = 1
    assert demo.gradvar_estimators(["maxpo"], 4, {"maxpo": 1, "pkpo": 1}) == ["maxpo", "pkpo"]  # not registered yet


def test_list_options_take_both_forms_and_pkpo_loo_is_a_k_estimator() -> None:
    spaced = demo.parse_args(["--estimators", "maxpo", "pkpo_loo", "--k", "2"])
    mixed = demo.parse_args(["--estimators", "maxpo,pkpo_loo", "--k", "2"])
    assert spaced.estimators == mixed.estimators == ["maxpo", "pkpo_loo"]
    assert "pkpo_loo" in demo.K_ESTIMATORS
    with pytest.raises(SystemExit):  # pkpo_loo reads k like maxpo: n >= k+1
        demo.parse_args(["--estimators", "pkpo_loo", "--k", "8"])
    sparse = demo.parse_args(["--preset", "sparse"])
    assert sparse.sft_target == demo.PRESETS["sparse"]["sft_target"] < 0.15
    assert demo.parse_args(["--preset", "sparse", "--sft-target", "0.2"]).sft_target == 0.2
