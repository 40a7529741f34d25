"""`verl-maxpo report`: unbiased pass@k and max@k curves from verl validation dumps, for A/B runs and seeds.

verl's own `best@k` validation metric is a with-replacement bootstrap, which under-reports the best of k distinct
samples. Here, for every run, validation step and k:
    max@k  = mean over prompts of the unbiased expected best score of k samples drawn without replacement from the
             prompt's n samples (`estimators.max_at_k`)
    pass@k = the same on pass = [score >= threshold] (the usual 1 - C(n-c, k) / C(n, k))
Samples are grouped into prompts by their `input` text. Prompts with fewer than k samples are left out of that k
and counted in a warning and in the JSON (`left_out`).

Input layout (RUN_DIR): `<run>/val/<step>.jsonl` with optional `<run>/train_log.jsonl` and `<run>/meta.json`, or a
bare folder of `<step>.jsonl` dumps. Output: report.md and PNG curves in `--out` (default ./maxpo_report).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from verl_maxpo.cli_args import flat_ints, float_in
from verl_maxpo.estimators import max_at_k
from verl_maxpo.groups import group_index
from verl_maxpo.report_data import Problems, RunData, read_run
from verl_maxpo.report_plots import Curve, plot_grid, plot_metric

__all__ = ["DEFAULT_OUT", "compute_step_metrics", "config_name", "main", "mean_se", "write_report"]

DEFAULT_OUT = "maxpo_report"
MAX_K = 1_000_000
# The files one report wrote, so the next report into the same folder removes them and nothing else.
MANIFEST_NAME = ".verl_maxpo_report.json"
# What reports wrote before the manifest existed (removed only beside a report.md of ours).
_LEGACY_OUTPUT = re.compile(r"^((max|pass)_at_\d+|training)\.png$")
METRIC_KINDS = ("max", "pass")
# `maxpo_k4_seed1`, `grpo-seed2`, `run_seed_3` -> config `maxpo_k4`, `grpo`, `run`.
_SEED_SUFFIX = re.compile(r"^(?P<config>.+?)[_\-.]?seed[_\-]?(?P<seed>\d+)$", re.IGNORECASE)
# Training-log metrics plotted when present, in this order; `val-core/...` means are added after them.
_TRAIN_METRICS = (
    "critic/score/mean",
    "critic/advantages/mean",
    "actor/entropy",
    "response_length/mean",
    "actor/pg_loss",
    "actor/grad_norm",
    "actor/ppo_kl",
)
_MAX_TRAIN_PANELS = 9

HOW_TO_READ = (
    "**How to read this.** `max@k` is the expected best score among k of a prompt's n validation samples drawn "
    "without replacement (unbiased: the mean over all k-subsets), averaged over prompts; `pass@k` is the same with "
    "a sample counted as solved when score >= {threshold}. `pass@1` is plain accuracy and `pass@n` the share of "
    "prompts solved at least once. Higher is better. Unlike verl's `best@k` (a with-replacement bootstrap), these "
    "do not under-report. With several seeds, values are mean ± standard error (sample std / sqrt(seeds))."
)


def metric_names(ks: Sequence[int]) -> list[str]:
    """['max@1', 'pass@1', 'max@4', 'pass@4', ...] in the order of ks."""
    return [f"{kind}@{k}" for k in ks for kind in METRIC_KINDS]


def compute_step_metrics(
    prompt_ids: np.ndarray, scores: np.ndarray, ks: Sequence[int], pass_threshold: float = 1.0
) -> dict[str, Any]:
    """max@k and pass@k of one validation step.

    Args:
        prompt_ids: (N,) integer prompt id of each sample (samples of one prompt share an id).
        scores: (N,) finite float score of each sample.
        ks: the k values.
        pass_threshold: a sample passes when score >= pass_threshold.

    Returns:
        {"prompts": P, "samples": N, "max@k": float | None, "pass@k": float | None, ..., "left_out": {"k": count}},
        a metric being None when every prompt has fewer than k samples; `left_out` lists only the k that lost
        prompts.
    """
    ids = torch.as_tensor(np.asarray(prompt_ids, dtype=np.int64))
    rewards = torch.as_tensor(np.asarray(scores, dtype=np.float64))
    passed = (rewards >= pass_threshold).to(torch.float64)
    inverse, counts = group_index(ids)
    group_size_of_sample = counts[inverse]
    out: dict[str, Any] = {"prompts": int(counts.numel()), "samples": int(rewards.numel())}
    left_out: dict[str, int] = {}
    for k in ks:
        keep = group_size_of_sample >= k
        n_out = int((counts < k).sum())
        if n_out:
            left_out[str(k)] = n_out
        if not bool(keep.any()):
            out[f"max@{k}"] = out[f"pass@{k}"] = None
            continue
        out[f"max@{k}"] = float(max_at_k(rewards[keep], ids[keep], k).mean())
        out[f"pass@{k}"] = float(max_at_k(passed[keep], ids[keep], k).mean())
    out["left_out"] = left_out
    return out


def config_name(run_name: str) -> str:
    """The config a run belongs to: its name without a trailing `seed<N>` (`maxpo_k4_seed1` -> `maxpo_k4`)."""
    match = _SEED_SUFFIX.match(run_name)
    return match["config"] if match else run_name


def samples_per_prompt(run: RunData) -> int | None:
    """The run's n: the most common number of samples per prompt over its dumps (the larger on a tie)."""
    if not run.dumps:
        return None
    sizes = np.concatenate([np.bincount(d.prompt_ids) for d in run.dumps])
    values, freq = np.unique(sizes[sizes > 0], return_counts=True)
    return int(values[freq == freq.max()].max())


def _meta_k(run: RunData) -> int | None:
    return run.meta.k if run.meta is not None else None


def mean_se(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and standard error (sample std / sqrt(count)); the SE is None for a single value."""
    arr = np.asarray(values, dtype=np.float64)
    se = float(arr.std(ddof=1) / math.sqrt(arr.size)) if arr.size >= 2 else None
    return float(arr.mean()), se


def _run_summary(steps: list[dict[str, Any]], metrics: Sequence[str]) -> dict[str, Any]:
    """Per metric: the value at the last step and the best value over steps (with its step)."""
    summary = {}
    for m in metrics:
        points = [(s["step"], s[m]) for s in steps if s.get(m) is not None]
        last = steps[-1] if steps else {}
        best = max(points, key=lambda p: (p[1], -p[0])) if points else (None, None)
        summary[m] = {"final": last.get(m), "final_step": last.get("step"), "best": best[1], "best_step": best[0]}
    return summary


def _group_steps(members: list[dict[str, Any]], metrics: Sequence[str], problems: Problems, name: str) -> list:
    """Mean and standard error across seeds at the validation steps that every seed has."""
    step_sets = [{s["step"] for s in r["steps"]} for r in members]
    common = sorted(set.intersection(*step_sets))
    if any(s != set(common) for s in step_sets):
        problems.notes.append(
            f"seed group {name!r}: seeds have different validation steps; only the {len(common)} "
            "steps that all seeds share are averaged"
        )
    by_step = [{s["step"]: s for s in r["steps"]} for r in members]
    out = []
    for step in common:
        row: dict[str, Any] = {"step": step}
        for m in metrics:
            vals = [b[step].get(m) for b in by_step]
            mean, se = mean_se(vals) if all(v is not None for v in vals) else (None, None)
            row[m], row[f"{m}_se"] = mean, se
        out.append(row)
    return out


def _group_summary(steps: list[dict[str, Any]], metrics: Sequence[str]) -> dict[str, Any]:
    """Final: mean ± SE at the last common step. Best: the step where the seed-mean curve peaks (not the mean of
    per-seed maxima, which is biased upward by picking each seed's luckiest step)."""
    summary = {}
    for m in metrics:
        last = steps[-1] if steps else {}
        points = [s for s in steps if s.get(m) is not None]
        best = max(points, key=lambda s: (s[m], -s["step"])) if points else {}
        summary[m] = {
            "final": last.get(m),
            "final_se": last.get(f"{m}_se"),
            "final_step": last.get("step"),
            "best": best.get(m),
            "best_se": best.get(f"{m}_se"),
            "best_step": best.get("step"),
        }
    return summary


def _fmt(value: float | None, se: float | None = None, with_se: bool = False) -> str:
    if value is None:
        return "n/a"
    text = f"{value:.4f}"
    if with_se:
        text += f" ± {se:.4f}" if se is not None else " (1 seed, no SE)"
    return text


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def _curves(result: dict[str, Any], metric: str) -> list[Curve]:
    """One curve per multi-seed group (mean ± SE) and one per run outside such a group."""
    colors = _colors(result)
    curves = []
    for g in result["groups"]:
        if g["seeds"] < 2:
            continue
        pts = [s for s in g["steps"] if s.get(metric) is not None]
        if pts:
            curves.append(
                Curve(
                    f"{g['name']} (mean ± SE, {g['seeds']} seeds)",
                    np.array([s["step"] for s in pts]),
                    np.array([s[metric] for s in pts]),
                    np.array([np.nan if s[f"{metric}_se"] is None else s[f"{metric}_se"] for s in pts]),
                    colors[("group", g["name"])],
                )
            )
    for r in result["runs"]:
        if r["seeds_in_group"] >= 2:
            continue
        pts = [s for s in r["steps"] if s.get(metric) is not None]
        if pts:
            curves.append(
                Curve(
                    r["name"],
                    np.array([s["step"] for s in pts]),
                    np.array([s[metric] for s in pts]),
                    None,
                    colors[("run", r["name"])],
                )
            )
    return curves


def _train_curves(runs: list[RunData], result: dict[str, Any], metric: str) -> list[Curve]:
    """Training-log curves: seed groups averaged over the steps all their seeds logged, other runs as they are."""
    by_name = {r.name: r for r in runs}
    colors = _colors(result)
    curves, averaged = [], set()
    for g in result["groups"]:
        series = [by_name[n].train_log.get(metric) for n in g["runs"]]
        if g["seeds"] < 2 or any(s is None for s in series):
            continue
        common = series[0][0]
        for steps, _ in series[1:]:
            common = np.intersect1d(common, steps)
        if common.size == 0:
            continue
        stacked = np.stack([vals[np.searchsorted(steps, common)] for steps, vals in series])
        se = stacked.std(axis=0, ddof=1) / math.sqrt(stacked.shape[0])
        curves.append(
            Curve(
                f"{g['name']} (mean ± SE, {g['seeds']} seeds)",
                common,
                stacked.mean(0),
                se,
                colors[("group", g["name"])],
            )
        )
        averaged.add(g["name"])
    for r in result["runs"]:
        series = by_name[r["name"]].train_log.get(metric)
        if series is not None and r["group"] not in averaged:
            owner = ("group", r["group"]) if r["seeds_in_group"] >= 2 else ("run", r["name"])
            curves.append(Curve(r["name"], series[0], series[1], None, colors[owner]))
    return curves


def _train_panels(runs: list[RunData]) -> list[str]:
    present = set().union(*(r.train_log for r in runs)) if runs else set()
    chosen = [m for m in _TRAIN_METRICS if m in present]
    chosen += sorted(m for m in present if m.startswith("val-core/") and not m.endswith("/std"))
    return chosen[:_MAX_TRAIN_PANELS]


def _slug(metric: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", metric.replace("@", "_at_")).strip("_")


def _unique_names(names: list[str], problems: Problems) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
        if seen[name] == 2:
            problems.notes.append(
                f"two runs are named {name!r}; the later ones are shown as {name}#2, ... (use --label to name them)"
            )
    return out


def _check_lengths(what: str, values: Sequence[Any] | None, n: int) -> None:
    if values is not None and len(values) != n:
        raise ValueError(f"got {len(values)} {what} for {n} run folder(s): give one per RUN_DIR, in the same order")


def write_report(
    run_dirs: Sequence[str | Path],
    out_dir: str | Path,
    ks: Sequence[int] | None = None,
    pass_threshold: float = 1.0,
    labels: Sequence[str] | None = None,
    groups: Sequence[str] | None = None,
    *,
    train_logs: Sequence[str | Path | None] | None = None,
    relative_to: str | Path | None = None,
) -> dict[str, Any]:
    """Compute the report of `run_dirs`, write report.md and PNG curves into `out_dir`, and return the numbers.

    Args:
        run_dirs: run folders (`<run>/val/<step>.jsonl` layout, or bare folders of `<step>.jsonl` dumps).
        out_dir: output folder (created).
        ks: the k values; default 1, every run's meta.json `k`, and every run's samples per prompt n.
        pass_threshold: a sample passes when score >= pass_threshold.
        labels: display names, one per run dir (default: folder names).
        groups: seed-group names, one per run dir (default: the name without its `seed<N>` suffix).
        train_logs: training-log paths, one per run dir (None entries: `<run>/train_log.jsonl` when present).
        relative_to: show run folders relative to this folder (the demo, which writes into a folder it renames).

    Returns:
        {"runs": [{"name", "path", "group", "n", "meta", "steps": [{"step", "prompts", "samples", "max@k",
        "pass@k", ..., "left_out"}], "summary"}], "groups": [...], "ks", "pass_threshold", "errors", "warnings",
        "report", "plots"}. Bad input never raises: it is listed in "errors" and in the markdown.

    Raises:
        ValueError: labels/groups/train_logs of the wrong length, or a k below 1.
        OutputError: `out_dir` cannot be created or written (nothing is computed before this is known).
    """
    n_dirs = len(run_dirs)
    _check_lengths("labels", labels, n_dirs)
    _check_lengths("groups", groups, n_dirs)
    _check_lengths("training logs", train_logs, n_dirs)
    if ks is not None and any(isinstance(k, bool) or int(k) != k or not 1 <= k <= MAX_K for k in ks):
        raise ValueError(f"every k must be an integer in [1, {MAX_K}], got {list(ks)}")
    out = Path(out_dir)
    _prepare_out(out)
    problems = Problems()
    runs, group_of = _read_runs(run_dirs, labels, groups, train_logs, problems)

    n_of = [samples_per_prompt(r) for r in runs]
    if ks is None:
        candidates = {1} | {_meta_k(r) for r in runs} | set(n_of)
        ks = [k for k in candidates if k is not None]
    ks = sorted({int(k) for k in ks})
    metrics = metric_names(ks)

    warnings: list[str] = []
    entries = []
    for run, group, n in zip(runs, group_of, n_of, strict=True):
        steps = [
            {"step": d.step, **compute_step_metrics(d.prompt_ids, d.scores, ks, pass_threshold)}
            for d in sorted(run.dumps, key=lambda d: d.step)
        ]
        warnings += _left_out_warnings(run.name, steps, ks)
        entries.append(
            {
                "name": run.name,
                "path": str(run.path),
                "group": group,
                "seeds_in_group": group_of.count(group),
                "n": n,
                "meta": run.meta.to_dict() if run.meta is not None else {},
                "steps": steps,
                "summary": _run_summary(steps, metrics),
                "train_metrics": sorted(run.train_log),
            }
        )
    group_entries = []
    for name in dict.fromkeys(group_of):
        members = [e for e in entries if e["group"] == name]
        with_steps = [e for e in members if e["steps"]]
        g_steps = _group_steps(with_steps, metrics, problems, name) if with_steps else []
        group_entries.append(
            {
                "name": name,
                "runs": [e["name"] for e in members],
                "seeds": len(members),
                "steps": g_steps,
                "summary": _group_summary(g_steps, metrics),
            }
        )
    scores = [d.scores for r in runs for d in r.dumps]
    result: dict[str, Any] = {
        "runs": entries,
        "groups": group_entries,
        "ks": ks,
        "pass_threshold": pass_threshold,
        # With 0/1 scores and a threshold in (0, 1], pass@k and max@k are the same numbers.
        "binary_scores": bool(scores) and 0 < pass_threshold <= 1 and all(np.isin(s, (0.0, 1.0)).all() for s in scores),
        "errors": problems.errors,
        "warnings": list(dict.fromkeys(problems.notes + warnings)),
    }
    if relative_to is not None:
        for entry in entries:
            entry["path"] = os.path.relpath(entry["path"], relative_to)
    try:
        plots = _write_plots(out, runs, result, metrics, pass_threshold)
        result["plots"] = [str(p) for p in plots]
        report_path = out / "report.md"
        report_path.write_text(_markdown(result, metrics, plots), encoding="utf-8")
        _write_manifest(out, [report_path, *plots])
    except OSError as err:
        raise OutputError(f"{out}: cannot write the report ({err})") from None
    result["report"] = str(report_path)
    return result


class OutputError(OSError):
    """The output folder cannot be used; the message names it."""


def _prepare_out(out: Path) -> None:
    """Create `out`, and remove the files an earlier report wrote there (from its manifest), so PNGs and tables of
    another comparison never sit beside the new ones. Files this tool did not write are left alone."""
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"--out {out}: cannot create the folder ({err.strerror or err})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise OutputError(f"--out {out} is not writable")
    manifest = out / MANIFEST_NAME
    earlier: list[str] = []
    if manifest.is_file():
        try:
            listed = json.loads(manifest.read_text(encoding="utf-8"))
            earlier = [n for n in listed if isinstance(n, str) and n == Path(n).name]
        except (OSError, ValueError, TypeError, RecursionError):
            earlier = []
    elif _is_our_report(out / "report.md"):
        earlier = ["report.md"] + [p.name for p in out.iterdir() if _LEGACY_OUTPUT.match(p.name)]
    try:
        for name in earlier:
            if (out / name).is_file() and not (out / name).is_symlink():
                (out / name).unlink()
        manifest.unlink(missing_ok=True)
    except OSError as err:
        raise OutputError(f"--out {out}: cannot remove an earlier report's files ({err})") from None


def _is_our_report(path: Path) -> bool:
    try:
        with path.open(encoding="utf-8") as f:
            return f.readline().startswith("# MaxPO A/B report")
    except (OSError, UnicodeDecodeError):
        return False


def _write_manifest(out: Path, written: Sequence[Path]) -> None:
    (out / MANIFEST_NAME).write_text(json.dumps(sorted(p.name for p in written)) + "\n", encoding="utf-8")


def _read_runs(
    run_dirs: Sequence[str | Path],
    labels: Sequence[str] | None,
    groups: Sequence[str] | None,
    train_logs: Sequence[str | Path | None] | None,
    problems: Problems,
) -> tuple[list[RunData], list[str]]:
    """The readable runs, renamed by `labels` and made unique, and the seed group of each."""
    runs, given = [], []
    for i, run_dir in enumerate(run_dirs):
        run = read_run(run_dir, problems, train_logs[i] if train_logs else None)
        if run is None:
            continue
        if labels is not None:
            run.name = labels[i]
        runs.append(run)
        given.append(groups[i] if groups is not None else None)
    for run, name in zip(runs, _unique_names([r.name for r in runs], problems), strict=True):
        run.name = name
    return runs, [g if g is not None else config_name(r.name) for r, g in zip(runs, given, strict=True)]


def _left_out_warnings(name: str, steps: list[dict[str, Any]], ks: Sequence[int]) -> list[str]:
    """One warning per k that lost prompts in this run, with the first few steps and counts."""
    out = []
    for k in ks:
        lost = [(s["step"], s["left_out"][str(k)], s["prompts"]) for s in steps if str(k) in s["left_out"]]
        if lost:
            where = ", ".join(f"step {st}: {c} of {p}" for st, c, p in lost[:4]) + (" ..." if len(lost) > 4 else "")
            out.append(f"{name}: prompts with fewer than {k} samples are left out of max@{k}/pass@{k} ({where})")
    return out


def _colors(result: dict[str, Any]) -> dict[tuple[str, str], int]:
    """One color per multi-seed group ("group", name) and per other run ("run", name), in order of appearance, so
    a run keeps its color in every figure."""
    owners = [("group", r["group"]) if r["seeds_in_group"] >= 2 else ("run", r["name"]) for r in result["runs"]]
    return {owner: i for i, owner in enumerate(dict.fromkeys(owners))}


def _write_plots(
    out: Path, runs: list[RunData], result: dict[str, Any], metrics: list[str], threshold: float
) -> list[Path]:
    plots = []
    for m in metrics:
        curves = _curves(result, m)
        if not curves:
            continue
        kind, k = m.split("@")
        ylabel = f"{m} (unbiased, mean over prompts)"
        what = (
            f"expected best score among {k} samples"
            if kind == "max"
            else f"P(one of {k} samples scores >= {threshold:g})"
        )
        plots.append(plot_metric(out / f"{_slug(m)}.png", m, curves, ylabel, f"{m}: {what}"))
    panels = [(m, _train_curves(runs, result, m)) for m in _train_panels(runs)]
    panels = [(m, c) for m, c in panels if c]
    if panels:
        plots.append(plot_grid(out / "training.png", panels, "Training log (verl file logger)"))
    return plots


def _markdown(result: dict[str, Any], metrics: list[str], plots: list[Path]) -> str:
    lines = ["# MaxPO A/B report: unbiased pass@k and max@k", ""]
    lines += [HOW_TO_READ.format(threshold=f"{result['pass_threshold']:g}"), ""]
    if result.get("binary_scores"):
        lines += ["All scores are 0 or 1, so max@k and pass@k coincide.", ""]
    runs = result["runs"]
    if not runs:
        lines += ["No usable run: see the problems below.", ""]
    else:
        lines += ["## Runs", ""]
        rows = []
        for r in runs:
            meta = r["meta"]
            last = r["steps"][-1] if r["steps"] else {}
            rows.append(
                [
                    r["name"],
                    r["group"],
                    str(len(r["steps"])),
                    str(last.get("prompts", "n/a")),
                    str(r["n"] or "n/a"),
                    str(meta.get("adv_estimator", "")),
                    str(meta.get("k", "") if meta.get("k") is not None else ""),
                    f"`{r['path']}`",
                ]
            )
        lines += _table(["run", "config", "val steps", "prompts", "n", "estimator", "k", "folder"], rows) + [""]
        lines += ["## Final value (last validation step)", ""]
        rows = [
            [r["name"], str(r["summary"][metrics[0]]["final_step"])] + [_fmt(r["summary"][m]["final"]) for m in metrics]
            for r in runs
        ]
        lines += _table(["run", "step"] + metrics, rows) + [""]
        lines += ["## Best value over validation steps (step in parentheses)", ""]
        rows = []
        for r in runs:
            cells = [r["name"]]
            for m in metrics:
                s = r["summary"][m]
                cells.append(_fmt(s["best"]) + (f" ({s['best_step']})" if s["best"] is not None else ""))
            rows.append(cells)
        lines += _table(["run"] + metrics, rows) + [""]
        multi = [g for g in result["groups"] if g["seeds"] >= 2]
        if multi:
            lines += [
                "## Seeds: mean ± standard error",
                "",
                "Final: at the last step all seeds share. Best: the step where the seed-mean curve peaks "
                "(step in parentheses), not the mean of each seed's luckiest step.",
                "",
            ]
            for title, key in (("final", "final"), ("best", "best")):
                rows = []
                for g in result["groups"]:
                    cells = [g["name"], str(g["seeds"])]
                    if key == "final":
                        cells.append(str(g["summary"][metrics[0]]["final_step"]))
                    for m in metrics:
                        s = g["summary"][m]
                        cell = _fmt(s[key], s[f"{key}_se"], with_se=True)
                        if key == "best" and s[key] is not None:
                            cell += f" ({s['best_step']})"
                        cells.append(cell)
                    rows.append(cells)
                header = ["config", "seeds"] + (["step"] if key == "final" else []) + metrics
                lines += [f"**{title.capitalize()}**", ""] + _table(header, rows) + [""]
        else:
            lines += ["Each config has a single seed, so there are no standard errors.", ""]
    if plots:
        lines += ["## Curves", ""]
        lines += [f"![{p.stem}]({p.name})" for p in plots] + [""]
    if result["errors"]:
        lines += ["## Problems with the input (left out of the numbers above)", ""]
        lines += [f"- {e}" for e in result["errors"]] + [""]
    if result["warnings"]:
        lines += ["## Warnings", ""]
        lines += [f"- {w}" for w in result["warnings"]] + [""]
    return "\n".join(lines) + "\n"


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="verl-maxpo report",
        description="Unbiased pass@k and max@k per validation step from verl validation dumps "
        "(trainer.validation_data_dir), with tables, PNG curves and seed mean ± SE.",
    )
    p.add_argument(
        "run_dirs",
        nargs="+",
        metavar="RUN_DIR",
        help="run folder (<run>/val/<step>.jsonl, optional train_log.jsonl and meta.json) "
        "or a bare folder of <step>.jsonl dumps",
    )
    p.add_argument(
        "--k",
        nargs="+",
        default=None,
        metavar="K",
        help="k values, e.g. --k 1 4 16 or --k 1,4,16 (default: 1, meta.json k, and n)",
    )
    p.add_argument(
        "--pass-threshold",
        type=float_in(-math.inf, math.inf),
        default=1.0,
        help="pass = score >= this, a finite number (default 1.0)",
    )
    p.add_argument("--label", nargs="+", default=None, metavar="NAME", help="display names, one per RUN_DIR")
    p.add_argument(
        "--group",
        nargs="+",
        default=None,
        metavar="NAME",
        help="seed-group names, one per RUN_DIR (default: the name without a seed<N> suffix)",
    )
    p.add_argument(
        "--train-log",
        nargs="+",
        default=None,
        metavar="PATH",
        help="verl file-logger JSONL, one per RUN_DIR ('-' for none; default <run>/train_log.jsonl)",
    )
    p.add_argument("--out", default=DEFAULT_OUT, help=f"output folder for report.md and PNGs (default ./{DEFAULT_OUT})")
    p.add_argument("--json", action="store_true", help="print the numbers as JSON on stdout")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of `verl-maxpo report`. Exit status 0, or 1 when some input was bad (the report still comes
    out), or 2 for a usage error or an unusable --out folder."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        ks = flat_ints(args.k, "--k") if args.k is not None else None
    except argparse.ArgumentTypeError as err:
        parser.error(str(err))
    train_logs = None if args.train_log is None else [None if t == "-" else t for t in args.train_log]
    try:
        result = write_report(
            args.run_dirs, args.out, ks, args.pass_threshold, args.label, args.group, train_logs=train_logs
        )
    except OutputError as err:
        print(f"verl-maxpo report: error: {err}", file=sys.stderr)
        return 2
    except ValueError as err:
        parser.error(str(err))
    for e in result["errors"]:
        print(f"error: {e}", file=sys.stderr)
    for w in result["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
    if args.json:
        print(json.dumps(result, indent=1, allow_nan=False))
    else:
        print(Path(result["report"]).read_text(encoding="utf-8").split("## Curves")[0].rstrip())
        print(f"\nreport: {result['report']}\nplots: {', '.join(result['plots']) or 'none'}")
    return 1 if result["errors"] or not result["runs"] else 0


if __name__ == "__main__":
    sys.exit(main())
