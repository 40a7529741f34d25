"""Bad-input corpus for `verl-maxpo prepare gsm8k|math|code` (issue 9): one line per case.

Every case starts from an output folder holding a train.parquet and a test.parquet of an earlier run, then runs
a script in-process on a small local folder made for the case. Each case asserts one class of outcome:
  - REFUSED: non-zero exit, a message naming the file (or option) at fault, no traceback, and the earlier run's
    files left byte for byte as they were;
  - ROWS: the exact rows kept per split and the exact count of skipped rows per reason; a split with no usable
    rows exits 1 and leaves no file of that split (the earlier run's file is removed, never left beside new data).
Assertion messages start with the class of a failure (TRACEBACK, WRONG, LOST, OTHER) so the corpus can be counted.
"""

from __future__ import annotations

import importlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

G = {"question": "What is 2 + 2?", "answer": "2 + 2 = 4\n#### 4"}  # a good gsm8k row
M = {"problem": "What is 1 + 2?", "solution": "It is $\\boxed{3}$."}  # a good MATH row
C = {"name": "echo", "description": "Print the input.", "public_tests": {"input": ["1\n"], "output": ["1\n"]}}
E = {  # a good Eurus code row
    "ability": "code",
    "data_source": "codecontests",
    "prompt": [{"role": "user", "content": "Print n."}],
    "reward_model": {"ground_truth": json.dumps({"inputs": ["1\n"], "outputs": ["1\n"]})},
}


def jsonl(*rows: Any) -> bytes:
    return b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in rows)


def parquet(rows: list[dict[str, Any]] | pa.Table) -> bytes:
    table = rows if isinstance(rows, pa.Table) else pa.Table.from_pylist(rows)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


DEEP = b"[" * 200_000 + b"]" * 200_000
GOOD_PARQUET = parquet([G, G])


@dataclass
class Case:
    script: str
    files: dict[str, bytes]  # the --local-dir folder
    expect: str  # "refused" or "rows"
    needles: tuple[str, ...] = ()  # REFUSED: words the message must contain
    kept: dict[str, int] = field(default_factory=dict)  # ROWS: split -> rows kept (0: no file, exit 1)
    bad: dict[str, dict[str, int]] = field(default_factory=dict)  # ROWS: split -> {reason: skipped}
    args: tuple[str, ...] = ()
    code: int | None = None


def gsm8k(train: bytes, expect: str, *needles: str, name: str = "train.jsonl", **kw: Any) -> Case:
    return Case("prepare_gsm8k.py", {name: train, "test.jsonl": jsonl(G)}, expect, needles, **kw)


def rows(train_kept: int, train_bad: dict[str, int], test_kept: int = 1, test_bad: dict[str, int] | None = None):
    return {"kept": {"train": train_kept, "test": test_kept}, "bad": {"train": train_bad, "test": test_bad or {}}}


CASES: dict[str, Case] = {
    # --- encodings and JSON structure
    "jsonl_one_line_not_utf8": gsm8k(jsonl(G, b'{"question": "caf\xe9"}', G), "rows", **rows(2, {"not_utf8": 1})),
    "jsonl_every_line_not_utf8": gsm8k(jsonl(b"\xff\xfe", b"\xc3("), "rows", **rows(0, {"not_utf8": 2})),
    "jsonl_with_byte_order_mark": gsm8k(b"\xef\xbb\xbf" + jsonl(G, G), "rows", **rows(2, {})),
    "jsonl_crlf_line_ends": gsm8k(jsonl(G, G).replace(b"\n", b"\r\n"), "rows", **rows(2, {})),
    "jsonl_invalid_line": gsm8k(jsonl(G, b"{not json", G), "rows", **rows(2, {"invalid_json": 1})),
    "jsonl_deeply_nested_line": gsm8k(jsonl(G, DEEP), "rows", **rows(1, {"invalid_json": 1})),
    "jsonl_empty_file": gsm8k(b"", "rows", **rows(0, {})),
    "jsonl_blank_lines_only": gsm8k(b"\n  \n\n", "rows", **rows(0, {})),
    "jsonl_rows_not_objects": gsm8k(jsonl(G, 5, "x", None, [G]), "rows", **rows(1, {"not_an_object": 4})),
    "json_not_utf8": gsm8k(b'[{"question": "caf\xe9"}]', "refused", "train.json", "utf-8", name="train.json"),
    "json_an_object": gsm8k(json.dumps(G).encode(), "refused", "train.json", "list", name="train.json"),
    "json_a_string": gsm8k(b'"rows"', "refused", "train.json", "list", name="train.json"),
    "json_a_number": gsm8k(b"42", "refused", "train.json", "list", name="train.json"),
    "json_truncated": gsm8k(b'[{"question": ', "refused", "train.json", "line 1", name="train.json"),
    "json_empty_file": gsm8k(b"", "refused", "train.json", "not valid json", name="train.json"),
    "json_huge_integer": gsm8k(
        b'[{"question": "q", "answer": 1' + b"0" * 5000 + b"}]", "refused", "train.json", "digits", name="train.json"
    ),
    "json_deeply_nested": gsm8k(DEEP, "refused", "train.json", "nested", name="train.json"),
    "json_with_byte_order_mark": gsm8k(
        b"\xef\xbb\xbf" + json.dumps([G]).encode(), "rows", name="train.json", **rows(1, {})
    ),
    "json_list_of_mixed_items": gsm8k(
        json.dumps([G, 1, [], G]).encode(), "rows", name="train.json", **rows(2, {"not_an_object": 2})
    ),
    # --- parquet
    "parquet_not_parquet": gsm8k(b"question,answer\nq,4\n", "refused", "train.parquet", name="train.parquet"),
    "parquet_empty_file": gsm8k(b"", "refused", "train.parquet", name="train.parquet"),
    "parquet_truncated": gsm8k(
        GOOD_PARQUET[: len(GOOD_PARQUET) // 2], "refused", "train.parquet", name="train.parquet"
    ),
    "parquet_magic_only": gsm8k(b"PAR1PAR1", "refused", "train.parquet", name="train.parquet"),
    "parquet_question_ints": gsm8k(
        parquet([{"question": 1, "answer": "#### 4"}] * 3),
        "rows",
        name="train.parquet",
        **rows(0, {"missing_question": 3}),
    ),
    "parquet_answer_lists": gsm8k(
        parquet([{"question": "q", "answer": ["#### 4"]}, {"question": "q", "answer": None}]),
        "rows",
        name="train.parquet",
        **rows(0, {"missing_answer": 2}),
    ),
    "parquet_no_answer_column": gsm8k(
        parquet([{"question": "q"}]), "rows", name="train.parquet", **rows(0, {"missing_answer": 1})
    ),
    "parquet_good_and_extra_columns": gsm8k(
        parquet([{**G, "extra": 1.5}] * 2), "rows", name="train.parquet", **rows(2, {})
    ),
    # --- wrong types inside rows
    "jsonl_wrong_field_types": gsm8k(
        jsonl(G, {**G, "question": 5}, {**G, "question": ["a"]}, {**G, "answer": 4}, {**G, "answer": {"x": 1}}),
        "rows",
        **rows(1, {"missing_question": 2, "missing_answer": 2}),
    ),
    "jsonl_nan_and_huge_numbers": gsm8k(
        jsonl(G, b'{"question": NaN, "answer": "#### 1"}', b'{"question": "q", "answer": 1' + b"0" * 5000 + b"}"),
        "rows",
        **rows(1, {"missing_question": 1, "invalid_json": 1}),
    ),
    "math_wrong_field_types": Case(
        "prepare_math.py",
        {
            "train.jsonl": jsonl(M, {**M, "problem": 3}, {**M, "solution": ["\\boxed{3}"]}, {**M, "level": {"a": 1}}),
            "test.jsonl": jsonl(M),
        },
        "rows",
        kept={"train": 2, "test": 1},
        bad={"train": {"missing_problem": 1, "missing_solution": 1}},
    ),
    "code_wrong_field_types": Case(
        "prepare_code.py",
        {
            "train.jsonl": jsonl(
                C,
                {**C, "input_file": 3},
                {**C, "public_tests": "1 -> 1"},
                {**C, "public_tests": {"input": [1], "output": [1]}},
                {**C, "description": 7},
            ),
            "test.jsonl": jsonl(C),
        },
        "rows",
        kept={"train": 1, "test": 1},
        bad={"train": {"malformed_row": 1, "malformed_tests": 2, "missing_description": 1}},
    ),
    "eurus_wrong_field_types": Case(
        "prepare_code.py",
        {
            "train.jsonl": jsonl(
                E,
                {**E, "prompt": 5},
                {**E, "prompt": "Print n."},
                {**E, "reward_model": "x"},
                {**E, "reward_model": {"ground_truth": "{"}},
                {
                    **E,
                    "reward_model": {"ground_truth": json.dumps({"inputs": [[1]], "outputs": [1], "fn_name": ["f"]})},
                },
            ),
            "validation.jsonl": jsonl(E),
        },
        "rows",
        args=("--source", "eurus"),
        kept={"train": 1, "test": 1},
        bad={"train": {"missing_prompt": 2, "malformed_tests": 3}},
    ),
    # --- folders and splits
    "split_in_two_formats": Case(
        "prepare_gsm8k.py",
        {"train.jsonl": jsonl(G), "train.parquet": GOOD_PARQUET, "test.jsonl": jsonl(G)},
        "refused",
        ("more than once", "train.jsonl"),
    ),
    "split_file_beside_shards": Case(
        "prepare_gsm8k.py",
        {"train.jsonl": jsonl(G), "train-00000-of-00001.jsonl": jsonl(G), "test.jsonl": jsonl(G)},
        "refused",
        ("more than once",),
    ),
    "test_split_missing": Case("prepare_gsm8k.py", {"train.jsonl": jsonl(G)}, "refused", ("no test.parquet",)),
    "test_split_corrupt": Case(
        "prepare_gsm8k.py", {"train.jsonl": jsonl(G), "test.parquet": b"garbage"}, "refused", ("test.parquet",)
    ),
    "train_split_empty_test_good": gsm8k(
        jsonl({**G, "answer": "no marker"}), "rows", **rows(0, {"no_final_answer": 1})
    ),
    "max_rows_zero": gsm8k(jsonl(G), "refused", "--max-rows", args=("--max-rows", "0"), code=2),
    "max_rows_not_a_number": gsm8k(jsonl(G), "refused", "--max-rows", args=("--max-rows", "ten"), code=2),
    "max_tests_zero": Case(
        "prepare_code.py",
        {"train.jsonl": jsonl(C), "test.jsonl": jsonl(C)},
        "refused",
        ("--max-tests",),
        args=("--max-tests", "0"),
        code=2,
    ),
    "max_tests_not_a_number": Case(
        "prepare_code.py",
        {"train.jsonl": jsonl(C), "test.jsonl": jsonl(C)},
        "refused",
        ("--max-tests",),
        args=("--max-tests", "1e3"),
        code=2,
    ),
    "eurus_validation_missing": Case(
        "prepare_code.py", {"train.jsonl": jsonl(E)}, "refused", ("no validation",), args=("--source", "eurus")
    ),
    "math_test_split_not_a_list": Case(
        "prepare_math.py", {"train.jsonl": jsonl(M), "test.json": b'{"rows": []}'}, "refused", ("test.json", "list")
    ),
    "unknown_source": Case(
        "prepare_code.py", {"train.jsonl": jsonl(C)}, "refused", ("--source",), args=("--source", "apps"), code=2
    ),
}
# Output folders that cannot be written: the earlier run's files must stay as they were.
OUT_DIR_CASES = {
    "out_dir_is_a_file": ("a_file", "exists and is not a folder"),
    "out_dir_under_a_file": ("a_file/sub", "is a file, not a writable folder"),
}
# --out-dir that would write over (or into) the source itself, or into the current folder by accident.
OVERLAP_CASES = {
    "out_dir_is_local_dir": ("{local}", "is --local-dir"),
    "out_dir_inside_local_dir": ("{local}/out", "is inside --local-dir"),
    "out_dir_holds_local_dir": ("{root}", "holds --local-dir"),
    "out_dir_symlink_to_local_dir": ("{root}/link", "is --local-dir"),
    "out_dir_empty": ("", "--out-dir is empty"),
}


@pytest.fixture
def prep(run_main):
    """prep("prepare_gsm8k.py", *argv) -> Outcome (tests/conftest.py) of `verl-maxpo prepare gsm8k`, in-process."""
    task = lambda script: script.removeprefix("prepare_").removesuffix(".py")  # noqa: E731
    return lambda script, *argv: run_main(importlib.import_module(f"verl_maxpo.tasks.prep.{task(script)}").main, *argv)


def earlier_run(out: Path, command: str) -> dict[str, bytes]:
    """The files an earlier run of `command` published (with the outputs manifest that marks them as its own)."""
    out.mkdir(parents=True)
    for split in ("train", "test"):
        (out / f"{split}.parquet").write_bytes(parquet([{"data_source": "EARLIER RUN", "split": split}]))
    manifest = {"format": 1, "command": command, "files": ["test.parquet", "train.parquet"]}
    (out / ".verl_maxpo_outputs.json").write_text(json.dumps(manifest))
    return snapshot(out)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def skipped(stdout: str, split: str) -> dict[str, int]:
    block = stdout.split(f"[{split}] kept ", 1)[1].split("\n[", 1)[0]
    return {
        reason: int(n)
        for reason, n in (
            line.split("malformed, ", 1)[1].split("  (")[0].split(": ")
            for line in block.splitlines()
            if "malformed, " in line
        )
    }


def assert_clean_refusal(outcome: Any, needles: tuple[str, ...], code: int | None) -> None:
    assert "Traceback" not in outcome.text, f"TRACEBACK:\n{outcome.text[-3000:]}"
    assert outcome.code != 0, f"WRONG: accepted (exit 0):\n{outcome.text[-3000:]}"
    if code is not None:
        assert outcome.code == code, f"OTHER: exit {outcome.code}, expected {code}:\n{outcome.text[-3000:]}"
    for needle in needles:
        assert needle.lower() in outcome.text.lower(), f"OTHER: message lacks {needle!r}:\n{outcome.text[-3000:]}"


@pytest.mark.parametrize("name", list(CASES))
def test_prep_bad_input(name: str, prep, tmp_path: Path) -> None:
    case = CASES[name]
    local, out = tmp_path / "local", tmp_path / "out"
    local.mkdir()
    for filename, data in case.files.items():
        (local / filename).write_bytes(data)
    before = earlier_run(out, Path(case.script).stem)
    outcome = prep(case.script, "--local-dir", str(local), "--out-dir", str(out), *case.args)
    if case.expect == "refused":
        assert_clean_refusal(outcome, case.needles, case.code)
        assert snapshot(out) == before, "LOST: the earlier run's files changed although the run was refused"
        return
    assert "Traceback" not in outcome.text, f"TRACEBACK:\n{outcome.text[-3000:]}"
    empty = [split for split, kept in case.kept.items() if kept == 0]
    assert outcome.code == (1 if empty else 0), f"WRONG: exit {outcome.code}:\n{outcome.text[-3000:]}"
    for split, kept in case.kept.items():
        path = out / f"{split}.parquet"
        if kept == 0:
            assert not path.exists(), f"WRONG: stale {path.name} from an earlier run left beside this run's files"
            assert "removed" in outcome.err and path.name in outcome.err, f"OTHER: removal not said:\n{outcome.err}"
            continue
        written = pq.read_table(path).to_pylist()
        assert len(written) == kept and all("EARLIER RUN" not in str(r) for r in written), f"WRONG: {written}"
        assert skipped(outcome.out, split) == case.bad.get(split, {}), f"WRONG: skipped rows\n{outcome.out}"


@pytest.mark.parametrize("name", list(OUT_DIR_CASES))
def test_prep_unwritable_out_dir(name: str, prep, tmp_path: Path) -> None:
    target, needle = OUT_DIR_CASES[name]
    local = tmp_path / "local"
    local.mkdir()
    (local / "train.jsonl").write_bytes(jsonl(G))
    (local / "test.jsonl").write_bytes(jsonl(G))
    (tmp_path / "a_file").write_text("keep me")
    before = snapshot(tmp_path)
    outcome = prep("prepare_gsm8k.py", "--local-dir", str(local), "--out-dir", str(tmp_path / target))
    assert_clean_refusal(outcome, ("--out-dir", needle), 2)
    assert snapshot(tmp_path) == before, "LOST: files changed although the run was refused"


@pytest.mark.parametrize("name", list(OVERLAP_CASES))
def test_prep_out_dir_overlapping_source_or_empty(name: str, prep, tmp_path: Path, monkeypatch) -> None:
    template, needle = OVERLAP_CASES[name]
    local = tmp_path / "local"
    local.mkdir()
    (local / "train.jsonl").write_bytes(jsonl(G))
    (local / "test.jsonl").write_bytes(jsonl(G))
    (tmp_path / "link").symlink_to(local)
    monkeypatch.chdir(local)  # an empty --out-dir must not mean "the current folder"
    before = snapshot(local)
    out = template.format(local=local, root=tmp_path)
    outcome = prep("prepare_gsm8k.py", "--local-dir", str(local), "--out-dir", out, "--force")
    assert_clean_refusal(outcome, (needle,), 2)
    assert snapshot(local) == before and sorted(p.name for p in tmp_path.iterdir()) == ["link", "local"]


def test_prep_empty_local_dir_is_refused_not_read_as_the_current_folder(prep, tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "train.jsonl").write_bytes(jsonl(G))  # the current folder looks like a local copy
    (tmp_path / "test.jsonl").write_bytes(jsonl(G))
    monkeypatch.chdir(tmp_path)
    outcome = prep("prepare_gsm8k.py", "--local-dir", "", "--out-dir", str(tmp_path / "out"))
    assert_clean_refusal(outcome, ("--local-dir",), 2)
    assert not (tmp_path / "out").exists()
