"""rho (the failure/success ratio of score norms) and the map's prediction beside the demo's measured variances."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from verl_maxpo.tasks.addition import AdditionTask, build_policy, response_log_probs
from verl_maxpo.tools import variance
from verl_maxpo.tools.demo.gradvar import map_prediction, norm_ratio, per_sample_score_norms


def test_norm_ratio_by_hand() -> None:
    norms = torch.tensor([[2.0, 4.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0], [6.0, 3.0, 3.0, 3.0]], dtype=torch.float64)
    solved = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1], [0, 1, 1, 1]], dtype=torch.bool)
    out = norm_ratio(norms, solved)
    # prompt 0: failures mean 3 over successes mean 1; prompt 1 has no failure (left out); prompt 2: 6 / 3
    assert out["rho"] == pytest.approx((3.0 + 2.0) / 2)
    assert out["rho_median"] in (pytest.approx(2.0), pytest.approx(3.0))
    assert (out["prompts_with_both"], out["prompts"]) == (2, 3)
    assert out["p"] == pytest.approx(9 / 12)
    assert out["score_norm_failure"] == pytest.approx((2 + 4 + 6) / 3)


def test_norm_ratio_without_mixed_prompts_is_none() -> None:
    out = norm_ratio(torch.ones(2, 3, dtype=torch.float64), torch.zeros(2, 3, dtype=torch.bool))
    assert out["rho"] is None and out["p"] == 0.0 and out["score_norm_success"] is None


def test_per_sample_norms_match_rows_of_a_batched_jacobian() -> None:
    """Each row's norm equals the gradient of w . log pi with w the row's indicator, taken through one batched
    forward: a different computation of the same per-sample gradient."""
    task = AdditionTask(2, 8, seed=0)
    model = build_policy(task, 0, torch.device("cpu"))
    rng = np.random.default_rng(0)
    prompt_ids, targets = task.encode(task.train_pairs(rng, 3), torch.device("cpu"))
    responses = targets[:, : task.response_len]
    mask = task.response_mask(responses)
    got = per_sample_score_norms(model, prompt_ids, responses, mask)
    params = [p for p in model.parameters() if p.requires_grad]
    seq = (response_log_probs(model, prompt_ids, responses) * mask).sum(1)
    for i in range(len(seq)):
        grads = torch.autograd.grad(seq[i], params, retain_graph=True, allow_unused=True)
        want = torch.sqrt(sum((g.double() ** 2).sum() for g in grads if g is not None))
        assert got[i].item() == pytest.approx(want.item(), rel=1e-5)
    assert len(set(got.tolist())) == len(got)  # distinct rows, not one number repeated


def test_map_prediction_is_the_variance_map_at_p_and_rho() -> None:
    pred = map_prediction(["maxpo", "grpo", "pkpo"], n=8, k=4, p=0.2, rho=1.5)
    mean, trace = variance.exact_moments("maxpo", "binary", 0.2, 8, 4, 1.5)
    assert pred["maxpo"] == pytest.approx(trace / mean**2)
    assert pred["grpo"] != pred["maxpo"]
    assert map_prediction(["maxpo"], n=8, k=4, p=0.0, rho=1.5) == {"maxpo": None}
    assert map_prediction(["maxpo"], n=8, k=4, p=0.2, rho=None) == {"maxpo": None}
