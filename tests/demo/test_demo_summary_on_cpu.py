"""The demo summary's paired differences against maxpo, on hand-made histories whose answer is known."""

from __future__ import annotations

import math

import pytest

from verl_maxpo.demo_config import parse_config
from verl_maxpo.demo_summary import paired_differences, summarize, verdict

KS = [1, 4]


def history(*pass1: float, shift4: float = 0.2) -> list[dict[str, float]]:
    """Validations at steps 0, 1, ...: pass@1 as given, pass@4 = pass@1 + shift4."""
    return [{"val/pass@1": p, "val/pass@4": p + shift4} for p in pass1]


def test_two_seeds_mean_and_se_of_the_per_seed_differences() -> None:
    histories = {
        "maxpo": {0: history(0.1, 0.2, 0.3), 1: history(0.1, 0.4, 0.5)},
        # seed 0: final +0.1, avg (0.3+0.4)/2 - 0.25 = +0.1; seed 1: final +0.3, avg +0.3
        # seed 7 has no maxpo run: ignored
        "grpo": {0: history(0.1, 0.3, 0.4), 1: history(0.1, 0.7, 0.8), 7: history(0.0, 0.9, 0.9)},
    }
    out = paired_differences(histories, KS)
    assert list(out) == ["grpo"]
    row = out["grpo"]
    assert row["seeds"] == [0, 1]
    assert set(row["diffs"]) == {"final_pass@1", "avg_pass@1", "final_pass@4", "avg_pass@4"}
    for key, d in row["diffs"].items():
        # differences 0.1 and 0.3: mean 0.2, SE = std(ddof=1) / sqrt(2) = 0.1414 / 1.4142 = 0.1
        assert d["mean"] == pytest.approx(0.2), key
        assert d["se"] == pytest.approx(0.1), key
    # (0.2 is 2 SE up to rounding, a tie: the verdicts are tested below, away from the boundary)


def test_verdicts_ahead_behind_mixed_and_one_seed() -> None:
    ref = {0: history(0.5, 0.5), 1: history(0.5, 0.5), 2: history(0.5, 0.5)}
    histories = {
        "maxpo": ref,
        # differences 0.10, 0.11, 0.12: mean 0.11, SE 0.0058 -> clearly ahead
        "ahead": {s: history(0.5, 0.5 + d) for s, d in zip(ref, (0.10, 0.11, 0.12), strict=True)},
        "behind": {s: history(0.5, 0.5 - d) for s, d in zip(ref, (0.10, 0.11, 0.12), strict=True)},
        # pass@1 clearly ahead, pass@4 clearly behind
        "mixed": {s: history(0.5, 0.5 + d, shift4=0.2 - 3 * d) for s, d in zip(ref, (0.10, 0.11, 0.12), strict=True)},
        "single": {0: history(0.5, 0.9)},
    }
    out = paired_differences(histories, KS)
    assert list(out) == ["ahead", "behind", "mixed", "single"]
    assert out["ahead"]["diffs"]["final_pass@1"]["mean"] == pytest.approx(0.11)
    assert out["ahead"]["diffs"]["final_pass@1"]["se"] == pytest.approx(0.01 / math.sqrt(3))
    assert out["behind"]["diffs"]["avg_pass@4"]["mean"] == pytest.approx(-0.11)
    assert [out[a]["verdict"] for a in ("ahead", "behind", "mixed")] == ["ahead", "behind", "mixed"]
    assert out["mixed"]["diffs"]["final_pass@1"]["verdict"] == "ahead"
    assert out["mixed"]["diffs"]["final_pass@4"]["verdict"] == "behind"
    single = out["single"]
    assert single["seeds"] == [0] and single["verdict"] == "n/a"
    assert single["diffs"]["final_pass@1"] == {"mean": pytest.approx(0.4), "se": None, "verdict": "n/a"}
    assert verdict(0.0, 0.0) == "level" and verdict(0.3, 0.1) == "ahead" and verdict(-0.2, 0.1) == "level"
    assert verdict(0.3, 0.0, seeds=2) == "n/a"  # two equal differences: an SE of 0 proves nothing


def test_without_maxpo_or_shared_seeds_there_is_no_row() -> None:
    assert paired_differences({"grpo": {0: history(0.1, 0.2)}, "pkpo": {0: history(0.1, 0.3)}}, KS) == {}
    assert paired_differences({"maxpo": {0: history(0.1, 0.2)}, "grpo": {1: history(0.1, 0.3)}}, KS) == {}
    assert paired_differences({"maxpo": {0: history(0.1, 0.2)}}, KS) == {}


def _summary(histories: dict) -> tuple[str, dict]:
    cfg = parse_config(["--quick", "--estimators", "maxpo,grpo", "--k", "1", "--val-n", "4"])
    assert cfg.val_ks == KS
    warm = {"steps": 1, "train_pass@1": 0.5}
    prov = {"command": "c", "python": "3", "platform": "p", "packages": {}, "device": "cpu"}
    prov |= {"torch_threads_per_run": 1, "workers": 1, "seeds": [0, 1]}
    return summarize(cfg, histories, {}, warm, {}, prov)


def test_summary_renders_the_paired_table_only_with_maxpo() -> None:
    histories = {
        "maxpo": {s: history(0.1, 0.2, 0.3, shift4=0.1) for s in (0, 1)},
        # differences 0.1 and 0.5: mean 0.3, SE 0.2 -> level
        "grpo": {0: history(0.1, 0.3, 0.4, shift4=0.1), 1: history(0.1, 0.7, 0.8, shift4=0.1)},
    }
    md, data = _summary(histories)
    assert "## Paired differences against maxpo" in md
    cells = "+0.3000 ± 0.2000"
    assert f"| grpo | 2 | {cells} | {cells} | {cells} | {cells} | n/a |" in md  # 2 seeds: too few for a verdict
    assert data["paired_vs_maxpo"]["grpo"]["diffs"]["avg_pass@4"]["mean"] == pytest.approx(0.3)
    md, data = _summary({"grpo": histories["grpo"]})
    assert "Paired differences" not in md and data["paired_vs_maxpo"] == {}
