"""The output-folder policy (`verl_maxpo.outputs`): staged write, atomic publish, manifest, force, lock, signals."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sys
from pathlib import Path

import pytest

from verl_maxpo.outputs import MANIFEST_NAME, Interrupted, OutputError, check_separate, owned_files, publish


def _write(stage: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (stage / name).parent.mkdir(parents=True, exist_ok=True)
        (stage / name).write_text(text)


def _publish(out: Path | str, files: dict[str, str], command: str = "report", force: bool = False) -> Path:
    with publish(out, command, force) as o:
        _write(o.stage, files)
    return o.target


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
    _publish(out, {"report.md": "2", "pass_at_2.png": "2"})
    tree = _tree(out)
    del tree[MANIFEST_NAME]
    assert tree == {"report.md": "2", "pass_at_2.png": "2", "notes.md": "mine"}  # sub/ (emptied) pruned too
    assert not (out / "sub").exists()


def test_foreign_folder_refused_and_force_never_touches_user_files(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.md").write_text("my own report")
    (out / "keep.png").write_text("mine")
    with pytest.raises(OutputError, match="not empty and was not written by report"):
        _publish(out, {"a.png": "x"})
    with pytest.raises(OutputError, match="would overwrite report.md"):
        _publish(out, {"report.md": "new"}, force=True)
    assert _tree(out) == {"report.md": "my own report", "keep.png": "mine"}  # refused before anything moved
    _publish(out, {"a.png": "x"}, force=True)
    _publish(out, {"b.png": "y"})  # now a folder of ours: no --force needed, a.png goes, the user's files stay
    assert sorted(_tree(out)) == [MANIFEST_NAME, "b.png", "keep.png", "report.md"]
    assert (out / "report.md").read_text() == "my own report"


def test_two_commands_never_share_a_folder(tmp_path: Path) -> None:
    out = _publish(tmp_path / "out", {"report.md": "r"})
    for force in (False, True):
        with pytest.raises(OutputError, match="holds the outputs of `verl-maxpo report`"):
            _publish(out, {"variance.json": "v"}, command="variance", force=force)
    assert sorted(_tree(out)) == [MANIFEST_NAME, "report.md"]


def test_current_folder_is_written_into_never_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data.csv").write_text("mine")
    with pytest.raises(OutputError, match="not empty"):
        _publish(".", {"report.md": "r"})
    _publish(".", {"report.md": "r"}, force=True)
    assert Path.cwd() == tmp_path and sorted(_tree(tmp_path)) == [MANIFEST_NAME, "data.csv", "report.md"]


@pytest.mark.parametrize("bad", ["", "  "])
def test_empty_out_is_refused(bad: str) -> None:
    with pytest.raises(OutputError, match="--out is empty"):
        _publish(bad, {"a": "b"})


def test_file_target_file_parent_and_unwritable_place(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="exists and is not a folder"):
        _publish(tmp_path / "f", {"a": "b"})
    with pytest.raises(OutputError, match=r"f is not a folder"):
        _publish(tmp_path / "f" / "sub", {"a": "b"})
    if os.geteuid() != 0:
        locked = tmp_path / "ro"
        locked.mkdir(mode=0o500)
        with pytest.raises(OutputError, match="is not writable"):
            _publish(locked / "out", {"a": "b"})
    assert (tmp_path / "f").read_text() == "x"


def test_error_in_the_body_leaves_target_and_parent_as_they_were(tmp_path: Path) -> None:
    out = _publish(tmp_path / "out", {"report.md": "1"})
    before = _tree(out)
    with pytest.raises(RuntimeError), publish(out, "report") as o:
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
    assert [p.exitcode for p in procs] == [0, 0]
    tree = _tree(tmp_path / "out")
    winner = tree.pop("report.md")
    files = json.loads(tree.pop(MANIFEST_NAME))["files"]
    assert set(tree.values()) == {winner} and len(tree) == 20  # one writer's files only, the other's all removed
    assert files == sorted([*tree, "report.md"])


def test_check_separate_catches_same_inside_holds_and_symlinks(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (tmp_path / "link").symlink_to(src)
    for out, relation in [(src, "is"), (src / "out", "is inside"), (tmp_path, "holds"), (tmp_path / "link", "is")]:
        with pytest.raises(OutputError, match=f"{relation} --local-dir"):
            check_separate(src, out, "--local-dir", "--out-dir")
    check_separate(src, tmp_path / "other", "--local-dir", "--out-dir")  # siblings are fine
