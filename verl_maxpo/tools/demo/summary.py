"""The demo's summary.md / summary.json: pass@k tables, gradient variance, and what the numbers depend on.

Numbers are fractions with 4 decimals, as in report.md (pass@1 0.1234, not 12.3%).
"""

from __future__ import annotations

import importlib.metadata
import platform
import sys
from typing import Any

import numpy as np

from verl_maxpo.tools import stats
from verl_maxpo.tools.demo.config import DemoConfig, gradvar_skipped
from verl_maxpo.tools.report.metrics import mean_se

# The packages whose versions a table depends on (float kernels, sampling, tokenizer, verl's loss and advantages).
PACKAGES = ("torch", "verl", "transformers", "tokenizers", "numpy", "omegaconf")
REWARD_TEXT = {
    "exact": "exact-match reward",
    "partial": "partial-credit reward (fraction of response tokens right; pass@k counts exact answers)",
}
Histories = dict[str, dict[int, list[dict[str, float]]]]  # arm -> seed -> validations
GradVar = dict[str, dict[str, dict[str, float]]]  # checkpoint -> arm -> statistics


def fmt(mean: float, se: float | None = None) -> str:
    return f"{mean:.4f}" if se is None else f"{mean:.4f} ± {se:.4f}"


def provenance(cfg: DemoConfig, command: str, workers: int) -> dict[str, Any]:
    """Everything a table depends on besides the options: package versions, Python, CPU threads. `workers` is
    recorded, though it does not change a number (each run is one process with one thread, seeded by itself)."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return {
        "command": command,
        "python": sys.version.split()[0],
        "platform": f"{platform.system()} {platform.machine()}",
        "packages": versions,
        "device": cfg.device,
        "torch_threads_per_run": 1,
        "workers": workers,
        "seeds": cfg.seed_list,
        "settings": cfg.settings(),
    }


def run_metrics(history: list[dict[str, float]], ks: tuple[int, ...] | list[int]) -> dict[str, float]:
    """One run's final pass@k and pass@k averaged over the validations after step 0 (index 0 is step 0)."""
    row = {}
    for k in ks:
        row[f"final_pass@{k}"] = history[-1][f"val/pass@{k}"]
        row[f"avg_pass@{k}"] = float(np.mean([e[f"val/pass@{k}"] for e in history[1:]]))
    return row


def per_seed_values(cfg: DemoConfig, histories: Histories) -> tuple[list[int], dict[str, dict[str, list[Any]]]]:
    """Every run's metrics in one seed order for every arm: (seeds, {arm: {metric: [value per seed]}}), None where
    an arm lacks a seed. Metrics: step-0 pass@1, then final and avg pass@k for every validation k."""
    seeds = sorted({s for by_seed in histories.values() for s in by_seed})
    out: dict[str, dict[str, list[Any]]] = {}
    for arm, by_seed in histories.items():
        rows = {s: {"step0_pass@1": h[0]["val/pass@1"], **run_metrics(h, cfg.val_ks)} for s, h in by_seed.items()}
        names = next(iter(rows.values())).keys()
        out[arm] = {m: [rows[s][m] if s in rows else None for s in seeds] for m in names}
    return seeds, out


def analysis(cfg: DemoConfig, histories: Histories) -> dict[str, Any]:
    """The verdicts of summary.json (verl_maxpo.tools.stats): per-seed values, the primary metric, the comparisons."""
    seeds, per_seed = per_seed_values(cfg, histories)
    baseline = cfg.baseline if cfg.baseline in per_seed else next(iter(per_seed))
    pairs = [p for p in cfg.compare if p[0] in per_seed and p[1] in per_seed]
    blocks = [cfg.base_of(s) for s in seeds] if cfg.base_seeds > 1 else None
    return stats.analyze(per_seed, seeds, cfg.primary_metric, baseline, pairs, blocks)


def pass_table(cfg: DemoConfig, histories: Histories) -> dict[str, dict[str, tuple[float, float | None]]]:
    """Per arm: step-0 pass@1, final pass@k and pass@k averaged over the validations after step 0 (mean, s.e.)."""
    table = {}
    for arm, by_seed in histories.items():
        runs = list(by_seed.values())
        row = {"step0_pass@1": mean_se([h[0]["val/pass@1"] for h in runs])}
        per_run = [run_metrics(h, cfg.val_ks) for h in runs]
        row |= {key: mean_se([m[key] for m in per_run]) for key in per_run[0]}
        table[arm] = {key: (value.mean, value.se) for key, value in row.items()}
    return table


def gradvar_notes(cfg: DemoConfig, gradvar: GradVar) -> list[str]:
    """Footnotes of the gradient-variance table: what `unresolved*` means, and the arms left out at this k."""
    lines = []
    if any(s["rel_var"] is None for per_arm in gradvar.values() for s in per_arm.values()):
        lines += [
            "",
            f"\\* unresolved: the mean gradient is not measurable above the noise of {cfg.gradvar_draws} draws "
            "(the unbiased estimate of |E g|^2 is <= 0), so the relative variance is unbounded, not a number "
            "(null in summary.json). It happens with few draws (--quick takes 4) and where most gradients are zero "
            "(zero-gradient draws near 1); more --gradvar-draws or --gradvar-prompts resolve it.",
        ]
    skipped = gradvar_skipped(cfg.k)
    if skipped:
        lines += ["", f"Not measured at k = {cfg.k} (the arm cannot run there):"]
        lines += [f"- {arm}: {reason}" for arm, reason in skipped.items()]
    return lines


def _rank(values: dict[str, float | None]) -> str:
    known = sorted((v, arm) for arm, v in values.items() if v is not None)
    return " < ".join(arm for _, arm in known) if len(known) > 1 else "n/a"


def score_norm_lines(cfg: DemoConfig, gradvar: GradVar, score_norms: dict[str, dict[str, Any]]) -> list[str]:
    """rho and p at each checkpoint, and the map's relative variance at them beside the measured one."""
    lines = [
        "",
        "## Score norms and the variance map",
        "",
        f"rho = per prompt, mean |grad log pi| of failed samples over that of exact answers, averaged over the "
        f"prompts with both ({cfg.gradvar_prompts} prompts x n={cfg.n} per checkpoint); p = pass rate of those "
        "samples. The map (`verl-maxpo variance`: one prompt, binary reward, its default within-level noise) "
        "gives each arm's relative variance at the measured (p, rho). Its scale is set by that noise, so compare "
        "the order of the arms, not the values; the demo's prompts differ in p, so the map is a rough guide and "
        "the measured column is what counts. With --reward partial the map has no matching law: n/a.",
        "",
        "| checkpoint | rho (median) | prompts with both | p | arm | measured rel. variance | map at (p, rho) |",
        "|---|---|---|---|---|---|---|",
    ]
    orders = []
    for ckpt, norms in score_norms.items():
        rho = "n/a" if norms["rho"] is None else f"{norms['rho']:.3f} ({norms['rho_median']:.3f})"
        measured = {arm: s["rel_var"] for arm, s in gradvar.get(ckpt, {}).items()}
        for arm, predicted in norms["map_rel_var"].items():
            got = measured.get(arm)
            lines.append(
                f"| {ckpt} | {rho} | {norms['prompts_with_both']}/{norms['prompts']} | {norms['p']:.3f} | {arm} | "
                f"{'unresolved*' if got is None else f'{got:.4f}'} | "
                f"{'n/a' if predicted is None else f'{predicted:.4f}'} |"
            )
        orders.append(f"- {ckpt}: measured {_rank(measured)}; map {_rank(norms['map_rel_var'])}")
    lines += ["", "Order of the arms, quietest first:", *orders]
    return lines


def summarize(
    cfg: DemoConfig,
    histories: Histories,
    gradvar: GradVar,
    warm: dict[str, Any],
    timings: dict[str, float],
    prov: dict[str, Any],
    score_norms: dict[str, dict[str, Any]] | None = None,
) -> tuple[str, dict[str, Any]]:
    """Markdown summary (final and mean-over-training pass@k per arm, gradient variance, provenance) and its data."""
    ks = cfg.val_ks
    table = pass_table(cfg, histories)
    seeds_text = f"{cfg.seeds} seed(s)"
    if cfg.base_seeds > 1:
        steps = ", ".join(f"{w['steps']}" for w in warm.get("by_base_seed", {}).values())
        seeds_text = (
            f"{cfg.base_seeds} base seeds {cfg.base_seed_list} (each its own model init, warm start and held-out "
            f"set; warm-start steps {steps}; the figures just before are those of the first) x {cfg.seeds} RL seeds"
        )
    lines = [
        "# MaxPO demo summary",
        "",
        f"Command: `{prov['command']}`",
        "",
        f"Task: {cfg.digits}-digit addition, {REWARD_TEXT[cfg.reward]}. Policy: 2-layer Llama (random init), "
        "warm start "
        f"{warm['steps']} supervised steps (sampled pass@1 on training prompts {warm['train_pass@1']:.4f}). "
        f"RL: {cfg.steps} steps x {cfg.prompts_per_step} prompts x n={cfg.n}, AdamW lr={cfg.lr}, "
        f"loss_agg_mode={cfg.loss_agg_mode}, k={cfg.k}, {seeds_text}. Validation: {cfg.val_prompts} "
        f"held-out prompts x {cfg.val_n} samples.",
        "",
        "## Held-out pass@k, fractions (mean ± standard error over seeds)",
        "",
    ]
    if cfg.base_seeds > 1:
        lines += [
            "Over all runs of an arm, as if independent: descriptive only. The runs of one base seed share a warm "
            "start, so the uncertainty that counts is over base seeds (primary metric section).",
            "",
        ]
    head = ["arm", "step 0"] + [f"final pass@{k}" for k in ks] + [f"avg pass@{k} (steps > 0)" for k in ks]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for arm, row in table.items():
        cells = [arm, fmt(*row["step0_pass@1"])]
        cells += [fmt(*row[f"final_pass@{k}"]) for k in ks] + [fmt(*row[f"avg_pass@{k}"]) for k in ks]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        '"avg" is the mean over all validations after step 0 (area under the curve), less noisy than the final '
        "point. Curves: report.md and the PNGs next to it.",
        "",
    ]
    verdicts = analysis(cfg, histories)
    lines += [
        "Verdicts are given on one metric, named before the runs (the primary metric, --primary-metric); the "
        "other metrics are descriptive.",
        "",
    ]
    lines += stats.markdown(verdicts)
    lines += [
        "## Gradient variance at fixed parameters",
        "",
        f"{cfg.gradvar_draws} independent gradient estimates per checkpoint, each from {cfg.gradvar_prompts} "
        f"prompts x n={cfg.n}; every arm on the same samples. rel. variance = trace(Cov)/|E g|^2 "
        "(lower is better), cos = mean cosine of a draw to the mean of the other draws (higher is better).",
        "",
        "| checkpoint | arm | rel. variance | 95% CI (bootstrap over draws) | cos to mean | zero-gradient draws |",
        "|---|---|---|---|---|---|",
    ]
    for ckpt, per_arm in gradvar.items():
        for arm, s in per_arm.items():
            rel = "unresolved*" if s["rel_var"] is None else f"{s['rel_var']:.4f}"
            ci = "n/a"
            if s.get("rel_var_ci95"):
                ci = "[" + ", ".join("unbounded*" if x is None else f"{x:.4g}" for x in s["rel_var_ci95"]) + "]"
            lines.append(f"| {ckpt} | {arm} | {rel} | {ci} | {s['cos_mean']:.4f} | {s['zero_frac']:.4f} |")
    lines += gradvar_notes(cfg, gradvar)
    agree = [
        f"{c}: {s['maxpo']['cos_to_pkpo_mean']:.4f}"
        for c, s in gradvar.items()
        if "cos_to_pkpo_mean" in s.get("maxpo", {})
    ]
    if agree:
        lines += [
            "",
            "Sanity: cosine between the mean MaxPO and mean PKPO gradients (same expectation, grad "
            "max@k): " + ", ".join(agree) + ".",
        ]
    if score_norms:
        lines += score_norm_lines(cfg, gradvar, score_norms)
    packages = ", ".join(f"{name} {version}" for name, version in prov["packages"].items())
    lines += [
        "",
        "## What these numbers depend on",
        "",
        f"Python {prov['python']} on {prov['platform']}, {packages}; device {prov['device']}, "
        f"{prov['torch_threads_per_run']} torch thread per run ({prov['workers']} worker process(es), which do not "
        f"change a number); seeds {prov['seeds']}; the command above. The same command with the same versions "
        "gives these tables digit for digit (float results of other versions, or of other CPU kernels, may "
        "differ).",
        "",
        "Wall time: " + ", ".join(f"{k} {v:.0f}s" for k, v in timings.items()),
        "",
    ]
    data = {"table": table, **verdicts, "gradvar": gradvar, "score_norms": score_norms or {}, "warm_start": warm}
    data["gradvar_skipped"] = gradvar_skipped(cfg.k)
    data |= {"timings_s": timings, "provenance": prov}
    return "\n".join(lines), data
