"""`verl-maxpo report`: unbiased pass@k and max@k curves from verl validation dumps, for A/B runs and seeds.

verl's own `best@k` validation metric is a with-replacement bootstrap, which under-reports the best of k distinct
samples. Here, for every run, validation step and k:
    max@k  = mean over prompts of the unbiased expected best score of k samples drawn without replacement from the
             prompt's n samples (`estimators.max_at_k`)
    pass@k = the same on pass = [score >= threshold] (the usual 1 - C(n-c, k) / C(n, k))
Samples are grouped into prompts by their `input` text. Prompts with fewer than k samples are left out of that k
and counted in a warning and in the JSON (`left_out`).

Input layout (RUN_DIR): `<run>/val/<step>.jsonl` with optional `<run>/train_log.jsonl` and `<run>/meta.json`, or a
bare folder of `<step>.jsonl` dumps. Output: report.md and PNG curves in `--out` (default ./maxpo_report), published by
`verl_maxpo.runs.outputs` (staged, then moved in; only files an earlier report listed are replaced). With `--json` and
no `--out`, nothing is written: the JSON on stdout is the whole output. When every score is 0 or 1 (and the threshold
is in (0, 1]) max@k equals pass@k, so the tables and plots show pass@k only (the JSON keeps both).
Values are fractions in [0, 1] for 0/1 scores (never percent), and in score units otherwise.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from verl_maxpo.core.table import ARMS
from verl_maxpo.runs import command, strict_json
from verl_maxpo.runs.args import flat_ints, flat_parts, float_in
from verl_maxpo.runs.outputs import OutputError, check_out, publish
from verl_maxpo.tools import stats
from verl_maxpo.tools.report.data import Problems, RunData, read_run
from verl_maxpo.tools.report.metrics import (
    Extremes,
    GroupMetrics,
    MeanSE,
    Metric,
    ReportMetrics,
    StepMetrics,
    config_name,
    group_metrics,
    metrics_for,
    run_metrics,
    step_metrics,
)
from verl_maxpo.tools.report.plots import Curve, plot_grid, plot_metric

__all__ = ["COMMAND", "DEFAULT_OUT", "OutputError", "build_report", "config_name", "main", "to_json", "write_report"]
__all__ += ["write_report_files"]

DEFAULT_OUT = "maxpo_report"
COMMAND = "report"  # the command name in the outputs manifest
MAX_K = 1_000_000
# Training-log metrics plotted when present, in this order; `val-core/...` means are added after them.
_TRAIN_METRICS = (  # verl's names; the demo logs the same names for the same quantities
    "critic/score/mean",
    "critic/advantages/mean",
    "actor/entropy",
    "response_length/mean",
    "actor/pg_loss",
    "actor/grad_norm",
    "actor/ppo_kl",
    "batch/solved_groups_frac",  # the demo's: groups with at least one / with mixed rewards
    "batch/mixed_groups_frac",
)
_MAX_TRAIN_PANELS = 9
_SEED_NUMBER = re.compile(r"^.+?[_\-.]?seed[_\-]?(\d+)$", re.IGNORECASE)  # as metrics.config_name

HOW_TO_READ = (
    "**How to read this.** `max@k` is the expected best score among k of a prompt's n validation samples drawn "
    "without replacement (unbiased: the mean over all k-subsets), averaged over prompts; `pass@k` is the same with "
    "a sample counted as solved when score >= {threshold}. `pass@1` is plain accuracy and `pass@n` the share of "
    "prompts solved at least once. Higher is better. Unlike verl's `best@k` (a with-replacement bootstrap), these "
    "do not under-report. With several seeds, values are mean ± standard error (sample std / sqrt(seeds))."
)


_K_IN_NAME = re.compile(r"(?:^|[_\-.])k(\d{1,7})(?=$|[_\-.])")


def run_k(run: RunData) -> int | None:
    """The run's K: meta.json's `k`, else `algorithm.maxpo.k` of a saved Hydra config (`<run>/.hydra/config.yaml`
    or `<run>/config.yaml`), else a `k<N>` token of the run folder's name (`gsm8k_maxpo_k4_seed0` -> 4)."""
    if run.meta is not None and run.meta.k is not None:
        return run.meta.k
    for config in (run.path / ".hydra" / "config.yaml", run.path / "config.yaml"):
        k = _config_k(config)
        if k is not None:
            return k
    match = _K_IN_NAME.search(run.path.resolve().name)
    return int(match[1]) if match and int(match[1]) >= 1 else None


def _config_k(path: Path) -> int | None:
    if not path.is_file():
        return None
    try:
        import yaml

        config = yaml.safe_load(path.read_text(encoding="utf-8"))
        k = config["algorithm"]["maxpo"]["k"]
    except Exception:  # noqa: BLE001 - an unreadable or other config only means no K from it
        return None
    return k if isinstance(k, int) and not isinstance(k, bool) and 1 <= k <= MAX_K else None


def samples_per_prompt(run: RunData) -> int | None:
    """The run's n: the most common number of samples per prompt over its dumps (the larger on a tie)."""
    if not run.dumps:
        return None
    sizes = np.concatenate([np.bincount(d.prompt_ids) for d in run.dumps])
    values, freq = np.unique(sizes[sizes > 0], return_counts=True)
    return int(values[freq == freq.max()].max())


def _number(value: float) -> str:
    """4 decimals (fractions, small scores); scientific for scores so large that 4 decimals would be 300 digits."""
    return f"{value:.4f}" if abs(value) < 1e6 else f"{value:.4e}"


def _fmt(value: float | None, se: float | None = None, with_se: bool = False) -> str:
    if value is None:
        return "n/a"
    text = _number(value)
    if with_se:
        text += f" ± {_number(se)}" if se is not None else " (1 seed, no SE)"
    return text


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def _curves(report: ReportMetrics, metric: Metric) -> list[Curve]:
    """One curve per multi-seed group (mean ± SE) and one per run outside such a group."""
    colors = _colors(report)
    curves = []
    for g in report.groups:
        if g.seeds < 2:
            continue
        pts = [(s.step, s.values[metric]) for s in g.steps if s.values[metric].mean is not None]
        if pts:
            curves.append(
                Curve(
                    f"{g.name} (mean ± SE, {g.seeds} seeds)",
                    np.array([st for st, _ in pts]),
                    np.array([v.mean for _, v in pts]),
                    np.array([np.nan if v.se is None else v.se for _, v in pts]),
                    colors[("group", g.name)],
                )
            )
    for r in report.runs:
        steps, values = r.curve(metric)
        if r.seeds_in_group < 2 and steps:
            curves.append(Curve(r.name, np.array(steps), np.array(values), None, colors[("run", r.name)]))
    return sorted(curves, key=lambda c: c.color_index)  # an arm's place in the legend is fixed too


def _train_curves(runs: list[RunData], report: ReportMetrics, metric: str) -> list[Curve]:
    """Training-log curves: seed groups averaged over the steps all their seeds logged, other runs as they are."""
    by_name = {r.name: r for r in runs}
    colors = _colors(report)
    curves, averaged = [], set()
    for g in report.groups:
        series = [by_name[n].train_log.get(metric) for n in g.runs]
        if g.seeds < 2 or any(s is None for s in series):
            continue
        common = series[0][0]
        for steps, _ in series[1:]:
            common = np.intersect1d(common, steps)
        if common.size == 0:
            continue
        stacked = np.stack([vals[np.searchsorted(steps, common)] for steps, vals in series])
        se = stacked.std(axis=0, ddof=1) / math.sqrt(stacked.shape[0])
        label = f"{g.name} (mean ± SE, {g.seeds} seeds)"
        curves.append(Curve(label, common, stacked.mean(0), se, colors[("group", g.name)]))
        averaged.add(g.name)
    for r in report.runs:
        series = by_name[r.name].train_log.get(metric)
        if series is not None and r.group not in averaged:
            owner = ("group", r.group) if r.seeds_in_group >= 2 else ("run", r.name)
            curves.append(Curve(r.name, series[0], series[1], None, colors[owner]))
    return sorted(curves, key=lambda c: c.color_index)


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


def _check_inputs(n_dirs: int, ks, labels, groups, train_logs) -> None:
    _check_lengths("labels", labels, n_dirs)
    _check_lengths("groups", groups, n_dirs)
    _check_lengths("training logs", train_logs, n_dirs)
    if ks is not None and any(isinstance(k, bool) or int(k) != k or not 1 <= k <= MAX_K for k in ks):
        raise ValueError(f"every k must be an integer in [1, {MAX_K}], got {list(ks)}")


def build_report(
    run_dirs: Sequence[str | Path],
    ks: Sequence[int] | None = None,
    pass_threshold: float = 1.0,
    labels: Sequence[str] | None = None,
    groups: Sequence[str] | None = None,
    train_logs: Sequence[str | Path | None] | None = None,
    verdicts: stats.VerdictOptions | None = None,
) -> tuple[ReportMetrics, list[RunData]]:
    """Read `run_dirs` and compute every number (see write_report for the arguments); also the runs as read."""
    _check_inputs(len(run_dirs), ks, labels, groups, train_logs)
    problems = Problems()
    runs, group_of = _read_runs(run_dirs, labels, groups, train_logs, problems)
    n_of = [samples_per_prompt(r) for r in runs]
    if ks is None:
        candidates = {1} | {run_k(r) for r in runs} | set(n_of)
        ks = [k for k in candidates if k is not None and k <= MAX_K]
    ks = sorted({int(k) for k in ks})
    metrics = metrics_for(ks)

    warnings: list[str] = []
    entries = []
    for run, group, n in zip(runs, group_of, n_of, strict=True):
        steps = [
            step_metrics(d.prompt_ids, d.scores, ks, pass_threshold, step=d.step)
            for d in sorted(run.dumps, key=lambda d: d.step)
        ]
        warnings += _left_out_warnings(run.name, steps, ks)
        seeds = group_of.count(group)
        entries.append(
            run_metrics(run.name, str(run.path), group, seeds, n, run.meta, steps, metrics, sorted(run.train_log))
        )
    group_entries = []
    for name in dict.fromkeys(group_of):
        group, dropped = group_metrics(name, [e for e in entries if e.group == name], metrics)
        if dropped:
            problems.notes.append(
                f"seed group {name!r}: seeds have different validation steps; only the {len(group.steps)} "
                "steps that all seeds share are averaged"
            )
        group_entries.append(group)
    scores = [d.scores for r in runs for d in r.dumps]
    binary = bool(scores) and 0 < pass_threshold <= 1 and all(np.isin(s, (0.0, 1.0)).all() for s in scores)
    report = ReportMetrics(
        entries,
        group_entries,
        ks,
        pass_threshold,
        binary,
        problems.errors,
        list(dict.fromkeys(problems.notes + warnings)),
    )
    if verdicts is not None:
        _add_verdicts(report, verdicts)
    return report, runs


def _run_row(run: Any, metrics: Sequence[Metric]) -> dict[str, float | None]:
    """One run's mean over the validations after step 0 and its final value, per metric (`avg_pass@4`, ...)."""
    row: dict[str, float | None] = {}
    for m in metrics:
        later = [v for v in (s.values.get(m) for s in run.steps if s.step > 0) if v is not None]
        row[f"avg_{m.name}"] = float(np.mean(later)) if later else None
        row[f"final_{m.name}"] = run.summary[m].final.mean
    return row


def _add_verdicts(report: ReportMetrics, options: stats.VerdictOptions) -> None:
    """Per-seed values of every seed group and the verdicts on the primary metric; a misfit option is an error."""
    groups = [g.name for g in report.groups]
    if len(groups) < 2:
        return
    trained = {r.meta.k for r in report.runs if r.meta is not None and r.meta.k is not None}
    kind = "pass" if report.binary_scores else "max"
    try:
        primary, baseline = stats.resolve(options, groups, trained.pop() if len(trained) == 1 else None, kind)
        if stats.metric_k(primary) not in report.ks:
            raise ValueError(f"--primary-metric {primary}: k = {stats.metric_k(primary)} is not among the report's k "
                             f"{report.ks}; add it with --k")  # fmt: skip
    except ValueError as err:  # an option the user named that does not fit is an error; a default, a warning
        (report.errors if options.primary or options.baseline or options.compare else report.warnings).append(
            f"no verdicts: {err}"
        )
        return
    shown = report.metrics  # pass@k only for 0/1 scores, unless the primary metric is a max@k
    metrics = shown if any(primary.endswith(f"_{m.name}") for m in shown) else metrics_for(report.ks)
    rows = []
    for run in report.runs:
        seed = _seed_number(run.name)
        if seed is None:  # no seed<N> suffix: the run's position in its group
            seed = [r.name for r in report.runs if r.group == run.group].index(run.name)
        rows.append((run.group, seed, _run_row(run, metrics)))
    seeds, per_seed = stats.per_seed_table(rows)
    report.analysis = stats.analyze(per_seed, seeds, primary, baseline, options.compare, _base_seeds(report, seeds))


def _seed_number(run_name: str) -> int | None:
    """N of a run named `<config>_seed<N>` (the suffix config_name strips), else None."""
    match = _SEED_NUMBER.match(run_name)
    return int(match[1]) if match else None


def _base_seeds(report: ReportMetrics, seeds: list[Any]) -> list[str] | None:
    """The base seed of each seed when every run's meta.json names one (`verl-maxpo demo --base-seeds`): the
    verdicts then run over base seeds, as the demo's summary does. None when any run lacks one or they disagree."""
    base: dict[Any, str] = {}
    for run in report.runs:
        b = run.meta.settings.get("base_seed") if run.meta is not None else None
        seed = _seed_number(run.name)
        if b is None or seed is None or base.setdefault(seed, b) != b:
            return None
    return [base[s] for s in seeds] if all(s in base for s in seeds) else None


def write_report(
    run_dirs: Sequence[str | Path],
    out_dir: str | Path,
    ks: Sequence[int] | None = None,
    pass_threshold: float = 1.0,
    labels: Sequence[str] | None = None,
    groups: Sequence[str] | None = None,
    *,
    train_logs: Sequence[str | Path | None] | None = None,
    force: bool = False,
    relative_to: str | Path | None = None,
    verdicts: stats.VerdictOptions | None = None,
) -> dict[str, Any]:
    """Compute the report of `run_dirs`, publish report.md and PNG curves into `out_dir`, and return the numbers as
    JSON-ready data (the shape `--json` prints).

    Args:
        run_dirs: run folders (`<run>/val/<step>.jsonl` layout, or bare folders of `<step>.jsonl` dumps).
        out_dir: output folder, under the `verl_maxpo.runs.outputs` policy: created, or an earlier report's folder
            (its files are replaced), or with `force` any folder (files the report did not write are never touched).
        ks: the k values; default 1, every run's meta.json `k`, and every run's samples per prompt n.
        pass_threshold: a sample passes when score >= pass_threshold.
        labels: display names, one per run dir (default: folder names).
        groups: seed-group names, one per run dir (default: the name without its `seed<N>` suffix).
        train_logs: training-log paths, one per run dir (None entries: `<run>/train_log.jsonl` when present).
        force: allow a non-empty folder that holds no report.
        relative_to: show run folders relative to this folder, and write straight into `out_dir` with no output
            policy, as write_report_files does (for a caller that publishes `out_dir` itself, like the demo).
        verdicts: with two or more seed groups, per-seed values and paired t-tests with Holm on one metric
            (verl_maxpo.tools.stats); None: none.

    Returns:
        `to_json(report)` plus "report" (the markdown's path) and "plots". Bad input never raises: it is listed in
        "errors" and in the markdown.

    Raises:
        ValueError: labels/groups/train_logs of the wrong length, or a k outside [1, MAX_K].
        OutputError: `out_dir` cannot be used (checked before anything is read).
    """
    if relative_to is not None:
        return write_report_files(
            run_dirs, out_dir, ks, pass_threshold, labels, groups, train_logs=train_logs, relative_to=relative_to,
            verdicts=verdicts,
        )  # fmt: skip
    _check_inputs(len(run_dirs), ks, labels, groups, train_logs)
    check_out(out_dir, COMMAND, force)
    report, runs = build_report(run_dirs, ks, pass_threshold, labels, groups, train_logs, verdicts)
    with publish(out_dir, COMMAND, force) as out:
        result = _write_files(out.stage, report, runs)
    return _located(result, out.target)


def write_report_files(
    run_dirs: Sequence[str | Path],
    folder: str | Path,
    ks: Sequence[int] | None = None,
    pass_threshold: float = 1.0,
    labels: Sequence[str] | None = None,
    groups: Sequence[str] | None = None,
    *,
    train_logs: Sequence[str | Path | None] | None = None,
    relative_to: str | Path | None = None,
    setting: str | None = None,
    verdicts: stats.VerdictOptions | None = None,
) -> dict[str, Any]:
    """write_report without the output policy: write report.md and the PNGs straight into `folder` (created), for a
    command that publishes its own stage (the demo). `relative_to`: show run folders relative to this folder;
    `setting`: the line plot titles carry (default: `plot_setting`, from the runs' meta.json and names)."""
    _check_inputs(len(run_dirs), ks, labels, groups, train_logs)
    report, runs = build_report(run_dirs, ks, pass_threshold, labels, groups, train_logs, verdicts)
    if relative_to is not None:
        for entry in report.runs:
            entry.path = os.path.relpath(entry.path, relative_to)
    Path(folder).mkdir(parents=True, exist_ok=True)
    return _located(_write_files(Path(folder), report, runs, setting), Path(folder))


def _write_files(
    folder: Path, report: ReportMetrics, runs: list[RunData], setting: str | None = None
) -> dict[str, Any]:
    """Write report.md and the PNGs into `folder`; the result has bare file names (see _located)."""
    plots = _write_plots(folder, runs, report, setting)
    (folder / "report.md").write_text(_markdown(report, plots), encoding="utf-8")
    return {**to_json(report), "plots": [p.name for p in plots], "report": "report.md"}


def _located(result: dict[str, Any], folder: Path) -> dict[str, Any]:
    return {**result, "plots": [str(folder / p) for p in result["plots"]], "report": str(folder / result["report"])}


def _extremes_json(e: Extremes, with_se: bool) -> dict[str, Any]:
    if not with_se:
        return {"final": e.final.mean, "final_step": e.final_step, "best": e.best.mean, "best_step": e.best_step}
    return {
        "final": e.final.mean,
        "final_se": e.final.se,
        "final_step": e.final_step,
        "best": e.best.mean,
        "best_se": e.best.se,
        "best_step": e.best_step,
    }


def _group_step_json(step: int, values: dict[Metric, MeanSE]) -> dict[str, Any]:
    row: dict[str, Any] = {"step": step}
    for m, v in values.items():
        row[m.name], row[f"{m.name}_se"] = v.mean, v.se
    return row


def to_json(report: ReportMetrics) -> dict[str, Any]:
    """The report's numbers as JSON-ready data (what `--json` prints)."""
    runs = [
        {
            "name": r.name,
            "path": r.path,
            "group": r.group,
            "seeds_in_group": r.seeds_in_group,
            "n": r.n,
            "meta": r.meta.to_dict() if r.meta is not None else {},
            "steps": [s.as_json() for s in r.steps],
            "summary": {m.name: _extremes_json(e, with_se=False) for m, e in r.summary.items()},
            "train_metrics": r.train_metrics,
        }
        for r in report.runs
    ]
    groups = [
        {
            "name": g.name,
            "runs": g.runs,
            "seeds": g.seeds,
            "steps": [_group_step_json(s.step, s.values) for s in g.steps],
            "summary": {m.name: _extremes_json(e, with_se=True) for m, e in g.summary.items()},
        }
        for g in report.groups
    ]
    return {
        "runs": runs,
        "groups": groups,
        "ks": report.ks,
        "pass_threshold": report.pass_threshold,
        "binary_scores": report.binary_scores,
        "errors": report.errors,
        "warnings": report.warnings,
        **(report.analysis or {}),
    }


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


def _left_out_warnings(name: str, steps: list[StepMetrics], ks: Sequence[int]) -> list[str]:
    """One warning per k that lost prompts in this run, with the first few steps and counts."""
    out = []
    for k in ks:
        lost = [(s.step, s.left_out[k], s.prompts) for s in steps if k in s.left_out]
        if lost:
            where = ", ".join(f"step {st}: {c} of {p}" for st, c, p in lost[:4]) + (" ..." if len(lost) > 4 else "")
            out.append(f"{name}: prompts with fewer than {k} samples are left out of max@{k}/pass@{k} ({where})")
    return out


def arm_of(name: str, meta: Any = None) -> str | None:
    """The A/B arm of the estimator table a run or seed group stands for: meta.json's config name when it is an arm
    (the demo's), else the arm whose name appears as `_`-separated words of `name` (longest first, so
    `gsm8k_maxpo_top2_k4` is maxpo_top2, not maxpo); None for anything else."""
    if meta is not None and meta.config_name in ARMS:
        return meta.config_name
    words = re.split(r"[_\-.]", name)
    for arm in sorted(ARMS, key=len, reverse=True):
        parts = arm.split("_")
        if any(words[i : i + len(parts)] == parts for i in range(len(words))):
            return arm
    return None


def _colors(report: ReportMetrics) -> dict[tuple[str, str], int]:
    """One color per multi-seed group ("group", name) and per other run ("run", name). An arm of the estimator
    table has its own color and place in every figure and every report (maxpo first, in the table's order); other
    runs, and a second config of an arm already shown, take the next free colors in order of appearance."""
    owners = {}
    for r in report.runs:
        owner = ("group", r.group) if r.seeds_in_group >= 2 else ("run", r.name)
        owners.setdefault(owner, arm_of(owner[1], r.meta))
    arms = list(ARMS)
    colors, used = {}, set()
    for owner, arm in owners.items():
        if arm is not None and arms.index(arm) not in used:
            colors[owner] = arms.index(arm)
            used.add(colors[owner])
    spare = (i for i in range(len(arms), 10_000) if i not in used)
    for owner in owners:
        if owner not in colors:
            colors[owner] = next(spare)
    return colors


def plot_setting(report: ReportMetrics, runs: list[RunData]) -> str:
    """The setting every plot title carries: task (the run names' words before the arm), n, K, seeds and the
    validation samples per prompt, each listed once (several values joined by /)."""

    def joined(values: Sequence[Any]) -> str:
        return "/".join(str(v) for v in sorted(set(values)))

    tasks = []
    for r in report.runs:
        arm = arm_of(r.group, r.meta)
        tasks.append(r.group.split(arm)[0].strip("_-.") if arm is not None and arm in r.group else "")
    parts = [joined(tasks)] if tasks and all(tasks) else []
    ns = [r.meta.n for r in report.runs if r.meta is not None]
    ks = [k for k in (run_k(run) for run in runs) if k is not None]
    parts += [f"n={joined(ns)}"] if ns else []
    parts += [f"K={joined(ks)}"] if ks else []
    seeds = max((g.seeds for g in report.groups), default=1)
    parts.append(f"{seeds} seed{'s' if seeds != 1 else ''}")
    val_n = [r.n for r in report.runs if r.n]
    parts += [f"{joined(val_n)} samples per validation prompt"] if val_n else []
    return ", ".join(parts)


def _write_plots(out: Path, runs: list[RunData], report: ReportMetrics, setting: str | None = None) -> list[Path]:
    plots = []
    setting = plot_setting(report, runs) if setting is None else setting
    for m in report.metrics:
        curves = _curves(report, m)
        if not curves:
            continue
        ylabel = f"{m.name} (unbiased, mean over prompts)"
        what = _plot_subject(m, report.pass_threshold)
        title = f"{m.name}: {what}" + (f"\n{setting}" if setting else "")
        plots.append(plot_metric(out / f"{_slug(m.name)}.png", m.name, curves, ylabel, title))
    panels = [(name, _train_curves(runs, report, name)) for name in _train_panels(runs)]
    panels = [(name, c) for name, c in panels if c]
    if panels:
        title = "Training log (verl file logger)" + (f": {setting}" if setting else "")
        plots.append(plot_grid(out / "training.png", panels, title))
    return plots


def _plot_subject(m: Metric, threshold: float) -> str:
    if m.kind == "max":
        return "expected score of one sample" if m.k == 1 else f"expected best score among {m.k} samples"
    if m.k == 1:
        return f"P(a sample scores >= {threshold:g})"
    return f"P(at least one of {m.k} samples scores >= {threshold:g})"


def _markdown(report: ReportMetrics, plots: list[Path]) -> str:
    metrics = report.metrics
    names = [m.name for m in metrics]
    lines = ["# MaxPO A/B report: unbiased pass@k and max@k", ""]
    lines += [HOW_TO_READ.format(threshold=f"{report.pass_threshold:g}"), ""]
    if report.binary_scores:
        lines += ["All scores are 0 or 1, so max@k equals pass@k: only pass@k is shown (fractions of prompts).", ""]
    runs = report.runs
    if not runs:
        lines += ["No usable run: see the problems below.", ""]
    else:
        lines += ["## Runs", ""]
        rows = []
        for r in runs:
            last = r.steps[-1] if r.steps else None
            estimator = r.meta.adv_estimator if r.meta is not None else ""
            k = str(r.meta.k) if r.meta is not None and r.meta.k is not None else ""
            prompts = str(last.prompts) if last is not None else "n/a"
            rows.append([r.name, r.group, str(len(r.steps)), prompts, str(r.n or "n/a"), estimator, k, f"`{r.path}`"])
        lines += _table(["run", "config", "val steps", "prompts", "n", "estimator", "k", "folder"], rows) + [""]
        lines += ["## Final value (last validation step)", ""]
        rows = [
            [r.name, str(r.summary[metrics[0]].final_step)] + [_fmt(r.summary[m].final.mean) for m in metrics]
            for r in runs
        ]
        lines += _table(["run", "step"] + names, rows) + [""]
        lines += ["## Best value over validation steps (step in parentheses)", ""]
        rows = []
        for r in runs:
            cells = [r.name]
            for m in metrics:
                e = r.summary[m]
                cells.append(_fmt(e.best.mean) + (f" ({e.best_step})" if e.best.mean is not None else ""))
            rows.append(cells)
        lines += _table(["run"] + names, rows) + [""]
        if any(g.seeds >= 2 for g in report.groups):
            lines += [
                "## Seeds: mean ± standard error",
                "",
                "Final: at the last step all seeds share. Best: the step where the seed-mean curve peaks "
                "(step in parentheses), not the mean of each seed's luckiest step.",
                "",
            ]
            lines += ["**Final**", ""] + _group_table(report.groups, metrics, final=True) + [""]
            lines += ["**Best**", ""] + _group_table(report.groups, metrics, final=False) + [""]
        else:
            lines += ["Each config has a single seed, so there are no standard errors.", ""]
    if report.analysis is not None:
        lines += stats.markdown(report.analysis)
    if plots:
        lines += ["## Curves", ""]
        lines += [f"![{p.stem}]({p.name})" for p in plots] + [""]
    if report.errors:
        lines += ["## Problems with the input (left out of the numbers above)", ""]
        lines += [f"- {e}" for e in report.errors] + [""]
    if report.warnings:
        lines += ["## Warnings", ""]
        lines += [f"- {w}" for w in report.warnings] + [""]
    return "\n".join(lines) + "\n"


def _group_table(groups: list[GroupMetrics], metrics: list[Metric], final: bool) -> list[str]:
    rows = []
    for g in groups:
        cells = [g.name, str(g.seeds)]
        if final:
            cells.append(str(g.summary[metrics[0]].final_step))
        for m in metrics:
            e = g.summary[m]
            value = e.final if final else e.best
            cell = _fmt(value.mean, value.se, with_se=True)
            if not final and value.mean is not None:
                cell += f" ({e.best_step})"
            cells.append(cell)
        rows.append(cells)
    header = ["config", "seeds"] + (["step"] if final else []) + [m.name for m in metrics]
    return _table(header, rows)


def _names(values: list[str] | None) -> list[str] | None:
    """["a,b", "c"] -> ["a", "b", "c"] (repeats allowed: seed groups repeat)."""
    return None if values is None else flat_parts(values)


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
        help=f"k values in 1..{MAX_K}, e.g. --k 1 4 16 or --k 1,4,16 (default: 1, the run's K from meta.json, a saved "
        "config or a k<N> word of the run name, and n)",
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
    p.add_argument(
        "--out",
        default=None,
        help=f"output folder for report.md and PNGs (default ./{DEFAULT_OUT}; with --json, none: nothing is written)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="write into a non-empty folder that holds no report (its files are never removed or overwritten)",
    )
    p.add_argument("--json", action="store_true", help="print the numbers as JSON on stdout")
    p.add_argument(
        "--primary-metric", type=_metric_name, default=None, metavar="METRIC",
        help="with 2+ seed groups, the metric that gets verdicts (paired t over seeds, Holm across groups): "
        "avg_pass@K, final_pass@K, avg_max@K or final_max@K (default: avg pass@K at the runs' meta.json k)",
    )  # fmt: skip
    p.add_argument("--baseline", default=None, metavar="GROUP",
                   help="the seed group every other is tested against (default maxpo, else the first)")  # fmt: skip
    p.add_argument("--compare", nargs="+", default=[], metavar="GROUP:GROUP",
                   help="extra group-against-group tests, in the same Holm family")  # fmt: skip
    return p


def _metric_name(text: str) -> str:
    try:
        stats.metric_k(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def _verdict_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> stats.VerdictOptions:
    pairs = []
    for part in flat_parts(args.compare):
        a, sep, b = part.partition(":")
        if not sep or not a or not b or a == b:
            parser.error(f"--compare {part!r}: give GROUP:GROUP, two different seed groups")
        pairs.append((a, b))
    return stats.VerdictOptions(args.primary_metric, args.baseline, tuple(pairs))


def main(argv: list[str] | None = None) -> int:
    """Entry point of `verl-maxpo report` (runs/command.py owns the exit status): 0, or 1 when some input was bad
    (the report still comes out), or 2 for a usage error or an --out folder refused before any work."""
    return command.run(COMMAND, _main, argv)


def _main(argv: list[str]) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    # An empty path would read (or write) the current folder: refuse it where it enters.
    if any(not str(d).strip() for d in args.run_dirs):
        parser.error("RUN_DIR is empty; give a run folder (. for the current folder)")
    if args.train_log is not None and any(not str(t).strip() for t in args.train_log):
        parser.error("--train-log is empty; give a file, or - for none")
    try:
        ks = flat_ints(args.k, "--k", minimum=1, maximum=MAX_K) if args.k is not None else None
    except argparse.ArgumentTypeError as err:
        parser.error(str(err))
    train_logs = None if args.train_log is None else [None if t == "-" else t for t in args.train_log]
    # Names take both list forms (`--label a b`, `--label a,b`); paths (RUN_DIR, --train-log) only spaces.
    labels, groups = (_names(v) for v in (args.label, args.group))
    out = args.out if args.out is not None or args.json else DEFAULT_OUT
    verdicts = _verdict_options(parser, args)
    try:
        if out is None:  # --json alone: the JSON on stdout is the whole output
            report, _ = build_report(args.run_dirs, ks, args.pass_threshold, labels, groups, train_logs, verdicts)
            result = {**to_json(report), "plots": [], "report": None}
        else:
            result = write_report(
                args.run_dirs, out, ks, args.pass_threshold, labels, groups, train_logs=train_logs, force=args.force,
                verdicts=verdicts,
            )  # fmt: skip
    except OutputError:
        raise
    except ValueError as err:  # labels, groups or --k that do not fit the run folders
        parser.error(str(err))
    for e in result["errors"]:
        print(f"error: {e}", file=sys.stderr)
    for w in result["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
    if args.json:
        print(strict_json.dumps(result, indent=1))
    else:
        print(Path(result["report"]).read_text(encoding="utf-8").split("## Curves")[0].rstrip())
        print(f"\nreport: {result['report']}\nplots: {', '.join(result['plots']) or 'none'}")
    return 1 if result["errors"] or not result["runs"] else 0


if __name__ == "__main__":
    sys.exit(main())
