"""`verl-maxpo variance`, exact part: no sampling. The moment formulas against (a) the gradient of max@K, (b) a real
hierarchical softmax policy enumerated over every n-tuple of outcomes, (c) the closed-form numbers quoted in
docs/when-to-use.md; and the command's outputs and input checks."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from verl_maxpo.core.estimators import maxpo_advantages, pkpo_advantages
from verl_maxpo.tools import variance


def grad_max_at_k(law: str, p: float, k: int) -> float:
    """d J_K / d theta_0 (theta_0 = logit p) by a central difference of J_K = E[max of K rewards]."""
    t = variance.LAWS[law]

    def j(q: float) -> float:
        cdf = np.cumsum([math.comb(t, i) * q**i * (1 - q) ** (t - i) for i in range(t + 1)])
        below = np.concatenate([[0.0], cdf[:-1]])
        return float(sum((i / t) * (cdf[i] ** k - below[i] ** k) for i in range(t + 1)))

    logit, h = math.log(p / (1 - p)), 1e-5
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    return (j(sig(logit + h)) - j(sig(logit - h))) / (2 * h)


@pytest.mark.parametrize("law", list(variance.LAWS))
@pytest.mark.parametrize(("p", "n", "k"), [(0.05, 8, 4), (0.3, 4, 2), (0.7, 16, 8), (0.5, 5, 1)])
def test_mean_is_the_max_at_k_gradient(law: str, p: float, n: int, k: int) -> None:
    for name in ("maxpo", "pkpo", "pkpo_loo", "rloo"):
        if name == "pkpo" and k < 2:
            continue
        mean, trace = variance.exact_moments(name, law, p, n, k, ratio=2.0)
        want = grad_max_at_k(law, p, 1 if name == "rloo" else k)
        assert mean == pytest.approx(want, rel=1e-7), name
        assert trace > 0


def test_moments_equal_enumeration_of_a_softmax_policy() -> None:
    """Policy: level logit theta_0 (pass/fail), then a softmax over alpha_l * theta_l among M_l completions of that
    level, at theta_l = 0. Every n-tuple of the 2 + 3 completions is enumerated; scores come from autograd."""
    p, n, k, m_s, m_f, a_s, a_f = 0.3, 4, 2, 2, 3, 4.0, 10.0
    params = torch.zeros(1 + m_s + m_f, dtype=torch.float64)
    params[0] = math.log(p / (1 - p))
    outcomes = [(1, j) for j in range(m_s)] + [(0, j) for j in range(m_f)]

    def log_prob(theta: torch.Tensor, level: int, j: int) -> torch.Tensor:
        top = torch.nn.functional.logsigmoid(theta[0] if level else -theta[0])
        within = a_s * theta[1 : 1 + m_s] if level else a_f * theta[1 + m_s :]
        return top + torch.log_softmax(within, 0)[j]

    scores, probs = [], []
    for level, j in outcomes:
        theta = params.clone().requires_grad_(True)
        lp = log_prob(theta, level, j)
        (grad,) = torch.autograd.grad(lp, theta)
        scores.append(grad)
        probs.append(lp.exp().item())
    scores = torch.stack(scores)
    assert sum(probs) == pytest.approx(1.0)
    tuples = torch.tensor(list(itertools.product(range(len(outcomes)), repeat=n)))
    prob = torch.tensor(probs, dtype=torch.float64)[tuples].prod(1)
    rewards = torch.tensor([float(lv) for lv, _ in outcomes], dtype=torch.float64)[tuples]
    ids = torch.arange(len(tuples)).repeat_interleave(n)
    # the softmax model's within-level score variance: alpha^2 (1 - 1/M)
    noise = a_s**2 * (1 - 1 / m_s)
    ratio = math.sqrt(a_f**2 * (1 - 1 / m_f) / noise)
    for name, fn in (("maxpo", maxpo_advantages), ("pkpo", pkpo_advantages)):
        adv = fn(rewards.reshape(-1), ids, k).view(-1, n)
        g = (k / n) * (adv.unsqueeze(-1) * scores[tuples]).sum(1)  # (tuples, dim)
        mean = (prob.unsqueeze(-1) * g).sum(0)
        trace = (prob * ((g - mean) ** 2).sum(1)).sum().item()
        exact_mean, exact_trace = variance.exact_moments(name, "binary", p, n, k, ratio, noise=noise)
        assert mean[0].item() == pytest.approx(exact_mean, rel=1e-12)
        assert mean[1:].abs().max().item() < 1e-12
        assert trace == pytest.approx(exact_trace, rel=1e-10)


def closed_form_binary(name: str, p: float, n: int, k: int, ratio: float, noise: float) -> float:
    """Relative variance from the pass/fail closed forms of docs/algorithm.md, independent of the estimator code."""

    def comb(a: int, b: int) -> int:
        return math.comb(a, b) if 0 <= b <= a else 0

    grad = k * (1 - p) ** (k - 1) * p * (1 - p)
    total, f = 0.0, k / n
    for c in range(n + 1):
        prob = comb(n, c) * p**c * (1 - p) ** (n - c)
        if name == "maxpo":
            a_s = comb(n - c, k) / comb(n - 1, k)
            a_f = comb(n - c - 1, k) / comb(n - 1, k) - comb(n - c - 1, k - 1) / comb(n - 1, k - 1)
        else:  # pkpo: successes C(n-c, k-1) / C(n-1, k-1), failures exactly 0
            a_s, a_f = comb(n - c, k - 1) / comb(n - 1, k - 1), 0.0
        cond_mean = f * (c * a_s * (1 - p) - (n - c) * a_f * p)
        within = f**2 * noise * (c * a_s**2 + ratio**2 * (n - c) * a_f**2)
        total += prob * (within + (cond_mean - grad) ** 2)
    return total / grad**2


# The numbers quoted in docs/when-to-use.md (n = 8, K = 4, p = 0.2, noise 100).
DOC_NUMBERS = [("maxpo", 1.0, 126.53), ("pkpo", 1.0, 131.95), ("maxpo", 2.0, 189.0), ("pkpo", 2.0, 131.95)]


@pytest.mark.parametrize(("name", "ratio", "quoted"), DOC_NUMBERS)
def test_closed_form_and_the_numbers_in_the_docs(name: str, ratio: float, quoted: float) -> None:
    mean, trace = variance.exact_moments(name, "binary", 0.2, 8, 4, ratio)
    closed = closed_form_binary(name, 0.2, 8, 4, ratio, variance.DEFAULT_NOISE)
    assert trace / mean**2 == pytest.approx(closed, rel=1e-10)
    assert closed == pytest.approx(quoted, abs=0.05)


def test_count_vectors() -> None:
    rows = variance.count_vectors(5, 3)
    assert len(rows) == math.comb(7, 2) and (rows.sum(1) == 5).all() and len({tuple(r) for r in rows}) == len(rows)


TINY = ["--p", "0.1,0.5", "--n", "4", "8", "--k", "2,4", "--ratio", "1", "2", "--laws", "binary"]
BASE = ["--estimators", "maxpo,pkpo,pkpo_loo"]
BASE_FILES = [
    ".verl_maxpo_outputs.json",
    "heatmap_binary_maxpo_over_pkpo.png",
    "heatmap_binary_maxpo_over_pkpo_loo.png",
    "summary.md",
    "variance.json",
]


def snapshot(folder) -> list[tuple[str, bytes]]:
    return sorted((p.relative_to(folder).as_posix(), p.read_bytes() if p.is_file() else b"") for p in folder.rglob("*"))


def test_command_writes_every_cell_and_replaces_its_own_outputs_with_force(run_cli, tmp_path) -> None:
    out = tmp_path / "map"
    assert run_cli("variance", "--out", out, *TINY, *BASE, "--k", "2").code == 0
    before = snapshot(out)
    refused = run_cli("variance", "--out", out, *TINY, *BASE)  # results are data: a rerun needs --force
    assert refused.code == 2 and "--force" in refused.err and "--out" in refused.err, refused.text
    assert snapshot(out) == before
    outcome = run_cli("variance", "--out", out, *TINY, *BASE, "--force")  # replaces the first map
    assert outcome.code == 0, outcome.text
    payload = json.loads((out / "variance.json").read_text())
    keys = {(c["p"], c["n"], c["k"], c["ratio"]) for c in payload["cells"]}
    # (n=4, k=4) is skipped: maxpo needs n >= k+1
    assert keys == {(p, n, k, r) for p in (0.1, 0.5) for n, k in ((4, 2), (8, 2), (8, 4)) for r in (1.0, 2.0)}
    cell = next(c for c in payload["cells"] if (c["p"], c["n"], c["k"], c["ratio"]) == (0.5, 8, 4, 1.0))
    mean, trace = variance.exact_moments("pkpo_loo", "binary", 0.5, 8, 4, 1.0)
    assert cell["rel_var"]["pkpo_loo"] == pytest.approx(trace / mean**2, rel=1e-8)  # stored to 9 digits
    assert cell["max_at_k_grad"] == pytest.approx(grad_max_at_k("binary", 0.5, 4), rel=1e-6)
    assert payload["rows"]["pkpo"] == {"estimator": "pkpo", "options": {}, "unbiased_for": "max@K"}
    assert sorted(f.name for f in out.iterdir()) == BASE_FILES
    assert "| 8 | 4 |" in (out / "summary.md").read_text()
    assert [f.name for f in tmp_path.iterdir()] == ["map"]  # no stage folder left behind


@pytest.mark.slow  # over a second
def test_force_writes_beside_a_users_files_and_never_touches_them(run_cli, tmp_path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    refused = run_cli("variance", "--out", out, *TINY, *BASE)
    assert refused.code == 2 and "--force" in refused.err and "Traceback" not in refused.text
    assert snapshot(out) == [("notes.txt", b"keep me")]
    for _ in range(2):  # the second run replaces only what the first wrote
        assert run_cli("variance", "--out", out, *TINY, *BASE, "--force").code == 0
    assert sorted(f.name for f in out.iterdir()) == sorted([*BASE_FILES, "notes.txt"])
    assert (out / "notes.txt").read_text() == "keep me"
    # a user's file of a map's name is never overwritten, with or without --force
    other = tmp_path / "other"
    other.mkdir()
    (other / "summary.md").write_text("my summary")
    outcome = run_cli("variance", "--out", other, *TINY, *BASE, "--force")
    assert outcome.code != 0 and "summary.md" in outcome.err and "Traceback" not in outcome.text
    assert snapshot(other) == [("summary.md", b"my summary")]


@pytest.mark.parametrize("case", ["under-a-file", "unwritable"])
def test_unusable_out_is_refused_without_a_traceback(run_cli, tmp_path, case: str) -> None:
    (tmp_path / "file").write_text("keep me")
    target = tmp_path / "file" / "map" if case == "under-a-file" else "/proc/verl_maxpo_map"  # root can't write /proc
    outcome = run_cli("variance", "--out", target, *TINY, *BASE)
    assert outcome.code != 0 and "--out" in outcome.err and str(target) in outcome.err, outcome.text
    assert "Traceback" not in outcome.text
    assert snapshot(tmp_path) == [("file", b"keep me")]


def test_ctrl_c_while_writing_heatmaps_leaves_out_as_it_was(run_cli, tmp_path, monkeypatch) -> None:
    out = tmp_path / "map"
    assert run_cli("variance", "--out", out, *TINY, *BASE).code == 0
    before = snapshot(tmp_path)
    calls = []

    def interrupted(*args, **kwargs) -> None:
        calls.append(args[0])
        if len(calls) == 2:
            raise KeyboardInterrupt
        Path(args[0]).write_bytes(b"partial")

    monkeypatch.setattr(variance, "write_heatmap", interrupted)
    outcome = run_cli("variance", "--out", out, *TINY, *BASE, "--force")
    assert outcome.code == 130 and "interrupted" in outcome.err and "Traceback" not in outcome.text
    assert len(calls) == 2 and snapshot(tmp_path) == before  # no stage, no half-written file, the old map intact


# ------------------------------------------------------------------------------------------------ other objectives


def l_statistic(objective: str, k: int) -> np.ndarray:
    """Weights w_j (ascending ranks of K draws) of an objective: top-2 mean, or sum_{j<=K} max@j / j."""
    if objective == "top_m":
        return np.where(np.arange(k) >= k - 2, 0.5, 0.0)
    return np.array(
        [sum(math.comb(lv - 1, j - 1) / math.comb(k, j) / j for j in range(1, k + 1)) for lv in range(1, k + 1)]
    )


def brute_advantages(arm: str, r: np.ndarray, k: int) -> np.ndarray:
    """The definitions by subset enumeration: A_i = q_i - v_-i for maxpo's objectives, (r - mean) / (mean + 1e-6)."""
    n = len(r)
    if arm == "maxrl":
        mean = r.mean()
        return (r - mean) / (mean + 1e-6)
    w = l_statistic({"maxpo_top2": "top_m", "maxpo_ml": "ml"}[arm], k)
    f = lambda s: float(np.sort(s) @ w)  # noqa: E731
    out = np.empty(n)
    for i in range(n):
        others = np.delete(r, i)
        q = np.mean([f(np.array([r[i], *others[list(s)]])) for s in itertools.combinations(range(n - 1), k - 1)])
        v = np.mean([f(others[list(s)]) for s in itertools.combinations(range(n - 1), k)])
        out[i] = q - v
    return out


def level_pmf(law: str, p: float) -> np.ndarray:
    t = variance.LAWS[law]
    return np.array([math.comb(t, j) * p**j * (1 - p) ** (t - j) for j in range(t + 1)])


NEW_ROWS = [
    ("maxpo_top2", "binary", 0.3, 5, 3, 2.0),
    ("maxpo_top2", "partial4", 0.4, 4, 3, 0.5),
    ("maxpo_ml", "binary", 0.1, 6, 4, 1.0),
    ("maxpo_ml", "partial4", 0.6, 4, 2, 4.0),
    ("maxrl", "binary", 0.2, 5, 2, 2.0),
    ("maxrl", "partial4", 0.3, 4, 3, 1.0),
]


@pytest.mark.parametrize(("arm", "law", "p", "n", "k", "ratio"), NEW_ROWS)
def test_new_rows_equal_enumeration_of_every_n_tuple(
    arm: str, law: str, p: float, n: int, k: int, ratio: float
) -> None:
    """Every n-tuple of reward levels, advantages from the subset definitions: E g and trace Cov g of the model."""
    t, noise = variance.LAWS[law], variance.DEFAULT_NOISE
    pmf = level_pmf(law, p)
    sigma2 = noise * ratio ** (2 * (1 - np.arange(t + 1) / t))
    factor = (1 if arm == "maxrl" else k) / n
    mean = second = 0.0
    for levels in itertools.product(range(t + 1), repeat=n):
        lv = np.array(levels)
        a = brute_advantages(arm, lv / t, k)
        prob = float(np.prod(pmf[lv]))
        cond = factor * float(a @ (lv - t * p))
        mean += prob * cond
        second += prob * (cond**2 + factor**2 * float(a**2 @ sigma2[lv]))
    exact_mean, exact_trace = variance.exact_moments(arm, law, p, n, k, ratio)
    assert exact_mean == pytest.approx(mean, rel=1e-10)
    assert exact_trace == pytest.approx(second - mean**2, rel=1e-10)


@pytest.mark.parametrize("law", list(variance.LAWS))
@pytest.mark.parametrize(
    ("arm", "p", "n", "k"), [("maxpo_top2", 0.2, 6, 3), ("maxpo_ml", 0.05, 8, 4), ("maxpo_ml", 0.5, 5, 2)]
)
def test_other_objectives_are_unbiased_for_their_own_gradient(arm: str, law: str, p: float, n: int, k: int) -> None:
    """E g = d/d theta_0 of E[f(K draws)], f the arm's L-statistic, by a central difference over every K-tuple."""
    t = variance.LAWS[law]
    w = l_statistic({"maxpo_top2": "top_m", "maxpo_ml": "ml"}[arm], k)
    tuples = np.array(list(itertools.product(range(t + 1), repeat=k)))
    values = np.sort(tuples / t, axis=1) @ w

    def objective(q: float) -> float:
        return float((level_pmf(law, q)[tuples].prod(1) * values).sum())

    logit, h = math.log(p / (1 - p)), 1e-5
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    want = (objective(sig(logit + h)) - objective(sig(logit - h))) / (2 * h)
    mean, _ = variance.exact_moments(arm, law, p, n, k, 1.0)
    assert mean == pytest.approx(want, rel=1e-7)
    assert abs(mean - grad_max_at_k(law, p, k)) > 1e-3 * abs(want)  # a different gradient from max@K's


@pytest.mark.parametrize(("p", "n"), [(0.05, 8), (0.3, 4), (0.7, 16)])
def test_maxrl_follows_the_truncated_log_likelihood_of_order_n_minus_1(p: float, n: int) -> None:
    """Pass/fail: E[(1/n) sum (r - mean)/mean s] = (1 - p) - (1 - p)^n = d/d theta_0 of -sum_{j<n} (1-p)^j / j,
    up to the 1e-6 in the denominator; it depends on n, not K, and is not d J_K / d theta_0."""
    want = (1 - p) - (1 - p) ** n
    for k in (2, 3):
        mean, _ = variance.exact_moments("maxrl", "binary", p, n, k, 1.0)
        assert mean == pytest.approx(want, rel=1e-5)
    assert abs(want - grad_max_at_k("binary", p, 2)) > 1e-3


@pytest.mark.parametrize("law", list(variance.LAWS))
@pytest.mark.parametrize(("p", "k"), [(0.05, 2), (0.5, 4), (0.9, 8)])
def test_max_at_k_gradient_closed_form(law: str, p: float, k: int) -> None:
    got = variance.max_at_k_gradient(law, p, k)
    assert got == pytest.approx(grad_max_at_k(law, p, k), rel=1e-6, abs=1e-10)  # the difference quotient's error
    if law == "binary":  # pass@K: d/d theta (1 - (1-p)^K) = K (1-p)^(K-1) p (1-p)
        assert got == pytest.approx(k * (1 - p) ** (k - 1) * p * (1 - p), rel=1e-12)


def test_help_shows_every_default(run_cli) -> None:
    outcome = run_cli("variance", "--help")
    text = " ".join(outcome.out.split())  # argparse wraps lines
    assert outcome.code == 0
    for default in ("0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9", "4, 8, 16, 32", "2, 4, 8"):
        assert f"(default: {default})" in text, default
    assert "(default: 0.5, 1, 2, 4)" in text and "(default: binary, partial4)" in text and "(default: 100)" in text
    assert f"(default: {', '.join(variance.map_rows())})" in text


def _no_constants(name: str) -> None:
    raise AssertionError(f"{name} in variance.json (not JSON)")


@pytest.mark.slow  # over a second
def test_quick_map_takes_seconds_and_writes_strict_json(run_cli, tmp_path) -> None:
    out = tmp_path / "quick"
    outcome = run_cli("variance", "--quick", "--out", out)
    assert outcome.code == 0, outcome.text
    payload = json.loads((out / "variance.json").read_text(), parse_constant=_no_constants)
    grid = {(c["p"], c["n"], c["k"], c["ratio"]) for c in payload["cells"]}
    assert grid == {(p, n, k, r) for p in (0.05, 0.2, 0.5) for n in (8, 16) for k in (2, 4) for r in (1.0, 2.0)}
    assert all(v > 0 for c in payload["cells"] for v in c["rel_var"].values())
    # explicit flags win over --quick
    outcome = run_cli("variance", "--quick", "--out", tmp_path / "k2", "--k", "2", "--estimators", "maxpo,pkpo")
    assert outcome.code == 0 and {
        c["k"] for c in json.loads((tmp_path / "k2" / "variance.json").read_text())["cells"]
    } == {2}
