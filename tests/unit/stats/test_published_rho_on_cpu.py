"""docs/results.md's rho table, recomputed from docs/results/rho_n8_summary.json (the demo's `score_norms`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from verl_maxpo.tools.demo.gradvar import map_prediction

DOCS = Path(__file__).resolve().parents[3] / "docs"
UNBIASED = ("maxpo", "pkpo", "pkpo_loo")  # the arms unbiased for grad max@K


def test_rho_table_rows_follow_from_the_summary() -> None:
    data = json.loads((DOCS / "results" / "rho_n8_summary.json").read_text())
    section = (DOCS / "results.md").read_text().split("## rho measured")[1].split("\n## ")[0]
    assert len(data["score_norms"]) == 7
    for ckpt, norms in data["score_norms"].items():
        measured = {a: data["gradvar"][ckpt][a]["rel_var"] for a in UNBIASED}
        predicted = {a: norms["map_rel_var"][a] for a in UNBIASED}
        same = sorted(measured, key=measured.get) == sorted(predicted, key=predicted.get)
        line = (
            f"| {ckpt} | {norms['rho']:.2f} ({norms['rho_median']:.2f}) | {norms['p']:.3f} | "
            + " / ".join(f"{measured[a]:.2f}" for a in UNBIASED)
            + " | "
            + " / ".join(f"{predicted[a]:.0f}" for a in UNBIASED)
            + f" | {'yes' if same else 'no'} |"
        )
        assert line in section
        # the published map column is the variance map at the published (p, rho)
        again = map_prediction(list(UNBIASED), 8, 4, norms["p"], norms["rho"])
        assert again == pytest.approx(predicted, rel=1e-9)
