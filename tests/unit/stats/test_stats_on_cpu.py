"""verl_maxpo.tools.stats: the t distribution against closed forms and known tables, Holm on a hand-worked family, and
comparisons whose numbers a reader can recompute from the per-seed values."""

from __future__ import annotations

import math

import pytest

from verl_maxpo.tools.stats import (
    BETTER,
    NO_VERDICT,
    UNCLEAR,
    WORSE,
    VerdictOptions,
    betainc,
    compare,
    default_pairs,
    holm,
    metric_k,
    paired_t,
    per_seed_table,
    resolve,
    t_critical,
    t_two_sided_p,
    unit_differences,
)


@pytest.mark.parametrize(("t", "df"), [(2.776, 4), (2.571, 5), (2.228, 10), (12.706, 1), (4.303, 2), (2.045, 29)])
def test_table_critical_values_give_p_005(t: float, df: int) -> None:
    # Printed t tables round the critical value to 3 decimals: p is 0.05 to about 1e-4.
    assert t_two_sided_p(t, df) == pytest.approx(0.05, abs=2e-4)
    assert t_critical(df) == pytest.approx(t, abs=1e-3)


@pytest.mark.parametrize("t", [1e-9, 0.3, 1.0, 2.5, 7.0, 60.0, 1e4])
def test_closed_forms_at_one_and_two_degrees_of_freedom(t: float) -> None:
    assert t_two_sided_p(t, 1) == pytest.approx(1 - 2 / math.pi * math.atan(t), rel=1e-12, abs=1e-15)
    assert t_two_sided_p(t, 2) == pytest.approx(1 - t / math.sqrt(t * t + 2), rel=1e-10, abs=1e-15)
    assert t_two_sided_p(-t, 3) == t_two_sided_p(t, 3)


def test_critical_value_closed_form_and_large_df_is_normal() -> None:
    assert t_critical(2) == pytest.approx(math.sqrt(2 * 0.95**2 / (1 - 0.95**2)), rel=1e-10)
    assert t_critical(1e7) == pytest.approx(1.959964, abs=1e-5)
    assert t_two_sided_p(0.0, 4) == 1.0 and t_two_sided_p(math.inf, 4) == 0.0


def test_incomplete_beta_symmetry_and_uniform() -> None:
    for a, b, x in [(0.5, 2.0, 0.3), (2.0, 0.5, 0.9), (3.0, 7.0, 0.25), (40.0, 0.5, 0.99)]:
        assert betainc(a, b, x) + betainc(b, a, 1 - x) == pytest.approx(1.0, abs=1e-13)
    assert betainc(1.0, 1.0, 0.37) == pytest.approx(0.37, abs=1e-15)  # I_x(1, 1) = x
    assert betainc(2.0, 1.0, 0.5) == pytest.approx(0.25, abs=1e-15)  # I_x(a, 1) = x^a
    with pytest.raises(ValueError):
        betainc(0.0, 1.0, 0.5)


def test_matches_scipy_where_installed() -> None:
    sps = pytest.importorskip("scipy.stats")
    for df in (1, 2, 3, 4, 5, 9, 29, 200):
        for t in (0.01, 0.5, 1.7, 2.9, 6.0, 25.0):
            assert t_two_sided_p(t, df) == pytest.approx(2 * sps.t.sf(t, df), rel=1e-9)
        assert t_critical(df) == pytest.approx(sps.t.ppf(0.975, df), rel=1e-9)


def test_holm_on_a_hand_worked_family() -> None:
    # sorted: 0.005 x4 = 0.02, 0.01 x3 = 0.03, 0.03 x2 = 0.06, 0.04 x1 = 0.04 -> kept monotone at 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.01, None, 0.04]) == [pytest.approx(0.02), None, pytest.approx(0.04)]  # m = 2, not 3
    assert holm([0.6, 0.7]) == [1.0, 1.0]
    assert holm([]) == []


def test_paired_t_by_hand() -> None:
    r = paired_t([0.01, 0.02, 0.03])  # mean 0.02, sd 0.01, se 0.01/sqrt(3), t = 2 sqrt(3), df 2
    assert (r.n, r.df) == (3, 2)
    assert r.diff == pytest.approx(0.02) and r.se == pytest.approx(0.01 / math.sqrt(3))
    assert r.t == pytest.approx(2 * math.sqrt(3))
    assert r.p == pytest.approx(1 - 2 * math.sqrt(3) / math.sqrt(14), rel=1e-10)  # the df = 2 closed form
    half = math.sqrt(2 * 0.95**2 / (1 - 0.95**2)) * 0.01 / math.sqrt(3)
    assert r.ci95 == pytest.approx((0.02 - half, 0.02 + half))


def test_no_test_for_zero_variance_or_under_two_seeds() -> None:
    flat = paired_t([0.0125, 0.0125, 0.0125])
    assert flat.p is None and flat.ci95 is None and "zero variance" in flat.reason
    one = paired_t([0.3])
    assert one.p is None and one.diff == 0.3 and one.reason
    assert paired_t([]).diff is None


def _recompute(arm: list[float], base: list[float]) -> tuple[float, float, tuple[float, float]]:
    """A reader's recomputation, sharing no code with the module: p by Simpson integration of the t density."""
    d = [a - b for a, b in zip(arm, base, strict=True)]
    n = len(d)
    mean = sum(d) / n
    se = (sum((x - mean) ** 2 for x in d) / (n - 1) / n) ** 0.5
    t, df = mean / se, n - 1

    def density(x: float) -> float:
        c = math.gamma((df + 1) / 2) / (math.sqrt(df * math.pi) * math.gamma(df / 2))
        return c * (1 + x * x / df) ** (-(df + 1) / 2)

    def mass(lo: float, hi: float, steps: int = 20000) -> float:
        h = (hi - lo) / steps
        return (
            h / 3 * sum((1 if i in (0, steps) else 4 if i % 2 else 2) * density(lo + i * h) for i in range(steps + 1))
        )

    p = 1 - mass(-abs(t), abs(t))
    lo, hi = 0.0, 50.0  # the critical value: mass(-c, c) = 0.95, by bisection
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if mass(-mid, mid, 4000) < 0.95 else (lo, mid)
    return mean, p, (mean - lo * se, mean + lo * se)


def test_comparisons_recompute_from_per_seed_values() -> None:
    per_seed = {
        "maxpo": {"m": [0.40, 0.42, 0.45, 0.41, 0.44]},
        "pkpo": {"m": [0.43, 0.44, 0.49, 0.43, 0.47]},  # ahead on every seed
        "grpo": {"m": [0.39, 0.43, 0.44, 0.40, 0.45]},  # level
        "maxrl": {"m": [0.35, 0.36, 0.40, 0.37, 0.38]},  # behind on every seed
    }
    rows = compare(per_seed, "m", default_pairs(list(per_seed), "maxpo"))
    assert [r.arm for r in rows] == ["pkpo", "grpo", "maxrl"]
    ps = []
    for r in rows:
        mean, p, ci = _recompute(per_seed[r.arm]["m"], per_seed["maxpo"]["m"])
        assert (r.unit, r.n, r.df) == ("seed", 5, 4)
        assert r.diff == pytest.approx(mean, abs=1e-12)
        assert r.p == pytest.approx(p, rel=1e-6)
        assert r.ci95 == pytest.approx(ci, rel=1e-6)
        ps.append(p)
    order = sorted(range(3), key=lambda i: ps[i])
    adjusted, running = [0.0] * 3, 0.0
    for j, i in enumerate(order):
        running = max(running, min(1.0, (3 - j) * ps[i]))
        adjusted[i] = running
    assert [r.p_holm for r in rows] == pytest.approx(adjusted, rel=1e-6)
    assert [r.verdict for r in rows] == [BETTER, UNCLEAR, WORSE]


def test_holm_can_undo_an_uncorrected_verdict() -> None:
    # p = 0.035 alone would be "better"; beside two null arms Holm multiplies it by 3.
    base = [0.0, 0.0, 0.0, 0.0, 0.0]
    per_seed = {"b": {"m": base}, "x": {"m": [0.02, 0.01, 0.03, 0.001, 0.015]}}
    alone = compare(per_seed, "m", [("x", "b")])[0]
    assert alone.p < 0.05 and alone.verdict == BETTER
    per_seed |= {"y": {"m": [0.01, -0.01, 0.02, -0.02, 0.0]}, "z": {"m": [0.01, -0.02, 0.0, 0.01, -0.01]}}
    family = compare(per_seed, "m", default_pairs(["b", "x", "y", "z"], "b"))
    assert family[0].p == alone.p and family[0].p_holm == pytest.approx(min(1, 3 * alone.p))
    assert family[0].verdict == UNCLEAR


def test_zero_variance_and_missing_seeds_give_no_verdict() -> None:
    per_seed = {"b": {"m": [0.1, 0.2, 0.3]}, "same": {"m": [0.2, 0.3, 0.4]}, "one": {"m": [0.5, None, None]}}
    rows = compare(per_seed, "m", [("same", "b"), ("one", "b")])
    assert [r.verdict for r in rows] == [NO_VERDICT, NO_VERDICT]
    assert rows[0].p is None and rows[0].diff == pytest.approx(0.1) and "zero variance" in rows[0].reason
    assert rows[1].n == 1 and rows[1].p_holm is None


def test_two_levels_average_within_each_base_seed_then_test_over_base_seeds() -> None:
    blocks = [0, 0, 1, 1, 2, 2]
    arm = [0.5, 0.7, 0.2, 0.4, 0.6, 0.6]
    base = [0.4, 0.4, 0.3, 0.1, 0.5, 0.4]
    assert unit_differences(arm, base, blocks) == pytest.approx([0.2, 0.1, 0.15])
    r = compare({"a": {"m": arm}, "b": {"m": base}}, "m", [("a", "b")], blocks)[0]
    assert (r.unit, r.n, r.df) == ("base seed", 3, 2)
    assert r.p == pytest.approx(paired_t([0.2, 0.1, 0.15]).p)
    one_base = compare({"a": {"m": arm}, "b": {"m": base}}, "m", [("a", "b")], [7] * 6)[0]
    assert (one_base.unit, one_base.n) == ("seed", 6)  # one base seed: the RL seeds are the units


def test_pairs_and_bad_lengths() -> None:
    assert default_pairs(["a", "b", "c"], "a", [("b", "c"), ("c", "b"), ("b", "a")]) == [
        ("b", "a"),
        ("c", "a"),
        ("b", "c"),
    ]
    with pytest.raises(ValueError):
        unit_differences([0.1, 0.2], [0.1])
    with pytest.raises(KeyError):
        compare({"a": {"m": [0.1]}}, "m", [("a", "nope")])


def test_per_seed_table_aligns_seeds_across_arms() -> None:
    runs = [("a", 2, {"m": 0.2}), ("a", 1, {"m": 0.1}), ("b", 1, {"m": 0.5}), ("b", 1, {"m": 0.6}), ("b", "x", {})]
    seeds, per_seed = per_seed_table(runs)
    assert seeds == [1, 2, "1#2", "x"]  # numbers first, in order; a repeated label kept apart
    assert per_seed == {"a": {"m": [0.1, 0.2, None, None]}, "b": {"m": [0.5, None, 0.6, None]}}


def test_metric_names_and_defaults() -> None:
    assert metric_k("avg_pass@4") == 4 and metric_k("final_max@16") == 16
    for bad in ("pass@4", "avg_pass@0", "avg_pass@x", "mean_pass@4"):
        with pytest.raises(ValueError):
            metric_k(bad)
    assert resolve(VerdictOptions(), ["grpo", "maxpo"], 4, "pass") == ("avg_pass@4", "maxpo")
    assert resolve(VerdictOptions(baseline="grpo"), ["grpo", "pkpo"], 2, "max") == ("avg_max@2", "grpo")
    assert resolve(VerdictOptions(), ["grpo", "pkpo"], 2, "pass")[1] == "grpo"
    with pytest.raises(ValueError):
        resolve(VerdictOptions(), ["a", "b"], None, "pass")  # no shared trained k and none named
    with pytest.raises(ValueError):
        resolve(VerdictOptions(compare=(("a", "c"),)), ["a", "b"], 1, "pass")
