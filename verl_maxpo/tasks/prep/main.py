"""`verl-maxpo prepare gsm8k|math|code [options]`: a hub dataset (or a local copy) -> verl parquet.

Each task is a module of this package with its own options (`verl-maxpo prepare gsm8k --help`).
"""

from __future__ import annotations

import importlib
import sys

from verl_maxpo.runs import command

TASKS = {
    "gsm8k": "GSM8K (openai/gsm8k) for recipes/math/gsm8k.yaml",
    "math": "MATH (train) and MATH-500 (test) for recipes/math/math.yaml",
    "code": "deepmind/code_contests or Eurus-2 code problems for recipes/code/code.yaml",
}


def usage() -> str:
    lines = ["usage: verl-maxpo prepare TASK [options]", "", "tasks:"]
    lines += [f"  {name:<6} {text}" for name, text in TASKS.items()]
    return "\n".join([*lines, "", "`verl-maxpo prepare TASK --help` shows the options of a task."])


def main(argv: list[str] | None = None) -> int:
    return command.run("prepare", _main, argv)


def _main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        if not argv:
            raise command.UsageError("give a task: " + ", ".join(TASKS))
        return 0
    if argv[0] not in TASKS:
        raise command.UsageError(f"unknown task {argv[0]!r}; tasks: {', '.join(TASKS)}")
    # a missing pyarrow or tqdm (the data extra) is named by the command policy: exit 3
    module = importlib.import_module(f"verl_maxpo.tasks.prep.{argv[0]}")
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
