"""docs/results.md's verdict tables, recomputed from the published summaries (docs/results/*_summary.json): they
carry each paired difference as mean ± SE over 5 seeds, so t = mean / SE at df = 4, Holm across the 5 arms."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from verl_maxpo.tools.stats import holm, t_critical, t_two_sided_p, verdict

DOCS = Path(__file__).resolve().parents[3] / "docs"


@pytest.mark.parametrize("preset", ["sparse", "default"])
def test_results_md_verdicts_on_avg_pass_at_4(preset: str) -> None:
    paired = json.loads((DOCS / "results" / f"{preset}_summary.json").read_text())["paired_vs_maxpo"]
    rows = [(arm, d["diffs"]["avg_pass@4"]["mean"], d["diffs"]["avg_pass@4"]["se"]) for arm, d in paired.items()]
    ps = [t_two_sided_p(mean / se, 4) for _, mean, se in rows]
    text = (DOCS / "results.md").read_text()
    section = text.split(f"## The {preset} preset")[1].split("### Other metrics")[0]
    half = t_critical(4)
    for (arm, mean, se), p, p_holm in zip(rows, ps, holm(ps), strict=True):
        line = (
            f"| {arm} | 5 | {mean:+.4f} ± {se:.4f} | [{mean - half * se:+.4f}, {mean + half * se:+.4f}] | "
            f"{mean / se:+.2f} | {p:.3f} | {p_holm:.3f} | {verdict(mean, p_holm)} |"
        )
        assert line in section
    # the claim of the decision table's demo row: no arm is better or worse than maxpo on the primary metric
    assert all(p_holm >= 0.05 for p_holm in holm(ps))
    # and pkpo's point estimate is above maxpo's there
    assert paired["pkpo"]["diffs"]["avg_pass@4"]["mean"] > 0
