"""Competitive-programming problems with unit tests -> verl parquet; reward = fraction of tests passed.

    verl-maxpo prepare code --out-dir ~/data/verl-maxpo/code                  # deepmind/code_contests
    verl-maxpo prepare code --source eurus --out-dir ~/data/verl-maxpo/code   # PRIME-RL/Eurus-2-RL-Data
    verl-maxpo prepare code --local-dir /path/to/copy --out-dir ...            # no network: a local copy

Sources:
  code_contests  deepmind/code_contests (stdin/stdout problems; public, private and generated tests).
                 splits train -> train.parquet, test -> test.parquet. Problems that read named files are left out.
  eurus          the code rows of PRIME-RL/Eurus-2-RL-Data (APPS, TACO, CodeContests, Codeforces), the set verl's
                 PRIME recipe trains on. splits train -> train.parquet, validation -> test.parquet. Its own
                 data_source values are kept; its PRIME-specific system prompt is dropped.

The ground truth is the JSON verl's code scorers read: {"inputs": [...], "outputs": [...]} (plus "fn_name" for
call-based problems). data_source values "codecontests", "apps", "taco" and "codeforces" route to verl's
prime_code scorer, or to SandboxFusion when reward.sandbox_fusion.url is set. Both score a program by the
fraction of the first 10 tests it passes, hence --max-tests 10: every kept test counts. (prime_code grades
call-based problems all-or-nothing: its per-test pass drops fn_name. code_contests has none of those.)

WARNING: training with these rows executes model-written programs. Use a sandbox on shared machines.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from verl_maxpo.tasks.prep.common import BadRow, NotSelected, base_parser, check_args, convert_splits, verl_row

# data_source values verl's default_compute_score sends to its code scorers (prime_code / sandbox_fusion).
CODE_DATA_SOURCES = ("codecontests", "apps", "taco", "codeforces")
SCORED_TESTS = 10
INSTRUCTION = (
    "Write a Python 3 program that reads the input from standard input and prints the answer to standard output. "
    "Give the complete program in a single ```python code block."
)
SOURCES = {
    # name: (hub id, {our split: hub split})
    "code_contests": ("deepmind/code_contests", {"train": "train", "test": "test"}),
    "eurus": ("PRIME-RL/Eurus-2-RL-Data", {"train": "train", "test": "validation"}),
}


def _string_list(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadRow("malformed_tests", f"{what} is not a list of strings")
    return value


def _paired(tests: Any, what: str, in_key: str, out_key: str) -> tuple[list[Any], list[Any]]:
    if tests is None:
        return [], []
    if not isinstance(tests, dict):
        raise BadRow("malformed_tests", f"{what} is {type(tests).__name__}, not an object")
    inputs = _string_list(tests.get(in_key), f"{what}.{in_key}")
    outputs = _string_list(tests.get(out_key), f"{what}.{out_key}")
    if len(inputs) != len(outputs):
        raise BadRow("malformed_tests", f"{what}: {len(inputs)} inputs but {len(outputs)} outputs")
    return inputs, outputs


def _stdin_text(value: Any, what: str) -> str:
    """A stdin/stdout test value; some sets store a test as a list of lines."""
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "\n".join(value)
    if not isinstance(value, str):
        raise BadRow("malformed_tests", f"a stdin test {what} is {type(value).__name__}")
    return value


def _call_based_case(args: Any, expected: Any) -> tuple[str, str]:
    """One call-based test in the form verl's prime_code parses: one JSON argument per line, a JSON result.

    APPS-style rows store the argument list and the raw return value; rows already in the line form pass through.
    """
    if isinstance(args, str):
        return args, expected if isinstance(expected, str) else json.dumps(expected)
    if isinstance(args, list):
        return "\n".join(json.dumps(a) for a in args), json.dumps(expected)
    raise BadRow("malformed_tests", f"call-based arguments are {type(args).__name__}")


def code_contests_row(row: dict[str, Any], split: str, index: int, max_tests: int) -> dict[str, Any]:
    description = row.get("description")
    if not isinstance(description, str) or not description.strip():
        raise BadRow("missing_description")
    named = [row.get(key) for key in ("input_file", "output_file")]
    if not all(v is None or isinstance(v, str) for v in named):
        raise BadRow("malformed_row", "input_file/output_file is not a string")
    if any(v and v.strip() for v in named):
        raise NotSelected("reads or writes named files, not stdin/stdout")
    inputs: list[str] = []
    outputs: list[str] = []
    # Public tests first: they match the statement's examples, the easiest partial credit.
    for key in ("public_tests", "private_tests", "generated_tests"):
        ins, outs = _paired(row.get(key), key, "input", "output")
        inputs += ins
        outputs += outs
    if not inputs:
        raise BadRow("no_tests", "public, private and generated tests are all empty")
    truth = {"inputs": inputs[:max_tests], "outputs": outputs[:max_tests]}
    extra = {
        "split": split,
        "index": index,
        "name": str(row.get("name") or ""),
        "difficulty": str(row.get("difficulty", "")),
        "num_tests": len(truth["inputs"]),
    }
    return verl_row("codecontests", f"{description.strip()}\n\n{INSTRUCTION}", "code", json.dumps(truth), extra)


def eurus_row(row: dict[str, Any], split: str, index: int, max_tests: int) -> dict[str, Any]:
    if row.get("ability") != "code":
        raise NotSelected(f"ability {row.get('ability')!r}, not code")
    source = row.get("data_source")
    if source not in CODE_DATA_SOURCES:
        raise BadRow("unscored_data_source", f"{source!r} is not routed to a code scorer by verl")
    messages = row.get("prompt")
    if not isinstance(messages, list):
        raise BadRow("missing_prompt", f"prompt is {type(messages).__name__}, not a list of messages")
    users = [m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    if not users or not isinstance(users[-1], str) or not users[-1].strip():
        raise BadRow("missing_prompt", "no user message")
    reward = row.get("reward_model")
    raw = reward.get("ground_truth") if isinstance(reward, dict) else None
    try:
        tests = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError as err:
        raise BadRow("malformed_tests", f"ground_truth is not JSON ({err.msg})") from None
    if not isinstance(tests, dict):
        raise BadRow("malformed_tests", "ground_truth is not a JSON object")
    inputs, outputs = tests.get("inputs"), tests.get("outputs")
    if not isinstance(inputs, list) or not isinstance(outputs, list) or len(inputs) != len(outputs):
        raise BadRow("malformed_tests", "inputs/outputs missing or of different lengths")
    if not inputs:
        raise BadRow("no_tests")
    fn_name = tests.get("fn_name")
    if fn_name not in (None, "") and not (isinstance(fn_name, str) and fn_name.isidentifier()):
        raise BadRow("malformed_tests", f"fn_name {str(fn_name)[:40]!r} is not a function name")
    pairs = list(zip(inputs, outputs, strict=True))[:max_tests]
    if fn_name:
        pairs = [_call_based_case(i, o) for i, o in pairs]
    else:
        pairs = [(_stdin_text(i, "input"), _stdin_text(o, "output")) for i, o in pairs]
    truth: dict[str, Any] = {"inputs": [i for i, _ in pairs], "outputs": [o for _, o in pairs]}
    if fn_name:
        truth["fn_name"] = fn_name
    extra = {"split": split, "index": index, "name": "", "difficulty": "", "num_tests": len(truth["inputs"])}
    return verl_row(source, users[-1].strip(), "code", json.dumps(truth), extra)


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0], "~/data/verl-maxpo/code", "prepare_code")
    parser.add_argument(
        "--source", choices=sorted(SOURCES), default="code_contests", help="problem set (code_contests)"
    )
    parser.add_argument(
        "--max-tests",
        type=int,
        default=SCORED_TESTS,
        help=f"keep the first N tests per problem ({SCORED_TESTS}: verl's scorers grade at most the first 10)",
    )
    args = parser.parse_args(argv)
    check_args(args, parser)
    if args.max_tests < 1:
        parser.error("--max-tests must be at least 1")
    hub_id, splits = SOURCES[args.source]
    build = code_contests_row if args.source == "code_contests" else eurus_row

    def convert(row: dict[str, Any], split: str, index: int) -> dict[str, Any]:
        return build(row, split, index, args.max_tests)

    # Streaming: code_contests ships every reference solution, gigabytes this script never needs at once.
    return convert_splits(args, [(split, hub_id, hub) for split, hub in splits.items()], convert, streaming=True)


if __name__ == "__main__":
    sys.exit(main())
