"""Bad-input corpus for the launcher (verl_maxpo.launch.main, scripts/ab_launch.sh, recipes/*/run.sh): a line a case.

Classes of outcome, each a tag at the start of the failure message (to count them against an older checkout):
  REFUSED  a clean refusal: exit 2, the message names the problem, no traceback, nothing printed to launch, no
           output folder created (DRY_RUN, so nothing could start anyway: the check runs before the command exists);
  SECRET   SANDBOX_URL credentials absent from everything the launcher prints or writes, while verl gets them;
  FOLDER   a relaunch into an existing run folder: refused with the folder left as it was, or resumed (appended).
Tags of a failing case: SILENT (exit 0 where a refusal was due, or a secret leaked), TRACEBACK, WRONG (refused,
but not for the stated reason), LOST (files changed).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

import verl_maxpo.launch.main as launch
from verl_maxpo.core.table import ARMS

pytestmark = pytest.mark.slow  # the cases that get past the settings compose recipes (verl's config, ~1 s each)

# The arguments each wrapper passes: recipes/math/run.sh, recipes/code/run.sh, scripts/ab_launch.sh.
MATH = ("--one", "--folder", "math")
CODE = ("--one", "--folder", "code")
AB = ()
SANDBOX = {"SANDBOX_URL": "http://sandbox:8080/run_code"}

# (case id, script, arguments, environment, words the refusal must contain)
# fmt: off
REFUSALS = [
    # launcher numbers: plain decimal integers only (bash reads 08 as bad octal, 010 as 8; Hydra reads "010" as text)
    ("K-octal-08", MATH, ['gsm8k'], {"K": "08"}, ["K must be a plain decimal integer", "'08'"]),
    ("K-octal-010", MATH, ['gsm8k'], {"K": "010"}, ["K must be a plain decimal integer"]),
    ("N-leading-zero", MATH, ['gsm8k', 'estimator=grpo'], {"N": "016"}, ["N must be a plain decimal integer"]),
    ("VAL_N-octal", MATH, ['gsm8k', 'estimator=grpo'], {"VAL_N": "09"}, ["VAL_N must be a plain decimal integer"]),
    ("SEED-octal", MATH, ['gsm8k', 'estimator=grpo'], {"SEED": "007"}, ["SEED must be a plain decimal integer"]),
    ("NGPUS-octal", MATH, ['gsm8k', 'estimator=grpo'], {"NGPUS": "08"}, ["NGPUS must be a plain decimal integer"]),
    ("NNODES-octal", MATH, ['gsm8k', 'estimator=grpo'], {"NNODES": "01"}, ["NNODES must be a plain decimal integer"]),
    ("K-word", MATH, ['gsm8k'], {"K": "four"}, ["K must be a plain decimal integer"]),
    ("K-negative", MATH, ['gsm8k'], {"K": "-4"}, ["K must be a plain decimal integer"]),
    ("K-plus-sign", MATH, ['gsm8k'], {"K": "+4"}, ["K must be a plain decimal integer"]),
    ("K-float", MATH, ['gsm8k'], {"K": "4.0"}, ["K must be a plain decimal integer"]),
    ("K-hex", MATH, ['gsm8k'], {"K": "0x4"}, ["K must be a plain decimal integer"]),
    ("K-exponent", MATH, ['gsm8k'], {"K": "4e0"}, ["K must be a plain decimal integer"]),
    ("K-space", MATH, ['gsm8k'], {"K": "4 "}, ["K must be a plain decimal integer"]),
    ("K-arithmetic", MATH, ['gsm8k'], {"K": "2+2"}, ["K must be a plain decimal integer"]),
    ("K-command", MATH, ['gsm8k'], {"K": "$(echo 4)"}, ["K must be a plain decimal integer"]),
    ("K-arabic-digit", MATH, ['gsm8k'], {"K": "\u0664"}, ["K must be a plain decimal integer"]),
    ("K-huge", MATH, ['gsm8k'], {"K": "99999999999999999999"}, ["K must be a plain decimal integer"]),
    ("N-empty", MATH, ['gsm8k', 'estimator=grpo'], {"N": ""}, ["N must be a plain decimal integer"]),
    ("SEED-negative", MATH, ['gsm8k', 'estimator=grpo'], {"SEED": "-1"}, ["SEED must be a plain decimal integer"]),
    ("NGPUS-zero", MATH, ['gsm8k', 'estimator=grpo'], {"NGPUS": "0"}, ["NGPUS must be at least 1"]),
    ("VAL_N-zero", MATH, ['gsm8k', 'estimator=grpo'], {"VAL_N": "0"}, ["VAL_N must be at least 1"]),
    ("K-zero", MATH, ['gsm8k'], {"K": "0"}, ["K must be at least 1"]),
    ("code-K-octal", CODE, ['code'], {**SANDBOX, "K": "08"}, ["K must be a plain decimal integer"]),
    ("ab-K-octal", AB, ['gsm8k'], {"K": "08"}, ["K must be a plain decimal integer"]),
    ("ab-SEED-octal", AB, ['math'], {"SEED": "010"}, ["SEED must be a plain decimal integer"]),
    # estimator constraints
    ("maxpo-N-equals-K", MATH, ['gsm8k'], {"N": "4", "K": "4"}, ["maxpo needs N >= K + 1"]),
    ("pkpo-K-one", MATH, ['gsm8k', 'estimator=pkpo'], {"K": "1"}, ["pkpo needs K >= 2"]),
    ("pkpo_loo-N-equals-K", MATH, ['gsm8k', 'estimator=pkpo_loo'], {"N": "4", "K": "4"},
     ["pkpo_loo needs N >= K + 1"]),
    ("ab-pkpo_loo-N-equals-K", AB, ['gsm8k'], {"ARMS": "pkpo_loo", "N": "4", "K": "4"}, ["pkpo_loo needs N >= K + 1"]),
    ("grpo-N-one", MATH, ['gsm8k', 'estimator=grpo'], {"N": "1"}, ["N must be at least 2"]),
    # code execution: never local unless asked for
    ("code-no-sandbox", CODE, ['code'], {},
     ["SANDBOX_URL is not set", "SandboxFusion", "docker run", "ALLOW_LOCAL_CODE_EXEC=1"]),
    ("code-grpo-no-sandbox", CODE, ['code', 'estimator=grpo'], {}, ["SANDBOX_URL is not set"]),
    ("code-pkpo-no-sandbox", CODE, ['code', 'estimator=pkpo'], {}, ["SANDBOX_URL is not set"]),
    ("ab-code-no-sandbox", AB, ['code'], {}, ["SANDBOX_URL is not set"]),
    ("code-empty-sandbox", CODE, ['code'], {"SANDBOX_URL": ""}, ["SANDBOX_URL is not set"]),
    ("code-allow-yes", CODE, ['code'], {"ALLOW_LOCAL_CODE_EXEC": "yes"},
     ["ALLOW_LOCAL_CODE_EXEC must be 0 or 1"]),
    ("code-allow-zero", CODE, ['code'], {"ALLOW_LOCAL_CODE_EXEC": "0"}, ["SANDBOX_URL is not set"]),
    ("code-sandbox-no-scheme", CODE, ['code'], {"SANDBOX_URL": "sandbox:8080"}, ["must be an http(s) URL"]),
    ("code-sandbox-ftp", CODE, ['code'], {"SANDBOX_URL": "ftp://sandbox/run"}, ["must be an http(s) URL"]),
    ("code-sandbox-space", CODE, ['code'], {"SANDBOX_URL": "http://a b/run"}, ["must be an http(s) URL"]),
    ("code-sandbox-quote", CODE, ['code'], {"SANDBOX_URL": "http://sb/'x"}, ["must be an http(s) URL"]),
    ("code-bad-url-hides-password", CODE, ['code'], {"SANDBOX_URL": "http://u:hunter2@a b/"},
     ["must be an http(s) URL", "***@"]),
    ("code-password-comma", CODE, ['code'], {"SANDBOX_URL": "http://u:a,b@sb/run"}, ["percent-encode", "***@"]),
    ("code-password-quote", CODE, ['code'], {"SANDBOX_URL": "http://u:a'b@sb/run"}, ["percent-encode"]),
    ("code-sandbox-interpolation", CODE, ['code'], {"SANDBOX_URL": "http://${oc.env:HOME}/x"}, ["http(s) URL"]),
    ("code-url-override", CODE, ['code', 'reward.sandbox_fusion.url=http://x/run'], SANDBOX, ["set SANDBOX_URL"]),
    ("code-custom-reward-override", CODE, ['code', 'reward.custom_reward_function.path=/tmp/r.py'], SANDBOX,
     ["set SANDBOX_URL (or ALLOW_LOCAL_CODE_EXEC=1)"]),
    ("math-url-override", MATH, ['gsm8k', '+reward.sandbox_fusion.url=http://x'], {}, ["set SANDBOX_URL"]),
    # A/B arms
    ("ab-estimator-override", AB, ['gsm8k', 'algorithm.adv_estimator=grpo'], {},
     ["estimator of each arm comes from ARMS"]),
    ("ab-estimator-override-plus", AB, ['gsm8k', '+algorithm.adv_estimator=pkpo'], {}, ["comes from ARMS"]),
    ("ab-estimator-override-pp", AB, ['math', '++algorithm.adv_estimator=rloo'], {}, ["comes from ARMS"]),
    ("ab-unknown-arm", AB, ['gsm8k'], {"ARMS": "maxpo ppo"}, ["unknown arm 'ppo'", " ".join(ARMS)]),
    ("ab-duplicate-arm", AB, ['gsm8k'], {"ARMS": "maxpo grpo maxpo"}, ["'maxpo' appears twice"]),
    ("ab-empty-arms", AB, ['gsm8k'], {"ARMS": " "}, ["ARMS is empty"]),
    ("ab-run-arm-not-in-arms", AB, ['gsm8k'], {"RUN_ARMS": "pkpo"}, ["RUN_ARMS holds 'pkpo'"]),
    ("ab-unknown-task", AB, ['chess'], {}, ["unknown task 'chess'", "code|gsm8k|math"]),
    ("ab-no-task", AB, [], {}, ["required: task"]),
    ("ab-task-path", AB, ['../math'], {}, ["unknown task '../math'"]),
    ("ab-managed-N", AB, ['gsm8k', 'actor_rollout_ref.rollout.n=8'], {}, ["set N in the environment"]),
    # recipes and managed keys
    ("unknown-recipe", MATH, ['gsm8k_ppo'], {}, ["unknown task 'gsm8k_ppo'"]),
    ("recipe-path", MATH, ['../code/code_maxpo'], {}, ["unknown task"]),
    ("other-folders-task", MATH, ['code'], SANDBOX, ["unknown task 'code'", "gsm8k|math"]),
    ("unknown-arm-choice", MATH, ['math', 'estimator=ppo'], {}, ["unknown arm 'ppo'"]),
    ("no-recipe", CODE, [], SANDBOX, ["required: task"]),
    ("managed-K", MATH, ['gsm8k', 'algorithm.maxpo.k=8'], {}, ["set K in the environment"]),
    ("managed-seed", MATH, ['gsm8k', 'seed=2'], {}, ["set SEED in the environment"]),
    ("managed-delete-seed", MATH, ['gsm8k', '~seed'], {}, ["set SEED in the environment"]),
    ("managed-searchpath", MATH, ["gsm8k", "hydra.searchpath=[pkg://x]"], {}, ["sets hydra.searchpath"]),
    ("managed-model", MATH, ['gsm8k', 'actor_rollout_ref.model.path=/m'], {}, ["set MODEL_PATH"]),
    ("pkpo-on-grpo-recipe", MATH, ['gsm8k', 'estimator=grpo', 'algorithm.adv_estimator=pkpo_loo'], {},
     ["comes from estimator=<arm>"]),
    ("out-dir-space", MATH, ['gsm8k'], {"OUT_DIR": "/tmp/a b"}, ["cannot carry unquoted"]),
    ("model-equals", MATH, ['gsm8k'], {"MODEL_PATH": "a=b"}, ["cannot carry unquoted"]),
    # one setting in the run folder, another in verl: parent keys and deletions of what the launcher owns
    ("parent-maxpo", AB, ['gsm8k', 'algorithm.maxpo={k:8}'], {}, ["set K in the environment"]),
    ("one-parent-maxpo", MATH, ['gsm8k', 'algorithm.maxpo={k:8}'], {}, ["set K in the environment"]),
    ("one-parent-rollout", MATH, ['gsm8k', 'actor_rollout_ref.rollout={n:8}'], {}, ["set N in the environment"]),
    ("one-delete-maxpo", MATH, ['gsm8k', '~algorithm.maxpo'], {}, ["set K in the environment"]),
    ("ab-algorithm-parent", AB, ['gsm8k', 'algorithm={adv_estimator:grpo}'], {}, ["set K in the environment"]),
    ("one-algorithm-parent", MATH, ['gsm8k', 'algorithm={adv_estimator:grpo}'], {}, ["set K in the environment"]),
    ("ab-estimator-choice", AB, ['gsm8k', 'estimator=grpo'], {}, ["comes from ARMS"]),
    ("empty-model", MATH, ['gsm8k'], {"MODEL_PATH": ""}, ["MODEL_PATH is empty"]),
    ("empty-out-dir", AB, ['gsm8k'], {"OUT_DIR": ""}, ["OUT_DIR is empty"]),
    ("dry-run-word", AB, ['gsm8k'], {"DRY_RUN": "sure"}, ["DRY_RUN must be one of"]),
    ("dry-run-2", AB, ['gsm8k'], {"DRY_RUN": "2"}, ["DRY_RUN must be one of"]),
    ("tiny-data-dir", AB, ['tiny'], {"DATA_DIR": "/d"}, ["does not read DATA_DIR"]),
    ("smol-ngpus", AB, ['smol'], {"NGPUS": "2"}, ["does not read NGPUS"]),
]
# fmt: on


def run(run_main, mode: tuple[str, ...], args: list[str], env: dict[str, str]):
    """The launcher in-process with exactly this environment (nothing inherited but PATH and HOME)."""
    full = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), **env}
    return run_main(lambda argv: launch.main(argv, env=full), *mode, *args)


@pytest.mark.parametrize(
    ("script", "args", "env", "needles"), [c[1:] for c in REFUSALS], ids=[c[0] for c in REFUSALS]
)  # fmt: skip
def test_refused_before_anything_starts(run_main, tmp_path, script, args, env, needles):
    out_dir = tmp_path / "out"
    outcome = run(run_main, script, args, {"DRY_RUN": "1", "PYTHON": sys.executable, "OUT_DIR": str(out_dir), **env})
    assert "Traceback" not in outcome.text, f"TRACEBACK\n{outcome.text}"
    assert outcome.code != 0, f"SILENT: exit 0\n{outcome.text}"
    assert outcome.code == 2 and all(n in outcome.err for n in needles), f"WRONG: exit {outcome.code}\n{outcome.text}"
    assert "VERL_FILE_LOGGER_PATH=" not in outcome.out and not out_dir.exists(), f"WRONG: launched\n{outcome.text}"


# ---- credentials in SANDBOX_URL -------------------------------------------------------------------------------

SECRET_URLS = [
    ("user-pass", "http://alice:hunter2pass@sandbox:8080/run_code", "alice:hunter2pass"),
    ("token-only", "https://tok3nSECRET@sandbox.example.com/run_code", "tok3nSECRET"),
    ("encoded-pass", "http://bob:p%40ssw0rd@10.0.0.5:8080/run_code", "bob:p%40ssw0rd"),
]


@pytest.mark.parametrize(("url", "secret"), [c[1:] for c in SECRET_URLS], ids=[c[0] for c in SECRET_URLS])
@pytest.mark.parametrize("script", [CODE, AB], ids=["run", "ab"])
def test_dry_run_never_prints_sandbox_credentials(run_main, tmp_path, script, url, secret):
    args = ["code"]
    outcome = run(run_main, script, args, {"DRY_RUN": "1", "OUT_DIR": str(tmp_path), "SANDBOX_URL": url})
    assert outcome.code == 0, outcome.text
    assert secret not in outcome.text and secret.split(":")[-1] not in outcome.text, f"SECRET leaked\n{outcome.text}"
    assert url.replace(secret, "***") in outcome.out


@pytest.fixture
def fake_python(tmp_path) -> Path:
    """Stands in for the interpreter that runs verl: records argv, echoes it (as verl prints its config,
    SANDBOX_URL included), then exits with $FAKE_RC."""
    script = tmp_path / "fake_python"
    script.write_text(
        "#!/usr/bin/env bash\n"
        'printf "%s\\n" "$*" >> "$FAKE_LOG"\necho "config: $*"\necho "training step 1"\nexit "${FAKE_RC:-0}"\n'
    )
    script.chmod(0o755)
    for task in ("gsm8k", "code"):
        (tmp_path / "data" / task).mkdir(parents=True)
        for split in ("train", "test"):
            (tmp_path / "data" / task / f"{split}.parquet").write_bytes(b"stand-in")
    return script


def real_env(tmp_path: Path, fake: Path, **extra: str) -> dict[str, str]:
    return {
        "PYTHON": str(fake),
        "FAKE_LOG": str(tmp_path / "calls.log"),
        "DATA_DIR": str(tmp_path / "data"),
        "OUT_DIR": str(tmp_path / "out"),
        **extra,
    }


# Four forms whose refusal message used to print the secret.
BAD_SECRET_URLS = [
    ("slash-in-password", "http://u:pa/ss3cret@sb:8080/run_code", "pa/ss3cret"),
    ("at-in-password", "http://u:p@ss3cret@sb:8080/run_code", "p@ss3cret"),
    ("no-scheme", "u:s3cretpass@sb:8080/run_code", "s3cretpass"),
    ("token-query", "http://sb:8080/run_code?token=s3cretTok", "s3cretTok"),
]


@pytest.mark.parametrize(("url", "secret"), [c[1:] for c in BAD_SECRET_URLS], ids=[c[0] for c in BAD_SECRET_URLS])
def test_a_refused_sandbox_url_never_shows_its_secret(run_main, tmp_path, url, secret):
    outcome = run(run_main, AB, ["code"], {"DRY_RUN": "1", "OUT_DIR": str(tmp_path), "SANDBOX_URL": url})
    assert outcome.code == 2 and "SANDBOX_URL must be an http(s) URL" in outcome.err, outcome.text
    assert secret not in outcome.text and "***" in outcome.err, f"SECRET leaked\n{outcome.text}"


@pytest.mark.parametrize(("url", "secret"), [c[1:] for c in SECRET_URLS[:1]], ids=[c[0] for c in SECRET_URLS[:1]])
def test_a_run_keeps_credentials_out_of_console_log_and_meta(run_main, tmp_path, fake_python, url, secret):
    outcome = run(run_main, CODE, ["code"], real_env(tmp_path, fake_python, SANDBOX_URL=url))
    assert outcome.code == 0, outcome.text
    run_dir = tmp_path / "out" / "code_maxpo_k4_seed1"
    written = (run_dir / "console.log").read_text() + (run_dir / "meta.json").read_text() + outcome.text
    assert "training step 1" in written and "***@sandbox" in written
    assert secret not in written and "hunter2pass" not in written, f"SECRET leaked\n{written}"
    assert f"reward.sandbox_fusion.url={url}" in (tmp_path / "calls.log").read_text()  # verl gets the real URL


def test_local_execution_warns_and_uses_the_guarded_scorer(run_main, tmp_path, fake_python):
    outcome = run(
        run_main, CODE, ["code", "estimator=grpo"], real_env(tmp_path, fake_python, ALLOW_LOCAL_CODE_EXEC="1")
    )
    assert outcome.code == 0, outcome.text
    for exposed in ("network", "filesystem", "memory", "NOT a full sandbox", "WANDB_API_KEY"):
        assert exposed in outcome.err
    call = (tmp_path / "calls.log").read_text()
    assert "reward.custom_reward_function.reward_kwargs.allow_local_exec=true" in call
    assert "custom_reward_function.path" not in call and "sandbox_fusion.url" not in call
    meta = json.loads((tmp_path / "out" / "code_grpo_seed1" / "meta.json").read_text())
    assert meta["settings"]["code_exec"] == "local-guarded"


# ---- relaunching into an existing run folder ------------------------------------------------------------------

# (case id, settings of the second launch that differ from the first, extra overrides of the second launch)
RELAUNCH_DIFFERENT = [
    ("N", {"N": "8"}, [], "n: 16 != 8"),
    ("VAL_N", {"VAL_N": "4"}, [], "val_n: 16 != 4"),
    ("MODEL_PATH", {"MODEL_PATH": "/ckpt/other"}, [], "model"),
    ("DATA_DIR", {"DATA_DIR": "SECOND_DATA"}, [], "train_files"),
    ("extra-override", {}, ["actor_rollout_ref.actor.optim.lr=2e-6"], "override.0"),
    ("override-dropped", {"FIRST_EXTRA": "1"}, [], "override.0"),
]


@pytest.mark.parametrize(("change", "extra", "needle"), [c[1:] for c in RELAUNCH_DIFFERENT],
                         ids=[c[0] for c in RELAUNCH_DIFFERENT])  # fmt: skip
def test_a_relaunch_with_other_settings_is_refused_and_leaves_the_folder(
    run_main, tmp_path, fake_python, change, extra, needle
):
    env = real_env(tmp_path, fake_python)
    first_extra = ["trainer.total_epochs=1"] if change.pop("FIRST_EXTRA", None) else []
    assert run(run_main, MATH, ["gsm8k", *first_extra], env).code == 0
    run_dir = tmp_path / "out" / "gsm8k_maxpo_k4_seed1"
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    if change.get("DATA_DIR") == "SECOND_DATA":
        second = tmp_path / "data2"
        (second / "gsm8k").mkdir(parents=True)
        for split in ("train", "test"):
            (second / "gsm8k" / f"{split}.parquet").write_bytes(b"other")
        change = {"DATA_DIR": str(second)}
    outcome = run(run_main, MATH, ["gsm8k", *extra], {**env, **change})
    assert outcome.code != 0, f"SILENT: relaunch reused the folder\n{outcome.text}"
    assert "other settings" in outcome.err and needle in outcome.err, f"WRONG\n{outcome.text}"
    assert "Traceback" not in outcome.text, f"TRACEBACK\n{outcome.text}"
    after = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    assert after == before, "LOST: the folder changed"
    assert len((tmp_path / "calls.log").read_text().splitlines()) == 1  # verl started once


def test_a_relaunch_with_the_same_settings_resumes_and_appends(run_main, tmp_path, fake_python):
    env = real_env(tmp_path, fake_python)
    assert run(run_main, MATH, ["gsm8k", "trainer.total_epochs=1"], env).code == 0
    assert run(run_main, MATH, ["gsm8k", "trainer.total_epochs=1"], {**env, "FAKE_RC": "3"}).code == 3
    log = (tmp_path / "out" / "gsm8k_maxpo_k4_seed1" / "console.log").read_text()
    assert log.count("launch ===") == 2 and log.count("training step 1") == 2  # appended, not truncated


def test_a_folder_of_something_else_is_refused(run_main, tmp_path, fake_python):
    run_dir = tmp_path / "out" / "gsm8k_grpo_seed1"
    run_dir.mkdir(parents=True)
    (run_dir / "notes.txt").write_text("mine")
    outcome = run(run_main, MATH, ["gsm8k", "estimator=grpo"], real_env(tmp_path, fake_python))
    assert outcome.code == 2 and "has no meta.json" in outcome.err, outcome.text
    assert sorted(p.name for p in run_dir.iterdir()) == ["notes.txt"]
