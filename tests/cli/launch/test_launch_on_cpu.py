"""`verl-maxpo launch`: the printed commands compose through verl, the runs' output layout, the report step.

The launcher runs in-process (`run_main`). A dry-run command is composed for real by verl's entry point (`--cfg
job`), so a printed command that verl would reject fails here. Real runs use a stand-in interpreter for verl that
records its arguments, which checks console.log, the headlines, exit statuses and the A/B order without a GPU.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

import verl_maxpo.launch.main as launch
from verl_maxpo.core.table import ARMS, arm_reads_k
from verl_maxpo.launch.console import headline
from verl_maxpo.runs import claim as claims
from verl_maxpo.runs.folder import RunFolder

pytestmark = pytest.mark.slow  # composes recipes (verl's config) and runs verl's entry point in subprocesses

ROOT = Path(__file__).resolve().parents[3]
COMPOSE_DRIVER = """
import contextlib, io, json, sys
import verl.trainer.main_ppo as entry
out = []
for argv in json.loads(sys.argv[1]):
    sys.argv = ["verl.trainer.main_ppo", *argv]
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        entry.main()
    out.append(buf.getvalue())
sys.stdout.write(json.dumps(out))
"""


def run(run_main, *args: str, env: dict[str, str] | None = None):
    return run_main(lambda argv: launch.main(argv, env=env or {}), *args)


def data(tmp_path: Path, task: str = "gsm8k") -> list[str]:
    folder = tmp_path / "data" / task
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        (folder / f"{split}.parquet").write_bytes(b"stand-in")
    return [f"data.train_files={folder}/train.parquet", f"data.val_files={folder}/test.parquet"]


def commands(text: str) -> list[list[str]]:
    return [shlex.split(line) for line in text.splitlines() if " -m verl.trainer.main_ppo " in line]


def compose_printed(argvs: list[list[str]], cwd: Path, env: dict[str, str] | None = None) -> list:
    """Each printed command's arguments after `python -m verl.trainer.main_ppo`, composed by verl itself."""
    tails = [a[a.index("verl.trainer.main_ppo") + 1 :] + ["--cfg", "job"] for a in argvs]
    proc = subprocess.run(
        [sys.executable, "-c", COMPOSE_DRIVER, json.dumps(tails)], capture_output=True, text=True, cwd=cwd,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}, timeout=400,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    configs = [OmegaConf.create(text) for text in json.loads(proc.stdout)]
    for cfg in configs:
        OmegaConf.resolve(cfg)
    return configs


def test_help_shows_the_one_channel_interface(run_main):
    outcome = run(run_main, "--help")
    assert outcome.code == 0
    for flag in ("--arms", "--seeds", "--out", "--dry-run", "--print-config", "--force", "--python"):
        assert flag in outcome.out
    assert "Hydra override" in outcome.out


def test_dry_run_prints_commands_that_verl_composes_from_any_folder(run_main, tmp_path):
    out = tmp_path / "out"
    proc = run(run_main, "gsm8k", "--dry-run", "--out", str(out), "--seeds", "3,4", "k=8",
               "actor_rollout_ref.rollout.n=12", "trainer.n_gpus_per_node=4", *data(tmp_path))  # fmt: skip
    assert proc.code == 0, proc.err
    names = ["gsm8k_maxpo_k8_seed3", "gsm8k_grpo_seed3", "gsm8k_maxpo_k8_seed4", "gsm8k_grpo_seed4"]
    lines = proc.out.splitlines()
    assert [line[4:-4] for line in lines if line.startswith("=== ")] == names
    assert (
        "# 1 node(s) x 4 GPU(s)  model Qwen/Qwen2.5-1.5B-Instruct  n 12  val n 16  batch 128  mini-batch 64  k 8"
        in lines
    )
    assert lines[-1] == "verl-maxpo report " + " ".join(f"{out}/{n}" for n in names) + f" --out {out}/report"
    assert not out.exists()  # a dry run touches nothing
    argvs = commands(proc.out)
    assert len(argvs) == 4 and all(a[0] == sys.executable for a in argvs)
    configs = compose_printed(argvs, cwd=tmp_path)
    for cfg, name in zip(configs, names, strict=True):
        assert cfg.trainer.experiment_name == name and cfg.run_dir == f"{out}/{name}"
        assert cfg.trainer.validation_data_dir == f"{out}/{name}/val" and cfg.trainer.n_gpus_per_node == 4
        assert cfg.ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH == f"{out}/{name}/train_log.jsonl"
        assert cfg.actor_rollout_ref.rollout.n == 12 and cfg.data.seed == cfg.seed == int(name[-1])
    assert [c.algorithm.adv_estimator for c in configs] == ["maxpo", "grpo", "maxpo", "grpo"]
    assert configs[0].algorithm.maxpo.k == 8


@pytest.mark.parametrize("task", sorted(launch.TASKS))
def test_every_arm_of_the_table_gets_a_folder_named_after_it(run_main, tmp_path, task):
    extra = data(tmp_path, task) if not launch.TASKS[task].cpu else [f"{task}_assets={tmp_path}/assets"]
    if task == "code":
        extra.append("reward.sandbox_fusion.url=http://sb:8080/run_code")
    proc = run(run_main, task, "--dry-run", "--out", str(tmp_path / "out"), "--arms", " ".join(ARMS), "k=3", *extra)
    assert proc.code == 0, proc.err
    names = [f"{task}_{arm}" + ("_k3" if arm_reads_k(spec) else "") + "_seed1" for arm, spec in ARMS.items()]
    assert [line[4:-4] for line in proc.out.splitlines() if line.startswith("=== ")] == names
    for argv, arm in zip(commands(proc.out), ARMS, strict=True):
        assert argv[argv.index("--config-name") + 1] == task and f"estimator={arm}" in argv
        if launch.TASKS[task].cpu:
            assert argv[:2] == ["VERL_PLATFORM=cpu", "RAY_ADDRESS=local"]


def test_tiny_dry_run_builds_nothing_and_verl_composes_it_on_the_cpu_platform(run_main, tmp_path):
    assets = tmp_path / "assets"
    proc = run(
        run_main, "tiny", "--dry-run", "--out", str(tmp_path / "out"), "--arms", "maxpo", f"tiny_assets={assets}"
    )
    assert proc.code == 0, proc.err
    assert f"# assets: {assets} (missing" in proc.out and not assets.exists() and not (tmp_path / "out").exists()
    (argv,) = commands(proc.out)
    env = dict(a.split("=", 1) for a in argv[:3])
    assert env == {"VERL_PLATFORM": "cpu", "RAY_ADDRESS": "local", "OMP_NUM_THREADS": "1"}
    (cfg,) = compose_printed([argv[3:]], cwd=tmp_path, env=env)
    assert cfg.actor_rollout_ref.rollout.name == "hf_cpu" and cfg.trainer.device == "cpu"
    assert cfg.data.train_files == f"{assets}/data/train.parquet" and cfg.algorithm.maxpo.k == 2


def test_print_config_shows_each_arms_composed_config(run_main, tmp_path):
    proc = run(run_main, "gsm8k", "--dry-run", "--print-config", "--arms", "grpo", "--out", str(tmp_path / "o"),
               *data(tmp_path))  # fmt: skip
    assert proc.code == 0, proc.err
    assert "adv_estimator: grpo" in proc.out and "experiment_name: gsm8k_grpo_seed1" in proc.out


def test_environment_variables_are_named_not_read(run_main, tmp_path):
    env = {"DRYRUN": "1", "ARM": "grpo", "SEEDS": "2", "OUTDIR": "/x", "K": "8", "HOME": "/root"}
    proc = run(run_main, "gsm8k", "--dry-run", "--out", str(tmp_path / "o"), *data(tmp_path), env=env)
    assert proc.code == 0, proc.err
    for name in ("DRYRUN", "ARM", "SEEDS", "OUTDIR", "K"):
        assert f"${name}" in proc.err
    assert "HOME" not in proc.err and "gsm8k_maxpo_k4_seed1" in proc.out  # K=8 was not read


def test_a_tilde_path_is_expanded(run_main, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    data(tmp_path)
    proc = run(run_main, "gsm8k", "--dry-run", "--out", "~/out", "data.train_files=~/data/gsm8k/train.parquet",
               "data.val_files=~/data/gsm8k/test.parquet")  # fmt: skip
    assert proc.code == 0, proc.err
    assert f"data.train_files={tmp_path}/data/gsm8k/train.parquet" in proc.out and f"{tmp_path}/out/" in proc.out


def test_headline_keeps_what_a_person_reads():
    line = "step:2 - actor/lr:0.001 - critic/score/mean:0.125 - timing_s/step:4.25 - val-core/add/reward/mean@4:0.5"
    assert headline(line) == "step 2  score mean 0.125  step time 4.25 s  add/reward/mean@4 0.5"
    ray = "(TaskRunnerV1 pid=10877) step:0 - val-aux/tiny/reward/mean@4:np.float64(0.33854167675599456) - x:y"
    assert headline(ray) == "step 0  tiny/reward/mean@4 0.339"
    assert headline("(TaskRunner) torchtitan engine is not available") is None


def test_ctrl_c_exits_130_without_a_traceback(run_main, tmp_path, monkeypatch):
    def interrupted(*_args, **_kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(launch, "plan", interrupted)
    proc = run(run_main, "gsm8k", "--dry-run", "--out", str(tmp_path / "o"))
    assert proc.code == 130 and "Traceback" not in proc.text


@pytest.fixture
def fake_python(tmp_path) -> Path:
    """Stands in for the interpreter that runs verl: records argv, prints a coloured step line like verl,
    exits $FAKE_RC."""
    script = tmp_path / "fake_python"
    script.write_text(
        "#!/usr/bin/env bash\n"
        'printf "%s\\n" "$*" >> "$FAKE_LOG"\n'
        "printf 'config dump %s\\n\\033[36m(TaskRunner)\\033[0m training\\n' \"$*\"\n"
        "echo 'step:1 - critic/score/mean:0.25 - timing_s/step:3.5 - actor/lr:0.001'\n"
        'exit "${FAKE_RC:-0}"\n'
    )
    script.chmod(0o755)
    return script


def test_a_launch_appends_console_log_and_shows_headlines(run_main, tmp_path, fake_python, monkeypatch):
    monkeypatch.setenv("FAKE_LOG", str(tmp_path / "calls.log"))
    url = "reward.sandbox_fusion.url=http://alice:hunter2pass@sb:8080/run_code"
    args = ["code", "--out", str(tmp_path / "out"), "--python", str(fake_python), *data(tmp_path, "code"), url]
    proc = run(run_main, *args)
    assert proc.code == 0, proc.err
    assert "step 1  score mean 0.25  step time 3.5 s" in proc.out and "config dump" not in proc.out
    calls = (tmp_path / "calls.log").read_text().splitlines()
    assert [c.split(" estimator=")[1].split()[0] for c in calls] == ["maxpo", "grpo"]
    assert all("hunter2pass" in c for c in calls)  # verl gets the real URL
    log = tmp_path / "out" / "code_maxpo_k4_seed1" / "console.log"
    assert "(TaskRunner) training" in log.read_text() and "\x1b" not in log.read_text()
    monkeypatch.setenv("FAKE_RC", "3")
    proc = run(run_main, *args)
    assert proc.code == 3 and "config dump" in proc.err  # the tail of verl's output, on failure
    text = log.read_text()
    assert text.count("launch ===") == 2 and "hunter2pass" not in text and "***" in text


def test_a_folder_of_other_settings_is_refused_before_verl_starts(run_main, tmp_path, fake_python, monkeypatch):
    monkeypatch.setenv("FAKE_LOG", str(tmp_path / "calls.log"))
    run_dir = tmp_path / "out" / "gsm8k_grpo_seed1"
    cfg = {"algorithm": {"adv_estimator": "grpo"}, "seed": 1, "task": "gsm8k", "run_dir": str(run_dir),
           "actor_rollout_ref": {"rollout": {"n": 8, "val_kwargs": {"n": 8}}, "model": {"path": "m"}},
           "data": {"train_files": "a", "val_files": "b"}, "trainer": {"experiment_name": "x",
           "default_local_dir": str(run_dir / "checkpoints")}}  # fmt: skip
    claims.check(claims.plan(cfg, "grpo", []), write=True)
    RunFolder(run_dir).release()
    before = sorted(p.name for p in run_dir.rglob("*"))
    proc = run(run_main, "gsm8k", "--arms", "grpo", "--out", str(tmp_path / "out"), "--python", str(fake_python),
               *data(tmp_path))  # fmt: skip
    assert proc.code == 2 and "other settings" in proc.err and "Traceback" not in proc.text, proc.text
    assert sorted(p.name for p in run_dir.rglob("*")) == before and not (tmp_path / "calls.log").exists()


def test_the_tiny_ab_fails_when_its_report_refuses(run_main, tmp_path, fake_python, monkeypatch):
    """The stand-in verl writes no validation dumps: the report step refuses, and the launch says so (non-zero)."""
    monkeypatch.setenv("FAKE_LOG", str(tmp_path / "calls.log"))
    proc = run(run_main, "tiny", "--out", str(tmp_path / "out"), "--python", str(fake_python),
               f"tiny_assets={tmp_path}/assets")  # fmt: skip
    assert proc.code != 0 and "Traceback" not in proc.text, proc.text
    assert "verl-maxpo report" in proc.out
    calls = (tmp_path / "calls.log").read_text().splitlines()
    assert calls[0].startswith("-m verl_maxpo tiny-assets") and sum("main_ppo" in c for c in calls) == 2


def test_a_run_without_validation_skips_the_report(run_main, tmp_path, fake_python, monkeypatch):
    """With validation off there are no dumps to report on: the launch says so and succeeds, writing no report."""
    monkeypatch.setenv("FAKE_LOG", str(tmp_path / "calls.log"))
    proc = run(run_main, "tiny", "--arms", "maxpo", "--out", str(tmp_path / "out"), "--python", str(fake_python),
               f"tiny_assets={tmp_path}/assets", "trainer.test_freq=-1", "trainer.val_before_train=false")  # fmt: skip
    assert proc.code == 0, proc.text
    assert f"# no report: {launch.NO_VALIDATION}" in proc.out and "verl-maxpo report" not in proc.out
    assert not (tmp_path / "out" / "report").exists()
    assert sum("main_ppo" in c for c in (tmp_path / "calls.log").read_text().splitlines()) == 1
