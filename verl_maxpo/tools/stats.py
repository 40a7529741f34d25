"""Verdicts between A/B arms: paired t-tests over seeds, Holm-adjusted across the arms compared on one metric.

One module holds the statistics that the demo's summary and `verl-maxpo report` print, so both call a difference
"better" by the same rule:
  - per seed, the arm's value minus the baseline's on the same seed (same prompts, same warm start);
  - a two-sided paired t-test on those differences, df = seeds - 1, and the 95% confidence interval of their mean;
  - Holm's step-down adjustment over every comparison made on the same metric (the family), so naming more arms
    does not make a spurious "better" more likely;
  - "better" / "worse" only where the adjusted p is below 0.05, otherwise "no clear difference". Differences with
    zero variance, or fewer than 2 shared seeds, get no test and no verdict, with the reason.
With two levels of seeds (base seeds: model init, warm start, held-out set; RL seeds within each), the differences
are first averaged within each base seed and the test runs over base seeds: the variance between warm starts is
then in the error bar, which RL seeds around one warm start cannot show.

Higher is taken to be better (pass@k, max@k). Pure Python: the t distribution comes from the regularized
incomplete beta function, so nothing here needs scipy.
"""

from __future__ import annotations

import math
import re
from collections.abc import Hashable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

ALPHA = 0.05
BETTER, WORSE, UNCLEAR, NO_VERDICT = "better", "worse", "no clear difference", "no verdict"
_EPS, _TINY, _MAX_ITER = 1e-15, 1e-300, 10_000


# ----------------------------------------------------------------------------------------------------------------
# The t distribution
# ----------------------------------------------------------------------------------------------------------------


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of I_x(a, b) (modified Lentz), which converges fast for x < (a+1)/(a+b+2)."""
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, _MAX_ITER):
        even = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        odd = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        for num in (even, odd):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + num / c
            c = c if abs(c) > _TINY else _TINY
            h *= d * c
        if abs(d * c - 1.0) < _EPS:
            return h
    raise ArithmeticError(f"incomplete beta did not converge at a={a}, b={b}, x={x}")


def betainc(a: float, b: float, x: float, y: float | None = None) -> float:
    """The regularized incomplete beta function I_x(a, b) for a, b > 0 and x in [0, 1]; `y` = 1 - x when the
    caller knows it more exactly than 1 - x rounds (x within an ulp of 1)."""
    y = 1.0 - x if y is None else y
    if not (a > 0 and b > 0 and 0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
        raise ValueError(f"betainc needs a, b > 0 and x in [0, 1], got a={a}, b={b}, x={x}")
    if x == 0.0 or y == 0.0:
        return 0.0 if x == 0.0 else 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log(y)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(b, a, y) / b


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with `df` degrees of freedom: I_{df/(df+t^2)}(df/2, 1/2)."""
    if not df > 0:
        raise ValueError(f"df must be positive, got {df}")
    if math.isnan(t):
        raise ValueError("t is NaN")
    if math.isinf(t):
        return 0.0
    return min(1.0, betainc(df / 2.0, 0.5, df / (df + t * t), t * t / (df + t * t)))


def t_critical(df: float, alpha: float = ALPHA) -> float:
    """The two-sided critical value c with P(|T| >= c) = alpha (bisection: t_two_sided_p falls as |t| grows)."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    lo, hi = 0.0, 1.0
    while t_two_sided_p(hi, df) > alpha:
        lo, hi = hi, hi * 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if t_two_sided_p(mid, df) > alpha else (lo, mid)
        if hi - lo <= 1e-13 * hi:
            break
    return 0.5 * (lo + hi)


# ----------------------------------------------------------------------------------------------------------------
# Tests and their family
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PairedT:
    """A paired t-test on per-unit differences. `p`, `t`, `ci95` are None where no test is possible (`reason`)."""

    n: int
    diff: float | None
    se: float | None
    t: float | None
    df: int | None
    ci95: tuple[float, float] | None
    p: float | None
    reason: str | None = None


def paired_t(differences: Sequence[float], alpha: float = ALPHA) -> PairedT:
    """Two-sided one-sample t-test of mean(differences) = 0, df = len - 1, and the (1 - alpha) interval."""
    n = len(differences)
    if n == 0:
        return PairedT(0, None, None, None, None, None, None, "no shared seed")
    mean = math.fsum(differences) / n
    if n < 2:
        return PairedT(n, mean, None, None, None, None, None, "1 shared seed: no variance to test against")
    var = math.fsum((d - mean) ** 2 for d in differences) / (n - 1)
    se = math.sqrt(var / n)
    # Differences equal to rounding (pass rates move in steps of 1/prompts): a spread this small is no spread.
    if se <= 1e-12 * max(1.0, abs(mean)):
        why = f"the {n} differences are all equal ({mean:+.4g}): zero variance, so a t-test is undefined"
        return PairedT(n, mean, 0.0, None, n - 1, None, None, why)
    t = mean / se
    half = t_critical(n - 1, alpha) * se
    return PairedT(n, mean, se, t, n - 1, (mean - half, mean + half), t_two_sided_p(t, n - 1))


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values (None stays None and is not counted in the family): the i-th smallest of
    m p-values becomes max over j <= i of min(1, (m - j + 1) p_(j)). Rejecting where the adjusted p < alpha keeps the
    chance of any false "better"/"worse" in the family at most alpha."""
    order = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    m = len(order)
    out: list[float | None] = [None] * len(p_values)
    running = 0.0
    for j, (p, i) in enumerate(order):
        running = max(running, min(1.0, (m - j) * p))
        out[i] = running
    return out


def verdict(diff: float | None, p_holm: float | None, alpha: float = ALPHA) -> str:
    if diff is None or p_holm is None:
        return NO_VERDICT
    if p_holm < alpha:
        return BETTER if diff > 0 else WORSE
    return UNCLEAR


# ----------------------------------------------------------------------------------------------------------------
# Comparisons from per-seed values
# ----------------------------------------------------------------------------------------------------------------

PerSeed = dict[str, dict[str, list[float | None]]]  # arm -> metric -> value per seed (None: the arm lacks it)


@dataclass(frozen=True)
class Comparison:
    """One arm against a baseline on one metric; `unit` is what the test ran over ("seed" or "base seed")."""

    arm: str
    baseline: str
    metric: str
    unit: str
    n: int
    diff: float | None
    se: float | None
    t: float | None
    df: int | None
    ci95: list[float] | None
    p: float | None
    p_holm: float | None
    verdict: str
    reason: str | None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def unit_differences(
    arm_values: Sequence[float | None], base_values: Sequence[float | None], blocks: Sequence[Hashable] | None = None
) -> list[float]:
    """The paired differences a test runs over: per seed both arms have, or with `blocks` (the base seed of each
    position) naming two or more base seeds, the mean difference within each base seed."""
    if len(arm_values) != len(base_values) or (blocks is not None and len(blocks) != len(arm_values)):
        raise ValueError("per-seed lists of different lengths: every arm needs one value slot per seed")
    pairs = [(i, a - b) for i, (a, b) in enumerate(zip(arm_values, base_values, strict=True)) if None not in (a, b)]
    if blocks is None or len(set(blocks)) < 2:
        return [d for _, d in pairs]
    by_block: dict[Hashable, list[float]] = {}
    for i, d in pairs:
        by_block.setdefault(blocks[i], []).append(d)
    return [math.fsum(ds) / len(ds) for ds in by_block.values()]


def compare(
    per_seed: PerSeed,
    metric: str,
    pairs: Sequence[tuple[str, str]],
    blocks: Sequence[Hashable] | None = None,
    alpha: float = ALPHA,
) -> list[Comparison]:
    """Paired t-tests of every (arm, baseline) in `pairs` on `metric`, Holm-adjusted together (one family)."""
    unit = "base seed" if blocks is not None and len(set(blocks)) >= 2 else "seed"
    tests = []
    for arm, base in pairs:
        for name in (arm, base):
            if name not in per_seed or metric not in per_seed[name]:
                raise KeyError(f"no per-seed values of {metric!r} for {name!r}")
        diffs = unit_differences(per_seed[arm][metric], per_seed[base][metric], blocks)
        tests.append(paired_t(diffs, alpha))
    adjusted = holm([t.p for t in tests])
    out = []
    for (arm, base), t, p_holm in zip(pairs, tests, adjusted, strict=True):
        reason = t.reason.replace("seed", unit) if t.reason and unit != "seed" else t.reason
        out.append(
            Comparison(
                arm,
                base,
                metric,
                unit,
                t.n,
                t.diff,
                t.se,
                t.t,
                t.df,
                list(t.ci95) if t.ci95 else None,
                t.p,
                p_holm,
                verdict(t.diff, p_holm, alpha),
                reason,
            )  # fmt: skip
        )
    return out


def default_pairs(arms: Sequence[str], baseline: str, extra: Sequence[tuple[str, str]] = ()) -> list[tuple[str, str]]:
    """Every other arm against `baseline`, then the arm-against-arm pairs asked for (duplicates dropped)."""
    pairs = [(a, baseline) for a in arms if a != baseline] + list(extra)
    seen: set[frozenset[str]] = set()
    out = []
    for a, b in pairs:
        if a != b and frozenset((a, b)) not in seen:
            seen.add(frozenset((a, b)))
            out.append((a, b))
    return out


def describe(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    """Mean and standard error (sample std / sqrt(n)) of the values present; SE None under 2 values."""
    xs = [v for v in values if v is not None]
    if not xs:
        return None, None
    mean = math.fsum(xs) / len(xs)
    if len(xs) < 2:
        return mean, None
    return mean, math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (len(xs) - 1) / len(xs))


# ----------------------------------------------------------------------------------------------------------------
# One analysis, as the demo's summary and the report publish it
# ----------------------------------------------------------------------------------------------------------------


def analyze(
    per_seed: PerSeed,
    seeds: Sequence[Any],
    primary: str,
    baseline: str,
    extra_pairs: Sequence[tuple[str, str]] = (),
    blocks: Sequence[Hashable] | None = None,
) -> dict[str, Any]:
    """The JSON-ready analysis: the per-seed values (one seed order for every arm), the primary metric, and the
    comparisons on it (every arm against `baseline`, then `extra_pairs`), one Holm family. `blocks`: the base seed
    of each position of `seeds`, for two levels of seeds."""
    for arm, metrics in per_seed.items():
        for metric, values in metrics.items():
            if len(values) != len(seeds):
                raise ValueError(f"{arm} {metric}: {len(values)} values for {len(seeds)} seeds")
    pairs = default_pairs(list(per_seed), baseline, extra_pairs)
    rows = compare(per_seed, primary, pairs, blocks) if pairs else []
    return {
        "seeds": list(seeds),
        "base_seeds": list(blocks) if blocks is not None else None,
        "per_seed": per_seed,
        "primary_metric": primary,
        "baseline": baseline,
        "alpha": ALPHA,
        "comparisons": [r.as_json() for r in rows],
    }


def _num(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def _p(value: float | None) -> str:
    return "n/a" if value is None else (f"{value:.3f}" if value >= 0.001 else f"{value:.1e}")


def markdown(analysis: dict[str, Any], metric_label: str | None = None) -> list[str]:
    """summary.md / report.md lines: the primary metric per arm with its 95% CI, then the tested comparisons with
    their verdicts, then the paired differences on every other metric, descriptive only."""
    per_seed, primary = analysis["per_seed"], analysis["primary_metric"]
    label = metric_label or primary
    blocks = analysis["base_seeds"]
    two_level = blocks is not None and len(set(blocks)) >= 2
    unit = "base seed" if two_level else "seed"
    lines = [f"## Primary metric: {label}", ""]
    if two_level:
        lines += [
            f"Two levels of seeds: {len(set(blocks))} base seeds (model init, warm start, held-out set) x RL seeds. "
            "Every uncertainty below is over base seeds: per base seed the mean over its RL seeds, then mean, "
            "standard error and t over those means, so the variance between warm starts is in the error bars.",
            "",
        ]
    lines += [f"| arm | {unit}s | mean | ± SE | 95% CI of the mean |", "|---|---|---|---|---|"]
    for arm in per_seed:
        values = per_seed[arm][primary]
        units = _unit_means(values, blocks) if two_level else [v for v in values if v is not None]
        mean, se = describe(units)
        ci = "n/a"
        if mean is not None and se is not None and se > 0:
            half = t_critical(len(units) - 1) * se
            ci = f"[{mean - half:.4f}, {mean + half:.4f}]"
        lines.append(f"| {arm} | {len(units)} | {_num(mean)} | {_num(se)} | {ci} |")
    comps = analysis["comparisons"]
    if comps:
        lines += [
            "",
            f"**Verdicts on {label}.** Per {unit}, the arm's value minus the other's (same prompts, same warm start); "
            f"a two-sided paired t-test over {unit}s (df = {unit}s - 1) and its 95% CI; p (Holm) is adjusted over the "
            f'{len(comps)} comparison(s) on this metric. "better" / "worse" only where p (Holm) < {ALPHA}; '
            'otherwise "no clear difference", which is not evidence that the arms are equal.',
            "",
            f"| arm | vs | {unit}s | difference | 95% CI | p | p (Holm) | verdict |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for c in comps:
            ci = "n/a" if c["ci95"] is None else f"[{c['ci95'][0]:+.4f}, {c['ci95'][1]:+.4f}]"
            cells = [c["arm"], c["baseline"], str(c["n"]), _num(c["diff"], True), ci, _p(c["p"]), _p(c["p_holm"])]
            lines.append("| " + " | ".join(cells + [c["verdict"]]) + " |")
        notes = [f"- {c['arm']} vs {c['baseline']}: {c['reason']}" for c in comps if c["reason"]]
        lines += ["", *notes] if notes else []
    others = [m for m in next(iter(per_seed.values()), {}) if m != primary]
    pairs = [(c["arm"], c["baseline"]) for c in comps]
    if others and pairs:
        lines += [
            "",
            f"**Other metrics, descriptive only** (paired difference, mean ± SE over {unit}s; no test, no verdict: "
            "the primary metric above is the one decided in advance).",
            "",
            "| arm | vs | " + " | ".join(others) + " |",
            "|---|---|" + "---|" * len(others),
        ]
        for arm, base in pairs:
            cells = []
            for m in others:
                mean, se = describe(unit_differences(per_seed[arm][m], per_seed[base][m], blocks))
                cells.append("n/a" if mean is None else f"{mean:+.4f}" + ("" if se is None else f" ± {se:.4f}"))
            lines.append(f"| {arm} | {base} | " + " | ".join(cells) + " |")
    return lines + [""]


def _unit_means(values: Sequence[float | None], blocks: Sequence[Hashable]) -> list[float]:
    by_block: dict[Hashable, list[float]] = {}
    for v, b in zip(values, blocks, strict=True):
        if v is not None:
            by_block.setdefault(b, []).append(v)
    return [math.fsum(vs) / len(vs) for vs in by_block.values()]


# ----------------------------------------------------------------------------------------------------------------
# Options of the two commands, and per-seed values from run folders (`verl-maxpo report`)
# ----------------------------------------------------------------------------------------------------------------

_METRIC = re.compile(r"^(?P<how>avg|final)_(?P<kind>pass|max)@(?P<k>[1-9]\d*)$")


def metric_k(name: str) -> int:
    """The k of a metric name `avg_pass@4` / `final_max@16` (checked: argparse type and report both use it)."""
    match = _METRIC.match(name)
    if match is None:
        raise ValueError(f"{name!r} is not a metric name: use avg_pass@K, final_pass@K, avg_max@K or final_max@K")
    return int(match["k"])


@dataclass(frozen=True)
class VerdictOptions:
    """What to test: the primary metric (None: avg pass@K at the runs' trained K), the baseline arm (None: maxpo,
    else the first arm) and extra arm-against-arm pairs."""

    primary: str | None = None
    baseline: str | None = None
    compare: tuple[tuple[str, str], ...] = ()


def per_seed_table(runs: Sequence[tuple[str, Any, dict[str, float | None]]]) -> tuple[list[Any], PerSeed]:
    """(arm, seed label, {metric: value}) per run -> (seeds, per_seed) in one seed order for every arm (None where
    an arm lacks a seed). Seeds are sorted, numbers before names; a label repeated within an arm is kept apart."""
    cells: dict[str, dict[Any, dict[str, float | None]]] = {}
    for arm, seed, metrics in runs:
        label, i = seed, 2
        while label in cells.setdefault(arm, {}):
            label, i = f"{seed}#{i}", i + 1
        cells[arm][label] = metrics
    labels = {s for by_seed in cells.values() for s in by_seed}
    seeds = sorted(labels, key=lambda s: (0, s, "") if isinstance(s, int) else (1, 0, str(s)))
    names = list(dict.fromkeys(m for by_seed in cells.values() for row in by_seed.values() for m in row))
    per_seed = {arm: {m: [by_seed.get(s, {}).get(m) for s in seeds] for m in names} for arm, by_seed in cells.items()}
    return seeds, per_seed


def resolve(options: VerdictOptions, arms: Sequence[str], trained_k: int | None, kind: str) -> tuple[str, str]:
    """The primary metric and baseline to use, or ValueError saying which option does not fit these runs."""
    primary = options.primary
    if primary is None:
        if trained_k is None:
            raise ValueError("the runs do not share one trained k (meta.json k): name the metric with --primary-metric")
        primary = f"avg_{kind}@{trained_k}"
    baseline = options.baseline or ("maxpo" if "maxpo" in arms else arms[0])
    if baseline not in arms:
        raise ValueError(f"--baseline {baseline!r} is not one of the arms ({', '.join(arms)})")
    for a, b in options.compare:
        if a not in arms or b not in arms:
            raise ValueError(f"--compare {a}:{b}: both must be arms ({', '.join(arms)})")
    return primary, baseline
