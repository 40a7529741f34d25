"""`verl-maxpo prepare gsm8k|math|code` on the committed hub-format fixtures (no network).

Checks what the scripts write (verl's parquet schema, routed data_source values, exact ground truths), that bad
rows are reported with counts instead of dropped silently, that verl's RLHFDataset loads the files with a small
local tokenizer, and that verl's default_compute_score grades the rows: full and zero reward for math, and full,
partial and zero reward for code from real programs executed by verl's prime_code scorer.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.slow  # runs the prep scripts and program scorers as subprocesses

ROOT = Path(__file__).resolve().parents[3]


def prepare(script: str) -> list[str]:
    """argv of `verl-maxpo prepare <task>` for "prepare_<task>.py" (the names the cases use)."""
    return [sys.executable, "-m", "verl_maxpo", "prepare", script.removeprefix("prepare_").removesuffix(".py")]


FIXTURES = ROOT / "tests" / "fixtures" / "data"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def run_script(script: str, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*prepare(script), *args], capture_output=True, text=True, env=ENV, timeout=timeout)


def read_rows(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist()


def report_counts(stdout: str, split: str) -> tuple[int, int, dict[str, int], int]:
    """(kept, malformed, malformed by reason, left out) parsed from a script's report for one split."""
    block = stdout.split(f"[{split}] kept ", 1)[1].split("\n[", 1)[0]
    kept, bad = map(int, re.match(r"(\d+) rows, skipped (\d+) malformed", block).groups())
    reasons = {m[0]: int(m[1]) for m in re.findall(r"malformed, (\w+): (\d+)", block)}
    left_out = sum(int(m) for m in re.findall(r"left out, .*: (\d+)", block))
    return kept, bad, reasons, left_out


def fixture_rows(path: Path) -> int:
    return sum(1 for line in path.read_text().splitlines() if line.strip())


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> dict[str, tuple[Path, str]]:
    """Output folder and stdout of each script run on its fixtures."""
    out = tmp_path_factory.mktemp("prepared")
    runs = {
        "gsm8k": ("prepare_gsm8k.py", FIXTURES / "gsm8k", []),
        "math": ("prepare_math.py", FIXTURES / "math", []),
        "code": ("prepare_code.py", FIXTURES / "code_contests", []),
        "eurus": ("prepare_code.py", FIXTURES / "eurus", ["--source", "eurus"]),
    }
    results = {}
    for name, (script, local, extra) in runs.items():
        proc = run_script(script, "--local-dir", str(local), "--out-dir", str(out / name), *extra)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "100%" in proc.stderr  # a tqdm bar per split
        results[name] = (out / name, proc.stdout)
    return results


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    spec = importlib.util.spec_from_file_location("tiny_hf", FIXTURES / "tiny_hf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    path = tmp_path_factory.mktemp("tokenizer")
    module.build_tokenizer(path)
    from verl.utils import hf_tokenizer

    return hf_tokenizer(str(path))


def test_gsm8k_rows(prepared):
    out, stdout = prepared["gsm8k"]
    train = read_rows(out / "train.parquet")
    assert [r["reward_model"]["ground_truth"] for r in train] == ["16", "1234", "10"]  # "1,234" loses its comma
    row = train[0]
    assert row["data_source"] == "openai/gsm8k" and row["ability"] == "math"
    assert row["reward_model"]["style"] == "rule"
    assert [m["role"] for m in row["prompt"]] == ["user"] and "####" in row["prompt"][0]["content"]
    assert row["prompt"][0]["content"].startswith("Tom has 3 boxes")
    assert row["extra_info"]["split"] == "train" and [r["extra_info"]["index"] for r in train] == [0, 1, 5]
    assert all("SOCRATIC" not in r["prompt"][0]["content"] for r in train)  # main/ only, not socratic/
    assert report_counts(stdout, "train") == (
        3,
        4,
        {"invalid_json": 1, "missing_question": 1, "no_final_answer": 1, "non_numeric_answer": 1},
        0,
    )
    assert report_counts(stdout, "test") == (1, 1, {"missing_answer": 1}, 0)
    assert [r["reward_model"]["ground_truth"] for r in read_rows(out / "test.parquet")] == ["13"]


def test_math_rows(prepared):
    out, stdout = prepared["math"]
    train = read_rows(out / "train.parquet")
    assert [r["reward_model"]["ground_truth"] for r in train] == ["\\frac{1}{2}", "4", "6"]  # nested braces kept
    assert {r["data_source"] for r in train} == {"DigitalLearningGmbH/MATH-lighteval"}
    assert "\\boxed{}" in train[0]["prompt"][0]["content"]
    assert train[2]["extra_info"]["subject"] == "Number Theory"
    test = read_rows(out / "test.parquet")
    assert [r["reward_model"]["ground_truth"] for r in test] == ["12", "5\\sqrt{2}"]
    assert {r["data_source"] for r in test} == {"HuggingFaceH4/MATH-500"}
    assert report_counts(stdout, "train") == (3, 3, {"missing_problem": 1, "no_boxed_answer": 2}, 0)
    assert report_counts(stdout, "test") == (2, 1, {"no_boxed_answer": 1}, 0)


def test_code_contests_rows(prepared):
    out, stdout = prepared["code"]
    train = read_rows(out / "train.parquet")
    assert [r["extra_info"]["name"] for r in train] == ["fixture_a_plus_b", "fixture_maximum"]
    row = train[0]
    assert row["data_source"] == "codecontests" and row["ability"] == "code"
    truth = json.loads(row["reward_model"]["ground_truth"])
    # public, then private, then generated tests
    assert truth == {"inputs": ["1 2\n", "3 4\n", "10 -3\n", "0 0\n"], "outputs": ["3\n", "7\n", "7\n", "0\n"]}
    assert row["extra_info"]["num_tests"] == 4 and "```python" in row["prompt"][0]["content"]
    assert report_counts(stdout, "train") == (
        2,
        3,
        {"malformed_tests": 1, "missing_description": 1, "no_tests": 1},
        1,  # the named-file problem
    )


def test_max_tests_caps_the_ground_truth(tmp_path):
    proc = run_script(
        "prepare_code.py",
        "--local-dir",
        str(FIXTURES / "code_contests"),
        "--out-dir",
        str(tmp_path),
        "--max-tests",
        "2",
    )
    assert proc.returncode == 0, proc.stderr
    truth = json.loads(read_rows(tmp_path / "train.parquet")[0]["reward_model"]["ground_truth"])
    assert truth == {"inputs": ["1 2\n", "3 4\n"], "outputs": ["3\n", "7\n"]}


def test_eurus_rows(prepared):
    out, stdout = prepared["eurus"]
    (row,) = read_rows(out / "train.parquet")
    assert row["data_source"] == "codecontests"
    assert [m["role"] for m in row["prompt"]] == ["user"]  # PRIME's system prompt dropped
    assert row["prompt"][0]["content"].startswith("Read an integer n")
    assert report_counts(stdout, "train") == (1, 2, {"malformed_tests": 1, "unscored_data_source": 1}, 1)
    (call,) = read_rows(out / "test.parquet")
    truth = json.loads(call["reward_model"]["ground_truth"])
    # APPS-style argument lists become the line-per-argument JSON that verl's prime_code parses.
    assert truth == {"inputs": ["1\n2", "5\n7", "-3\n3"], "outputs": ["[3]", "[12]", "[0]"], "fn_name": "add"}


@pytest.mark.parametrize(
    ("name", "fixture"),
    [
        ("gsm8k", "gsm8k/main/train-00000-of-00001.jsonl"),
        ("math", "math/train.jsonl"),
        ("code", "code_contests/train.jsonl"),
    ],
)
def test_no_row_disappears_silently(prepared, name, fixture):
    out, stdout = prepared[name]
    kept, bad, reasons, left_out = report_counts(stdout, "train")
    assert kept + bad + left_out == fixture_rows(FIXTURES / fixture)
    assert sum(reasons.values()) == bad and kept == len(read_rows(out / "train.parquet"))


@pytest.mark.parametrize("name", ["gsm8k", "math", "code", "eurus"])
def test_rlhf_dataset_loads_the_parquet(prepared, tokenizer, name):
    from omegaconf import OmegaConf
    from verl.utils.dataset.rl_dataset import RLHFDataset

    out, _ = prepared[name]
    config = OmegaConf.create(
        {"prompt_key": "prompt", "max_prompt_length": 1024, "filter_overlong_prompts": True,
         "filter_overlong_prompts_workers": 1, "truncation": "error", "return_raw_chat": True}
    )  # fmt: skip
    for split in ("train", "test"):
        rows = read_rows(out / f"{split}.parquet")
        dataset = RLHFDataset([str(out / f"{split}.parquet")], tokenizer, config)
        assert len(dataset) == len(rows)
        item = dataset[0]
        assert item["raw_prompt"] == rows[0]["prompt"]
        assert item["data_source"] == rows[0]["data_source"]
        assert item["reward_model"]["ground_truth"] == rows[0]["reward_model"]["ground_truth"]
        assert item["index"] == rows[0]["extra_info"]["index"]


def test_math_rows_score_full_and_zero_with_verls_scorer(prepared):
    from verl.utils.reward_score import default_compute_score

    gsm8k = read_rows(prepared["gsm8k"][0] / "train.parquet")
    math = read_rows(prepared["math"][0] / "train.parquet") + read_rows(prepared["math"][0] / "test.parquet")
    for row in gsm8k:
        truth = row["reward_model"]["ground_truth"]
        assert default_compute_score(row["data_source"], f"Some work.\n#### {truth}", truth) == 1.0
        assert default_compute_score(row["data_source"], f"Some work.\n#### {int(truth) + 1}", truth) == 0.0
        assert default_compute_score(row["data_source"], f"The answer is {truth}.", truth) == 0.0  # no "####"
    for row in math:
        truth = row["reward_model"]["ground_truth"]
        assert default_compute_score(row["data_source"], f"So the answer is $\\boxed{{{truth}}}$.", truth) == 1.0
        assert default_compute_score(row["data_source"], "So the answer is $\\boxed{7919}$.", truth) == 0.0


# Programs for the A+B row (4 tests) and the call-based add row (3 tests), scored in a separate interpreter with
# a hard timeout: the scorer forks, and a hang must fail the test instead of stalling CI.
SCORE_DRIVER = textwrap.dedent(
    """
    import json, sys
    from verl.utils.reward_score import default_compute_score
    cases = json.loads(sys.stdin.read())
    print(json.dumps([default_compute_score(c["source"], c["response"], c["truth"]) for c in cases]))
    """
)
PROGRAMS = {
    "correct": "a, b = map(int, input().split())\nprint(a + b)",
    "partial": "a, b = map(int, input().split())\nprint(abs(a) + abs(b))",  # wrong only for "10 -3"
    "wrong": "print(42)",
    "crash": "raise ValueError('no')",
}


def test_code_rows_score_full_partial_and_zero_by_running_programs(prepared):
    code_row = read_rows(prepared["code"][0] / "train.parquet")[0]
    call_row = read_rows(prepared["eurus"][0] / "test.parquet")[0]
    cases = [
        {
            "source": code_row["data_source"],
            "response": f"Here is my solution.\n```python\n{program}\n```\n",
            "truth": code_row["reward_model"]["ground_truth"],
        }
        for program in PROGRAMS.values()
    ]
    cases += [
        {
            "source": call_row["data_source"],
            "response": f"```python\n{program}\n```",
            "truth": call_row["reward_model"]["ground_truth"],
        }
        for program in ("def add(a, b):\n    return a + b", "def add(a, b):\n    return a - b")
    ]
    proc = subprocess.run(
        [sys.executable, "-c", SCORE_DRIVER],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        env=ENV,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    scores = json.loads(proc.stdout.strip().splitlines()[-1])
    assert scores == [1.0, 0.75, 0.0, 0.0, 1.0, 0.0]


def test_max_rows_stops_early_and_says_so(tmp_path):
    proc = run_script(
        "prepare_gsm8k.py", "--local-dir", str(FIXTURES / "gsm8k"), "--out-dir", str(tmp_path), "--max-rows", "1"
    )
    assert proc.returncode == 0, proc.stderr
    assert [r["reward_model"]["ground_truth"] for r in read_rows(tmp_path / "train.parquet")] == ["16"]
    assert "stopped at --max-rows 1" in proc.stdout


@pytest.mark.parametrize("script", ["prepare_gsm8k.py", "prepare_math.py", "prepare_code.py"])
def test_without_network_the_hub_path_points_to_local_dir(tmp_path, script):
    env = {**ENV, "HF_HOME": str(tmp_path / "hf"), "HF_DATASETS_CACHE": str(tmp_path / "hf" / "datasets")}
    proc = subprocess.run(
        [*prepare(script), "--out-dir", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "from the Hugging Face hub" in proc.stderr and "pass --local-dir" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_missing_local_dir_is_a_usage_error(tmp_path):
    proc = run_script("prepare_gsm8k.py", "--local-dir", str(tmp_path / "nope"), "--out-dir", str(tmp_path))
    assert proc.returncode == 2 and "is not a directory" in proc.stderr


def test_local_dir_without_the_split_names_what_it_searched(tmp_path):
    local = tmp_path / "local"
    local.mkdir()
    (local / "notes.txt").write_text("not data")
    proc = run_script("prepare_math.py", "--local-dir", str(local), "--out-dir", str(tmp_path / "out"))
    assert proc.returncode != 0 and "no train.parquet/.jsonl/.json" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_a_split_with_no_usable_rows_fails_and_writes_nothing(tmp_path):
    local = tmp_path / "local"
    local.mkdir()
    (local / "train.jsonl").write_text(json.dumps({"question": "q?", "answer": "no marker"}) + "\n")
    (local / "test.jsonl").write_text(json.dumps({"question": "q?", "answer": "#### 4"}) + "\n")
    proc = run_script("prepare_gsm8k.py", "--local-dir", str(local), "--out-dir", str(tmp_path / "out"))
    assert proc.returncode == 1 and "no usable train rows" in proc.stderr
    assert not (tmp_path / "out" / "train.parquet").exists()
    assert read_rows(tmp_path / "out" / "test.parquet")[0]["reward_model"]["ground_truth"] == "4"
