"""verl_maxpo.launch.main (scripts/ab_launch.sh, recipes/*/run.sh): the exact dry-run command, checks, output layout.

The launcher runs in-process (`run_main`). A dry-run command is composed for real by verl's entry point (`--cfg
job`), so a printed command that verl would reject fails here. Real runs use a stand-in interpreter for verl that
records its arguments, which checks meta.json, the logger path, console.log and the A/B order without a GPU.
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

pytestmark = pytest.mark.slow  # composes recipes (verl's config) and runs verl's entry point in subprocesses

ROOT = Path(__file__).resolve().parents[2]
WRAPPERS = sorted([*ROOT.glob("recipes/**/*.sh"), *ROOT.glob("scripts/*.sh")])
MATH, CODE, AB = ("--one", "--folder", "math"), ("--one", "--folder", "code"), ()
ALL_ARMS = " ".join(ARMS)

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


def run(run_main, mode, *args: str, **env: str):
    full = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), **env}
    return run_main(lambda argv: launch.main(argv, env=full), *mode, *args)


def dry_settings(tmp_path: Path) -> dict[str, str]:
    return {
        "DRY_RUN": "1", "PYTHON": sys.executable, "MODEL_PATH": "/models/tiny", "DATA_DIR": str(tmp_path / "data"),
        "OUT_DIR": str(tmp_path / "out"), "NGPUS": "4", "NNODES": "2", "K": "8", "N": "12", "VAL_N": "6", "SEED": "3",
    }  # fmt: skip


def commands(text: str, prefix: str = "VERL_FILE_LOGGER_PATH=") -> list[list[str]]:
    return [shlex.split(line) for line in text.splitlines() if line.startswith(prefix)]


def compose_printed(argvs: list[list[str]], env: dict[str, str] | None = None, cwd: Path = ROOT) -> list:
    """Each printed verl command (after `python -m verl.trainer.main_ppo`) composed by verl itself."""
    proc = subprocess.run(
        [sys.executable, "-c", COMPOSE_DRIVER, json.dumps([[*a, "--cfg", "job"] for a in argvs])],
        capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}, timeout=400, cwd=cwd,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    configs = [OmegaConf.create(text) for text in json.loads(proc.stdout)]
    for cfg in configs:
        OmegaConf.resolve(cfg)
    return configs


def test_wrappers_are_found():
    names = {p.relative_to(ROOT).as_posix() for p in WRAPPERS}
    assert names == {"recipes/math/run.sh", "recipes/code/run.sh", "recipes/tiny/run.sh", "recipes/smol/run.sh",
                     "scripts/ab_launch.sh"}  # fmt: skip


@pytest.mark.parametrize("script", WRAPPERS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_wrappers_are_thin(script):
    """bash -n clean, at most 40 code lines, no logic: they exec the Python module."""
    proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    code = [line for line in script.read_text().splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert len(code) <= 40 and code[-1].startswith('exec "${PYTHON:-python3}" -m verl_maxpo.launch.main')
    assert not any(word in line for line in code for word in ("if ", "for ", "case ", "while "))


def test_dry_run_prints_the_exact_command_and_verl_accepts_it(run_main, tmp_path):
    proc = run(run_main, MATH, "gsm8k", "trainer.total_epochs=1", **dry_settings(tmp_path))
    assert proc.code == 0, proc.err
    run_dir = tmp_path / "out" / "gsm8k_maxpo_k8_seed3"
    header, command = proc.out.strip().splitlines()
    assert header == f"# run dir: {run_dir}"
    expected = [
        f"VERL_FILE_LOGGER_PATH={run_dir}/train_log.jsonl", sys.executable, "-m", "verl.trainer.main_ppo",
        "--config-path", str(ROOT / "recipes" / "math"), "--config-name", "gsm8k",
        f"hydra.searchpath=['pkg://verl.trainer.config','file://{ROOT}/recipes/shared']", "estimator=maxpo",
        f"data.train_files={tmp_path}/data/gsm8k/train.parquet", f"data.val_files={tmp_path}/data/gsm8k/test.parquet",
        "actor_rollout_ref.model.path=/models/tiny", "trainer.n_gpus_per_node=4", "trainer.nnodes=2",
        "actor_rollout_ref.rollout.n=12", "actor_rollout_ref.rollout.val_kwargs.n=6", "seed=3", "k=8",
        "trainer.experiment_name=gsm8k_maxpo_k8_seed3", f"trainer.validation_data_dir={run_dir}/val",
        f"trainer.default_local_dir={tmp_path}/out/checkpoints/gsm8k_maxpo_k8_seed3",
        f"++ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH={run_dir}/train_log.jsonl",
        "trainer.total_epochs=1",
    ]  # fmt: skip
    argv = shlex.split(command)
    assert argv == expected
    assert not (tmp_path / "out").exists()  # a dry run touches nothing
    # From another working directory: the absolute searchpath finds recipes/shared from anywhere.
    (cfg,) = compose_printed([argv[4:]], cwd=tmp_path)
    assert cfg.algorithm.adv_estimator == "maxpo" and cfg.algorithm.maxpo.k == 8
    assert cfg.actor_rollout_ref.rollout.n == 12 and cfg.actor_rollout_ref.rollout.val_kwargs.n == 6
    assert cfg.seed == 3 and cfg.data.seed == 3 and cfg.actor_rollout_ref.rollout.seed == 3
    assert (cfg.trainer.nnodes, cfg.trainer.n_gpus_per_node, cfg.trainer.total_epochs) == (2, 4, 1)
    assert cfg.trainer.validation_data_dir == f"{run_dir}/val"
    assert cfg.ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH == f"{run_dir}/train_log.jsonl"
    assert cfg.actor_rollout_ref.model.path == "/models/tiny"


def test_ab_dry_run_pairs_the_arms_and_prints_the_report_command(run_main, tmp_path):
    settings = dry_settings(tmp_path)
    proc = run(run_main, AB, "code", "trainer.total_training_steps=2", SANDBOX_URL="http://sandbox:8080/run_code",
               **settings)  # fmt: skip
    assert proc.code == 0, proc.err
    lines = proc.out.strip().splitlines()
    maxpo, grpo = commands(proc.out)
    assert lines.index("=== code_maxpo ===") < lines.index("=== code_grpo ===")
    out = tmp_path / "out"
    assert lines[-1] == f"verl-maxpo report {out}/code_maxpo_k8_seed3 {out}/code_grpo_seed3 --out {out}/report"
    assert "reward.sandbox_fusion.url=http://sandbox:8080/run_code" in maxpo and maxpo[-1] == grpo[-1]
    assert "k=8" in maxpo and "k=8" not in grpo
    # Apart from the arm, K and the run names, the arms get identical arguments: same seed, data, order.
    normalized = [a.replace("code_maxpo_k8_seed3", "RUN").replace("=maxpo", "=ARM") for a in maxpo if a != "k=8"]
    assert normalized == [a.replace("code_grpo_seed3", "RUN").replace("=grpo", "=ARM") for a in grpo]
    cfg_a, cfg_b = compose_printed([maxpo[4:], grpo[4:]])
    assert (cfg_a.algorithm.adv_estimator, cfg_b.algorithm.adv_estimator) == ("maxpo", "grpo")
    for cfg in (cfg_a, cfg_b):
        assert cfg.reward.sandbox_fusion.url == "http://sandbox:8080/run_code"
        assert cfg.seed == 3 and cfg.trainer.total_training_steps == 2
        assert cfg.data.train_files == f"{tmp_path}/data/code/train.parquet"


@pytest.mark.parametrize(
    ("mode", "args", "env", "message"),
    [
        (MATH, ["gsm8k"], {"N": "4", "K": "4"}, "maxpo needs N >= K + 1"),
        (MATH, ["gsm8k", "estimator=grpo"], {"N": "1"}, "N must be at least 2"),
        (MATH, ["gsm8k"], {"K": "four"}, "K must be a plain decimal integer"),
        (MATH, ["gsm8k", "actor_rollout_ref.rollout.n=8"], {}, "set N in the environment"),
        (MATH, ["gsm8k", "+seed=2"], {}, "set SEED in the environment"),
        (MATH, ["gsm8k", "estimator=grpo", "algorithm.adv_estimator=pkpo"], {}, "comes from estimator=<arm>"),
        (MATH, ["gsm8k_maxpo"], {}, "unknown task 'gsm8k_maxpo'"),
        (MATH, [], {}, "required: task"),
        (MATH, ["gsm8k"], {"OUT_DIR": "/tmp/has space"}, "cannot carry unquoted"),
        (CODE, ["code"], {"SANDBOX_URL": "sandbox:8080"}, "SANDBOX_URL must be an http(s) URL"),
        (CODE, ["code"], {}, "SANDBOX_URL is not set"),
        (AB, ["chess"], {}, "unknown task 'chess'"),
        (AB, ["gsm8k"], {"ARMS": "maxpo ppo"}, "unknown arm 'ppo' in ARMS"),
        (AB, ["gsm8k"], {"N": "4", "K": "4"}, "maxpo needs N >= K + 1"),
    ],
)
def test_bad_settings_fail_before_anything_starts(run_main, tmp_path, mode, args, env, message):
    proc = run(run_main, mode, *args, **{"DRY_RUN": "1", "OUT_DIR": str(tmp_path / "out"), **env})
    assert proc.code == 2 and message in proc.err, proc.err
    assert "VERL_FILE_LOGGER_PATH=" not in proc.out and not (tmp_path / "out").exists()


@pytest.fixture
def fake_python(tmp_path) -> Path:
    """Stands in for the interpreter that runs verl: records the logger path, whether its folder exists (verl's
    file logger opens the file without making it), argv; prints a coloured step line like verl; exits $FAKE_RC."""
    script = tmp_path / "fake_python"
    script.write_text(
        "#!/usr/bin/env bash\n"
        'd=missing; [[ -d $(dirname "$VERL_FILE_LOGGER_PATH") ]] && d=exists\n'
        'printf "%s|%s|%s\\n" "$VERL_FILE_LOGGER_PATH" "$d" "$*" >> "$FAKE_LOG"\n'
        "printf 'config dump\\n\\033[36m(TaskRunner)\\033[0m training\\n'\n"
        "echo 'step:1 - critic/score/mean:0.25 - timing_s/step:3.5 - actor/lr:0.001'\n"
        'exit "${FAKE_RC:-0}"\n'
    )
    script.chmod(0o755)
    for task in ("gsm8k", "math", "code"):
        (tmp_path / "data" / task).mkdir(parents=True)
        for split in ("train", "test"):
            (tmp_path / "data" / task / f"{split}.parquet").write_bytes(b"stand-in")
    return script


def run_env(tmp_path: Path, fake: Path, **extra: str) -> dict[str, str]:
    return {"PYTHON": str(fake), "FAKE_LOG": str(tmp_path / "calls.log"), "DATA_DIR": str(tmp_path / "data"),
            "OUT_DIR": str(tmp_path / "out"), **extra}  # fmt: skip


def test_a_run_writes_meta_and_exports_the_logger_path(run_main, tmp_path, fake_python):
    proc = run(run_main, MATH, "math", **run_env(tmp_path, fake_python, K="2", N="8", VAL_N="4", SEED="5"))
    assert proc.code == 0, proc.err
    run_dir = tmp_path / "out" / "math_maxpo_k2_seed5"
    meta = json.loads((run_dir / "meta.json").read_text())
    data = tmp_path / "data" / "math"
    assert meta == {
        "adv_estimator": "maxpo", "k": 2, "n": 8, "seed": 5, "config_name": "math", "val_n": 4,
        "settings": {"arm": "maxpo", "model": "Qwen/Qwen2.5-1.5B-Instruct", "train_files": f"{data}/train.parquet",
                     "val_files": f"{data}/test.parquet"},
    }  # fmt: skip
    assert (run_dir / "val").is_dir()
    (call,) = (tmp_path / "calls.log").read_text().splitlines()
    logger_path, folder, argv = call.split("|", 2)
    assert logger_path == f"{run_dir}/train_log.jsonl" and folder == "exists"
    assert "--config-name math" in argv and f"trainer.validation_data_dir={run_dir}/val" in argv
    # The console shows the headline; console.log keeps everything, without ANSI colour codes.
    assert "step 1  score mean 0.25  step time 3.5 s" in proc.out and "config dump" not in proc.out
    log = (run_dir / "console.log").read_text()
    assert "config dump" in log and "(TaskRunner) training" in log and "\x1b" not in log


def test_a_failed_run_returns_its_exit_status(run_main, tmp_path, fake_python):
    proc = run(run_main, MATH, "gsm8k", "estimator=grpo", **run_env(tmp_path, fake_python, FAKE_RC="3"))
    assert proc.code == 3 and "config dump" in proc.err  # the tail of verl's output, on failure
    meta = json.loads((tmp_path / "out" / "gsm8k_grpo_seed1" / "meta.json").read_text())
    assert meta["adv_estimator"] == "grpo" and meta["k"] is None and meta["n"] == 16 and meta["val_n"] == 16


def test_missing_data_points_at_the_prepare_script(run_main, tmp_path, fake_python):
    for split in ("train", "test"):
        (tmp_path / "data" / "code" / f"{split}.parquet").unlink()
    proc = run(run_main, CODE, "code", **run_env(tmp_path, fake_python, SANDBOX_URL="http://sb:8080/run_code"))
    assert proc.code == 2
    assert f"prepare it with: python scripts/prepare_code.py --out-dir {tmp_path}/data/code" in proc.err
    assert not (tmp_path / "calls.log").exists() and not (tmp_path / "out" / "code_maxpo_k4_seed1").exists()


def test_ab_runs_maxpo_then_grpo_with_the_same_seed(run_main, tmp_path, fake_python):
    proc = run(run_main, AB, "gsm8k", **run_env(tmp_path, fake_python, SEED="9"))
    assert proc.code == 0, proc.err
    calls = (tmp_path / "calls.log").read_text().splitlines()
    assert [c.split(" estimator=")[1].split()[0] for c in calls] == ["maxpo", "grpo"]
    assert all(" seed=9 " in c for c in calls)
    out = tmp_path / "out"
    for name in ("gsm8k_maxpo_k4_seed9", "gsm8k_grpo_seed9"):
        assert json.loads((out / name / "meta.json").read_text())["seed"] == 9
    expected = f"verl-maxpo report {out}/gsm8k_maxpo_k4_seed9 {out}/gsm8k_grpo_seed9 --out {out}/report"
    assert proc.out.strip().splitlines()[-1] == expected


def test_ab_one_arm_per_node_set_still_names_both(run_main, tmp_path, fake_python):
    proc = run(run_main, AB, "gsm8k", **run_env(tmp_path, fake_python, RUN_ARMS="grpo"))
    assert proc.code == 0, proc.err
    (call,) = (tmp_path / "calls.log").read_text().splitlines()
    assert " estimator=grpo " in call and not (tmp_path / "out" / "gsm8k_maxpo_k4_seed1").exists()
    assert f"{tmp_path}/out/gsm8k_maxpo_k4_seed1 {tmp_path}/out/gsm8k_grpo_seed1" in proc.out


@pytest.mark.parametrize("task", sorted(launch.TASKS))
def test_every_arm_of_the_table_gets_a_folder_named_after_it(run_main, tmp_path, task):
    """ARMS = every arm of the estimator table, in a dry run of every task; newline-separated too."""
    settings = {**dry_settings(tmp_path), "SANDBOX_URL": "http://sb:8080/run_code"}
    if launch.TASKS[task].cpu:
        settings = {k: v for k, v in settings.items() if k not in ("MODEL_PATH", "DATA_DIR", "NGPUS", "NNODES")}
    proc = run(run_main, AB, task, "trainer.total_epochs=1", ARMS="\n".join(ARMS), **settings)
    assert proc.code == 0, proc.err
    lines = proc.out.strip().splitlines()
    assert [line for line in lines if line.startswith("===")] == [f"=== {task}_{arm} ===" for arm in ARMS]
    cmds = commands(proc.out, "VERL_PLATFORM=cpu " if launch.TASKS[task].cpu else "VERL_FILE_LOGGER_PATH=")
    names = [f"{task}_{arm}" + ("_k8" if arm_reads_k(spec) else "") + "_seed3" for arm, spec in ARMS.items()]
    out = tmp_path / "out"
    for argv, name, arm in zip(cmds, names, ARMS, strict=True):
        assert argv[argv.index("--config-name") + 1] == task and f"estimator={arm}" in argv
        assert f"trainer.experiment_name={name}" in argv and f"trainer.validation_data_dir={out}/{name}/val" in argv
        assert "seed=3" in argv and argv[-1] == "trainer.total_epochs=1"
        assert not any("adv_estimator" in a for a in argv)
    assert lines[-1] == "verl-maxpo report " + " ".join(f"{out}/{n}" for n in names) + f" --out {out}/report"


def test_tiny_ab_dry_run_runs_every_arm_on_the_cpu_platform_and_verl_composes_it(run_main, tmp_path):
    assets = tmp_path / "assets"
    proc = run(run_main, AB, "tiny", DRY_RUN="1", PYTHON=sys.executable, OUT_DIR=str(tmp_path / "out"),
               TINY_ASSETS=str(assets), ARMS="maxpo pkpo pkpo_loo grpo")  # fmt: skip
    assert proc.code == 0, proc.err
    cmds = commands(proc.out, "VERL_PLATFORM=cpu ")
    runs = ["tiny_maxpo_k2_seed1", "tiny_pkpo_k2_seed1", "tiny_pkpo_loo_k2_seed1", "tiny_grpo_seed1"]
    for argv, name in zip(cmds, runs, strict=True):
        assert argv[:4] == ["VERL_PLATFORM=cpu", "OMP_NUM_THREADS=1", "RAY_ADDRESS=local",
                            f"VERL_FILE_LOGGER_PATH={tmp_path}/out/{name}/train_log.jsonl"]  # fmt: skip
        assert f"tiny_assets={assets}" in argv and f"trainer.validation_data_dir={tmp_path}/out/{name}/val" in argv
    report = proc.out.strip().splitlines()[-1]
    assert (
        report == "verl-maxpo report " + " ".join(f"{tmp_path}/out/{r}" for r in runs) + f" --out {tmp_path}/out/report"
    )
    assert not assets.exists() and not (tmp_path / "out").exists()  # a dry run builds and touches nothing
    (cfg,) = compose_printed([cmds[0][7:]], env=dict(a.split("=", 1) for a in cmds[0][:4]))
    assert cfg.algorithm.adv_estimator == "maxpo" and cfg.algorithm.maxpo.k == 2
    assert cfg.actor_rollout_ref.rollout.name == "hf_cpu" and cfg.trainer.device == "cpu"
    assert cfg.reward.custom_reward_function.path == f"{assets}/reward.py"
    assert (
        cfg.data.train_files == f"{assets}/data/train.parquet" and cfg.actor_rollout_ref.model.path == f"{assets}/model"
    )


def test_smol_dry_run_uses_two_threads_cwd_assets_and_takes_a_model_path(run_main, tmp_path, monkeypatch):
    """The real-model task: SMOL_ASSETS defaults to ./smol_assets, 2 BLAS threads, validation in batches; MODEL_PATH
    replaces the assets' model (the launcher does not refuse a real model, issue 27)."""
    monkeypatch.chdir(tmp_path)
    proc = run(run_main, AB, "smol", DRY_RUN="1", PYTHON=sys.executable, OUT_DIR=str(tmp_path / "out"), ARMS="maxpo")
    assert proc.code == 0, proc.err
    (argv,) = commands(proc.out, "VERL_PLATFORM=cpu ")
    assert argv[:3] == ["VERL_PLATFORM=cpu", "OMP_NUM_THREADS=2", "RAY_ADDRESS=local"]
    assert f"smol_assets={tmp_path}/smol_assets" in argv
    (cfg,) = compose_printed([argv[7:]], env=dict(a.split("=", 1) for a in argv[:4]))
    assert cfg.actor_rollout_ref.model.path == f"{tmp_path}/smol_assets/model" and cfg.data.val_batch_size == 16
    assert cfg.actor_rollout_ref.rollout.dtype == "bfloat16" and cfg.algorithm.maxpo.k == 4
    proc = run(run_main, AB, "tiny", DRY_RUN="1", PYTHON=sys.executable, OUT_DIR=str(tmp_path / "out"), ARMS="maxpo",
               MODEL_PATH="/models/smol")  # fmt: skip
    assert proc.code == 0, proc.err
    (argv,) = commands(proc.out, "VERL_PLATFORM=cpu ")
    assert "actor_rollout_ref.model.path=/models/smol" in argv


def test_headline_keeps_what_a_person_reads():
    line = "step:2 - actor/lr:0.001 - critic/score/mean:0.125 - timing_s/step:4.25 - val-core/add/reward/mean@4:0.5"
    assert launch.headline(line) == "step 2  score mean 0.125  step time 4.25 s  add/reward/mean@4 0.5"
    ray = "(TaskRunnerV1 pid=10877) step:0 - val-aux/tiny/reward/mean@4:np.float64(0.33854167675599456) - x:y"
    assert launch.headline(ray) == "step 0  tiny/reward/mean@4 0.339"
    assert launch.headline("(TaskRunner) torchtitan engine is not available") is None
