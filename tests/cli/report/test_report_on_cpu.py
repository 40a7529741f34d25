"""`verl-maxpo report` on dumps written here: every number against brute-force k-subset enumeration.

All checks are exact (enumeration of subsets, closed-form mean/SE); nothing here is Monte Carlo.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from pathlib import Path

import numpy as np
import pytest

import verl_maxpo.cli.main as cli
from verl_maxpo.tools.report.main import config_name, write_report
from verl_maxpo.tools.report.metrics import step_metrics

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def brute_max_at_k(scores: list[float], k: int) -> float:
    """Mean over every k-subset (without replacement) of the subset's best score."""
    subsets = list(itertools.combinations(scores, k))
    return sum(max(s) for s in subsets) / len(subsets)


def brute_step(groups: dict[str, list[float]], k: int, threshold: float) -> tuple[float | None, float | None, int]:
    """(max@k, pass@k, prompts left out), straight from the definition."""
    usable = {p: s for p, s in groups.items() if len(s) >= k}
    if not usable:
        return None, None, len(groups)
    max_k = sum(brute_max_at_k(s, k) for s in usable.values()) / len(usable)
    pass_k = sum(brute_max_at_k([float(x >= threshold) for x in s], k) for s in usable.values()) / len(usable)
    return max_k, pass_k, len(groups) - len(usable)


def write_dump(folder: Path, step: int, groups: dict[str, list[float]], seed: int = 0, extra: str = "") -> Path:
    """A verl-style `<step>.jsonl` with the samples of all prompts shuffled together."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        {"input": prompt, "output": f"answer {j}", "gts": "42", "score": s, "step": step, "acc": s > 0}
        for prompt, scores in groups.items()
        for j, s in enumerate(scores)
    ]
    random.Random(seed).shuffle(lines)
    path = folder / f"{step}.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines) + extra, encoding="utf-8")
    return path


def random_groups(rng: random.Random, kind: str, sizes: list[int]) -> dict[str, list[float]]:
    draw = {
        "binary": lambda: float(rng.random() < 0.4),
        "continuous": lambda: round(rng.random(), 3),
        "negative": lambda: round(rng.uniform(-3.0, 0.5), 2),
    }[kind]
    # Prompts that differ only in a suffix, so grouping must use the whole `input`.
    return {f"Question: solve task {i}.\nAnswer:": [draw() for _ in range(n)] for i, n in enumerate(sizes)}


@pytest.mark.parametrize("kind,threshold", [("binary", 1.0), ("continuous", 0.7), ("negative", -0.5)])
def test_every_number_matches_enumeration(tmp_path: Path, kind: str, threshold: float) -> None:
    rng = random.Random(hash(kind) % 1000)
    run = tmp_path / "runs" / f"{kind}_run"
    steps = {}
    for step in (0, 5, 10):
        # Sizes 2..7 (with ties in the binary case); k = 5 and 6 leave the small prompts out.
        steps[step] = random_groups(rng, kind, [7, 6, 5, 3, 2, 7])
        write_dump(run / "val", step, steps[step], seed=step)
    ks = [1, 2, 3, 5, 6]
    result = write_report([run], tmp_path / "out", ks=ks, pass_threshold=threshold)

    assert result["errors"] == []
    (entry,) = result["runs"]
    assert entry["name"] == f"{kind}_run"
    assert [s["step"] for s in entry["steps"]] == [0, 5, 10]
    for row in entry["steps"]:
        groups = steps[row["step"]]
        assert row["prompts"] == 6 and row["samples"] == 30
        for k in ks:
            want_max, want_pass, left_out = brute_step(groups, k, threshold)
            assert row[f"max@{k}"] == pytest.approx(want_max, abs=1e-12), (row["step"], k)
            assert row[f"pass@{k}"] == pytest.approx(want_pass, abs=1e-12), (row["step"], k)
            assert row["left_out"].get(str(k), 0) == left_out
    # k = 3 drops the 2-sample prompt, k = 5 also the 3-sample one, k = 6 also the 5-sample one: never silent.
    assert entry["steps"][0]["left_out"] == {"3": 1, "5": 2, "6": 3}
    assert any("fewer than 6 samples" in w and f"{kind}_run" in w for w in result["warnings"])
    summary = entry["summary"]["max@2"]
    values = [s["max@2"] for s in entry["steps"]]
    assert summary["final"] == values[-1] and summary["final_step"] == 10
    assert summary["best"] == max(values) and entry["steps"][values.index(max(values))]["step"] == summary["best_step"]


def test_compute_step_metrics_k_larger_than_every_prompt() -> None:
    out = step_metrics(np.array([0, 0, 1, 1, 1]), np.array([1.0, 0.0, 0.0, 0.0, 1.0]), [1, 3, 4]).as_json()
    assert out["max@1"] == pytest.approx((0.5 + 1 / 3) / 2)
    assert out["pass@3"] == pytest.approx(1.0)  # only the 3-sample prompt enters, and it has a success
    assert out["max@4"] is None and out["pass@4"] is None
    assert out["left_out"] == {"3": 1, "4": 2}


def test_grouping_is_by_input_not_by_line_order(tmp_path: Path) -> None:
    # Two prompts, interleaved: 'a' always solved, 'b' never. Per-prompt pass@2 = (1 + 0) / 2; a wrong grouping
    # (one pool of 8 samples, or consecutive pairs) would give about 0.79 or 1.0.
    lines = [{"input": p, "output": "", "gts": "", "score": float(p == "a"), "step": 3} for p in "abab" * 2]
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "3.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    result = write_report([tmp_path / "run"], tmp_path / "out", ks=[2])
    (row,) = result["runs"][0]["steps"]
    assert row["prompts"] == 2 and row["pass@2"] == pytest.approx(0.5)


@pytest.mark.slow  # over a second
def test_seed_groups_mean_and_standard_error(tmp_path: Path) -> None:
    rng = random.Random(7)
    dirs = []
    for name in ("maxpo_k4_seed1", "maxpo_k4_seed2", "maxpo_k4_seed3", "grpo_seed1"):
        for step in (10, 20):
            write_dump(tmp_path / name / "val", step, random_groups(rng, "continuous", [5, 5, 5, 5]), seed=step)
        (tmp_path / name / "meta.json").write_text(json.dumps({"adv_estimator": name.split("_")[0], "k": 4}))
        dirs.append(tmp_path / name)
    result = write_report(dirs, tmp_path / "out", ks=[1, 4], pass_threshold=0.5)

    by_name = {g["name"]: g for g in result["groups"]}
    assert set(by_name) == {"maxpo_k4", "grpo"}
    group = by_name["maxpo_k4"]
    assert group["seeds"] == 3 and group["runs"] == ["maxpo_k4_seed1", "maxpo_k4_seed2", "maxpo_k4_seed3"]
    runs = {r["name"]: r for r in result["runs"]}
    for g_row in group["steps"]:
        for metric in ("max@1", "pass@1", "max@4", "pass@4"):
            vals = [
                next(s[metric] for s in runs[f"maxpo_k4_seed{i}"]["steps"] if s["step"] == g_row["step"])
                for i in (1, 2, 3)
            ]
            mean = sum(vals) / 3
            se = math.sqrt(sum((v - mean) ** 2 for v in vals) / 2) / math.sqrt(3)
            assert g_row[metric] == pytest.approx(mean, abs=1e-12)
            assert g_row[f"{metric}_se"] == pytest.approx(se, abs=1e-12)
    # One seed: no standard error, and the markdown says so instead of printing 0.
    assert by_name["grpo"]["seeds"] == 1 and by_name["grpo"]["summary"]["max@1"]["final_se"] is None
    markdown = Path(result["report"]).read_text(encoding="utf-8")
    assert "## Seeds: mean ± standard error" in markdown and "(1 seed, no SE)" in markdown
    final = group["summary"]["max@4"]
    assert f"{final['final']:.4f} ± {final['final_se']:.4f}" in markdown
    # The mean curve has a band in the PNG; the report links every metric's PNG.
    assert "![max_at_4](max_at_4.png)" in markdown

    # --group overrides the name-based grouping.
    regrouped = write_report(dirs, tmp_path / "out2", ks=[1], groups=["a", "a", "b", "b"])
    assert [(g["name"], g["seeds"]) for g in regrouped["groups"]] == [("a", 2), ("b", 2)]


def test_config_name_strips_seed_suffix() -> None:
    assert config_name("maxpo_k4_seed12") == "maxpo_k4"
    assert config_name("grpo-seed1") == "grpo"
    assert config_name("baseline") == "baseline"
    assert config_name("seedless_run") == "seedless_run"


def test_bad_input_is_named_and_the_rest_still_comes_out(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    good = tmp_path / "good"
    write_dump(good / "val", 1, {"p": [1.0, 0.0, 1.0]})
    bad = tmp_path / "bad"
    write_dump(bad / "val", 2, {"q": [1.0, 1.0], "r": [0.0, 0.0]}, extra='{oops\n{"input": "q"}\n{"score": 1.0}\n')
    (bad / "val" / "3.jsonl").write_text("", encoding="utf-8")
    missing = tmp_path / "missing"
    out = tmp_path / "out"

    code = cli.main(["report", str(good), str(bad), str(missing), "--k", "1,2", "--out", str(out), "--json"])
    captured = capsys.readouterr()
    assert code == 1  # bad input, but the report is written
    dump2 = bad / "val" / "2.jsonl"
    for message in (
        f"{dump2}:5: not valid JSON",
        f"{dump2}:6: missing 'score'",
        f"{dump2}:7: missing 'input'",
        f"{bad / 'val' / '3.jsonl'}: empty dump",
        f"{missing}: no such folder",
    ):
        assert message in captured.err
    result = json.loads(captured.out)
    assert [r["name"] for r in result["runs"]] == ["good", "bad"]
    assert result["runs"][0]["steps"][0]["pass@2"] == pytest.approx(brute_max_at_k([1.0, 0.0, 1.0], 2))
    assert result["runs"][1]["steps"] == [
        {
            "step": 2,
            "prompts": 2,
            "samples": 4,
            "max@1": 0.5,
            "pass@1": 0.5,
            "max@2": 0.5,
            "pass@2": 0.5,
            "left_out": {},
        }
    ]
    markdown = (out / "report.md").read_text(encoding="utf-8")
    assert f"{dump2}:5" in markdown  # the bad line is named, file and line number


def test_many_bad_lines_are_capped(tmp_path: Path) -> None:
    write_dump(tmp_path / "run", 1, {"p": [1.0, 0.0]}, extra="garbage\n" * 12)
    result = write_report([tmp_path / "run"], tmp_path / "out", ks=[1])
    assert len(result["errors"]) == 6 and result["errors"][-1].endswith("... and 7 more bad line(s)")
    assert result["runs"][0]["steps"][0]["max@1"] == 0.5


@pytest.mark.slow  # over a second
def test_files_default_ks_layouts_and_training_log(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "maxpo_k3_seed1"
    for step in (0, 4, 8):
        write_dump(run / "val", step, {f"p{i}": [float((i + j + step) % 3 == 0) for j in range(6)] for i in range(4)})
    meta = {"adv_estimator": "maxpo", "k": 3, "n": 6, "seed": 1, "config_name": "maxpo_k3", "val_n": 6}
    (run / "meta.json").write_text(json.dumps(meta))  # the run_folder format: every RunMeta key
    with (run / "train_log.jsonl").open("w") as f:
        for s in range(9):
            f.write(json.dumps({"step": s, "data": {"critic/score/mean": s / 10, "actor/entropy": 1 - s / 20}}) + "\n")
        f.write(json.dumps({"step": 8, "data": {"val-core/gsm8k/reward/mean@6": 0.4}}) + "\n")
    bare = tmp_path / "dumps_only"  # a bare folder of <step>.jsonl, with a non-dump file beside them
    write_dump(bare, 8, {"x": [1.0, 0.0, 0.0, 0.0, 0.0, 0.0]})
    (bare / "notes.jsonl").write_text("not a dump\n")

    out = tmp_path / "report"
    code = cli.main(["report", str(run), str(bare), "--out", str(out), "--label", "maxpo", "grpo"])
    stdout = capsys.readouterr().out
    assert code == 0
    assert "| maxpo | 8 |" in stdout and str(out / "report.md") in stdout
    pngs = sorted(p.name for p in out.glob("*.png"))
    # 0/1 scores: max@k is pass@k, so one set of curves (pass@k) and one column per k.
    assert pngs == ["pass_at_1.png", "pass_at_3.png", "pass_at_6.png", "training.png"]
    for name in pngs:
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000
    markdown = (out / "report.md").read_text(encoding="utf-8")
    assert markdown.startswith("# MaxPO A/B report") and "How to read this" in markdown
    assert "| run | step | pass@1 | pass@3 | pass@6 |" in markdown and "max@" not in markdown.split("## Runs")[1]
    assert "Each config has a single seed" in markdown and "![training](training.png)" in markdown

    # The same through the Python API, pointing at the val/ folder itself: named after the run, log still found.
    result = write_report([run / "val"], tmp_path / "r2")
    (entry,) = result["runs"]
    assert result["ks"] == [1, 3, 6] and entry["name"] == "maxpo_k3_seed1" and entry["n"] == 6
    assert entry["train_metrics"] == ["actor/entropy", "critic/score/mean", "val-core/gsm8k/reward/mean@6"]
    assert entry["meta"]["k"] == 3 and result["binary_scores"] is True


def test_usage_errors() -> None:
    assert cli.main(["report", "somewhere", "--k", "0"]) == 2
    with pytest.raises(ValueError, match="labels"):
        write_report(["somewhere"], "unused_out", labels=["a", "b"])


def test_reads_dumps_written_by_verls_own_writer(tmp_path: Path) -> None:
    from verl.trainer.ppo.ray_trainer import RayPPOTrainer

    rng = random.Random(3)
    val_dir = tmp_path / "grpo_seed1" / "val"
    expected = {}
    for step in (0, 2):
        groups = random_groups(rng, "binary", [4, 4, 4])
        inputs = [p for p, s in groups.items() for _ in s]
        scores = [x for s in groups.values() for x in s]
        extra = {"reward": scores, "acc": [x > 0 for x in scores], "short": [1.0]}  # wrong length: verl drops it
        RayPPOTrainer._write_generations(
            inputs, ["out"] * len(inputs), [None] * len(inputs), scores, extra, str(val_dir), step
        )
        expected[step] = groups
    result = write_report([val_dir.parent], tmp_path / "out", ks=[1, 2, 4])
    assert result["errors"] == [] and [s["step"] for s in result["runs"][0]["steps"]] == [0, 2]
    for row in result["runs"][0]["steps"]:
        for k in (1, 2, 4):
            assert row[f"pass@{k}"] == pytest.approx(brute_step(expected[row["step"]], k, 1.0)[1], abs=1e-12)


def test_k_comes_from_meta_then_a_saved_config_then_the_run_name(tmp_path: Path) -> None:
    """Without meta.json the default ks still hold the run's K: from `.hydra/config.yaml`, else a `k<N>` word."""
    groups = {"a": [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], "b": [0.0] * 8}
    by_name = tmp_path / "gsm8k_maxpo_k4_seed0"
    write_dump(by_name / "val", 1, groups)
    by_config = tmp_path / "run_seed0"
    write_dump(by_config / "val", 1, groups)
    (by_config / ".hydra").mkdir()
    (by_config / ".hydra" / "config.yaml").write_text("algorithm:\n  adv_estimator: maxpo\n  maxpo:\n    k: 2\n")
    plain = tmp_path / "plain"
    write_dump(plain / "val", 1, groups)
    assert write_report([by_name], tmp_path / "o1")["ks"] == [1, 4, 8]
    assert write_report([by_config], tmp_path / "o2")["ks"] == [1, 2, 8]
    assert write_report([plain], tmp_path / "o3")["ks"] == [1, 8]


def test_an_arm_keeps_its_colour_and_place_and_titles_carry_the_setting(tmp_path: Path) -> None:
    from verl_maxpo.core.table import ARMS
    from verl_maxpo.tools.report.main import _colors, _curves, build_report, plot_setting
    from verl_maxpo.tools.report.metrics import Metric

    groups = {"a": [1.0, 0.0, 0.0, 0.0], "b": [0.0, 0.0, 1.0, 1.0]}
    runs = []
    for name in ("gsm8k_grpo_k4_seed0", "gsm8k_maxpo_top2_k4_seed0", "mine_seed0", "gsm8k_maxpo_k4_seed0"):
        write_dump(tmp_path / name / "val", 1, groups)
        runs.append(tmp_path / name)
    report, read = build_report(runs)
    colors = {owner[1]: index for owner, index in _colors(report).items()}
    arms = list(ARMS)
    assert colors["gsm8k_grpo_k4_seed0"] == arms.index("grpo")
    assert colors["gsm8k_maxpo_top2_k4_seed0"] == arms.index("maxpo_top2")  # not maxpo: the longest arm name wins
    assert colors["gsm8k_maxpo_k4_seed0"] == arms.index("maxpo")
    assert colors["mine_seed0"] >= len(arms)  # not an arm: a color no arm uses
    # legend order follows the table, whatever the order of the folders on the command line
    labels = [c.label for c in _curves(report, Metric(1, "pass"))]
    assert labels == ["gsm8k_maxpo_k4_seed0", "gsm8k_maxpo_top2_k4_seed0", "gsm8k_grpo_k4_seed0", "mine_seed0"]
    setting = plot_setting(report, read)
    assert "K=4" in setting and "1 seed" in setting and "4 samples per validation prompt" in setting
