"""The numbers of a report, apart from how they are shown: unbiased pass@k / max@k per validation step, per run and
per seed group (mean and standard error), as small dataclasses.

`verl-maxpo report` (`verl_maxpo.tools.report.main`) turns these into markdown, PNGs and JSON; `verl-maxpo demo`
uses them directly.
    max@k  = mean over prompts of the unbiased expected best score of k samples drawn without replacement from the
             prompt's n samples (`estimators.max_at_k`)
    pass@k = the same on pass = [score >= threshold] (the usual 1 - C(n-c, k) / C(n, k))
Prompts with fewer than k samples are left out of that k and counted (`StepMetrics.left_out`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from verl_maxpo.core.estimators import max_at_k
from verl_maxpo.core.groups import group_index
from verl_maxpo.runs.folder import RunMeta

METRIC_KINDS = ("max", "pass")
# `maxpo_k4_seed1`, `grpo-seed2`, `run_seed_3` -> config `maxpo_k4`, `grpo`, `run`.
_SEED_SUFFIX = re.compile(r"^(?P<config>.+?)[_\-.]?seed[_\-]?(?P<seed>\d+)$", re.IGNORECASE)


@dataclass(frozen=True, order=True)
class Metric:
    """One metric: `kind` "max" or "pass", at `k`; its name is `max@4`, `pass@16`, ..."""

    k: int
    kind: str

    @property
    def name(self) -> str:
        return f"{self.kind}@{self.k}"


def metrics_for(ks: Sequence[int]) -> list[Metric]:
    """[max@k1, pass@k1, max@k2, ...] in the order of ks."""
    return [Metric(k, kind) for k in ks for kind in METRIC_KINDS]


@dataclass(frozen=True)
class StepMetrics:
    """max@k and pass@k of one validation step. `values[m]` is None when every prompt has fewer than k samples;
    `left_out[k]` counts the prompts left out of k (only the k that lost prompts)."""

    step: int
    prompts: int
    samples: int
    values: dict[Metric, float | None]
    left_out: dict[int, int]

    def as_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "prompts": self.prompts,
            "samples": self.samples,
            **{m.name: v for m, v in self.values.items()},
            "left_out": {str(k): c for k, c in self.left_out.items()},
        }


def _scale(values: np.ndarray | torch.Tensor) -> float:
    """A power of two at most max|values| (1.0 for small values): dividing by it is exact and keeps sums of
    scores near ±1e308 finite; max@k and means are linear in the scores, so multiplying back gives the same value."""
    top = float(abs(values).max()) if len(values) else 0.0
    return math.ldexp(1.0, math.frexp(top)[1] - 1) if top > 1.0 else 1.0


def step_metrics(
    prompt_ids: np.ndarray | torch.Tensor,
    scores: np.ndarray | torch.Tensor,
    ks: Sequence[int],
    pass_threshold: float = 1.0,
    step: int = 0,
) -> StepMetrics:
    """max@k and pass@k of one step.

    Args:
        prompt_ids: (N,) integer prompt id of each sample (samples of one prompt share an id).
        scores: (N,) finite float score of each sample.
        ks: the k values.
        pass_threshold: a sample passes when score >= pass_threshold.
        step: the step these samples belong to.
    """
    ids = torch.as_tensor(np.asarray(prompt_ids, dtype=np.int64))
    rewards = torch.as_tensor(np.asarray(scores, dtype=np.float64))
    scale = _scale(rewards)
    passed = (rewards >= pass_threshold).to(torch.float64)
    inverse, counts = group_index(ids)
    group_size_of_sample = counts[inverse]
    values: dict[Metric, float | None] = {}
    left_out: dict[int, int] = {}
    for k in ks:
        keep = group_size_of_sample >= k
        n_out = int((counts < k).sum())
        if n_out:
            left_out[k] = n_out
        if not bool(keep.any()):
            values[Metric(k, "max")] = values[Metric(k, "pass")] = None
            continue
        values[Metric(k, "max")] = float(max_at_k(rewards[keep] / scale, ids[keep], k).mean()) * scale
        values[Metric(k, "pass")] = float(max_at_k(passed[keep], ids[keep], k).mean())
    return StepMetrics(step, int(counts.numel()), int(rewards.numel()), values, left_out)


@dataclass(frozen=True)
class MeanSE:
    """Mean over seeds and its standard error (sample std / sqrt(seeds)); `se` is None for one seed."""

    mean: float | None
    se: float | None = None


def mean_se(values: Sequence[float]) -> MeanSE:
    """Mean and standard error of `values` (at least one)."""
    arr = np.asarray(values, dtype=np.float64)
    scale = _scale(arr)  # seed values near ±1e308: the sum would overflow
    arr = arr / scale
    se = float(arr.std(ddof=1) / math.sqrt(arr.size)) * scale if arr.size >= 2 else None
    return MeanSE(float(arr.mean()) * scale, se)


@dataclass(frozen=True)
class Extremes:
    """A curve's value at its last step and its best value (the earliest step reaching it)."""

    final: MeanSE
    final_step: int | None
    best: MeanSE
    best_step: int | None


def extremes(steps: Sequence[int], values: Sequence[MeanSE]) -> Extremes:
    """Final and best of one curve; points whose mean is None are skipped for the best."""
    if not steps:
        return Extremes(MeanSE(None), None, MeanSE(None), None)
    points = [(s, v) for s, v in zip(steps, values, strict=True) if v.mean is not None]
    best_step, best = max(points, key=lambda p: (p[1].mean, -p[0])) if points else (None, MeanSE(None))
    return Extremes(values[-1], steps[-1], best, best_step)


@dataclass
class RunMetrics:
    """One run: its steps in order and, per metric, the final and best values."""

    name: str
    path: str
    group: str
    seeds_in_group: int
    n: int | None
    meta: RunMeta | None
    steps: list[StepMetrics]
    summary: dict[Metric, Extremes]
    train_metrics: list[str] = field(default_factory=list)

    def curve(self, metric: Metric) -> tuple[list[int], list[float]]:
        pts = [(s.step, s.values[metric]) for s in self.steps if s.values.get(metric) is not None]
        return [p[0] for p in pts], [p[1] for p in pts]


@dataclass(frozen=True)
class GroupStep:
    """Mean ± SE over a seed group's runs at one step all of them share."""

    step: int
    values: dict[Metric, MeanSE]


@dataclass
class GroupMetrics:
    """A seed group: its runs, the seed mean ± SE per shared step, and final/best of the mean curve (the best is
    where the mean curve peaks, not the mean of each seed's luckiest step)."""

    name: str
    runs: list[str]
    seeds: int
    steps: list[GroupStep]
    summary: dict[Metric, Extremes]


def run_metrics(
    name: str,
    path: str,
    group: str,
    seeds_in_group: int,
    n: int | None,
    meta: RunMeta | None,
    steps: list[StepMetrics],
    metrics: Sequence[Metric],
    train_metrics: Sequence[str] = (),
) -> RunMetrics:
    summary = {
        m: extremes([s.step for s in steps], [MeanSE(s.values.get(m)) for s in steps]) for m in metrics
    }  # fmt: skip
    return RunMetrics(name, path, group, seeds_in_group, n, meta, steps, summary, list(train_metrics))


def group_metrics(name: str, members: Sequence[RunMetrics], metrics: Sequence[Metric]) -> tuple[GroupMetrics, bool]:
    """Seed mean ± SE at the steps every member with steps has; also whether some steps were dropped."""
    with_steps = [r for r in members if r.steps]
    step_sets = [{s.step for s in r.steps} for r in with_steps]
    common = sorted(set.intersection(*step_sets)) if step_sets else []
    dropped = any(s != set(common) for s in step_sets)
    by_step = [{s.step: s for s in r.steps} for r in with_steps]
    steps = []
    for step in common:
        values = {}
        for m in metrics:
            vals = [b[step].values.get(m) for b in by_step]
            values[m] = mean_se(vals) if all(v is not None for v in vals) else MeanSE(None)
        steps.append(GroupStep(step, values))
    summary = {m: extremes([s.step for s in steps], [s.values[m] for s in steps]) for m in metrics}
    return GroupMetrics(name, [r.name for r in members], len(members), steps, summary), dropped


def config_name(run_name: str) -> str:
    """The config a run belongs to: its name without a trailing `seed<N>` (`maxpo_k4_seed1` -> `maxpo_k4`)."""
    match = _SEED_SUFFIX.match(run_name)
    return match["config"] if match else run_name


@dataclass
class ReportMetrics:
    """Every number of one report, and the problems met while reading its input."""

    runs: list[RunMetrics]
    groups: list[GroupMetrics]
    ks: list[int]
    pass_threshold: float
    binary_scores: bool  # all scores 0/1 and threshold in (0, 1]: pass@k and max@k are the same numbers
    errors: list[str]
    warnings: list[str]
    analysis: dict[str, Any] | None = None  # per-seed values and verdicts (verl_maxpo.tools.stats), when asked for

    @property
    def metrics(self) -> list[Metric]:
        """The metrics to show: pass@k only for 0/1 scores (max@k is the same number), else max@k and pass@k."""
        every = metrics_for(self.ks)
        return [m for m in every if m.kind == "pass"] if self.binary_scores else every
