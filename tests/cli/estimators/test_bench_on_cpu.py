"""`verl-maxpo bench` at tiny sizes: every estimator's row, the inputs it builds, and its memory probe."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import torch

import verl_maxpo.cli.main as cli
from verl_maxpo.core.estimators import maxpo_advantages
from verl_maxpo.tools import bench


@pytest.mark.slow  # times every estimator of verl's registry (seconds)
def test_quick_bench_prints_every_estimator_row(capsys: pytest.CaptureFixture) -> None:
    code = cli.main(["bench", "--quick", "--repeats", "1"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    rows = re.findall(r"^\| cpu \| (\d+) x (\d+) \| (\w+) \| ([\d.]+) \| ([\d.]+) \| (\d+) \|$", captured.out, re.M)
    seen = {(int(g), int(n), name) for g, n, name, *_ in rows}
    assert seen == {(g, n, name) for g, n in bench.QUICK_SHAPES for name in bench.ESTIMATORS}
    for _, _, name, ms, ratio, runs in rows:
        assert float(ms) > 0 and int(runs) == 1
        if name == bench.BASELINE:
            assert ratio == "1.00"
    # no memory column (it would read 0.0 everywhere at these sizes), and the table says why
    assert (
        "peak extra MiB" not in captured.out and f"peak extra memory (all): {bench.QUICK_MEMORY_NOTE}" in captured.out
    )
    scaling = re.findall(r"^\| cpu \| (\d+) \| (\d+) \| ([\d.]+) \| ([\d.]+) \|$", captured.out, re.M)
    assert [(int(n), int(g)) for n, g, *_ in scaling] == [
        (n, bench.QUICK_SCALING_BATCH // n) for n in bench.QUICK_SCALING_NS
    ]
    assert "timing" in captured.err  # the tqdm bar


def test_json_output_and_baseline_is_always_timed(capsys: pytest.CaptureFixture) -> None:
    code = bench.main(["--quick", "--repeats", "2", "--no-memory", "--estimators", "maxpo", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0
    names = [r["estimator"] for r in result["rows"]]
    assert names == ["maxpo", bench.BASELINE] * len(bench.QUICK_SHAPES)
    for r in result["rows"]:
        assert r["error"] is None and r["peak_extra_bytes"] is None and r["repeats"] == 2 and r["median_s"] > 0
        base = next(b for b in result["rows"] if b["estimator"] == bench.BASELINE and b["n"] == r["n"])
        assert r["ratio_to_baseline"] == pytest.approx(r["median_s"] / base["median_s"])
    assert result["env"]["response_length"] == 16 and [s["n"] for s in result["scaling"]] == list(
        bench.QUICK_SCALING_NS
    )


def test_table_has_a_memory_column_only_when_something_was_measured() -> None:
    row = {"device": "cpu", "groups": 2, "n": 4, "batch": 8, "estimator": "maxpo", "median_s": 1e-3}
    row.update(ratio_to_baseline=1.0, repeats=3, error=None)
    env = {"torch": "x", "threads": 1, "cpus": 1, "load_avg_1min_at_start": None, "cuda": None}
    env.update(response_length=16, k=4, repeats=3)
    measured = bench.format_tables(
        {"env": env, "rows": [{**row, "peak_extra_bytes": 3 * 2**20}], "scaling": [], "memory_method": {"cpu": "rss"}}
    )
    assert "| peak extra MiB |" in measured and "| cpu | 2 x 4 | maxpo | 1.00 | 1.00 | 3.0 | 3 |" in measured
    skipped = bench.format_tables(
        {
            "env": env,
            "rows": [{**row, "peak_extra_bytes": None}],
            "scaling": [],
            "memory_method": {"all": bench.QUICK_MEMORY_NOTE},
        }
    )
    assert "MiB" not in skipped and "| cpu | 2 x 4 | maxpo | 1.00 | 1.00 | 3 |" in skipped
    assert bench.QUICK_MEMORY_NOTE in skipped


def test_make_inputs_is_a_verl_outcome_batch() -> None:
    batch = bench.make_inputs(groups=6, n=5, length=12, seed=3)
    rewards, mask, index = batch["token_level_rewards"], batch["response_mask"], batch["index"]
    assert rewards.shape == mask.shape == (30, 12) and index.shape == (30,) and index.dtype == object
    lengths = mask.sum(-1).long()
    # Reward sits on the last response token only, and is 0/1.
    assert torch.equal(rewards.count_nonzero(-1) <= 1, torch.ones(30, dtype=torch.bool))
    last = rewards[torch.arange(30), lengths - 1]
    assert torch.equal(rewards.sum(-1), last) and set(last.tolist()) <= {0.0, 1.0}
    # uuid group ids, each repeated n times in a row, as verl's rollout batch lays them out.
    assert len(set(index.tolist())) == 6 and all(len(set(index[i * 5 : (i + 1) * 5])) == 1 for i in range(6))
    assert re.fullmatch(r"[0-9a-f-]{36}", index[0])


def test_registry_call_uses_the_configured_k() -> None:
    batch = bench.make_inputs(groups=8, n=6, length=4, seed=1)
    fn = bench._estimator("maxpo")
    adv, _ = fn(**batch, config=bench.algorithm_config(k=2))
    want = maxpo_advantages(batch["token_level_rewards"].sum(-1), batch["index"], 2)
    assert torch.allclose(adv, want.unsqueeze(-1) * batch["response_mask"], atol=1e-6)
    other_k = maxpo_advantages(batch["token_level_rewards"].sum(-1), batch["index"], 4)
    assert not torch.allclose(want, other_k)


_PEAK_PROBE = """
import json
import numpy as np
import torch
from verl_maxpo.tools import bench
bench._tune_malloc()
mib = 2**20
print(json.dumps({
    "torch": bench.peak_rss_growth(lambda: torch.ones(48 * mib // 4)),  # 48 MiB, kept alive until read
    "numpy": bench.peak_rss_growth(lambda: np.ones(32 * mib // 8)),
    "temp": bench.peak_rss_growth(lambda: float(torch.ones(40 * mib // 4).sum())),
    "nothing": bench.peak_rss_growth(lambda: None),
}))
"""


@pytest.mark.skipif(not bench._proc_peak_available(), reason="needs Linux /proc/self/clear_refs")
@pytest.mark.slow  # a fresh interpreter importing torch
def test_peak_rss_growth_sees_torch_and_numpy_buffers() -> None:
    # A fresh process with malloc tuned, as the memory worker runs: inside pytest, heap pages freed by earlier
    # tests are reused without raising RSS (glibc's dynamic mmap threshold), which would hide the numpy buffer.
    proc = subprocess.run([sys.executable, "-c", _PEAK_PROBE], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    peaks = json.loads(proc.stdout.strip().splitlines()[-1])
    mib = 2**20
    assert 46 * mib <= peaks["torch"] <= 56 * mib
    assert 30 * mib <= peaks["numpy"] <= 40 * mib
    # A temporary that is freed before the call returns still counts: it is a peak, not an end state.
    assert 38 * mib <= peaks["temp"] <= 48 * mib
    assert peaks["nothing"] < 4 * mib


def test_large_k_is_refused_before_any_row_is_timed(capsys: pytest.CaptureFixture) -> None:
    """A row that cannot run on the smallest group (maxpo needs n >= k+1; --quick's smallest n is 8) is refused up
    front, naming --k and the row: no row fails after the others were timed."""
    code = bench.main(["--quick", "--repeats", "1", "--no-memory", "--estimators", "maxpo", "--k", "8", "--json"])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert "--k" in captured.err and "maxpo" in captured.err and "9" in captured.err
    assert bench.main(["--quick", "--repeats", "1", "--no-memory", "--estimators", "maxpo", "--k", "7", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert all(r["error"] is None for r in result["rows"])
    assert [s["n"] for s in result["scaling"]] == [n for n in bench.QUICK_SCALING_NS if n > 7]  # the sweep skips n <= k
