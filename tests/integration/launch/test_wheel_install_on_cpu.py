"""After a regular (non-editable) install, from a folder outside any checkout: the launcher's dry run prints commands
that compose through verl, with the recipes the wheel ships, and `verl-maxpo prepare` is there."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # builds a wheel, installs it, runs the launcher and verl's entry point

ROOT = Path(__file__).resolve().parents[3]
COMPOSE = """
import contextlib, io, json, sys
import verl.trainer.main_ppo as entry
out = []
for argv in json.loads(sys.argv[1]):
    sys.argv = ["verl.trainer.main_ppo", *argv, "--cfg", "job", "--resolve"]
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        entry.main()
    out.append(buf.getvalue())
print(json.dumps(out))
"""


def test_the_installed_wheel_launches_from_an_empty_folder(tmp_path):
    wheels, target, empty, src = tmp_path / "wheels", tmp_path / "site", tmp_path / "empty", tmp_path / "src"
    empty.mkdir()
    # A clean copy: setuptools' build/ folder in a checkout can hold files since removed, which a wheel would ship.
    junk = shutil.ignore_patterns(".git", "build", "*.egg-info", "__pycache__", ".*cache", ".benchmarks", "outputs")
    shutil.copytree(ROOT, src, ignore=junk)
    pip = [sys.executable, "-m", "pip"]
    subprocess.run([*pip, "wheel", "--no-deps", "-q", "-w", str(wheels), "."], cwd=src, check=True, timeout=300,
                   capture_output=True)  # fmt: skip
    (wheel,) = wheels.glob("verl_maxpo-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "-q", "--target", str(target), str(wheel)], check=True,
                   timeout=300, capture_output=True)  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(target), "HF_HUB_OFFLINE": "1"}
    for split in ("train", "test"):
        (empty / f"{split}.parquet").write_bytes(b"stand-in")
    argv = [sys.executable, "-m", "verl_maxpo", "launch", "gsm8k", "--dry-run", "--out", str(empty / "out"),
            f"data.train_files={empty}/train.parquet", f"data.val_files={empty}/test.parquet", "k=8"]  # fmt: skip
    proc = subprocess.run(argv, cwd=empty, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    argvs = [shlex.split(line) for line in proc.stdout.splitlines() if " -m verl.trainer.main_ppo " in line]
    assert len(argvs) == 2
    for a in argvs:  # the wheel's recipes, not a checkout's
        assert a[a.index("--config-path") + 1] == str(target / "verl_maxpo" / "recipes" / "math")
    tails = [a[a.index("verl.trainer.main_ppo") + 1 :] for a in argvs]
    composed = subprocess.run([sys.executable, "-c", COMPOSE, json.dumps(tails)], cwd=empty, env=env,
                              capture_output=True, text=True, timeout=300)  # fmt: skip
    assert composed.returncode == 0, composed.stderr[-3000:]
    maxpo, grpo = json.loads(composed.stdout)
    assert "adv_estimator: maxpo" in maxpo and "experiment_name: gsm8k_maxpo_k8_seed1" in maxpo
    assert "adv_estimator: grpo" in grpo and f"validation_data_dir: {empty}/out/gsm8k_grpo_seed1/val" in grpo
    prep = subprocess.run([sys.executable, "-m", "verl_maxpo", "prepare", "gsm8k", "--help"], cwd=empty, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert prep.returncode == 0 and "--out-dir" in prep.stdout, prep.stderr[-2000:]
