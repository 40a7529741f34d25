"""The output-folder policy (`verl_maxpo.runs.outputs`): staged write, atomic publish, manifest, force, lock,
signals."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import signal
import sys
from pathlib import Path

import pytest

from verl_maxpo.runs.outputs import (
    MANIFEST_NAME,
    Interrupted,
    OutputError,
    check_out,
    check_separate,
    owned_files,
    publish,
)


def _write(stage: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (stage / name).parent.mkdir(parents=True, exist_ok=True)
        (stage / name).write_text(text)


def _publish(
    out: Path | str, files: dict[str, str], command: str = "report", force: bool = False, results: bool = True
) -> Path:
    with publish(out, command, force, results=results) as o:
        _write(o.stage, files)
    return o.target


def names(*parts: object) -> str:
    """A `match=` pattern: the message names each part (a file, option, command or path), in any order and any
    wording, so the tests hold what the user is told, not the sentence."""
    return "".join(f"(?=[\\s\\S]*{re.escape(str(p))})" for p in parts)


def _tree(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_new_folder_gets_files_and_manifest_and_nothing_beside(tmp_path: Path) -> None:
    target = _publish(tmp_path / "a" / "out", {"report.md": "r", "sub/x.png": "p"})
    assert target == tmp_path / "a" / "out"
    assert _tree(target) == {"report.md": "r", "sub/x.png": "p", MANIFEST_NAME: _tree(target)[MANIFEST_NAME]}
    assert json.loads((target / MANIFEST_NAME).read_text())["files"] == ["report.md", "sub/x.png"]
    assert owned_files(target, "report") == ["report.md", "sub/x.png"] and owned_files(target, "variance") == []
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["out"]  # no stage or lock file left


def test_second_run_replaces_exactly_its_own_files_and_keeps_the_users(tmp_path: Path) -> None:
    out = _publish(tmp_path / "out", {"report.md": "1", "max_at_4.png": "1", "sub/old.png": "1"})
    (out / "notes.md").write_text("mine")
    _publish(out, {"report.md": "2", "pass_at_2.png": "2"}, force=True)
    tree = _tree(out)
    del tree[MANIFEST_NAME]
    assert tree == {"report.md": "2", "pass_at_2.png": "2", "notes.md": "mine"}  # sub/ (emptied) pruned too
    assert not (out / "sub").exists()


def test_foreign_folder_refused_and_force_never_touches_user_files(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.md").write_text("my own report")
    (out / "keep.png").write_text("mine")
    with pytest.raises(OutputError, match=names("keep.png", "--force")):
        _publish(out, {"a.png": "x"})
    with pytest.raises(OutputError, match=names("report.md")):
        _publish(out, {"report.md": "new"}, force=True)
    assert _tree(out) == {"report.md": "my own report", "keep.png": "mine"}  # refused before anything moved
    _publish(out, {"a.png": "x"}, force=True)
    _publish(out, {"b.png": "y"}, results=False)  # a folder of ours: replaced without force, the user's files stay
    assert sorted(_tree(out)) == [MANIFEST_NAME, "b.png", "keep.png", "report.md"]
    assert (out / "report.md").read_text() == "my own report"


def test_a_rerun_over_earlier_results_is_refused_without_force(tmp_path: Path) -> None:
    out = _publish(tmp_path / "out", {"report.md": "1", "sub/a.png": "1"})
    before = _tree(out)
    with pytest.raises(OutputError, match="--force") as refused:
        check_out(out, "report")
    assert "--out" in str(refused.value)
    with pytest.raises(OutputError, match="--force"):  # publish refuses before the body runs: no work is wasted
        with publish(out, "report"):
            raise AssertionError("the body ran")
    assert _tree(out) == before
    _publish(out, {"report.md": "2"}, results=False)  # a command rebuilt from its inputs (prep) replaces its files
    assert _tree(out)["report.md"] == "2"
    (out / "report.md").unlink()  # earlier results the user removed are not results any more
    _publish(out, {"report.md": "3"})
    assert _tree(out)["report.md"] == "3"


@pytest.mark.parametrize("force", [False, True])
def test_nothing_is_written_or_removed_through_a_symlinked_subfolder(tmp_path: Path, force: bool) -> None:
    out = _publish(tmp_path / "out", {"report.md": "1", "sub/a.png": "1"})
    users = tmp_path / "users"
    users.mkdir()
    (users / "a.png").write_text("the user's")
    (out / "sub" / "a.png").unlink()
    (out / "sub").rmdir()
    (out / "sub").symlink_to(users, target_is_directory=True)
    with pytest.raises(OutputError, match="symlink"):
        _publish(out, {"report.md": "2", "sub/a.png": "2"}, force=force)
    with pytest.raises(OutputError, match="symlink"):
        _publish(out, {"report.md": "2"}, force=force, results=False)
    assert _tree(users) == {"a.png": "the user's"}


def test_a_new_file_never_goes_through_a_symlinked_subfolder(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    users = tmp_path / "users"
    users.mkdir()
    (out / "runs").symlink_to(users, target_is_directory=True)
    with pytest.raises(OutputError, match="symlink"):
        _publish(out, {"runs/x/meta.json": "{}"}, force=True)
    assert list(users.iterdir()) == []


def test_two_commands_never_share_a_folder(tmp_path: Path) -> None:
    out = _publish(tmp_path / "out", {"report.md": "r"})
    for force in (False, True):
        with pytest.raises(OutputError, match=names("verl-maxpo report", "variance")):
            _publish(out, {"variance.json": "v"}, command="variance", force=force)
    assert sorted(_tree(out)) == [MANIFEST_NAME, "report.md"]


def test_current_folder_is_written_into_never_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data.csv").write_text("mine")
    with pytest.raises(OutputError, match=names("data.csv", "--force")):
        _publish(".", {"report.md": "r"})
    _publish(".", {"report.md": "r"}, force=True)
    assert Path.cwd() == tmp_path and sorted(_tree(tmp_path)) == [MANIFEST_NAME, "data.csv", "report.md"]


@pytest.mark.parametrize("bad", ["", "  "])
def test_empty_out_is_refused(bad: str) -> None:
    with pytest.raises(OutputError, match=names("--out")):
        _publish(bad, {"a": "b"})


def test_file_target_file_parent_and_unwritable_place(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match=names("--out", tmp_path / "f")):
        _publish(tmp_path / "f", {"a": "b"})
    with pytest.raises(OutputError, match=names("--out", tmp_path / "f" / "sub")):
        _publish(tmp_path / "f" / "sub", {"a": "b"})
    if os.geteuid() != 0:
        locked = tmp_path / "ro"
        locked.mkdir(mode=0o500)
        with pytest.raises(OutputError, match=names(locked)):
            _publish(locked / "out", {"a": "b"})
    assert (tmp_path / "f").read_text() == "x"


def test_error_in_the_body_leaves_target_and_parent_as_they_were(tmp_path: Path) -> None:
    out = _publish(tmp_path / "out", {"report.md": "1"})
    before = _tree(out)
    with pytest.raises(RuntimeError), publish(out, "report", force=True) as o:
        (o.stage / "report.md").write_text("half")
        raise RuntimeError("boom")
    assert _tree(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def _sigterm_during_write(out: str) -> None:
    with publish(out, "report") as o:
        (o.stage / "report.md").write_text("half")
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM did not stop the write")


def test_sigterm_removes_the_stage_and_leaves_no_target(tmp_path: Path) -> None:
    with pytest.raises(Interrupted):
        _sigterm_during_write(str(tmp_path / "out"))
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is put back


def _claim_and_publish(out: str, tag: str, barrier: multiprocessing.synchronize.Barrier) -> None:
    barrier.wait()
    with publish(out, "report") as o:
        for i in range(20):
            (o.stage / f"{tag}_{i}.png").write_text(tag)
        (o.stage / "report.md").write_text(tag)


@pytest.mark.skipif(sys.platform != "linux", reason="fork start method")
def test_two_simultaneous_writers_never_mix(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(2)
    out = str(tmp_path / "out")
    procs = [ctx.Process(target=_claim_and_publish, args=(out, tag, barrier)) for tag in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    # The second to take the lock finds the first one's results and is refused (results are data): one wins.
    assert sorted(p.exitcode for p in procs) == [0, 1]
    tree = _tree(tmp_path / "out")
    winner = tree.pop("report.md")
    files = json.loads(tree.pop(MANIFEST_NAME))["files"]
    assert set(tree.values()) == {winner} and len(tree) == 20  # one writer's files only
    assert files == sorted([*tree, "report.md"])


def test_check_separate_catches_same_inside_holds_and_symlinks(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (tmp_path / "link").symlink_to(src)
    for out, relation in [(src, "is"), (src / "out", "is inside"), (tmp_path, "holds"), (tmp_path / "link", "is")]:
        with pytest.raises(OutputError, match=f"{relation} --local-dir"):
            check_separate(src, out, "--local-dir", "--out-dir")
    check_separate(src, tmp_path / "other", "--local-dir", "--out-dir")  # siblings are fine


# --- the commands that publish through it --------------------------------------------------------------------------


def _run(tmp: Path, name: str = "run_seed0", scores: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0)) -> Path:
    val = tmp / name / "val"
    val.mkdir(parents=True)
    rows = [{"input": p, "output": "o", "gts": "g", "score": s, "step": 1} for p, s in zip("aabb", scores, strict=True)]
    (val / "1.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tmp / name


def test_report_refuses_to_overwrite_a_users_report_even_with_force(tmp_path: Path, run_cli, assert_refused) -> None:
    run, out = _run(tmp_path), tmp_path / "mine"
    out.mkdir()
    (out / "report.md").write_text("my notes")
    (out / "pass_at_1.png").write_text("my plot")
    assert_refused(run_cli("report", run, "--out", out, "--k", "1"), "--force", "report.md", code=2)  # before work
    # with --force the clash shows when the files are published, after the report was computed: exit 1
    assert_refused(run_cli("report", run, "--out", out, "--k", "1", "--force"), "pass_at_1.png", "report.md", code=1)
    assert _tree(out) == {"report.md": "my notes", "pass_at_1.png": "my plot"}


def test_report_json_alone_writes_nothing_and_empty_out_is_refused(tmp_path, run_cli, assert_refused, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = _run(tmp_path)
    outcome = run_cli("report", run, "--json", "--k", "1")
    assert outcome.code == 0 and json.loads(outcome.out)["runs"][0]["steps"][0]["pass@1"] == 0.25
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run_seed0"]  # no ./maxpo_report
    assert_refused(run_cli("report", run, "--out", "", "--k", "1"), "--out", code=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run_seed0"]


def test_report_on_scores_near_the_float_limit_is_finite_and_exact(tmp_path: Path, run_cli) -> None:
    big = 1e308
    runs = [_run(tmp_path, f"r_seed{i}", (big, -big, big, big)) for i in range(2)]
    outcome = run_cli("report", *runs, "--k", "1,2", "--out", tmp_path / "out", "--json")
    assert outcome.code == 0, outcome.err
    result = json.loads(outcome.out)
    step = result["runs"][0]["steps"][0]
    # a: {1e308, -1e308} -> mean 0, best of 2 = 1e308; b: {1e308, 1e308}.
    assert step["max@1"] == pytest.approx(big / 2) and step["max@2"] == pytest.approx(big)
    group = result["groups"][0]["steps"][0]
    assert group["max@2"] == pytest.approx(big) and group["max@2_se"] == 0.0
    assert "1.0000e+308" in (tmp_path / "out" / "report.md").read_text()
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == [
        "max_at_1.png", "max_at_2.png", "pass_at_1.png", "pass_at_2.png"
    ]  # fmt: skip


def test_plot_titles_are_singular_for_one_sample() -> None:
    from verl_maxpo.tools.report.main import _plot_subject
    from verl_maxpo.tools.report.metrics import Metric

    assert _plot_subject(Metric(1, "max"), 1.0) == "expected score of one sample"
    assert _plot_subject(Metric(4, "max"), 1.0) == "expected best score among 4 samples"
    assert _plot_subject(Metric(1, "pass"), 0.5) == "P(a sample scores >= 0.5)"
    assert _plot_subject(Metric(2, "pass"), 1.0) == "P(at least one of 2 samples scores >= 1)"


def _claim(run_dir: str, k: int, barrier: multiprocessing.synchronize.Barrier, codes: multiprocessing.Queue) -> None:
    from verl_maxpo.runs import folder as run_folder

    argv = ["claim", run_dir, "--adv-estimator", "maxpo", "--k", str(k), "--n", "8", "--seed", "0"]
    barrier.wait()
    codes.put((k, run_folder.main([*argv, "--config-name", "maxpo", "--val-n", "8"])))


@pytest.mark.skipif(sys.platform != "linux", reason="fork start method")
@pytest.mark.parametrize("attempt", range(3))
def test_two_simultaneous_claims_with_different_k_one_wins(tmp_path: Path, attempt: int) -> None:
    ctx = multiprocessing.get_context("fork")
    barrier, codes = ctx.Barrier(2), ctx.Queue()
    run_dir = str(tmp_path / "runs" / "arm")
    procs = [ctx.Process(target=_claim, args=(run_dir, k, barrier, codes)) for k in (2, 4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    results = dict(codes.get(timeout=5) for _ in procs)
    winners = [k for k, code in results.items() if code == 0]
    assert len(winners) == 1 and sorted(results.values()) == [0, 2]
    assert json.loads((tmp_path / "runs" / "arm" / "meta.json").read_text())["k"] == winners[0]


def test_tiny_assets_refuses_reusing_an_empty_config_and_garbage_parquet(tmp_path: Path, run_cli, assert_refused):
    from verl_maxpo.tasks.tiny.assets import FILES, MANIFEST, build_parser, options, validate_assets

    out = tmp_path / "assets"
    for name in FILES:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text("{}" if name.endswith(".json") else "garbage")
    opts = options(build_parser().parse_args(["--out", str(out)]))
    (out / MANIFEST).write_text(json.dumps({"options": opts}))
    (out / MANIFEST_NAME).write_text(json.dumps({"format": 1, "command": "tiny-assets", "files": [*FILES, MANIFEST]}))
    assert validate_assets(out) is not None
    before = _tree(out)
    assert_refused(run_cli("tiny-assets", "--out", out), "--force", code=2)
    assert _tree(out) == before


def test_strict_json_never_writes_nan_or_infinity() -> None:
    import numpy as np

    from verl_maxpo.runs.strict_json import dumps

    text = dumps({"a": [1.5, float("inf"), np.float64("nan"), np.int64(3), np.array([2.0, -np.inf])], "b": (True,)})
    assert json.loads(text) == {"a": [1.5, None, None, 3, [2.0, None]], "b": [True]}


def test_run_folder_claim_refuses_an_empty_run_dir(tmp_path: Path, run_main, monkeypatch) -> None:
    from verl_maxpo.runs import folder as run_folder

    monkeypatch.chdir(tmp_path)
    argv = ["claim", "", "--adv-estimator", "maxpo", "--k", "4", "--n", "8", "--seed", "0"]
    outcome = run_main(run_folder.main, *argv, "--config-name", "maxpo", "--val-n", "8")
    assert outcome.code == 2 and "RUN_DIR" in outcome.err and "Traceback" not in outcome.text
    assert list(tmp_path.iterdir()) == []  # the current folder was not claimed
