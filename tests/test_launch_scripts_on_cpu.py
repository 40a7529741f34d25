"""recipes/*/run.sh and scripts/ab_launch.sh: syntax, the exact dry-run command, input checks, output layout.

The dry-run command is run for real (`python -m verl.trainer.main_ppo ... --cfg job`), so a printed command that
verl would reject fails here. Non-dry runs use a stand-in interpreter that records its arguments, which checks
meta.json, the logger path and the A/B order without a GPU.
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

pytestmark = pytest.mark.slow  # runs the launchers and verl's entry point as subprocesses

ROOT = Path(__file__).resolve().parents[1]
MATH_RUN = ROOT / "recipes" / "math" / "run.sh"
CODE_RUN = ROOT / "recipes" / "code" / "run.sh"
AB = ROOT / "scripts" / "ab_launch.sh"
SHELL_SCRIPTS = sorted([*ROOT.glob("recipes/**/*.sh"), *ROOT.glob("scripts/*.sh")])

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


def launch(script: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    drop = ("K", "N", "SEED", "OUT_DIR", "DRY_RUN", "ARMS", "RUN_ARMS", "SANDBOX_URL", "ALLOW_LOCAL_CODE_EXEC")
    full_env = {k: v for k, v in os.environ.items() if k not in drop}
    full_env.update(env)
    return subprocess.run(["bash", str(script), *args], capture_output=True, text=True, env=full_env, timeout=60)


def dry_settings(tmp_path: Path) -> dict[str, str]:
    return {
        "DRY_RUN": "1",
        "PYTHON": sys.executable,
        "MODEL_PATH": "/models/tiny",
        "DATA_DIR": str(tmp_path / "data"),
        "OUT_DIR": str(tmp_path / "out"),
        "NGPUS": "4",
        "NNODES": "2",
        "K": "8",
        "N": "12",
        "VAL_N": "6",
        "SEED": "3",
    }


def test_shell_scripts_are_found():
    names = {p.relative_to(ROOT).as_posix() for p in SHELL_SCRIPTS}
    assert {"recipes/launch_lib.sh", "recipes/math/run.sh", "recipes/code/run.sh", "scripts/ab_launch.sh"} <= names


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_bash_syntax(script):
    proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_dry_run_prints_the_exact_command_and_verl_accepts_it(tmp_path):
    settings = dry_settings(tmp_path)
    proc = launch(MATH_RUN, "gsm8k_maxpo", "trainer.total_epochs=1", **settings)
    assert proc.returncode == 0, proc.stderr
    run_dir = tmp_path / "out" / "gsm8k_maxpo_k8_seed3"
    header, command = proc.stdout.strip().splitlines()
    assert header == f"# run dir: {run_dir}"
    expected = [
        f"VERL_FILE_LOGGER_PATH={run_dir}/train_log.jsonl",
        sys.executable,
        "-m",
        "verl.trainer.main_ppo",
        "--config-path",
        str(ROOT / "recipes" / "math"),
        "--config-name",
        "gsm8k_maxpo",
        f"hydra.searchpath=['pkg://verl.trainer.config','file://{ROOT}/recipes/shared']",
        f"data.train_files={tmp_path}/data/gsm8k/train.parquet",
        f"data.val_files={tmp_path}/data/gsm8k/test.parquet",
        "actor_rollout_ref.model.path=/models/tiny",
        "trainer.n_gpus_per_node=4",
        "trainer.nnodes=2",
        "actor_rollout_ref.rollout.n=12",
        "actor_rollout_ref.rollout.val_kwargs.n=6",
        "seed=3",
        "algorithm.maxpo.k=8",
        "trainer.experiment_name=gsm8k_maxpo_k8_seed3",
        f"trainer.validation_data_dir={run_dir}/val",
        f"trainer.default_local_dir={tmp_path}/out/checkpoints/gsm8k_maxpo_k8_seed3",
        f"++ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH={run_dir}/train_log.jsonl",
        "trainer.total_epochs=1",
    ]
    argv = shlex.split(command)
    assert argv == expected
    assert not (tmp_path / "out").exists()  # a dry run touches nothing

    # The printed command, run for real with --cfg job: verl composes it and every value lands where it should.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", argv[0].split("=", 1)[0]: argv[0].split("=", 1)[1]}
    # From another working directory: the launcher's absolute searchpath finds recipes/shared from anywhere.
    composed = subprocess.run(
        [*argv[1:], "--cfg", "job"], capture_output=True, text=True, env=env, timeout=240, cwd=tmp_path
    )
    assert composed.returncode == 0, composed.stderr[-3000:]
    cfg = OmegaConf.create(composed.stdout)
    OmegaConf.resolve(cfg)
    assert cfg.algorithm.adv_estimator == "maxpo" and cfg.algorithm.maxpo.k == 8  # plain override, no "+"
    assert cfg.actor_rollout_ref.rollout.n == 12 and cfg.actor_rollout_ref.rollout.val_kwargs.n == 6
    assert cfg.seed == 3 and cfg.data.seed == 3 and cfg.actor_rollout_ref.rollout.seed == 3
    assert (cfg.trainer.nnodes, cfg.trainer.n_gpus_per_node, cfg.trainer.total_epochs) == (2, 4, 1)
    assert cfg.trainer.validation_data_dir == f"{run_dir}/val"
    assert cfg.ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH == f"{run_dir}/train_log.jsonl"
    assert cfg.actor_rollout_ref.model.path == "/models/tiny"


def test_ab_dry_run_pairs_the_arms_and_prints_the_report_command(tmp_path):
    settings = dry_settings(tmp_path)
    proc = launch(AB, "code", "trainer.total_training_steps=2", SANDBOX_URL="http://sandbox:8080/run_code", **settings)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    commands = [shlex.split(line) for line in lines if line.startswith("VERL_FILE_LOGGER_PATH=")]
    assert len(commands) == 2 and lines.index("=== code_maxpo ===") < lines.index("=== code_grpo ===")
    out = tmp_path / "out"
    maxpo_dir, grpo_dir = out / "code_maxpo_k8_seed3", out / "code_grpo_seed3"
    assert lines[-1] == f"verl-maxpo report {maxpo_dir} {grpo_dir} --out {out}/report"

    maxpo, grpo = commands
    assert "reward.sandbox_fusion.url=http://sandbox:8080/run_code" in maxpo and maxpo[-1] == grpo[-1]
    assert "algorithm.maxpo.k=8" in maxpo and not any(a.startswith("algorithm.maxpo") for a in grpo)
    # Apart from the recipe name, K and the run names, the arms get identical arguments: same seed, data, order.
    drop_k = [a for a in maxpo if a != "algorithm.maxpo.k=8"]
    normalized = [a.replace("code_maxpo_k8_seed3", "RUN").replace("code_maxpo", "RECIPE") for a in drop_k]
    assert normalized == [a.replace("code_grpo_seed3", "RUN").replace("code_grpo", "RECIPE") for a in grpo]

    # Both commands compose in verl's entry point.
    argvs = [command[4:] for command in commands]  # after: VAR=..., python, -m, verl.trainer.main_ppo
    proc = subprocess.run(
        [sys.executable, "-c", COMPOSE_DRIVER, json.dumps([[*a, "--cfg", "job"] for a in argvs])],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    cfg_a, cfg_b = (OmegaConf.create(text) for text in json.loads(proc.stdout))
    assert (cfg_a.algorithm.adv_estimator, cfg_b.algorithm.adv_estimator) == ("maxpo", "grpo")
    for cfg in (cfg_a, cfg_b):
        assert cfg.reward.sandbox_fusion.url == "http://sandbox:8080/run_code"
        assert cfg.seed == 3 and cfg.trainer.total_training_steps == 2
        assert cfg.data.train_files == f"{tmp_path}/data/code/train.parquet"


@pytest.mark.parametrize(
    ("script", "args", "env", "message"),
    [
        (MATH_RUN, ["gsm8k_maxpo"], {"N": "4", "K": "4"}, "maxpo needs N >= K + 1"),
        (MATH_RUN, ["gsm8k_grpo"], {"N": "1"}, "N must be at least 2"),
        (MATH_RUN, ["gsm8k_maxpo"], {"K": "four"}, "K must be a plain decimal integer"),
        (MATH_RUN, ["gsm8k_maxpo", "actor_rollout_ref.rollout.n=8"], {}, "set N in the environment"),
        (MATH_RUN, ["gsm8k_maxpo", "+seed=2"], {}, "set SEED in the environment"),
        (MATH_RUN, ["gsm8k_grpo", "algorithm.adv_estimator=pkpo"], {}, "does not declare"),
        (MATH_RUN, ["gsm8k_common"], {}, "no recipe 'gsm8k_common'"),
        (MATH_RUN, [], {}, "recipes: gsm8k_grpo gsm8k_maxpo gsm8k_pkpo math_grpo math_maxpo math_pkpo"),
        (MATH_RUN, ["gsm8k_maxpo"], {"OUT_DIR": "/tmp/has space"}, "cannot carry unquoted"),
        (CODE_RUN, ["code_maxpo"], {"SANDBOX_URL": "sandbox:8080"}, "SANDBOX_URL must be an http(s) URL"),
        (CODE_RUN, ["code_maxpo"], {}, "SANDBOX_URL is not set"),
        (AB, ["chess"], {}, "unknown task 'chess'"),
        (AB, ["gsm8k"], {"ARMS": "maxpo ppo"}, "unknown arm 'ppo' in ARMS"),
        (AB, ["gsm8k"], {"N": "4", "K": "4"}, "maxpo needs N >= K + 1"),
    ],
)
def test_bad_settings_fail_before_anything_starts(tmp_path, script, args, env, message):
    proc = launch(script, *args, **{"DRY_RUN": "1", "OUT_DIR": str(tmp_path / "out"), **env})
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert "VERL_FILE_LOGGER_PATH=" not in proc.stdout


@pytest.fixture
def fake_python(tmp_path) -> Path:
    """Stands in for python3: records argv and the logger path, exits with $FAKE_RC."""
    script = tmp_path / "fake_python"
    script.write_text(
        "#!/usr/bin/env bash\n"
        # meta.json goes through the real run_folder module; only verl's entry point is faked.
        f'[[ "$1 $2" == "-m verl_maxpo.run_folder" ]] && exec {sys.executable} "$@"\n'
        'printf "%s|%s\\n" "$VERL_FILE_LOGGER_PATH" "$*" >> "$FAKE_LOG"\necho training\n'
        'exit "${FAKE_RC:-0}"\n'
    )
    script.chmod(0o755)
    for task in ("gsm8k", "math", "code"):
        (tmp_path / "data" / task).mkdir(parents=True)
        for split in ("train", "test"):
            (tmp_path / "data" / task / f"{split}.parquet").write_bytes(b"stand-in")
    return script


def run_env(tmp_path: Path, fake: Path, **extra: str) -> dict[str, str]:
    return {
        "PYTHON": str(fake),
        "FAKE_LOG": str(tmp_path / "calls.log"),
        "DATA_DIR": str(tmp_path / "data"),
        "OUT_DIR": str(tmp_path / "out"),
        **extra,
    }


def test_a_run_writes_meta_and_exports_the_logger_path(tmp_path, fake_python):
    proc = launch(MATH_RUN, "math_maxpo", **run_env(tmp_path, fake_python, K="2", N="8", VAL_N="4", SEED="5"))
    assert proc.returncode == 0, proc.stderr
    run_dir = tmp_path / "out" / "math_maxpo_k2_seed5"
    meta = json.loads((run_dir / "meta.json").read_text())
    data = tmp_path / "data" / "math"
    assert meta == {
        "adv_estimator": "maxpo",
        "k": 2,
        "n": 8,
        "seed": 5,
        "config_name": "math_maxpo",
        "val_n": 4,
        "settings": {
            "model": "Qwen/Qwen2.5-1.5B-Instruct",
            "train_files": f"{data}/train.parquet",
            "val_files": f"{data}/test.parquet",
        },
    }
    assert (run_dir / "val").is_dir()
    (call,) = (tmp_path / "calls.log").read_text().splitlines()
    logger_path, argv = call.split("|", 1)
    assert logger_path == f"{run_dir}/train_log.jsonl"
    assert "--config-name math_maxpo" in argv and f"trainer.validation_data_dir={run_dir}/val" in argv
    assert "training" in (run_dir / "console.log").read_text()


def test_a_failed_run_returns_its_exit_status(tmp_path, fake_python):
    proc = launch(MATH_RUN, "gsm8k_grpo", **run_env(tmp_path, fake_python, FAKE_RC="3"))
    assert proc.returncode == 3
    meta = json.loads((tmp_path / "out" / "gsm8k_grpo_seed1" / "meta.json").read_text())
    assert meta["adv_estimator"] == "grpo" and meta["k"] is None and meta["n"] == 16 and meta["val_n"] == 16


def test_missing_data_points_at_the_prepare_script(tmp_path, fake_python):
    for split in ("train", "test"):
        (tmp_path / "data" / "code" / f"{split}.parquet").unlink()
    proc = launch(CODE_RUN, "code_maxpo", **run_env(tmp_path, fake_python, SANDBOX_URL="http://sb:8080/run_code"))
    assert proc.returncode == 2
    assert f"prepare it with: python scripts/prepare_code.py --out-dir {tmp_path}/data/code" in proc.stderr
    assert not (tmp_path / "calls.log").exists()


def test_ab_runs_maxpo_then_grpo_with_the_same_seed(tmp_path, fake_python):
    proc = launch(AB, "gsm8k", **run_env(tmp_path, fake_python, SEED="9"))
    assert proc.returncode == 0, proc.stderr
    calls = (tmp_path / "calls.log").read_text().splitlines()
    assert [c.split("--config-name ")[1].split()[0] for c in calls] == ["gsm8k_maxpo", "gsm8k_grpo"]
    assert all(" seed=9 " in c for c in calls)
    out = tmp_path / "out"
    for run in ("gsm8k_maxpo_k4_seed9", "gsm8k_grpo_seed9"):
        assert json.loads((out / run / "meta.json").read_text())["seed"] == 9
    expected = f"verl-maxpo report {out}/gsm8k_maxpo_k4_seed9 {out}/gsm8k_grpo_seed9 --out {out}/report"
    assert proc.stdout.strip().splitlines()[-1] == expected


def test_ab_one_arm_per_node_set_still_names_both(tmp_path, fake_python):
    proc = launch(AB, "gsm8k", **run_env(tmp_path, fake_python, RUN_ARMS="grpo"))
    assert proc.returncode == 0, proc.stderr
    (call,) = (tmp_path / "calls.log").read_text().splitlines()
    assert "--config-name gsm8k_grpo" in call and not (tmp_path / "out" / "gsm8k_maxpo_k4_seed1").exists()
    assert f"{tmp_path}/out/gsm8k_maxpo_k4_seed1 {tmp_path}/out/gsm8k_grpo_seed1" in proc.stdout


def test_ab_arms_each_get_a_folder_named_after_their_estimator(tmp_path):
    settings = dry_settings(tmp_path)
    proc = launch(AB, "gsm8k", "trainer.total_epochs=1", ARMS="maxpo pkpo pkpo_loo grpo", **settings)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert [line for line in lines if line.startswith("===")] == [
        "=== gsm8k_maxpo ===",
        "=== gsm8k_pkpo ===",
        "=== gsm8k_pkpo_loo ===",
        "=== gsm8k_grpo ===",
    ]
    commands = [shlex.split(line) for line in lines if line.startswith("VERL_FILE_LOGGER_PATH=")]
    names = ["gsm8k_maxpo_k8_seed3", "gsm8k_pkpo_k8_seed3", "gsm8k_pkpo_loo_k8_seed3", "gsm8k_grpo_seed3"]
    configs = ["gsm8k_maxpo", "gsm8k_pkpo", "gsm8k_pkpo", "gsm8k_grpo"]
    out = tmp_path / "out"
    for argv, name, config in zip(commands, names, configs, strict=True):
        assert argv[argv.index("--config-name") + 1] == config
        assert f"trainer.experiment_name={name}" in argv and f"trainer.validation_data_dir={out}/{name}/val" in argv
        assert "seed=3" in argv and f"data.train_files={tmp_path}/data/gsm8k/train.parquet" in argv
        assert argv[-1] == "trainer.total_epochs=1"
    assert "algorithm.adv_estimator=pkpo_loo" in commands[2]
    assert not any("adv_estimator" in a for i in (0, 1, 3) for a in commands[i])
    assert lines[-1] == "verl-maxpo report " + " ".join(f"{out}/{n}" for n in names) + f" --out {out}/report"


def test_tiny_ab_dry_run_runs_every_arm_on_the_cpu_platform_and_verl_composes_it(tmp_path):
    """`ab_launch.sh tiny` (verl's trainer on a CPU): every arm's command carries the CPU platform's environment and
    the tiny assets' paths, builds nothing in a dry run, and the printed command composes through verl."""
    assets = tmp_path / "assets"
    proc = launch(
        AB, "tiny", DRY_RUN="1", PYTHON=sys.executable, OUT_DIR=str(tmp_path / "out"), TINY_ASSETS=str(assets),
        ARMS="maxpo pkpo pkpo_loo grpo",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    commands = [line for line in proc.stdout.splitlines() if line.startswith("VERL_PLATFORM=cpu ")]
    assert len(commands) == 4
    runs = ["tiny_maxpo_k2_seed1", "tiny_pkpo_k2_seed1", "tiny_pkpo_loo_k2_seed1", "tiny_grpo_seed1"]
    for command, run in zip(commands, runs, strict=True):
        argv = shlex.split(command)
        assert argv[:4] == [
            "VERL_PLATFORM=cpu",
            "OMP_NUM_THREADS=1",
            "RAY_ADDRESS=local",
            f"VERL_FILE_LOGGER_PATH={tmp_path}/out/{run}/train_log.jsonl",
        ]
        assert f"data.train_files={assets}/data/train.parquet" in argv
        assert f"actor_rollout_ref.model.path={assets}/model" in argv and f"tiny_assets={assets}" in argv
        assert f"trainer.validation_data_dir={tmp_path}/out/{run}/val" in argv
    assert "algorithm.adv_estimator=pkpo_loo" in shlex.split(commands[2])
    report = proc.stdout.strip().splitlines()[-1]
    assert (
        report == "verl-maxpo report " + " ".join(f"{tmp_path}/out/{r}" for r in runs) + f" --out {tmp_path}/out/report"
    )
    assert not assets.exists() and not (tmp_path / "out").exists()  # a dry run builds and touches nothing

    argv = shlex.split(commands[0])
    env = {**os.environ, **dict(a.split("=", 1) for a in argv[:4])}
    composed = subprocess.run([*argv[4:], "--cfg", "job"], capture_output=True, text=True, env=env, timeout=240)
    assert composed.returncode == 0, composed.stderr[-3000:]
    cfg = OmegaConf.create(composed.stdout)
    OmegaConf.resolve(cfg)
    assert cfg.algorithm.adv_estimator == "maxpo" and cfg.algorithm.maxpo.k == 2
    assert cfg.actor_rollout_ref.rollout.name == "hf_cpu" and cfg.trainer.device == "cpu"
    assert cfg.reward.custom_reward_function.path == f"{assets}/reward.py"
