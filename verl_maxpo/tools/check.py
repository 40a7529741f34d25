"""`verl-maxpo check`: does a fresh Python process that only runs `import verl` find every estimator of ours,
and does the installed verl still have every name verl-maxpo touches?

verl loads `verl.plugins` entry points inside `import verl` and logs failures only at DEBUG level, so a
broken install looks like "Unknown advantage estimator simply: maxpo" deep inside a Ray actor. This command
reproduces what such a process sees and, when the names are missing, says why. It then prints the status of every
touch point of
`verl_maxpo.integration.compat.TOUCH_POINTS` (read from verl's source files, no import), for the installed verl
or, with --verl-source, for any verl source tree (an unpacked sdist or a git checkout).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from verl_maxpo.core.table import ESTIMATORS
from verl_maxpo.integration import compat
from verl_maxpo.runs import command

# Runs in a fresh interpreter: exactly what verl's TaskRunner and workers do at start-up.
# Errors are reported as "Type: message (at file:line)", the last frame only: a message, not a traceback.
_PROBE = r"""
import json, os, traceback
out = {"python": __import__("sys").executable}
def short(err):
    frames = traceback.extract_tb(err.__traceback__)
    where = f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return "".join(traceback.format_exception_only(type(err), err)).strip() + where
try:
    import verl
    from verl.trainer.ppo import core_algos
    out["verl_version"] = getattr(verl, "__version__", "?")
    out["registered"] = sorted(n for n in @@WANTED@@ if n in core_algos.ADV_ESTIMATOR_REGISTRY)
except Exception as err:
    out["verl_error"] = short(err)
try:
    from importlib.metadata import entry_points
    out["entry_points"] = sorted(f"{ep.name} = {ep.value}" for ep in entry_points(group="verl.plugins"))
except Exception as err:
    out["entry_points_error"] = short(err)
try:
    import verl_maxpo.plugin  # noqa: F401  (surfaces the error verl swallowed)
    import verl_maxpo.integration.adapter  # noqa: F401  (what the plugin's hook imports once core_algos is imported)
except Exception as err:
    out["plugin_error"] = short(err)
out["VERL_USE_EXTERNAL_PLUGINS"] = os.environ.get("VERL_USE_EXTERNAL_PLUGINS")
out["VERL_USE_EXTERNAL_MODULES"] = os.environ.get("VERL_USE_EXTERNAL_MODULES")
print("@@PROBE@@" + json.dumps(out))
"""

WANTED = list(ESTIMATORS)  # every estimator in the table
_PROBE = _PROBE.replace("@@WANTED@@", repr(tuple(WANTED)))


def probe(python: str = sys.executable, env: dict[str, str] | None = None, timeout: float = 300) -> dict:
    """Run the probe in a fresh interpreter and return what it found ({"probe_error": message} when it cannot run)."""
    try:
        proc = subprocess.run(
            [python, "-c", _PROBE],
            capture_output=True,
            text=True,
            env=env or dict(os.environ),
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return {"probe_error": f"{python} did not finish `import verl` within {timeout:g} s"}
    except OSError as err:
        return {"probe_error": f"cannot run --python {python}: {err.strerror or err}"}
    for line in proc.stdout.splitlines():
        if line.startswith("@@PROBE@@"):
            try:
                return json.loads(line[len("@@PROBE@@") :])
            except ValueError:
                break
    # The last non-blank stderr line is the error itself; the full traceback helps nobody here.
    last = next((ln.strip() for ln in reversed(proc.stderr.splitlines()) if ln.strip()), "no output")
    return {"probe_error": f"{python} exited with code {proc.returncode} before reporting: {last}"}


def diagnose(found: dict) -> list[str]:
    """Human-readable reasons why the estimators are missing (empty when all is well)."""
    if "probe_error" in found:
        return [found["probe_error"]]
    if "verl_error" in found:
        return [f"`import verl` itself fails: {found['verl_error']}"]
    missing = [n for n in WANTED if n not in found.get("registered", [])]
    if not missing:
        return []
    reasons = [f"not registered after `import verl`: {', '.join(missing)}"]
    policy = (found.get("VERL_USE_EXTERNAL_PLUGINS") or "auto").strip().lower()
    if policy == "none":
        reasons.append("VERL_USE_EXTERNAL_PLUGINS=none disables plugin discovery: unset it")
    elif policy != "auto" and "maxpo" not in {p.strip() for p in policy.split(",")}:
        reasons.append(f"VERL_USE_EXTERNAL_PLUGINS={policy!r} does not list `maxpo`: add it or unset the variable")
    if not any(ep.startswith("maxpo =") for ep in found.get("entry_points", [])):
        reasons.append(
            "no `maxpo` entry point in group verl.plugins: verl-maxpo is not installed in this interpreter "
            "(run `pip install -e .` from the repo, with the same python)"
        )
    if "plugin_error" in found:
        reasons.append(f"importing verl_maxpo.plugin raises (verl hid this at DEBUG level): {found['plugin_error']}")
    reasons.append(
        "fallback without entry points: export VERL_USE_EXTERNAL_MODULES=verl_maxpo.plugin "
        "(verl imports it in every process that imports verl)"
    )
    return reasons


def print_touch_points(rows: list[dict], where: str) -> None:
    """One line per touch point: status, key, module and names, when it applies, what we do."""
    print(f"verl touch points ({where}):")
    for row in rows:
        mark = "ok     " if row["ok"] else "MISSING"
        names = ", ".join(row["names"])
        print(f"  {mark} {row['key']:<22} {row['module']}: {names} [{row['when']}] - {row['action']}")
        if not row["ok"]:
            print(f"          {row['detail']}")


def _touch_point_reason(rows: list[dict]) -> list[str]:
    bad = [row["key"] for row in rows if not row["ok"]]
    if not bad:
        return []
    return [f"verl touch points missing: {', '.join(bad)} (their hooks are skipped with a warning; verl runs as is)"]


def main(argv: list[str] | None = None) -> int:
    """Entry point of `verl-maxpo check` (runs/command.py owns the exit status)."""
    return command.run("check", _main, argv)


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="verl-maxpo check", description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable, help="interpreter to probe (default: this one)")
    parser.add_argument("--json", action="store_true", help="print the raw probe result as JSON")
    parser.add_argument(
        "--verl-source",
        type=Path,
        default=None,
        help="check the touch points against this verl source tree (the folder holding the verl package) only",
    )
    args = parser.parse_args(argv)
    if not args.python.strip():
        parser.error("--python is empty; give an interpreter (default: this one)")

    if args.verl_source is not None:
        root = args.verl_source.resolve()
        if compat.module_file(root, "verl") is None:
            parser.error(f"--verl-source {args.verl_source}: no verl package there (expected {root}/verl/__init__.py)")
        rows = compat.report(root)
        if args.json:
            print(json.dumps({"ok": all(r["ok"] for r in rows), "touch_points": rows}, indent=2))
        else:
            print_touch_points(rows, str(root))
        return 0 if all(r["ok"] for r in rows) else 1

    found = probe(args.python)
    rows = compat.report()
    reasons = diagnose(found) + _touch_point_reason(rows)
    if args.json:
        print(json.dumps({"ok": not reasons, "found": found, "touch_points": rows, "reasons": reasons}, indent=2))
        return 0 if not reasons else 1
    where = f"installed verl {found.get('verl_version', '?')}"
    if not reasons:
        print(
            f"OK: `import verl` (verl {found.get('verl_version')}) registers {', '.join(WANTED)} "
            f"in a fresh process ({found.get('python')})."
        )
        print(
            "Use it with: python -m verl.trainer.main_ppo algorithm.adv_estimator=maxpo +algorithm.maxpo.k=4 ..."
            " (drop the + with our recipes, which declare algorithm.maxpo)"
        )
        print_touch_points(rows, where)
        return 0
    print("FAIL: verl will not find the MaxPO estimators, or some hooks are skipped.", file=sys.stderr)
    for reason in reasons:
        print(f"  - {reason}", file=sys.stderr)
    print_touch_points(rows, where)
    return 1


if __name__ == "__main__":
    sys.exit(main())
