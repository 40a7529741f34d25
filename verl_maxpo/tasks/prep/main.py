"""`verl-maxpo prepare gsm8k|math|code [options]`: a hub dataset (or a local copy) -> verl parquet.

Each task is a module of this package with its own options (`verl-maxpo prepare gsm8k --help`).
"""

from __future__ import annotations

import importlib
import sys

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
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    if argv[0] not in TASKS:
        print(f"error: unknown task {argv[0]!r}; tasks: {', '.join(TASKS)}", file=sys.stderr)
        return 2
    try:
        module = importlib.import_module(f"verl_maxpo.tasks.prep.{argv[0]}")
    except ModuleNotFoundError as err:  # pyarrow, tqdm: the data extra
        print(f'error: verl-maxpo prepare needs {err.name!r}: pip install "verl-maxpo[data]"', file=sys.stderr)
        return 3
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
