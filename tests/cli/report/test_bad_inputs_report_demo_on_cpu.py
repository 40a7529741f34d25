"""Bad-input corpus for `verl-maxpo report`, `demo` and `check`: one line per case, each asserting its class of outcome.

Classes: a clean refusal (non-zero exit, the documented code, a message naming the problem, no traceback), an exact
result, or files left as they were. Demo refusals must come before any work: `warm_start` is replaced by a tripwire,
so a case that reaches it fails as "started work". Failure messages start with a tag ([traceback], [silent], [lost],
[other]) so the corpus can be counted per class.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

DUMP_LINE = '{{"input": "{p}", "output": "o", "gts": "g", "score": {s}, "step": {step}}}\n'


def dump(folder: Path, step: int | str, rows: list[tuple[str, object]], extra: str = "") -> Path:
    """Write `<folder>/<step>.jsonl` with one line per (prompt, score), then `extra` verbatim."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{step}.jsonl"
    step_no = int(str(step))
    path.write_text("".join(DUMP_LINE.format(p=p, s=s, step=step_no) for p, s in rows) + extra, encoding="utf-8")
    return path


GOOD = [("a", 1.0), ("a", 0.0), ("b", 0.0), ("b", 0.0)]


def good_run(root: Path, name: str = "run_seed0") -> Path:
    run = root / name
    dump(run / "val", 1, GOOD)
    return run


@dataclass
class Case:
    """argv built from tmp_path by `make`; `expect` is "refused", "exact" or "kept"."""

    name: str
    make: Callable[[Path], list[str]]
    expect: str = "refused"
    code: int | None = None
    needles: tuple[str, ...] = ()
    check: Callable[[Path, object], None] | None = None  # exact: asserts on (tmp_path, outcome)
    keep: Callable[[Path], Path] | None = None  # kept: the folder whose files must stay as they were
    env: dict[str, str] = field(default_factory=dict)


def t(path: Path, *parts: str) -> str:
    return str(path.joinpath(*parts))


# --- report --------------------------------------------------------------------------------------------------------


def _out_is_file(p: Path) -> list[str]:
    (p / "out").write_text("mine\n")
    return ["report", str(good_run(p)), "--out", t(p, "out")]


def _out_under_file(p: Path) -> list[str]:
    (p / "blocker").write_text("mine\n")
    return ["report", str(good_run(p)), "--out", t(p, "blocker", "sub")]


def _huge_digits(p: Path) -> list[str]:
    run = good_run(p)
    dump(run / "val", 2, GOOD, extra='{"input": "c", "score": 1' + "0" * 5000 + "}\n")
    return ["report", str(run), "--out", t(p, "out"), "--k", "1"]


def _huge_int(p: Path) -> list[str]:
    run = good_run(p)
    dump(run / "val", 2, GOOD, extra='{"input": "c", "score": 1' + "0" * 400 + "}\n")
    return ["report", str(run), "--out", t(p, "out"), "--k", "1"]


def _deep_json(p: Path) -> list[str]:
    run = good_run(p)
    dump(run / "val", 2, GOOD, extra='{"input": ' + "[" * 100_000 + "]" * 100_000 + ', "score": 1}\n')
    return ["report", str(run), "--out", t(p, "out"), "--k", "1"]


def _deep_train_log(p: Path) -> list[str]:
    run = good_run(p)
    (run / "train_log.jsonl").write_text('{"step": 1, "data": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    return ["report", str(run), "--out", t(p, "out"), "--k", "1"]


def _meta(p: Path, text: str | bytes) -> list[str]:
    run = good_run(p)
    (run / "meta.json").write_bytes(text if isinstance(text, bytes) else text.encode())
    return ["report", str(run), "--out", t(p, "out")]


def _dup_steps(p: Path) -> list[str]:
    run = good_run(p)
    dump(run / "val", "01", [("z", 1.0), ("z", 1.0)])
    return ["report", str(run), "--out", t(p, "out"), "--k", "1", "--json"]


def _unreadable(p: Path) -> list[str]:
    run = good_run(p)
    (run / "val").chmod(0)
    return ["report", str(run), "--out", t(p, "out")]


def _stale_outputs(p: Path) -> list[str]:
    run = good_run(p)
    dump(run / "val", 1, [("a", 1.0)] * 16)
    from verl_maxpo.cli.main import main

    assert main(["report", str(run), "--out", t(p, "out"), "--k", "1,16"]) == 0
    (p / "out" / "notes.txt").write_text("mine\n")
    dump(run / "val", 1, GOOD)
    return ["report", str(run), "--out", t(p, "out"), "--k", "1", "--force"]


def _rerun(p: Path) -> list[str]:
    run = good_run(p)
    from verl_maxpo.cli.main import main

    assert main(["report", str(run), "--out", t(p, "out")]) == 0
    return ["report", str(run), "--out", t(p, "out")]


def _null_input(p: Path) -> list[str]:
    run = p / "run"
    (run / "val").mkdir(parents=True)
    lines = [json.dumps({"input": None, "score": s}) for s in (1.0, 0.0, 0.0, 0.0)]
    (run / "val" / "1.jsonl").write_text("\n".join(lines) + "\n")
    return ["report", str(run), "--out", t(p, "o"), "--k", "1"]


def _check_stale(p: Path, outcome) -> None:
    names = sorted(x.name for x in (p / "out").iterdir() if not x.name.startswith("."))
    # 0/1 scores: pass@k only; the earlier report's pass_at_16.png is gone, the user's notes.txt stays.
    assert names == ["notes.txt", "pass_at_1.png", "report.md"], f"[silent] stale outputs: {names}"
    assert (p / "out" / "notes.txt").read_text() == "mine\n", "[lost] an unrelated file was changed"


def _check_dup(p: Path, outcome) -> None:
    result = json.loads(outcome.out)
    steps = result["runs"][0]["steps"]
    assert [s["step"] for s in steps] == [1] and steps[0]["pass@1"] == 0.25, f"[silent] {steps}"


def _groups_are(outcome, want: list[tuple[str, int]]) -> None:
    got = [(g["name"], g["seeds"]) for g in json.loads(outcome.out)["groups"]]
    assert got == want, f"[silent] groups {got}"


def _check_k_forms(p: Path, outcome) -> None:
    assert json.loads(outcome.out)["ks"] == [1, 2, 3, 4], "[silent] --k forms"


REPORT_CASES = [
    Case("report out is a file", _out_is_file, code=2, needles=("--out",)),
    Case("report out under a file", _out_under_file, code=2, needles=("blocker",)),
    Case("report score with 5000 digits", _huge_digits, code=1, needles=("2.jsonl:5",)),
    Case("report score 1e400 as an int", _huge_int, code=1, needles=("2.jsonl:5",)),
    Case("report deeply nested dump line", _deep_json, code=1, needles=("2.jsonl:5",)),
    Case("report deeply nested train log", _deep_train_log, code=1, needles=("train_log.jsonl:1",)),
    Case("report NaN in meta.json", lambda p: _meta(p, '{"k": NaN}'), code=1, needles=("meta.json", "NaN")),
    Case("report meta.json a list", lambda p: _meta(p, "[4]"), code=1, needles=("meta.json",)),
    Case("report meta.json k a string", lambda p: _meta(p, META_K_STRING), code=1, needles=("meta.json", "k")),
    Case("report meta.json not JSON", lambda p: _meta(p, "{"), code=1, needles=("meta.json",)),
    Case("report meta.json not UTF-8", lambda p: _meta(p, b'{"k": "\xff"}'), code=1, needles=("meta.json",)),
    Case("report duplicate step files", _dup_steps, code=1, needles=("01.jsonl", "1.jsonl")),
    Case("report duplicate step files: first kept", _dup_steps, expect="exact", code=1, check=_check_dup),
    Case("report pass threshold nan", lambda p: ["report", str(good_run(p)), "--pass-threshold", "nan"], code=2),
    Case("report pass threshold inf", lambda p: ["report", str(good_run(p)), "--pass-threshold", "inf"], code=2),
    Case("report pass threshold text", lambda p: ["report", str(good_run(p)), "--pass-threshold", "x"], code=2),
    Case("report k zero", lambda p: ["report", str(good_run(p)), "--k", "0"], code=2, needles=("--k",)),
    Case("report k comma only", lambda p: ["report", str(good_run(p)), "--k", ","], code=2, needles=("--k",)),
    Case("report k float", lambda p: ["report", str(good_run(p)), "--k", "2.5"], code=2, needles=("--k",)),
    Case("report k huge", lambda p: ["report", str(good_run(p)), "--k", "9" * 30], code=2, needles=("--k",)),
    Case(
        "report k both forms",
        lambda p: ["report", str(good_run(p)), "--k", "1,2", "3", "4", "--json", "--out", t(p, "o")],
        expect="exact",
        code=0,
        check=_check_k_forms,
    ),
    Case(
        "report group both forms",
        lambda p: (
            ["report", *map(str, (good_run(p, "x"), good_run(p, "y"), good_run(p, "z")))]
            + ["--group", "a,a", "b", "--json", "--out", t(p, "o")]
        ),
        expect="exact",
        code=0,
        check=lambda p, o: _groups_are(o, [("a", 2), ("b", 1)]),
    ),
    Case("report labels count", lambda p: ["report", str(good_run(p)), "--label", "a", "b"], code=2),
    Case("report missing folder", lambda p: ["report", t(p, "nope"), "--out", t(p, "o")], code=1, needles=("nope",)),
    Case("report empty folder", lambda p: ["report", str(p), "--out", t(p, "o")], code=1, needles=("jsonl",)),
    Case("report dump not UTF-8", lambda p: _bad_bytes(p), code=1, needles=("1.jsonl", "utf")),
    Case("report unreadable folder", _unreadable, code=1, needles=("_seed0/val",)),
    Case("report stale outputs removed", _stale_outputs, expect="exact", code=0, check=_check_stale),
    Case("report rerun over earlier results", _rerun, code=2, needles=("--force", "--out")),
    Case("report rerun over earlier results: kept", _rerun, expect="kept", keep=lambda p: p / "out"),
    Case("report input null", _null_input, code=1, needles=("1.jsonl:1", "input")),
    Case("report out empty", lambda p: ["report", str(good_run(p)), "--out", ""], code=2, needles=("--out",)),
    Case("report run dir empty", lambda p: ["report", "", "--out", t(p, "o")], code=2, needles=("RUN_DIR",)),
    Case("report run dir empty: kept", lambda p: ["report", "", "--out", t(p, "o")], expect="kept", keep=lambda p: p),
    Case(
        "report train log empty",
        lambda p: ["report", str(good_run(p)), "--train-log", ""],
        code=2,
        needles=("--train-log",),
    ),
    Case("check python empty", lambda p: ["check", "--python", ""], code=2, needles=("--python",)),
]

META_K_STRING = '{"adv_estimator": "maxpo", "k": "4", "n": 4, "seed": 0, "config_name": "x", "val_n": 4}'


def _bad_bytes(p: Path) -> list[str]:
    run = p / "run"
    (run / "val").mkdir(parents=True)
    (run / "val" / "1.jsonl").write_bytes(b'{"input": "\xff\xfe", "score": 1}\n')
    return ["report", str(run), "--out", t(p, "o")]


# --- demo: every refusal before any work ---------------------------------------------------------------------------


def demo(*args: str) -> Callable[[Path], list[str]]:
    return lambda p: ["demo", "--quick", "--no-progress", "--out", t(p, "out"), *args]


def _demo_nonempty(p: Path) -> list[str]:
    (p / "out").mkdir()
    (p / "out" / "notes.txt").write_text("mine\n")
    return ["demo", "--quick", "--no-progress", "--out", t(p, "out")]


def _demo_out_file(p: Path) -> list[str]:
    (p / "out").write_text("mine\n")
    return ["demo", "--quick", "--no-progress", "--out", t(p, "out")]


def _demo_out_under_file(p: Path) -> list[str]:
    (p / "file.txt").write_text("mine\n")
    return ["demo", "--quick", "--no-progress", "--out", t(p, "file.txt", "out")]


def _demo_force_over_users_run(p: Path) -> list[str]:
    (p / "out" / "runs" / "maxpo_seed0").mkdir(parents=True)
    (p / "out" / "runs" / "maxpo_seed0" / "meta.json").write_text("{}\n")  # the user's, not the demo's
    return ["demo", "--quick", "--no-progress", "--out", t(p, "out"), "--force"]


def _demo_rerun(p: Path) -> list[str]:
    from verl_maxpo.runs.outputs import publish

    with publish(p / "out", "demo") as out:  # an earlier demo's results (its manifest names the demo)
        (out.stage / "summary.md").write_text("a 30-minute A/B\n")
        (out.stage / "runs" / "maxpo_seed0").mkdir(parents=True)
        (out.stage / "runs" / "maxpo_seed0" / "meta.json").write_text("{}\n")
    return ["demo", "--quick", "--no-progress", "--out", t(p, "out")]


def _demo_runs_symlink(p: Path) -> list[str]:
    (p / "mine").mkdir()
    (p / "out").mkdir()
    (p / "out" / "notes.txt").write_text("mine\n")
    (p / "out" / "runs").symlink_to(p / "mine", target_is_directory=True)
    return ["demo", "--quick", "--no-progress", "--out", t(p, "out"), "--force"]


DEMO_CASES = [
    Case("demo force through a symlinked runs/", _demo_runs_symlink, code=2, needles=("runs", "symlink")),
    Case("demo force through a symlinked runs/: kept", _demo_runs_symlink, expect="kept", keep=lambda p: p),
    Case("demo rerun over earlier results", _demo_rerun, code=2, needles=("--force", "--out")),
    Case("demo rerun over earlier results: kept", _demo_rerun, expect="kept", keep=lambda p: p / "out"),
    Case(
        "demo maxpo_top2 at k 1",
        demo("--k", "1", "--n", "2", "--estimators", "maxpo_top2"),
        code=2,
        needles=("maxpo_top2", "--k", "m"),
    ),
    Case("demo seed 2**64", demo("--seed", str(2**64)), code=2, needles=("--seed",)),
    Case("demo seeds 10**6", demo("--seeds", "1000000"), code=2, needles=("--seeds",)),
    Case("demo n 10**9", demo("--n", "1000000000"), code=2, needles=("--n",)),
    Case("demo k 10**9", demo("--k", "1000000000"), code=2, needles=("--k",)),
    Case("demo steps 10**12", demo("--steps", "1000000000000"), code=2, needles=("--steps",)),
    Case("demo lr 1e30", demo("--lr", "1e30"), code=2, needles=("--lr",)),
    Case("demo workers 10**6", demo("--workers", "1000000"), code=2, needles=("--workers",)),
    Case(
        "demo batch too many samples",
        demo("--prompts-per-step", "65536", "--n", "64"),
        code=2,
        needles=("--prompts-per-step",),
    ),
    Case("demo val-every 0", demo("--val-every", "0"), code=2, needles=("--val-every",)),
    Case("demo steps 0", demo("--steps", "0"), code=2, needles=("--steps",)),
    Case("demo seeds 0", demo("--seeds", "0"), code=2, needles=("--seeds",)),
    Case("demo seed negative", demo("--seed", "-1"), code=2, needles=("--seed",)),
    Case("demo estimators comma", demo("--estimators", ","), code=2, needles=("--estimators",)),
    Case("demo estimators duplicate", demo("--estimators", "maxpo,maxpo"), code=2, needles=("--estimators", "maxpo")),
    Case("demo estimators unknown", demo("--estimators", "maxpo", "nope"), code=2, needles=("nope", "pkpo_loo")),
    Case("demo k zero", demo("--k", "0"), code=2, needles=("--k",)),
    Case("demo n below k+1", demo("--n", "4", "--k", "4"), code=2, needles=("--n",)),
    Case("demo val-n below k+1", demo("--val-n", "3"), code=2, needles=("--val-n",)),
    Case("demo pkpo at k 1", demo("--k", "1", "--estimators", "pkpo"), code=2, needles=("pkpo",)),
    Case("demo digits 0", demo("--digits", "0"), code=2, needles=("--digits",)),
    Case("demo digits 40", demo("--digits", "40"), code=2, needles=("--digits",)),
    Case("demo val-prompts 0", demo("--val-prompts", "0"), code=2, needles=("--val-prompts",)),
    Case("demo val-prompts too many", demo("--digits", "1", "--val-prompts", "60"), code=2, needles=("--val-p",)),
    Case("demo prompts-per-step 0", demo("--prompts-per-step", "0"), code=2, needles=("--prompts-per-step",)),
    Case("demo sft-target 1.5", demo("--sft-target", "1.5"), code=2, needles=("--sft-target",)),
    Case("demo sft-target nan", demo("--sft-target", "nan"), code=2, needles=("--sft-target",)),
    Case("demo sft-max-steps 0", demo("--sft-max-steps", "0"), code=2, needles=("--sft-max-steps",)),
    Case("demo sft-lr 0", demo("--sft-lr", "0"), code=2, needles=("--sft-lr",)),
    Case("demo sft-batch 0", demo("--sft-batch", "0"), code=2, needles=("--sft-batch",)),
    Case("demo lr nan", demo("--lr", "nan"), code=2, needles=("--lr",)),
    Case("demo lr negative", demo("--lr", "-1"), code=2, needles=("--lr",)),
    Case("demo grad-clip 0", demo("--grad-clip", "0"), code=2, needles=("--grad-clip",)),
    Case("demo temperature 0", demo("--temperature", "0"), code=2, needles=("--temperature",)),
    Case("demo temperature inf", demo("--temperature", "inf"), code=2, needles=("--temperature",)),
    Case("demo workers 0", demo("--workers", "0"), code=2, needles=("--workers",)),
    Case("demo threads (one per worker)", demo("--threads", "2"), code=2, needles=("--threads",)),
    Case("demo val-n 0", demo("--val-n", "0"), code=2, needles=("--val-n",)),
    Case("demo gradvar-draws 1", demo("--gradvar-draws", "1"), code=2, needles=("--gradvar-draws",)),
    Case("demo gradvar-prompts 0", demo("--gradvar-prompts", "0"), code=2, needles=("--gradvar-prompts",)),
    Case("demo loss-agg-mode bogus", demo("--loss-agg-mode", "bogus"), code=2, needles=("--loss-agg-mode",)),
    Case("demo device cuda without gpu", demo("--device", "cuda"), code=2, needles=("--device", "cuda")),
    Case("demo device nonsense", demo("--device", "tpu9"), code=2, needles=("--device",)),
    Case("demo k text", demo("--k", "four"), code=2, needles=("--k",)),
    Case("demo steps octal-looking", demo("--steps", "010"), code=2, needles=("--steps",)),
    Case("demo out is a file", _demo_out_file, code=2, needles=("--out",)),
    Case("demo out under a file", _demo_out_under_file, code=2, needles=("--out", "file.txt")),
    Case("demo out unwritable", lambda p: ["demo", "--quick", "--out", "/proc/maxpo/o"], code=2, needles=("/proc",)),
    Case("demo out empty", demo("--out", " "), code=2, needles=("--out",)),
    Case("demo force over a user's run", _demo_force_over_users_run, code=2, needles=("runs/maxpo_seed0",)),
    Case("demo force over a user's run: kept", _demo_force_over_users_run, expect="kept", keep=lambda p: p / "out"),
    Case("demo out not empty", _demo_nonempty, code=2, needles=("notes.txt", "--force")),
    Case("demo out not empty: kept", _demo_nonempty, expect="kept", keep=lambda p: p / "out"),
    Case("demo preset unknown", demo("--preset", "dense9"), code=2, needles=("--preset",)),
]

# --- check ---------------------------------------------------------------------------------------------------------


def _broken_package(p: Path) -> list[str]:
    pkg = p / "verl_maxpo"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise ImportError('broken on purpose')\n")
    return ["check"]


CHECK_CASES = [
    Case("check python missing", lambda p: ["check", "--python", "/nonexistent/python3"], code=1, needles=("python",)),
    Case("check python not a program", lambda p: ["check", "--python", "/etc/hostname"], code=1, needles=("hostname",)),
    Case("check python is a folder", lambda p: ["check", "--python", str(p)], code=1, needles=("python",)),
    Case("check broken verl_maxpo", _broken_package, code=1, needles=("broken on purpose",), env={"PYTHONPATH": ""}),
]

CASES = REPORT_CASES + DEMO_CASES + CHECK_CASES


def test_demo_at_k1_skips_the_internal_arms_that_cannot_run_and_says_so() -> None:
    """`--estimators maxpo --k 1 --n 2` is accepted; the gradient-variance step, which measures every arm of the
    table, leaves out the arms that cannot run at k = 1 (named in the summary) and every arm it keeps runs through
    verl's compute_advantage at these settings, so nothing fails after the RL runs."""
    import numpy as np
    import torch
    from verl.trainer.ppo import core_algos

    from verl_maxpo.tasks.addition import AdditionTask, build_policy
    from verl_maxpo.tools.demo import config as demo_config
    from verl_maxpo.tools.demo import gradvar as demo_gradvar
    from verl_maxpo.tools.demo import rl as demo_rl
    from verl_maxpo.tools.demo.summary import gradvar_notes

    cfg = demo_config.parse_config(["--quick", "--estimators", "maxpo", "--k", "1", "--n", "2", "--val-n", "2"])
    assert set(demo_config.gradvar_skipped(1)) == {"maxpo_top2", "pkpo"}
    touched = demo_gradvar.gradvar_arms(1, core_algos.ADV_ESTIMATOR_REGISTRY)
    assert "maxpo_top2" not in touched and "pkpo" not in touched and "maxpo" in touched
    task = AdditionTask(2, 4, seed=0)
    model = build_policy(task, seed=0, device=torch.device("cpu"))
    batch = demo_rl.rollout(model, task, task.train_pairs(np.random.default_rng(0), 3), 2, 1.0, torch.Generator())
    batch.scores = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 0.0])
    with torch.no_grad():
        for arm in dict.fromkeys([*cfg.arms, *touched]):
            demo_rl.policy_gradient_loss(model, batch, *demo_rl.verl_configs(arm, cfg))
    notes = "\n".join(gradvar_notes(cfg, {"warm start": {"maxpo": {"rel_var": None}}}))
    assert "maxpo_top2" in notes and "pkpo" in notes and "unresolved" in notes


class StartedWork(Exception):
    """Raised by the warm-start tripwire: the demo began work before refusing."""


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(f.relative_to(folder)): f.read_bytes() for f in sorted(folder.rglob("*")) if f.is_file()}


# `check` probes a fresh interpreter (a subprocess importing verl): those cases belong to the slow tier.
PARAMS = [pytest.param(c, marks=pytest.mark.slow) if c in CHECK_CASES else c for c in CASES]


@pytest.mark.parametrize("case", PARAMS, ids=[c.name for c in CASES])
def test_bad_input(case: Case, tmp_path: Path, run_cli, assert_refused, monkeypatch: pytest.MonkeyPatch) -> None:
    from verl_maxpo.tools.demo import main as demo_module

    def tripwire(*args, **kwargs):
        raise StartedWork

    monkeypatch.setattr(demo_module, "warm_start", tripwire)
    if case.name == "report unreadable folder" and os.geteuid() == 0:
        # root reads any folder whatever its mode: make listing `val` fail as it does for other users
        real_scandir = os.scandir

        def scandir(path="."):
            if Path(path).name == "val" and not Path(path).stat().st_mode & 0o444:
                raise PermissionError(13, "Permission denied", str(path))
            return real_scandir(path)

        monkeypatch.setattr(os, "scandir", scandir)
    for key, value in case.env.items():
        monkeypatch.setenv(key, str(tmp_path) if key == "PYTHONPATH" else value)
    monkeypatch.chdir(tmp_path)  # a default --out lands in tmp_path
    argv = case.make(tmp_path)
    before = snapshot(case.keep(tmp_path)) if case.keep else None
    try:
        outcome = run_cli(*argv)
    except StartedWork:
        pytest.fail("[silent] the demo started work (warm start) before refusing")
    except Exception as err:  # noqa: BLE001  (an escaping exception is a raw traceback)
        pytest.fail(f"[traceback] {type(err).__name__}: {err}"[:500])
    finally:
        (tmp_path / "run" / "val").exists() and (tmp_path / "run" / "val").chmod(0o755)
        (tmp_path / "run_seed0" / "val").exists() and (tmp_path / "run_seed0" / "val").chmod(0o755)
    if "Traceback" in outcome.text:
        pytest.fail(f"[traceback] in the output:\n{outcome.text[-1500:]}")
    if case.expect == "kept":
        assert snapshot(case.keep(tmp_path)) == before, "[lost] files changed"
        assert outcome.code != 0, f"[silent] exit 0:\n{outcome.text[-800:]}"
        return
    if case.code is not None and outcome.code != case.code:
        tag = "[silent]" if outcome.code == 0 else "[other]"
        pytest.fail(f"{tag} expected exit {case.code}, got {outcome.code}:\n{outcome.text[-1500:]}")
    if case.expect == "exact":
        if case.check is not None:
            case.check(tmp_path, outcome)
        return
    assert_refused(outcome, *case.needles)  # each option, file or value named in the message (usage aside)
