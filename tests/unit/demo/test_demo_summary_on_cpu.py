"""The demo summary's per-seed values and verdicts (verl_maxpo.tools.stats), on hand-made histories whose answer is
known: the numbers of summary.json can be recomputed from its per-seed values."""

from __future__ import annotations

import math

import pytest

from verl_maxpo.tools import stats
from verl_maxpo.tools.demo.config import parse_config
from verl_maxpo.tools.demo.summary import analysis, per_seed_values, summarize

KS = [1, 4]
ARGS = ["--quick", "--estimators", "maxpo,grpo", "--k", "1", "--val-n", "4"]
ARGS2 = ["--quick", "--k", "2", "--val-n", "4"]


def history(*pass1: float, shift4: float = 0.2) -> list[dict[str, float]]:
    """Validations at steps 0, 1, ...: pass@1 as given, pass@4 = pass@1 + shift4 (pass@2 halfway)."""
    return [{"val/pass@1": p, "val/pass@2": p + shift4 / 2, "val/pass@4": p + shift4} for p in pass1]


def test_per_seed_values_share_one_seed_order() -> None:
    cfg = parse_config(ARGS)
    histories = {
        "maxpo": {0: history(0.1, 0.2, 0.3), 1: history(0.1, 0.4, 0.5)},
        "grpo": {1: history(0.1, 0.7, 0.8), 0: history(0.1, 0.3, 0.4), 7: history(0.0, 0.9, 0.9)},
    }
    seeds, per_seed = per_seed_values(cfg, histories)
    assert seeds == [0, 1, 7]
    assert set(per_seed["grpo"]) == {"step0_pass@1", "final_pass@1", "avg_pass@1", "final_pass@4", "avg_pass@4"}
    assert per_seed["grpo"]["final_pass@1"] == [0.4, 0.8, 0.9]
    assert per_seed["maxpo"]["avg_pass@4"] == [pytest.approx(0.45), pytest.approx(0.65), None]  # no seed 7


def test_comparisons_use_the_primary_metric_and_recompute() -> None:
    cfg = parse_config([*ARGS, "--estimators", "maxpo,grpo,pkpo", "--k", "2", "--primary-metric", "final_pass@4"])
    ref = {s: history(0.5, 0.5) for s in range(3)}
    histories = {
        "maxpo": ref,
        "grpo": {s: history(0.5, 0.5 + d) for s, d in zip(ref, (0.10, 0.11, 0.12), strict=True)},
        "pkpo": {s: history(0.5, 0.5 + d) for s, d in zip(ref, (0.05, -0.04, 0.01), strict=True)},
    }
    out = analysis(cfg, histories)
    assert out["primary_metric"] == "final_pass@4" and out["baseline"] == "maxpo" and out["seeds"] == [0, 1, 2]
    grpo, pkpo = out["comparisons"]
    assert (grpo["arm"], grpo["baseline"], grpo["metric"], grpo["n"]) == ("grpo", "maxpo", "final_pass@4", 3)
    # differences 0.10, 0.11, 0.12: mean 0.11, SE 0.01/sqrt(3), t = 19.05 at df 2 -> p = 1 - t/sqrt(t^2 + 2)
    t = 0.11 / (0.01 / math.sqrt(3))
    assert grpo["diff"] == pytest.approx(0.11) and grpo["p"] == pytest.approx(1 - t / math.sqrt(t * t + 2))
    assert grpo["p_holm"] == pytest.approx(min(1, 2 * min(grpo["p"], pkpo["p"]))) and grpo["verdict"] == "better"
    assert pkpo["verdict"] == "no clear difference" and pkpo["p_holm"] == pytest.approx(max(pkpo["p"], grpo["p_holm"]))
    # the same numbers from the published per-seed values alone
    again = stats.compare(out["per_seed"], out["primary_metric"], [("grpo", "maxpo"), ("pkpo", "maxpo")])
    assert [c.as_json() for c in again] == out["comparisons"]


def test_two_base_seeds_test_over_base_seed_means() -> None:
    cfg = parse_config([*ARGS, "--base-seeds", "2", "--seeds", "2"])
    assert cfg.base_seed_list == [0, 2] and cfg.seed_list == [0, 1, 2, 3]
    assert [cfg.base_of(s) for s in cfg.seed_list] == [0, 0, 2, 2]
    ref = {s: history(0.5, 0.5) for s in cfg.seed_list}
    histories = {"maxpo": ref, "grpo": {s: history(0.5, 0.5 + 0.01 * s) for s in cfg.seed_list}}
    out = analysis(cfg, histories)
    (row,) = out["comparisons"]
    assert out["base_seeds"] == [0, 0, 2, 2] and row["unit"] == "base seed" and row["n"] == 2
    assert row["diff"] == pytest.approx((0.005 + 0.025) / 2)  # means 0.005 and 0.025 of the two base seeds


def test_summary_shows_verdicts_on_the_primary_metric_only() -> None:
    cfg = parse_config(ARGS)
    histories = {
        "maxpo": {s: history(0.1, 0.2, 0.3, shift4=0.1) for s in (0, 1)},
        "grpo": {0: history(0.1, 0.3, 0.4, shift4=0.1), 1: history(0.1, 0.7, 0.8, shift4=0.1)},
    }
    warm = {"steps": 1, "train_pass@1": 0.5}
    prov = {"command": "c", "python": "3", "platform": "p", "packages": {}, "device": "cpu"}
    prov |= {"torch_threads_per_run": 1, "workers": 1, "seeds": [0, 1]}
    md, data = summarize(cfg, histories, {}, warm, {}, prov)
    assert data["primary_metric"] == "avg_pass@1" and "## Primary metric: avg_pass@1" in md
    # differences 0.1 and 0.5 (avg pass@1): mean 0.3, SE 0.2, t 1.5 at df 1
    (row,) = data["comparisons"]
    assert row["p"] == pytest.approx(1 - 2 / math.pi * math.atan(1.5)) and row["verdict"] == "no clear difference"
    assert "| grpo | maxpo | 2 | +0.3000 |" in md
    assert "descriptive only" in md and "+0.3000 ± 0.2000" in md  # the other metrics, no verdict
    assert data["per_seed"]["grpo"]["final_pass@4"] == [0.5, 0.9]


@pytest.mark.parametrize(
    "extra",
    [
        ["--primary-metric", "pass@4"],
        ["--primary-metric", "avg_pass@3"],
        ["--baseline", "pkpo"],
        ["--compare", "maxpo"],
        ["--compare", "maxpo:maxpo"],
        ["--compare", "maxpo:pkpo"],
        ["--base-seeds", "0"],
    ],
)
def test_bad_verdict_options_are_refused_at_entry(extra: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        parse_config([*ARGS, *extra])
    assert stop.value.code == 2
    assert extra[0] in capsys.readouterr().err


def test_baseline_defaults_to_maxpo_or_the_first_arm() -> None:
    assert parse_config(ARGS).baseline == "maxpo"
    assert parse_config([*ARGS2, "--estimators", "grpo,pkpo"]).baseline == "grpo"
    cfg = parse_config([*ARGS2, "--estimators", "grpo,pkpo,maxpo", "--baseline", "pkpo", "--compare", "grpo:maxpo"])
    assert (cfg.baseline, cfg.compare) == ("pkpo", (("grpo", "maxpo"),))
