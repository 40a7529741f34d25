"""`verl-maxpo report` over seed groups: per-seed values, the primary metric and Holm-adjusted paired t-tests
(verl_maxpo.tools.stats), recomputed here from pass rates written into the dumps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from verl_maxpo.tools import stats
from verl_maxpo.tools.report.main import main, write_report

# group -> seed -> pass@1 (the fraction of the 4 samples of each of the 2 prompts that score 1) at steps 0, 10, 20
META = {"k": 1, "n": 4, "val_n": 4}
RATES = {
    "maxpo": {1: (0.25, 0.25, 0.5), 2: (0.25, 0.5, 0.5), 3: (0.25, 0.25, 0.25)},
    "pkpo": {1: (0.25, 0.5, 0.75), 2: (0.25, 0.75, 0.75), 3: (0.25, 0.5, 0.5)},
    "grpo": {1: (0.25, 0.25, 0.5), 2: (0.25, 0.5, 0.75)},  # no seed 3
}


def write_runs(root: Path) -> list[Path]:
    dirs = []
    for group, seeds in RATES.items():
        for seed, rates in seeds.items():
            run = root / f"{group}_seed{seed}"
            (run / "val").mkdir(parents=True)
            for step, rate in zip((0, 10, 20), rates, strict=True):
                wins = round(rate * 4)
                lines = [
                    {"input": f"p{p}", "output": "o", "gts": "g", "score": float(j < wins), "step": step}
                    for p in range(2)
                    for j in range(4)
                ]
                (run / "val" / f"{step}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
            (run / "meta.json").write_text(
                json.dumps(META | {"adv_estimator": group, "seed": seed, "config_name": group})
            )
            dirs.append(run)
    return dirs


def test_report_tests_every_group_against_maxpo_on_avg_pass_at_trained_k(tmp_path: Path) -> None:
    result = write_report(write_runs(tmp_path), tmp_path / "out", ks=[1], verdicts=stats.VerdictOptions())
    assert result["primary_metric"] == "avg_pass@1" and result["baseline"] == "maxpo" and result["seeds"] == [1, 2, 3]
    per_seed = result["per_seed"]
    # avg over the validations after step 0; grpo has no seed 3
    assert per_seed["pkpo"]["avg_pass@1"] == pytest.approx([0.625, 0.75, 0.5])
    assert per_seed["grpo"]["final_pass@1"] == [0.5, 0.75, None]
    pkpo, grpo = (next(c for c in result["comparisons"] if c["arm"] == a) for a in ("pkpo", "grpo"))
    # pkpo - maxpo per seed: 0.25, 0.25, 0.25 -> zero variance, no test; grpo - maxpo on seeds 1, 2: 0, 0.125
    assert pkpo["p"] is None and pkpo["verdict"] == "no verdict" and "zero variance" in pkpo["reason"]
    assert grpo["n"] == 2 and grpo["diff"] == pytest.approx(0.0625)
    assert grpo["p"] == pytest.approx(stats.paired_t([0.0, 0.125]).p) and grpo["p_holm"] == grpo["p"]  # family of 1
    md = Path(result["report"]).read_text()
    assert "## Primary metric: avg_pass@1" in md and "zero variance" in md


def test_report_cli_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dirs = [str(d) for d in write_runs(tmp_path)]
    args = [
        *dirs,
        "--json",
        "--k",
        "1",
        "--primary-metric",
        "final_pass@1",
        "--baseline",
        "grpo",
        "--compare",
        "pkpo:maxpo",
    ]
    assert main(args) == 0
    data = json.loads(capsys.readouterr().out)
    assert [(c["arm"], c["baseline"]) for c in data["comparisons"]] == [
        ("maxpo", "grpo"),
        ("pkpo", "grpo"),
        ("pkpo", "maxpo"),
    ]
    assert {c["metric"] for c in data["comparisons"]} == {"final_pass@1"}
    ps = [c["p"] for c in data["comparisons"]]
    assert [c["p_holm"] for c in data["comparisons"]] == stats.holm(ps)


@pytest.mark.parametrize(
    ("extra", "code"),
    [
        (["--primary-metric", "pass@1"], 2),  # not a metric name: refused by the parser
        (["--compare", "pkpo"], 2),
        (["--compare", "pkpo:pkpo"], 2),
        (["--primary-metric", "avg_pass@4"], 1),  # k = 4 is not among the report's k: an input error
        (["--baseline", "nope"], 1),
    ],
)
def test_report_bad_verdict_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], code: int
) -> None:
    dirs = [str(d) for d in write_runs(tmp_path)]
    assert main([*dirs, "--json", "--k", "1", *extra]) == code
    err = capsys.readouterr().err
    assert extra[0] in err and "Traceback" not in err
