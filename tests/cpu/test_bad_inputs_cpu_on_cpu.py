"""Bad-input corpus for the CPU backend's entry points: `verl-maxpo tiny-assets` and `verl_maxpo.cpu.preflight`.

One line per case. Outcome classes: "refused" (non-zero exit, message naming the problem, no traceback, files left
as they were) or "ok" (exit 0, files left as they were). `{file}` is an existing file, `{foreign}` a non-empty
folder of someone else's files, `{assets}` a folder of tiny assets built with the default options.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

# (case id, argv, outcome, words the message must contain)
TINY_CASES = [
    ("no-out", [], "refused", ["--out"]),
    ("empty-out", ["--out", ""], "refused", ["--out is empty"]),
    ("out-is-file", ["--out", "{file}"], "refused", ["not a folder"]),
    ("out-under-file", ["--out", "{file}/sub"], "refused", ["not a writable folder"]),
    ("out-foreign", ["--out", "{foreign}"], "refused", ["not empty", "refusing"]),
    ("digits-zero", ["--out", "{new}", "--digits", "0"], "refused", ["--digits"]),
    ("digits-huge", ["--out", "{new}", "--digits", "40"], "refused", ["--digits"]),
    ("digits-text", ["--out", "{new}", "--digits", "two"], "refused", ["--digits"]),
    ("train-negative", ["--out", "{new}", "--train-prompts", "-1"], "refused", ["--train-prompts"]),
    ("seed-float", ["--out", "{new}", "--seed", "1.5"], "refused", ["--seed"]),
    ("test-too-many", ["--out", "{new}", "--digits", "1", "--test-prompts", "51"], "refused", ["at most 50"]),
    ("seed-2**64", ["--out", "{new}", "--seed", str(2**64)], "refused", ["--seed"]),
    ("train-prompts-1e8", ["--out", "{new}", "--train-prompts", "100000000"], "refused", ["--train-prompts"]),
    ("test-prompts-1e8", ["--out", "{new}", "--test-prompts", "100000000"], "refused", ["--test-prompts"]),
    ("warm-steps-1e9", ["--out", "{new}", "--warm-steps", "1000000000"], "refused", ["--warm-steps"]),
    ("assets-other-options", ["--out", "{assets}", "--seed", "7"], "refused", ["other options", "--force", "--out"]),
    ("assets-damaged", ["--out", "{damaged_config}"], "refused", ["damaged", "--force", "--out"]),
    ("assets-reused", ["--out", "{assets}"], "ok", ["reusing"]),
]

PREFLIGHT_CASES = [
    ("cpus-too-few", ["--num-cpus", "4"], "refused", ["num_cpus to at least 5"]),
    ("no-gpu-slot", ["--num-gpus", "0"], "refused", ["num_gpus=1"]),
    ("two-workers", ["--workers", "2"], "refused", ["num_cpus to at least 8", "num_gpus=2"]),
    ("cpus-zero", ["--num-cpus", "0"], "refused", ["--num-cpus"]),
    ("assets-missing", ["--assets", "{new}"], "refused", ["tiny-assets --out"]),
    ("assets-empty", ["--assets", ""], "refused", ["--assets is empty"]),
    ("cpus-1e9", ["--num-cpus", "1000000000"], "refused", ["--num-cpus"]),
    ("assets-foreign", ["--assets", "{foreign}"], "refused", ["holds no tiny assets"]),
    ("assets-ok", ["--assets", "{assets}"], "ok", ["ok"]),
    ("assets-empty-config", ["--assets", "{damaged_config}"], "refused", ["damaged tiny assets", "--force"]),
    ("assets-garbage-parquet", ["--assets", "{damaged_parquet}"], "refused", ["damaged tiny assets", "--force"]),
]


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from verl_maxpo.tasks.tiny.assets import main

    out = tmp_path_factory.mktemp("built") / "assets"
    assert main(["--out", str(out)]) == 0
    return out


def snapshot(root: Path) -> dict[str, str]:
    files = [p for p in root.rglob("*") if p.is_file()]
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def fill(argv: list[str], tmp_path: Path, assets: Path) -> list[str]:
    (tmp_path / "file.txt").write_text("not a folder\n")
    (tmp_path / "foreign").mkdir(exist_ok=True)
    (tmp_path / "foreign" / "notes.txt").write_text("someone else's\n")
    where = {"file": tmp_path / "file.txt", "foreign": tmp_path / "foreign", "new": tmp_path / "new", "assets": assets}
    if any("{damaged" in a for a in argv):  # copies of the good assets with one file spoiled
        for name, spoil in (("damaged_config", "model/config.json"), ("damaged_parquet", "data/train.parquet")):
            where[name] = shutil.copytree(assets, tmp_path / name)
            (where[name] / spoil).write_bytes(b"{}" if spoil.endswith(".json") else b"not a parquet file")
    return [a.format(**where) for a in argv]


def check(outcome, kind: str, words: list[str], assert_refused) -> None:
    if kind == "refused":
        assert_refused(outcome, *words)
    else:
        assert outcome.code == 0, outcome.text
        for word in words:
            assert word in outcome.text.lower()


@pytest.mark.parametrize(("argv", "kind", "words"), [c[1:] for c in TINY_CASES], ids=[c[0] for c in TINY_CASES])
def test_tiny_assets_bad_input(argv, kind, words, tmp_path, assets, run_cli, assert_refused) -> None:
    argv = fill(argv, tmp_path, assets)
    before, before_assets = snapshot(tmp_path), snapshot(assets)
    outcome = run_cli("tiny-assets", *argv)
    check(outcome, kind, words, assert_refused)
    assert snapshot(tmp_path) == before and snapshot(assets) == before_assets
    assert not (tmp_path / "new").exists()


def test_tiny_assets_force_never_writes_through_a_symlinked_subfolder(
    tmp_path, assets, run_cli, assert_refused
) -> None:
    """An earlier output's model/ replaced by a link to the user's own folder: --force must not reach through it."""
    out = shutil.copytree(assets, tmp_path / "out")
    users = shutil.copytree(assets / "model", tmp_path / "users_model")
    (users / "config.json").write_text("the user's own file\n")
    shutil.rmtree(out / "model")
    (out / "model").symlink_to(users, target_is_directory=True)
    before = snapshot(tmp_path)
    for extra in ([], ["--seed", "7"]):  # damaged (the link's config is not a model's) or other options
        outcome = run_cli("tiny-assets", "--out", str(out), "--force", *extra)
        assert_refused(outcome, "model", "symlink")
        assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    ("argv", "kind", "words"), [c[1:] for c in PREFLIGHT_CASES], ids=[c[0] for c in PREFLIGHT_CASES]
)
def test_preflight_bad_input(argv, kind, words, tmp_path, assets, capsys, assert_refused) -> None:
    from verl_maxpo.cpu.preflight import main

    argv = fill(argv, tmp_path, assets)
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    outcome = type("Outcome", (), {"code": code, "out": captured.out, "err": captured.err})()
    outcome.text = captured.out + captured.err
    check(outcome, kind, words, assert_refused)
