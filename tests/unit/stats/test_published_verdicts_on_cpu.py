"""docs/results.md's verdict tables, recomputed from the per-seed values of the published summaries
(docs/results/*_summary.json): a paired t over seeds (over base seeds where there are two or more), Holm across
the arms compared with maxpo."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from verl_maxpo.tools.stats import compare

DOCS = Path(__file__).resolve().parents[3] / "docs"


@pytest.mark.parametrize("preset", ["sparse", "default"])
def test_results_md_verdicts_on_avg_pass_at_4(preset: str) -> None:
    """The two presets' tables print each difference with its SE and t (5 RL seeds around one warm start, df = 4)."""
    data = json.loads((DOCS / "results" / f"{preset}_summary.json").read_text())
    assert data["primary_metric"] == "avg_pass@4" and data["baseline"] == "maxpo" and len(data["seeds"]) == 5
    arms = [arm for arm in data["per_seed"] if arm != "maxpo"]
    rows = compare(data["per_seed"], "avg_pass@4", [(arm, "maxpo") for arm in arms], data["base_seeds"])
    section = (DOCS / "results.md").read_text().split(f"## The {preset} preset")[1].split("### Other metrics")[0]
    for c, published in zip(rows, data["comparisons"], strict=True):
        assert (c.arm, c.df) == (published["arm"], 4) and c.p_holm == pytest.approx(published["p_holm"])
        line = (
            f"| {c.arm} | {c.n} | {c.diff:+.4f} ± {c.se:.4f} | [{c.ci95[0]:+.4f}, {c.ci95[1]:+.4f}] | "
            f"{c.diff / c.se:+.2f} | {c.p:.3f} | {c.p_holm:.3f} | {c.verdict} |"
        )
        assert line in section
    # the claim of the decision table's demo row: no arm is better or worse than maxpo on the primary metric
    assert all(c.p_holm >= 0.05 for c in rows)
    # and pkpo's point estimate is above maxpo's there
    assert next(c for c in rows if c.arm == "pkpo").diff > 0


# Experiments published with per-seed values: (summary file, results.md section heading, arms against maxpo).
PER_SEED_RESULTS = [
    ("n16_summary.json", "## n = 16 at the same samples per step", ["pkpo", "maxrl", "grpo"]),
    ("partial_summary.json", "## A partial-credit reward", ["maxpo_top2", "maxpo_ml", "pkpo", "grpo"]),
    ("heldout256_summary.json", "## Held-out sets of 256 prompts", ["pkpo", "grpo"]),
    ("smol_ab_summary.json", "## A real model: SmolLM2-135M-Instruct", ["pkpo", "maxrl", "grpo"]),
]


@pytest.mark.parametrize(("name", "heading", "arms"), PER_SEED_RESULTS)
def test_verdicts_recomputed_from_the_per_seed_values(name: str, heading: str, arms: list[str]) -> None:
    """The comparisons of a summary.json follow from its per-seed values (paired t over base seeds, Holm), and
    results.md's verdict table prints exactly those."""
    data = json.loads((DOCS / "results" / name).read_text())
    metric, blocks = data["primary_metric"], data["base_seeds"]
    assert metric == "avg_pass@4" and data["baseline"] == "maxpo"
    recomputed = compare(data["per_seed"], metric, [(arm, "maxpo") for arm in arms], blocks)
    section = (DOCS / "results.md").read_text().split(heading)[1].split("\n## ")[0]
    for c, published in zip(recomputed, data["comparisons"], strict=True):
        assert (c.arm, c.baseline) == (published["arm"], published["baseline"])
        assert c.p == pytest.approx(published["p"]) and c.p_holm == pytest.approx(published["p_holm"])
        assert c.verdict == published["verdict"]
        # the test runs over base seeds where there are two or more, else over seeds
        units = len(set(blocks)) if blocks is not None and len(set(blocks)) >= 2 else len(data["seeds"])
        assert c.df == units - 1
        line = (
            f"| {c.arm} | {c.n} | {c.diff:+.4f} | [{c.ci95[0]:+.4f}, {c.ci95[1]:+.4f}] | {c.p:.3f} | "
            f"{c.p_holm:.3f} | {c.verdict} |"
        )
        assert line in section


def test_the_one_table_repeats_each_experiments_pkpo_row() -> None:
    """results.md's overview table gives, for each experiment with per-seed values, pkpo's published comparison."""
    overview = (DOCS / "results.md").read_text().split("## In one table")[1].split("\n## ")[0]
    for name, heading, _ in PER_SEED_RESULTS:
        pkpo = next(c for c in json.loads((DOCS / "results" / name).read_text())["comparisons"] if c["arm"] == "pkpo")
        slug = re.sub(r"[^\w\- ]", "", heading.removeprefix("## ").lower()).replace(" ", "-")  # the link's anchor
        row = next(line for line in overview.splitlines() if f"(#{slug}" in line)
        assert f"| {pkpo['diff']:+.4f} | {pkpo['p']:.3f} | {pkpo['p_holm']:.3f} |" in row, (name, row)
