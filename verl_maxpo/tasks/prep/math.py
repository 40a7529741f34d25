"""MATH (competition math) -> verl parquet, scored by verl's Hendrycks-MATH scorer.

    verl-maxpo prepare math --out-dir ~/data/verl-maxpo/math
    verl-maxpo prepare math --local-dir /path/to/math --out-dir ...   # no network: a local copy

train: DigitalLearningGmbH/MATH-lighteval (the 7.5k MATH training problems; rows {"problem", "solution", "level",
"type"}). test: HuggingFaceH4/MATH-500 by default (rows add "answer", "subject", "unique_id"), or the full 5k
MATH test set with --test-set full. The ground truth is the "answer" field when present, else the last \\boxed{}
of the reference solution. Both data_source values route to verl.utils.reward_score.math_reward, which compares
the last \\boxed{} of a response with the ground truth after normalization.

--local-dir expects train*/test* files in either row format (e.g. both hub repos downloaded into one folder).
"""

from __future__ import annotations

import sys
from typing import Any

from verl_maxpo.tasks.prep.common import BadRow, base_parser, check_args, convert_splits, text_field, verl_row

TRAIN_HUB_ID = "DigitalLearningGmbH/MATH-lighteval"
TEST_HUB_IDS = {"math500": "HuggingFaceH4/MATH-500", "full": "DigitalLearningGmbH/MATH-lighteval"}
INSTRUCTION = "Reason step by step and put the final answer in \\boxed{}."


def last_boxed(solution: str) -> str | None:
    """Content of the last \\boxed{...} (or \\fbox{...}) with balanced braces, or None."""
    start = max(solution.rfind("\\boxed"), solution.rfind("\\fbox"))
    if start < 0:
        return None
    rest = solution[start:]
    if rest.startswith("\\boxed "):  # the brace-less form, "\boxed 5"
        return rest[len("\\boxed ") :].split("$")[0].strip() or None
    open_at = rest.find("{")
    if open_at < 0:
        return None
    depth = 0
    for pos in range(open_at, len(rest)):
        if rest[pos] == "{":
            depth += 1
        elif rest[pos] == "}":
            depth -= 1
            if depth == 0:
                return rest[open_at + 1 : pos].strip() or None
    return None


def convert(row: dict[str, Any], split: str, index: int) -> dict[str, Any]:
    problem = text_field(row, "problem")
    answer = row.get("answer")
    if not (isinstance(answer, str) and answer.strip()):
        answer = last_boxed(text_field(row, "solution"))
        if answer is None:
            raise BadRow("no_boxed_answer", "no answer field and no complete \\boxed{} in the solution")
    # MATH-500 rows carry a unique_id; both sources route to the same scorer.
    data_source = "HuggingFaceH4/MATH-500" if "unique_id" in row else TRAIN_HUB_ID
    extra = {
        "split": split,
        "index": index,
        "level": str(row.get("level", "")),
        "subject": str(row.get("subject") or row.get("type") or ""),
    }
    return verl_row(data_source, f"{problem}\n\n{INSTRUCTION}", "math", answer.strip(), extra)


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0], "~/data/verl-maxpo/math", "prepare_math")
    parser.add_argument(
        "--test-set",
        choices=sorted(TEST_HUB_IDS),
        default="math500",
        help="validation problems: MATH-500 (default; 500 problems keeps n samples per prompt affordable) or full",
    )
    args = parser.parse_args(argv)
    check_args(args, parser)
    splits = [("train", TRAIN_HUB_ID, "train"), ("test", TEST_HUB_IDS[args.test_set], "test")]
    return convert_splits(args, splits, convert)


if __name__ == "__main__":
    sys.exit(main())
