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

# (case id, argv, exit status, what the message must name: an option, a file, a value; 0: accepted)
TINY_CASES = [
    ("no-out", [], 2, ["--out"]),
    ("empty-out", ["--out", ""], 2, ["--out"]),
    ("out-is-file", ["--out", "{file}"], 2, ["--out", "file.txt"]),
    ("out-under-file", ["--out", "{file}/sub"], 2, ["--out", "file.txt"]),
    ("out-foreign", ["--out", "{foreign}"], 2, ["notes.txt", "--force"]),
    ("digits-zero", ["--out", "{new}", "--digits", "0"], 2, ["--digits"]),
    ("digits-huge", ["--out", "{new}", "--digits", "40"], 2, ["--digits"]),
    ("digits-text", ["--out", "{new}", "--digits", "two"], 2, ["--digits", "two"]),
    ("train-negative", ["--out", "{new}", "--train-prompts", "-1"], 2, ["--train-prompts"]),
    ("seed-float", ["--out", "{new}", "--seed", "1.5"], 2, ["--seed", "1.5"]),
    ("test-too-many", ["--out", "{new}", "--digits", "1", "--test-prompts", "51"], 2, ["--test-prompts", "50"]),
    ("seed-2**64", ["--out", "{new}", "--seed", str(2**64)], 2, ["--seed"]),
    ("train-prompts-1e8", ["--out", "{new}", "--train-prompts", "100000000"], 2, ["--train-prompts"]),
    ("test-prompts-1e8", ["--out", "{new}", "--test-prompts", "100000000"], 2, ["--test-prompts"]),
    ("warm-steps-1e9", ["--out", "{new}", "--warm-steps", "1000000000"], 2, ["--warm-steps"]),
    ("assets-other-options", ["--out", "{assets}", "--seed", "7"], 2, ["--force", "--out"]),
    ("assets-damaged", ["--out", "{damaged_config}"], 2, ["config.json", "--force", "--out"]),
    ("assets-reused", ["--out", "{assets}"], 0, []),
]

# preflight: 2 for a bad option, 1 for a problem found on this machine or in the assets
PREFLIGHT_CASES = [
    ("cpus-too-few", ["--num-cpus", "4"], 1, ["num_cpus", "5"]),
    ("no-gpu-slot", ["--num-gpus", "0"], 1, ["num_gpus"]),
    ("two-workers", ["--workers", "2"], 1, ["num_cpus", "8", "num_gpus"]),
    ("cpus-zero", ["--num-cpus", "0"], 2, ["--num-cpus"]),
    ("assets-missing", ["--assets", "{new}"], 1, ["tiny-assets", "--out"]),
    ("assets-empty", ["--assets", ""], 1, ["--assets"]),
    ("cpus-1e9", ["--num-cpus", "1000000000"], 2, ["--num-cpus"]),
    ("assets-foreign", ["--assets", "{foreign}"], 1, ["foreign", "tiny-assets"]),
    ("assets-ok", ["--assets", "{assets}"], 0, []),
    ("assets-empty-config", ["--assets", "{damaged_config}"], 1, ["config.json", "--force"]),
    ("assets-garbage-parquet", ["--assets", "{damaged_parquet}"], 1, ["train.parquet", "--force"]),
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


def needs_assets(argv: list[str]) -> bool:
    return any("{assets}" in a or "{damaged" in a for a in argv)


def params(cases: list) -> list:
    """Cases on built assets wait for the module's asset build (seconds): the slow tier."""
    return [pytest.param(*c[1:], id=c[0], marks=[pytest.mark.slow] if needs_assets(c[1]) else []) for c in cases]


def fill(argv: list[str], tmp_path: Path, request: pytest.FixtureRequest) -> list[str]:
    assets = request.getfixturevalue("assets") if needs_assets(argv) else tmp_path / "unused"
    (tmp_path / "file.txt").write_text("not a folder\n")
    (tmp_path / "foreign").mkdir(exist_ok=True)
    (tmp_path / "foreign" / "notes.txt").write_text("someone else's\n")
    where = {"file": tmp_path / "file.txt", "foreign": tmp_path / "foreign", "new": tmp_path / "new", "assets": assets}
    if any("{damaged" in a for a in argv):  # copies of the good assets with one file spoiled
        for name, spoil in (("damaged_config", "model/config.json"), ("damaged_parquet", "data/train.parquet")):
            where[name] = shutil.copytree(assets, tmp_path / name)
            (where[name] / spoil).write_bytes(b"{}" if spoil.endswith(".json") else b"not a parquet file")
    return [a.format(**where) for a in argv]


def check(outcome, code: int, names: list[str], assert_refused) -> None:
    if code:
        assert_refused(outcome, *names, code=code)
    else:
        assert outcome.code == 0 and "Traceback" not in outcome.text, outcome.text


@pytest.mark.parametrize(("argv", "code", "names"), params(TINY_CASES))
def test_tiny_assets_bad_input(argv, code, names, tmp_path, request, run_cli, assert_refused) -> None:
    built = needs_assets(argv)
    argv = fill(argv, tmp_path, request)
    before = snapshot(tmp_path)
    before_assets = snapshot(request.getfixturevalue("assets")) if built else None
    outcome = run_cli("tiny-assets", *argv)
    check(outcome, code, names, assert_refused)
    assert snapshot(tmp_path) == before
    assert not built or snapshot(request.getfixturevalue("assets")) == before_assets
    assert not (tmp_path / "new").exists()


@pytest.mark.slow  # on built assets
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
        assert_refused(outcome, "model", code=2)
        assert snapshot(tmp_path) == before


@pytest.mark.parametrize(("argv", "code", "names"), params(PREFLIGHT_CASES))
def test_preflight_bad_input(argv, code, names, tmp_path, request, run_main, assert_refused) -> None:
    from verl_maxpo.cpu.preflight import main

    argv = fill(argv, tmp_path, request)
    before = snapshot(tmp_path)
    check(run_main(main, *argv), code, names, assert_refused)
    assert snapshot(tmp_path) == before
