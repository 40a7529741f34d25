"""Gradient variance at fixed parameters (the paper's headline claim): every arm's gradient on the same samples.

Beside it, at the same checkpoints: rho, the failure/success ratio of score norms |grad log pi(y|x)| per prompt,
and what the variance map (`verl_maxpo.tools.variance`, a one-prompt model) predicts at the measured rho and p.
"""

from __future__ import annotations

import math
from collections.abc import Container
from typing import Any

import numpy as np
import torch

from verl_maxpo.core.table import ARMS
from verl_maxpo.tasks.addition import AdditionTask, response_log_probs
from verl_maxpo.tools.demo.config import DemoConfig, gradvar_skipped
from verl_maxpo.tools.demo.rl import Progress, policy_gradient_loss, rollout, verl_configs


def gradvar_arms(k: int, registry: Container[str]) -> list[str]:
    """Every arm of the table that verl has registered and that can run at this k. The section is cheap (one
    backward pass per arm on shared samples), so it covers them all, not only the A/B's; an arm whose options do not
    fit k (pkpo at k = 1, maxpo_top2 with m = 2 > k = 1) is skipped, and the summary names it (`gradvar_skipped`)."""
    skipped = gradvar_skipped(k)
    return [name for name, arm in ARMS.items() if name not in skipped and arm.estimator in registry]


def gradient_variance(
    model: torch.nn.Module, task: AdditionTask, cfg: DemoConfig, arms: list[str], progress: Progress
) -> dict[str, dict[str, float]]:
    """Many independent gradient estimates at the model's current parameters, each from a fresh batch of
    --gradvar-prompts prompts x n samples. Every arm is computed on the *same* samples of a draw (one forward,
    one backward per arm), so the differences come from the advantages alone. The sample stream depends on
    --seed only, so every checkpoint is measured on the same prompts.

    Per arm, with g_j the M draws and g_bar their mean:
      rel_var  = trace(Cov) / |E g|^2, with |E g|^2 estimated without bias as |g_bar|^2 - trace(Cov)/M
      cos_mean = mean_j cos(g_j, mean of the other draws)  (leave-one-out, so a draw is not compared with itself)
    """
    device = next(model.parameters()).device
    params = [p for p in model.parameters() if p.requires_grad]
    rng = np.random.default_rng([cfg.seed, 4])
    gen = torch.Generator(device=device).manual_seed(cfg.seed + 4)
    configs = {arm: verl_configs(arm, cfg) for arm in arms}
    grads: dict[str, list[torch.Tensor]] = {arm: [] for arm in arms}
    for draw in range(cfg.gradvar_draws):
        batch = rollout(model, task, task.train_pairs(rng, cfg.gradvar_prompts), cfg.n, cfg.temperature, gen)
        log_prob = response_log_probs(model, batch.prompt_ids, batch.responses)
        for i, arm in enumerate(arms):
            loss, _, _ = policy_gradient_loss(model, batch, *configs[arm], log_prob=log_prob)
            g = torch.autograd.grad(-loss, params, retain_graph=i < len(arms) - 1, allow_unused=True)
            flat = [(x if x is not None else torch.zeros_like(p)).reshape(-1) for x, p in zip(g, params, strict=True)]
            grads[arm].append(torch.cat(flat).double().cpu())
        progress(1, f"gradient variance draw {draw + 1}")
    out = {}
    for arm, gs in grads.items():
        G = torch.stack(gs)  # (M, P)
        m = G.shape[0]
        mean = G.mean(0)
        trace_cov = ((G - mean) ** 2).sum().item() / (m - 1)
        signal = mean.square().sum().item() - trace_cov / m
        loo_means = (G.sum(0, keepdim=True) - G) / (m - 1)
        cos = torch.nn.functional.cosine_similarity(G, loo_means, dim=1)
        lo, hi = rel_var_interval(G)
        out[arm] = {
            # None: the mean gradient is not resolved above the noise of M draws (|g_bar|^2 <= trace(Cov)/M), so the
            # ratio is unbounded; the summary says so rather than printing inf (and the JSON stays strict).
            "rel_var": trace_cov / signal if signal > 0 else None,
            "rel_var_ci95": [x if math.isfinite(x) else None for x in (lo, hi)],
            "cos_mean": float(torch.nan_to_num(cos).mean()),
            "mean_norm": mean.norm().item(),
            "zero_frac": float((G.abs().sum(1) == 0).double().mean()),
        }
    if "maxpo" in grads and "pkpo" in grads:  # same expectation (grad max@k); their means should agree
        a, b = torch.stack(grads["maxpo"]).mean(0), torch.stack(grads["pkpo"]).mean(0)
        out["maxpo"]["cos_to_pkpo_mean"] = float(torch.nn.functional.cosine_similarity(a, b, dim=0))
    return out


def checkpoint_stats(
    model: torch.nn.Module, task: AdditionTask, cfg: DemoConfig, arms: list[str], progress: Progress
) -> dict[str, Any]:
    """Everything measured at one checkpoint: {"gradvar": per-arm statistics, "score_norms": rho, p and the map's
    relative variance of each arm at them}."""
    norms = score_norm_ratio(model, task, cfg)
    # the map's pass/fail law; the demo's partial reward (a fraction of answer tokens) has no law of the map
    exact = cfg.reward == "exact"
    norms["map_rel_var"] = (
        map_prediction(arms, cfg.n, cfg.k, norms["p"], norms["rho"]) if exact else dict.fromkeys(arms)
    )
    return {"gradvar": gradient_variance(model, task, cfg, arms, progress), "score_norms": norms}


def score_norm_ratio(model: torch.nn.Module, task: AdditionTask, cfg: DemoConfig) -> dict[str, float | int | None]:
    """rho at the model's current parameters: per prompt, the mean score norm |grad log pi(y|x)| of its failed
    samples over that of its exact answers; averaged over the prompts that have both. Also the pass rate p of the
    samples, the map's other input. Samples come from their own stream (--seed), so every checkpoint of a demo is
    measured on the same prompts: --gradvar-prompts prompts x n samples.
    """
    device = next(model.parameters()).device
    rng = np.random.default_rng([cfg.seed, 5])
    gen = torch.Generator(device=device).manual_seed(cfg.seed + 5)
    batch = rollout(model, task, task.train_pairs(rng, cfg.gradvar_prompts), cfg.n, cfg.temperature, gen)
    norms = per_sample_score_norms(model, batch.prompt_ids, batch.responses, batch.response_mask)
    return norm_ratio(norms.reshape(-1, cfg.n), (batch.scores >= 1).reshape(-1, cfg.n).cpu())


def per_sample_score_norms(
    model: torch.nn.Module, prompt_ids: torch.Tensor, responses: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """(B,) float64: |grad_theta log pi(response | prompt)| of each row, the log-prob summed over the mask.

    One backward pass per row: a batched backward gives only the sum of the rows' gradients, not their norms. It
    runs at a few checkpoints of the demo's 0.1M-parameter model, where the loop costs seconds."""
    params = [p for p in model.parameters() if p.requires_grad]
    norms = torch.empty(len(responses), dtype=torch.float64)
    for i in range(len(responses)):
        lp = response_log_probs(model, prompt_ids[i : i + 1], responses[i : i + 1])
        grads = torch.autograd.grad((lp * mask[i : i + 1]).sum(), params, allow_unused=True)
        norms[i] = torch.sqrt(sum((g.double() ** 2).sum() for g in grads if g is not None))
    return norms


def norm_ratio(norms: torch.Tensor, solved: torch.Tensor) -> dict[str, float | int | None]:
    """rho and p from (prompts, n) score norms and exact-answer flags; rho is None when no prompt has both."""
    solved = solved.bool()
    mixed = solved.any(1) & ~solved.all(1)
    fail = (norms * ~solved).sum(1) / (~solved).sum(1).clamp_min(1)
    ok = (norms * solved).sum(1) / solved.sum(1).clamp_min(1)
    ratios = (fail / ok)[mixed]
    return {
        "rho": float(ratios.mean()) if len(ratios) else None,
        "rho_median": float(ratios.median()) if len(ratios) else None,
        "prompts_with_both": int(mixed.sum()),
        "prompts": int(solved.shape[0]),
        "p": float(solved.double().mean()),
        "score_norm_success": float(norms[solved].mean()) if solved.any() else None,
        "score_norm_failure": float(norms[~solved].mean()) if (~solved).any() else None,
    }


def map_prediction(arms: list[str], n: int, k: int, p: float | None, rho: float | None) -> dict[str, float | None]:
    """The variance map's relative variance of each arm at the measured (p, rho): binary rewards, the map's default
    within-level noise. None where the map has no value (p outside its range, an arm it does not hold)."""
    from verl_maxpo.tools import variance

    if p is None or rho is None or not (variance.P_RANGE[0] <= p <= variance.P_RANGE[1]) or n > variance.MAX_N:
        return {arm: None for arm in arms}
    rows = variance.map_rows()
    out: dict[str, float | None] = {}
    for arm in arms:
        if arm not in rows or n < variance.min_group_size([rows[arm]], k):
            out[arm] = None
            continue
        mean, trace = variance.exact_moments(arm, "binary", p, n, k, rho)
        out[arm] = trace / mean**2 if mean != 0 else None
    return out


def rel_var_interval(draws: torch.Tensor, resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile-bootstrap interval of rel_var over the M draws (resampled with replacement). A resample's
    mean and spread are quadratic forms in its multiplicity vector w, so all of them come from the draws' (M, M)
    Gram matrix: |g_bar|^2 = w'Kw / M^2, sum_j w_j |g_j - g_bar|^2 = sum_j w_j K_jj - M |g_bar|^2."""
    m = draws.shape[0]
    gram = draws @ draws.T
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(m, (resamples, m), generator=gen)
    w = torch.zeros(resamples, m, dtype=gram.dtype).scatter_add_(1, idx, torch.ones(resamples, m, dtype=gram.dtype))
    mean_sq = ((w @ gram) * w).sum(1) / m**2
    trace_cov = ((w * gram.diagonal()).sum(1) - m * mean_sq) / (m - 1)
    signal = mean_sq - trace_cov / m
    rel = torch.where(signal > 0, trace_cov / signal.clamp_min(1e-300), torch.full_like(signal, math.inf))
    # outer order statistics, not interpolation: resamples with no signal are inf, and inf - inf is nan
    lo = torch.quantile(rel, 0.025, interpolation="lower").item()
    hi = torch.quantile(rel, 0.975, interpolation="higher").item()
    return lo, hi
