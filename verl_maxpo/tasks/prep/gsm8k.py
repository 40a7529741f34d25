"""GSM8K (openai/gsm8k, subset "main") -> verl parquet, scored by verl's gsm8k scorer.

    verl-maxpo prepare gsm8k --out-dir ~/data/verl-maxpo/gsm8k
    verl-maxpo prepare gsm8k --local-dir /path/to/gsm8k --out-dir ...   # no network: a local copy

The hub rows are {"question", "answer"}, the answer ending in "#### <number>". The ground truth is that number
without thousands separators, which is exactly what verl's strict gsm8k scorer extracts from a response; the
prompt asks for the same "#### <number>" ending. data_source "openai/gsm8k" routes rows to that scorer.
"""

from __future__ import annotations

import re
import sys
from typing import Any

from verl_maxpo.tasks.prep.common import BadRow, base_parser, check_args, convert_splits, text_field, verl_row

HUB_ID = "openai/gsm8k"
SUBSET = "main"
DATA_SOURCE = "openai/gsm8k"
INSTRUCTION = 'Think step by step, then write the final answer as a number on the last line, in the form "#### 42".'
# What verl's strict gsm8k extraction can return once commas are stripped.
_NUMBER = re.compile(r"-?[0-9.]*[0-9][0-9.]*")


def final_answer(solution: str) -> str:
    """The number after the last '####' of a GSM8K reference solution, commas removed."""
    if "####" not in solution:
        raise BadRow("no_final_answer", "answer has no '####' line")
    answer = solution.rsplit("####", 1)[1].strip().replace(",", "").replace("$", "")
    if not _NUMBER.fullmatch(answer):
        raise BadRow("non_numeric_answer", f"final answer {answer[:40]!r}")
    return answer


def convert(row: dict[str, Any], split: str, index: int) -> dict[str, Any]:
    question = text_field(row, "question")
    solution = text_field(row, "answer")
    return verl_row(
        DATA_SOURCE,
        f"{question}\n\n{INSTRUCTION}",
        "math",
        final_answer(solution),
        {"split": split, "index": index, "question": question, "answer": solution},
    )


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0], "~/data/verl-maxpo/gsm8k", "prepare_gsm8k")
    args = parser.parse_args(argv)
    check_args(args, parser)
    return convert_splits(args, [(split, HUB_ID, split) for split in ("train", "test")], convert, subset=SUBSET)


if __name__ == "__main__":
    sys.exit(main())
