"""Bad-input corpus for `verl-maxpo launch` (verl_maxpo.launch.main): one line a case, checked by behaviour.

Every case is a dry run that must be refused before anything is written: exit 2, the flag or key named in the
message, no traceback, no verl command printed, no output folder. Wording is free.
"""

from __future__ import annotations

import pytest

import verl_maxpo.launch.main as launch

pytestmark = pytest.mark.slow  # the cases past the flags compose a recipe with Hydra (~1 s each)

# (case id, arguments after the task's flags, what the message must name)
# fmt: off
REFUSALS = [
    ("unknown-flag", ["gsm8k", "--bogus"], "--bogus"),
    ("unknown-flag-after-override", ["gsm8k", "k=8", "--dryrun"], "--dryrun"),
    ("unknown-task", ["chess"], "chess"),
    ("task-path", ["../math"], "../math"),
    ("no-task", [], "task"),
    ("arm-twice", ["gsm8k", "--arms", "maxpo,grpo,maxpo"], "--arms"),
    ("arm-unknown", ["gsm8k", "--arms", "maxpo,ppo"], "ppo"),
    ("arms-empty", ["gsm8k", "--arms", " "], "--arms"),
    ("seeds-word", ["gsm8k", "--seeds", "one"], "--seeds"),
    ("seeds-negative", ["gsm8k", "--seeds", "-1"], "--seeds"),
    ("seeds-twice", ["gsm8k", "--seeds", "1,1"], "--seeds"),
    ("python-empty", ["gsm8k", "--python", ""], "--python"),
    ("out-empty", ["gsm8k", "--out", ""], "--out"),
    ("out-space", ["gsm8k", "--out", "/tmp/a b"], "--out"),
    ("out-bracket", ["gsm8k", "--out", "/tmp/a[1]"], "--out"),
    ("estimator-override", ["gsm8k", "estimator=grpo"], "estimator"),
    ("run-dir-override", ["gsm8k", "run_dir=/somewhere"], "run_dir"),
    ("one-name-for-two-arms", ["gsm8k", "trainer.experiment_name=mine"], "experiment_name"),
    ("seed-and-seeds", ["gsm8k", "--seeds", "2", "seed=3"], "seed"),
    ("tilde-inside-value", ["gsm8k", "data.train_files=/data/~x/train.parquet"], "~"),
    ("unknown-key", ["gsm8k", "trainer.no_such_key=1"], "trainer.no_such_key"),
    ("n-equals-k", ["gsm8k", "k=16"], "actor_rollout_ref.rollout.n"),
    ("n-below-k-plus-1", ["gsm8k", "actor_rollout_ref.rollout.n=4"], "actor_rollout_ref.rollout.n"),
    ("pkpo-loo-n-equals-k", ["gsm8k", "--arms", "pkpo_loo", "k=16"], "actor_rollout_ref.rollout.n"),
    ("pkpo-k-1", ["gsm8k", "--arms", "pkpo", "k=1"], "k"),
    ("k-zero", ["gsm8k", "k=0"], "k"),
    ("k-word", ["gsm8k", "k=four"], "k"),
    ("grpo-n-1", ["gsm8k", "--arms", "grpo", "actor_rollout_ref.rollout.n=1"], "actor_rollout_ref.rollout.n"),
    ("val-n-zero", ["gsm8k", "actor_rollout_ref.rollout.val_kwargs.n=0"], "val_kwargs.n"),
    ("ml-objective-on-maxpo", ["gsm8k", "+algorithm.maxpo.objective=ml"], "objective"),
    ("bad-objective", ["gsm8k", "--arms", "maxpo_ml", "algorithm.maxpo.objective=fancy"], "objective"),
    ("unknown-maxpo-option", ["gsm8k", "+algorithm.maxpo.bogus=1"], "bogus"),
    ("estimator-under-arm-name", ["gsm8k", "algorithm.adv_estimator=grpo"], "adv_estimator"),
    ("missing-data", ["gsm8k", "data.train_files=/nonexistent/train.parquet"], "/nonexistent/train.parquet"),
    ("code-no-sandbox", ["code"], "sandbox_fusion.url"),
    ("code-url-no-scheme", ["code", "reward.sandbox_fusion.url=sandbox:8080"], "reward.sandbox_fusion.url"),
    ("code-url-ftp", ["code", "reward.sandbox_fusion.url=ftp://sandbox/run"], "reward.sandbox_fusion.url"),
    ("code-local-not-bool", ["code", "reward.custom_reward_function.reward_kwargs.allow_local_exec=yes"],
     "allow_local_exec"),
    ("tiny-negative-seed", ["tiny", "seed=-1"], "seed"),
    ("test-freq-word", ["tiny", "trainer.test_freq=abc"], "trainer.test_freq"),
    ("test-freq-float", ["tiny", "trainer.test_freq=2.5"], "trainer.test_freq"),
    ("val-before-train-word", ["tiny", "trainer.val_before_train=maybe"], "trainer.val_before_train"),
]
# fmt: on


def run(run_main, args: list[str]):
    return run_main(lambda argv: launch.main(argv, env={}), *args)


@pytest.mark.parametrize(("args", "needle"), [c[1:] for c in REFUSALS], ids=[c[0] for c in REFUSALS])
def test_refused_before_anything_is_written(run_main, tmp_path, args, needle):
    out = tmp_path / "out"
    outcome = run(run_main, [*args, "--dry-run", "--out", str(out)] if args and "--out" not in args else args)
    assert "Traceback" not in outcome.text, outcome.text
    assert outcome.code == 2, f"exit {outcome.code}\n{outcome.text}"
    assert needle in outcome.err, outcome.text
    assert "verl.trainer.main_ppo" not in outcome.out and not out.exists()


SECRETS = [
    ("user-pass", "http://alice:hunter2pass@sandbox:8080/run_code", "hunter2pass"),
    ("token-only", "https://tok3nSECRET@sandbox.example.com/run_code", "tok3nSECRET"),
]


@pytest.mark.parametrize(("url", "secret"), [c[1:] for c in SECRETS], ids=[c[0] for c in SECRETS])
def test_a_dry_run_never_prints_sandbox_credentials(run_main, tmp_path, url, secret):
    data = [f"data.{s}_files={tmp_path}/{s}.parquet" for s in ("train", "val")]
    for s in ("train", "val"):
        (tmp_path / f"{s}.parquet").write_bytes(b"stand-in")
    outcome = run(run_main, ["code", "--dry-run", "--out", str(tmp_path / "out"), f"reward.sandbox_fusion.url={url}",
                             *data, "--print-config"])  # fmt: skip
    assert outcome.code == 0, outcome.text
    assert secret not in outcome.text and "***" in outcome.out


def test_a_refused_url_never_shows_its_secret(run_main, tmp_path):
    outcome = run(run_main, ["code", "--dry-run", "reward.sandbox_fusion.url=u:s3cretpass@sb:8080/run_code"])
    assert outcome.code == 2 and "s3cretpass" not in outcome.text, outcome.text


@pytest.mark.parametrize("case", ["out-is-a-file", "out-under-a-file"])
def test_an_out_that_cannot_hold_run_folders_is_refused_in_a_dry_run(run_main, tmp_path, case: str) -> None:
    """With the data present, a dry run still refuses an --out where no run folder can be made, as a launch would."""
    data = tmp_path / "data"
    data.mkdir()
    for split in ("train", "test"):
        (data / f"{split}.parquet").write_bytes(b"PAR1")  # the launcher checks presence; verl reads them later
    blocker = tmp_path / "a_file"
    blocker.write_text("keep me")
    out = blocker if case == "out-is-a-file" else blocker / "runs"
    args = ["gsm8k", "--dry-run", "--out", str(out), f"data.train_files={data}/train.parquet",
            f"data.val_files={data}/test.parquet"]  # fmt: skip
    outcome = run(run_main, args)
    assert outcome.code == 2 and "--out" in outcome.err and "Traceback" not in outcome.text, outcome.text
    assert "verl.trainer.main_ppo" not in outcome.out
    assert blocker.read_text() == "keep me"
