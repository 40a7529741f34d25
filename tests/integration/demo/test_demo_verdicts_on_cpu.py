"""`verl-maxpo demo --quick --seeds 3` writes per-seed values, the primary metric and comparisons whose p, ci95,
p_holm and verdict a reader recomputes from the per-seed values alone; two levels of seeds run end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from verl_maxpo.tools import stats
from verl_maxpo.tools.demo import main as demo
from verl_maxpo.tools.report.main import write_report

pytestmark = pytest.mark.slow  # runs the demo


def _holm(ps: list[float]) -> list[float]:
    order = sorted(range(len(ps)), key=lambda i: ps[i])
    out, running = [0.0] * len(ps), 0.0
    for j, i in enumerate(order):
        running = max(running, min(1.0, (len(ps) - j) * ps[i]))
        out[i] = running
    return out


def test_quick_three_seeds_summary_recomputes(tmp_path: Path) -> None:
    sps = pytest.importorskip("scipy.stats")  # the independent reference for the t distribution
    out = tmp_path / "out"
    assert demo.main(["--quick", "--seeds", "3", "--no-progress", "--out", str(out)]) == 0
    data = json.loads((out / "summary.json").read_text())
    assert data["primary_metric"] == "avg_pass@4" and data["baseline"] == "maxpo" and data["seeds"] == [0, 1, 2]
    per_seed = data["per_seed"]
    assert list(per_seed) == ["maxpo", "grpo", "pkpo"]
    assert all(len(v) == 3 for arm in per_seed.values() for v in arm.values())
    # the table's means are the per-seed values' means
    assert data["table"]["pkpo"]["avg_pass@4"][0] == pytest.approx(sum(per_seed["pkpo"]["avg_pass@4"]) / 3)
    comps = data["comparisons"]
    assert [(c["arm"], c["baseline"], c["metric"]) for c in comps] == [
        ("grpo", "maxpo", "avg_pass@4"),
        ("pkpo", "maxpo", "avg_pass@4"),
    ]
    ps = []
    for c in comps:
        d = [a - b for a, b in zip(per_seed[c["arm"]]["avg_pass@4"], per_seed["maxpo"]["avg_pass@4"], strict=True)]
        mean = sum(d) / 3
        se = math.sqrt(sum((x - mean) ** 2 for x in d) / 2 / 3)
        assert c["diff"] == pytest.approx(mean, abs=1e-12) and c["df"] == 2
        if se == 0:  # equal differences on every seed: no test
            assert c["p"] is None and c["verdict"] == "no verdict" and c["reason"]
            continue
        p = 2 * sps.t.sf(abs(mean / se), 2)
        half = sps.t.ppf(0.975, 2) * se
        assert c["p"] == pytest.approx(p, rel=1e-8)
        assert c["ci95"] == pytest.approx([mean - half, mean + half], rel=1e-8, abs=1e-12)
        ps.append(p)
    tested = [c for c in comps if c["p"] is not None]
    for c, adj in zip(tested, _holm(ps), strict=True):
        assert c["p_holm"] == pytest.approx(adj, rel=1e-8)
        assert c["verdict"] == ("no clear difference" if adj >= 0.05 else "better" if c["diff"] > 0 else "worse")
    md = (out / "summary.md").read_text()
    assert "## Primary metric: avg_pass@4" in md and "p (Holm)" in md and "descriptive only" in md


def test_two_base_seeds_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["--quick", "--base-seeds", "2", "--seeds", "2", "--estimators", "maxpo,pkpo", "--sft-max-steps", "25"]
    args += ["--reward", "partial"]
    assert demo.main([*args, "--no-progress", "--workers", "2", "--out", str(out)]) == 0
    data = json.loads((out / "summary.json").read_text())
    assert data["seeds"] == [0, 1, 2, 3] and data["base_seeds"] == [0, 0, 2, 2]
    assert sorted(p.name for p in (out / "runs").iterdir()) == [
        f"{a}_seed{s}" for a in ("maxpo", "pkpo") for s in range(4)
    ]
    assert set(data["warm_start"]["by_base_seed"]) == {"0", "2"}
    (row,) = data["comparisons"]
    assert row["unit"] == "base seed" and row["n"] == 2
    d = [
        a - b
        for a, b in zip(data["per_seed"]["pkpo"]["avg_pass@4"], data["per_seed"]["maxpo"]["avg_pass@4"], strict=True)
    ]
    assert row["diff"] == pytest.approx(((d[0] + d[1]) / 2 + (d[2] + d[3]) / 2) / 2)
    # same seed, same warm start and held-out set: the arms start level; each base seed has its own held-out set
    assert data["per_seed"]["maxpo"]["step0_pass@1"] == data["per_seed"]["pkpo"]["step0_pass@1"]

    def prompts(seed: int) -> set[str]:
        return {json.loads(line)["input"] for line in (out / "runs" / f"maxpo_seed{seed}" / "val" / "0.jsonl").open()}

    assert prompts(0) == prompts(1) and prompts(2) == prompts(3) and prompts(0) != prompts(2)
    assert "base seeds" in (out / "summary.md").read_text()
    # partial credit: fractional scores in the dumps, while pass@1 counts exact answers only
    for seed in range(4):
        for step in (0, 2, 4):
            lines = [json.loads(x) for x in (out / "runs" / f"pkpo_seed{seed}" / "val" / f"{step}.jsonl").open()]
            scores = [x["score"] for x in lines]
            assert all(s in (0.0, 0.25, 0.5, 0.75, 1.0) for s in scores)
    assert any(0 < s < 1 for s in scores)
    # `verl-maxpo report` over the same runs finds the base seeds in meta.json and reaches the same verdict
    # (partial-credit scores: the report's default would be max@K, so name the demo's metric)
    options = stats.VerdictOptions(primary="avg_pass@4")
    result = write_report(sorted((out / "runs").iterdir()), tmp_path / "rep", verdicts=options)
    assert result["base_seeds"] == ["0", "0", "2", "2"] and result["primary_metric"] == "avg_pass@4"
    (again,) = result["comparisons"]
    assert (again["arm"], again["unit"], again["n"]) == ("pkpo", "base seed", 2)
    assert again["diff"] == pytest.approx(row["diff"], abs=1e-12) and again["verdict"] == row["verdict"]
