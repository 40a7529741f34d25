"""Bad-input corpus for the estimators' entry points: the verl adapter (`algorithm.maxpo`, the batch) and `bench`.

One case per line. Adapter cases call the registered verl functions directly (that is how verl's trainer calls
them); bench cases run `verl-maxpo bench` in-process. Every bench case carries `--quick --no-memory` so that a
case the parser fails to refuse still finishes in seconds (and is reported as a silent run, not a hang).
A failure message starts with its class: RAW_TRACEBACK (an exception that is not our ValueError / a traceback
in the output), SILENT (accepted what must be refused, or a wrong value), OTHER (refused, but the message does
not name the problem).
"""

from __future__ import annotations

import uuid

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from verl_maxpo.core import estimators
from verl_maxpo.integration import adapter as verl_adapter

N_GROUPS, N, LENGTH = 3, 6, 4


def _batch(n: int = N, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    rewards = torch.zeros(N_GROUPS * n, LENGTH)
    rewards[:, -1] = (torch.rand(N_GROUPS * n, generator=g) < 0.4).float()
    rewards[0, -1], rewards[1, -1] = 1.0, 0.0  # never a constant first group
    uids = np.array([str(uuid.UUID(int=i + 1)) for i in range(N_GROUPS)], dtype=object).repeat(n)
    return {"token_level_rewards": rewards, "response_mask": torch.ones_like(rewards), "index": uids}


def _struct(data: dict):
    cfg = OmegaConf.create(data)
    OmegaConf.set_struct(cfg, True)
    return cfg


VALID_KEYS = ("norm_by_std", "objective", "rank_weights", "kernel")  # a refused block names the keys it takes

# (id, estimator, config, batch change, what the ValueError must name: keys, options, the bad value; no sentences)
ADAPTER_REFUSED = [
    ("block-is-int", "maxpo", {"maxpo": 8}, None, ["algorithm.maxpo", *VALID_KEYS]),
    ("block-is-int-omegaconf", "maxpo", _struct({"maxpo": 8}), None, ["algorithm.maxpo", *VALID_KEYS]),
    ("block-is-string", "maxpo", {"maxpo": "k=4"}, None, ["algorithm.maxpo", "k=4"]),
    ("block-is-list", "pkpo", {"maxpo": [4]}, None, ["algorithm.maxpo"]),
    ("block-is-true", "pkpo_loo", {"maxpo": True}, None, ["algorithm.maxpo"]),
    ("key-K-uppercase", "maxpo", {"maxpo": {"K": 8}}, None, ["K", *VALID_KEYS]),
    ("key-kk", "maxpo", _struct({"maxpo": {"kk": 8}}), None, ["kk", *VALID_KEYS]),
    ("key-typo-norm", "pkpo", {"maxpo": {"k": 2, "norm_by_sd": True}}, None, ["norm_by_sd"]),
    ("k-zero", "maxpo", {"maxpo": {"k": 0}}, None, ["algorithm.maxpo.k", "1"]),
    ("k-negative", "pkpo_loo", {"maxpo": {"k": -2}}, None, ["algorithm.maxpo.k", "-2"]),
    ("k-float", "maxpo", {"maxpo": {"k": 2.5}}, None, ["algorithm.maxpo.k", "2.5"]),
    ("k-float-integral", "maxpo", {"maxpo": {"k": 2.0}}, None, ["algorithm.maxpo.k", "2.0"]),
    ("k-string", "maxpo", _struct({"maxpo": {"k": "four"}}), None, ["algorithm.maxpo.k", "four"]),
    ("k-bool", "maxpo", {"maxpo": {"k": True}}, None, ["algorithm.maxpo.k", "True"]),
    ("k-null", "maxpo", {"maxpo": {"k": None}}, None, ["algorithm.maxpo.k", "None"]),
    ("k-null-omegaconf", "pkpo", _struct({"maxpo": {"k": None}}), None, ["algorithm.maxpo.k"]),
    ("k-2-to-the-70", "maxpo", {"maxpo": {"k": 2**70}}, None, ["algorithm.maxpo.k"]),
    ("k-10-to-the-9", "pkpo_loo", {"maxpo": {"k": 10**9}}, None, ["algorithm.maxpo.k"]),
    ("k-2-to-the-70-maxrl", "maxrl", {"maxpo": {"k": 2**70}}, None, ["algorithm.maxpo.k"]),
    ("k-one-for-pkpo", "pkpo", {"maxpo": {"k": 1}}, None, ["algorithm.maxpo.k", "pkpo"]),
    ("k-equals-n-maxpo", "maxpo", {"maxpo": {"k": N}}, None, ["6", "rollout.n", "maxpo.k"]),
    ("k-equals-n-loo", "pkpo_loo", {"maxpo": {"k": N}}, None, ["pkpo_loo", "7", "rollout.n", "maxpo.k"]),
    ("k-above-n-pkpo", "pkpo", {"maxpo": {"k": N + 1}}, None, ["pkpo", "7", "rollout.n", "maxpo.k"]),
    ("norm-string", "maxpo", {"maxpo": {"norm_by_std": "yes"}}, None, ["algorithm.maxpo.norm_by_std", "yes"]),
    ("norm-int", "maxpo", {"maxpo": {"norm_by_std": 1}}, None, ["algorithm.maxpo.norm_by_std", "1"]),
    ("no-uid", "maxpo", None, {"index": None}, ["maxpo", "non_tensor_batch['uid']"]),
    ("no-uid-pkpo-loo", "pkpo_loo", None, {"index": None}, ["pkpo_loo", "uid"]),
    ("uid-too-short", "maxpo", None, {"index": "drop-last"}, ["18", "17"]),
    ("float-uids", "maxpo", None, {"index": "float"}, ["float"]),
    ("nan-reward", "maxpo", None, {"nan": 1}, ["NaN"]),
    ("nan-reward-maxrl", "maxrl", None, {"nan": 1}, ["NaN"]),
    ("inf-reward-maxrl", "maxrl", None, {"nan": 2}, ["inf"]),
    ("nan-mask", "maxpo", None, {"mask_nan": 1}, ["response_mask"]),
    ("nan-mask-maxrl", "maxrl", None, {"mask_nan": 2}, ["response_mask"]),
    ("block-is-string-omegaconf", "maxpo", _struct({"maxpo": "k=4"}), None, ["algorithm.maxpo", "k=4"]),
    (
        "rank-weights-dict",
        "maxpo",
        {"maxpo": {"k": 2, "objective": "weights", "rank_weights": {0: 0.0, 1: 1.0}}},
        None,
        ["algorithm.maxpo.rank_weights"],
    ),
    (
        "rank-weights-set",
        "maxpo",
        {"maxpo": {"k": 2, "objective": "weights", "rank_weights": {0.0, 1.0}}},
        None,
        ["algorithm.maxpo.rank_weights"],
    ),
    (
        "rank-weights-dictconfig",
        "maxpo",
        _struct({"maxpo": {"k": 2, "objective": "weights", "rank_weights": {"a": 0.0, "b": 1.0}}}),
        None,
        ["algorithm.maxpo.rank_weights"],
    ),
    *[
        (
            f"stray-{key}{'-omegaconf' if wrap else ''}",
            "maxpo",
            (_struct if wrap else dict)({key: value}),
            None,
            [f"algorithm.maxpo.{key}"],
        )
        for key, value in [
            ("k", 8),
            ("objective", "ml"),
            ("m", 2),
            ("rank_weights", [0.0, 1.0]),
            ("norm_by_std", True),
            ("kernel", "scan"),
        ]
        for wrap in (False, True)
    ],
    ("stray-k-beside-a-block", "pkpo", _struct({"k": 8, "maxpo": {"k": 2}}), None, ["algorithm.maxpo.k"]),
    ("inf-reward", "pkpo", None, {"nan": 2}, ["2 of 18", "inf"]),
]


def _call(estimator: str, config, change: dict | None):
    batch = _batch()
    change = change or {}
    if "index" in change:
        index = change["index"]
        if index == "drop-last":
            index = batch["index"][:-1]
        elif index == "float":
            index = np.arange(len(batch["index"])) // N + 0.5
        batch["index"] = index
    for j in range(change.get("nan", 0)):
        batch["token_level_rewards"][j, 0] = float("nan") if j == 0 else float("inf")
    for j in range(change.get("mask_nan", 0)):
        batch["response_mask"][j, 1] = float("nan") if j == 0 else float("inf")
    fn = verl_adapter.VERL_FUNCTIONS.get(estimator)
    if fn is None:
        pytest.fail(f"OTHER: no estimator {estimator!r} registered")
    return fn(**batch, config=config)


@pytest.mark.parametrize(
    ("estimator", "config", "change", "needles"), [c[1:] for c in ADAPTER_REFUSED], ids=[c[0] for c in ADAPTER_REFUSED]
)
def test_adapter_refuses(estimator: str, config, change, needles: list[str]) -> None:
    try:
        _call(estimator, config, change)
    except ValueError as err:
        message = str(err)
        missing = [n for n in needles if n not in message]
        assert not missing, f"OTHER: message lacks {missing}: {message}"
        return
    except Exception as err:  # noqa: BLE001  classified, not hidden
        pytest.fail(f"RAW_TRACEBACK: {type(err).__name__}: {err}")
    pytest.fail("SILENT: accepted without an error")


def _defaults_reference(estimator: str) -> torch.Tensor:
    return _call(estimator, {"maxpo": {"k": 4, "norm_by_std": False}}, None)[0]


# (id, estimator, config): accepted, and equal to the explicit defaults k=4, norm_by_std=false
ADAPTER_DEFAULTS = [
    ("no-config", "maxpo", None),
    ("no-block", "pkpo", {"norm_adv_by_std_in_grpo": True}),
    ("null-block", "maxpo", {"maxpo": None}),
    ("empty-block", "pkpo_loo", _struct({"maxpo": {}})),
    ("numpy-k", "maxpo", {"maxpo": {"k": np.int64(4)}}),
    ("numpy-bool", "pkpo", {"maxpo": {"k": 4, "norm_by_std": np.False_}}),
]


@pytest.mark.parametrize(
    ("estimator", "config"), [c[1:] for c in ADAPTER_DEFAULTS], ids=[c[0] for c in ADAPTER_DEFAULTS]
)
def test_adapter_defaults_are_exact(estimator: str, config) -> None:
    try:
        got = _call(estimator, config, None)[0]
    except Exception as err:  # noqa: BLE001
        pytest.fail(f"OTHER: refused a valid config: {type(err).__name__}: {err}")
    want = _defaults_reference(estimator)
    assert torch.equal(got, want), "SILENT: not the documented defaults"
    assert want.abs().max() > 0.05


def test_adapter_exact_pkpo_loo_value() -> None:
    batch = _batch()
    got = _call("pkpo_loo", {"maxpo": {"k": 2}}, None)[0][:, -1]
    want = estimators.pkpo_loo_advantages(batch["token_level_rewards"].sum(-1), batch["index"], 2).float()
    torch.testing.assert_close(got, want, atol=0, rtol=0)
    assert not torch.allclose(
        got, estimators.maxpo_advantages(batch["token_level_rewards"].sum(-1), batch["index"], 2).float()
    )


QUICK = ["--quick", "--no-memory", "--repeats", "1"]

# (id, bench arguments, needles)
BENCH_REFUSED = [
    ("repeats-0", ["--repeats", "0"], ["--repeats", "0"]),
    ("repeats-negative", ["--repeats", "-3"], ["--repeats", "-3"]),
    ("repeats-float", ["--repeats", "1.5"], ["--repeats", "1.5"]),
    ("repeats-word", ["--repeats", "many"], ["--repeats", "many"]),
    ("k-0", ["--k", "0"], ["--k", "0"]),
    ("k-negative", ["--k", "-4"], ["--k", "-4"]),
    ("k-exponent", ["--k", "1e3"], ["--k", "1e3"]),
    ("k-leading-zero", ["--k", "04"], ["--k", "04"]),
    ("length-0", ["--response-length", "0"], ["--response-length", "0"]),
    ("length-negative", ["--response-length", "-16"], ["--response-length", "-16"]),
    ("threads-0", ["--threads", "0"], ["--threads", "0"]),
    ("threads-word", ["--threads", "all"], ["--threads", "all"]),
    ("seed-negative", ["--seed", "-1"], ["--seed", "-1"]),
    ("seed-float", ["--seed", "0.5"], ["--seed", "0.5"]),
    ("estimators-comma", ["--estimators", ","], ["--estimators"]),
    ("estimators-empty", ["--estimators", ""], ["--estimators"]),
    ("estimators-duplicate", ["--estimators", "maxpo,maxpo"], ["--estimators", "maxpo"]),
    ("estimators-unknown", ["--estimators", "maxpo", "nosuch"], ["--estimators", "nosuch", "pkpo_loo"]),
    ("device-tpu", ["--device", "tpu"], ["--device", "tpu"]),
    ("unknown-option", ["--groups", "4"], ["--groups"]),
    ("length-1e9", ["--response-length", "1000000000"], ["--response-length", "8192"]),
    ("repeats-1e9", ["--repeats", "1000000000"], ["--repeats", "1000000000"]),
    ("threads-1e6", ["--threads", "1000000"], ["--threads", "1000000"]),
    ("seed-2**64", ["--seed", str(2**64)], ["--seed", str(2**32 - 1)]),
    # checked before any row is timed (a row that cannot run at k used to fail after the others)
    ("k-above-smallest-group", ["--k", "9"], ["--k", "maxpo", "--estimators"]),
    ("k-1e30", ["--k", "1" + "0" * 30], ["--k"]),
    ("k-1-with-top2", ["--k", "1"], ["--k", "maxpo_top2", "--estimators"]),
]


@pytest.mark.parametrize(("args", "needles"), [c[1:] for c in BENCH_REFUSED], ids=[c[0] for c in BENCH_REFUSED])
def test_bench_refuses(run_cli, assert_refused, args: list[str], needles: list[str]) -> None:
    outcome = run_cli("bench", *QUICK, *args)
    assert_refused(outcome, *needles, code=2)
    assert outcome.out == "", "SILENT: timed rows before refusing"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_bench_device_cuda_without_gpu(run_cli, assert_refused) -> None:
    assert_refused(run_cli("bench", *QUICK, "--device", "cuda"), "--device", "cuda", code=2)


def test_bench_comma_and_space_lists_are_the_same(run_cli) -> None:
    import json

    outcome = run_cli("bench", *QUICK, "--estimators", "maxpo,pkpo_loo", "pkpo", "--json")
    assert outcome.code == 0, f"OTHER: {outcome.text[-800:]}"
    names = {r["estimator"] for r in json.loads(outcome.out)["rows"]}
    assert names == {"maxpo", "pkpo_loo", "pkpo", "grpo_vectorized"}, f"SILENT: {names}"


# `verl-maxpo variance` (new in this change): a tiny grid first, so that a case the parser fails to refuse is fast;
# argparse keeps the last occurrence of an option, so each case's own value wins.
TINY = ["--p", "0.5", "--n", "4", "--k", "2", "--ratio", "1", "--laws", "binary"]

# (id, arguments after --out, needles)
VARIANCE_REFUSED = [
    ("p-zero", ["--p", "0"], ["--p", "1e-06"]),
    ("p-one", ["--p", "0.2,1"], ["--p", "0.999999"]),
    ("p-1e-300", ["--p", "1e-300"], ["--p", "1e-06"]),  # |E g|^2 underflows: Infinity in the JSON
    ("p-nan", ["--p", "nan"], ["--p", "nan"]),
    ("p-empty", ["--p", ","], ["--p"]),
    ("p-word", ["--p", "half"], ["--p", "half"]),
    ("n-one", ["--n", "1"], ["--n", "1"]),
    ("n-huge", ["--n", "100"], ["--n", "64"]),
    ("n-float", ["--n", "8.0"], ["--n", "8.0"]),
    ("n-1e9", ["--n", "1000000000"], ["--n", "64"]),
    ("k-one", ["--k", "1"], ["--k", "1"]),
    ("k-1e30", ["--k", "1" + "0" * 30], ["--k", "63"]),
    ("k-not-below-n", ["--n", "4", "--k", "4,8"], ["--k", "--n"]),
    ("ratio-zero", ["--ratio", "0"], ["--ratio", "1000"]),
    ("ratio-negative", ["--ratio", "-2"], ["--ratio", "-2"]),
    ("ratio-inf", ["--ratio", "inf"], ["--ratio", "inf"]),
    ("laws-unknown", ["--laws", "gaussian"], ["--laws", "gaussian", "binary", "partial4"]),
    ("laws-empty", ["--laws", ","], ["--laws"]),
    ("noise-negative", ["--noise", "-1"], ["--noise", "-1"]),
    ("noise-nan", ["--noise", "nan"], ["--noise", "nan"]),
]


@pytest.mark.parametrize(("args", "needles"), [c[1:] for c in VARIANCE_REFUSED], ids=[c[0] for c in VARIANCE_REFUSED])
def test_variance_refuses(run_cli, assert_refused, tmp_path, args: list[str], needles: list[str]) -> None:
    outcome = run_cli("variance", "--out", tmp_path / "map", *TINY, *args)
    assert_refused(outcome, *needles, code=2)
    assert not (tmp_path / "map").exists(), "SILENT: wrote outputs for a refused command"


@pytest.mark.slow  # over a second
def test_variance_writes_its_default_out_and_refuses_an_empty_one(run_cli, assert_refused, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert_refused(run_cli("variance", "--out", "", *TINY), "--out", code=2)
    assert_refused(run_cli("variance", "--out", "  ", *TINY), "--out", code=2)
    assert list(tmp_path.iterdir()) == [], "SILENT: --out '' wrote into the working folder"
    assert run_cli("variance", *TINY).code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["maxpo_variance"]
    assert (tmp_path / "maxpo_variance" / "variance.json").is_file()


@pytest.mark.parametrize("case", ["out-is-a-file", "out-has-foreign-files", "out-parent-missing"])
def test_variance_out_folder_refusals_leave_files_as_they_were(run_cli, assert_refused, tree, tmp_path, case: str):
    target = tmp_path / "map"
    if case == "out-is-a-file":
        target.write_text("keep me")
    elif case == "out-has-foreign-files":
        target.mkdir()
        (target / "notes.txt").write_text("keep me")
    else:
        target = tmp_path / "missing" / "map"
    before = tree(tmp_path)
    assert_refused(run_cli("variance", "--out", target, *TINY), "--out", str(target), code=2)
    assert tree(tmp_path) == before, "DATA_LOST: files changed"


# ---------------------------------------------------------------- where rewards, masks and group ids enter


def test_adapter_refuses_a_mask_of_another_shape() -> None:
    batch = _batch()
    batch["response_mask"] = torch.ones(N_GROUPS * N)  # (bs,): would broadcast to (bs, bs) advantages
    with pytest.raises(ValueError, match=r"response_mask(.|\n)*\(18, 4\)"):
        verl_adapter.compute_maxpo_outcome_advantage(**batch, config=None)


def test_adapter_refuses_rewards_that_are_not_a_2d_tensor() -> None:
    batch = _batch()
    batch["token_level_rewards"] = batch["token_level_rewards"].tolist()
    with pytest.raises(ValueError, match=r"token_level_rewards(.|\n)*list"):
        verl_adapter.compute_pkpo_outcome_advantage(**batch, config=None)


@pytest.mark.parametrize(
    ("dtype", "big", "needle"),
    [(torch.float32, 3e38, "float32"), (torch.float64, 1.7e308, "float64")],
)
def test_finite_rewards_near_the_dtype_limit_are_an_error_not_inf(dtype, big: float, needle: str) -> None:
    r = torch.tensor([big, -big, 0.0, big, -big, 0.0], dtype=dtype)
    with pytest.raises(ValueError, match=needle):
        estimators.maxpo_advantages(r, [0] * 6, 1)


def test_complex_and_non_tensor_rewards_are_refused() -> None:
    with pytest.raises(ValueError, match="complex64"):
        estimators.maxpo_advantages(torch.ones(4, dtype=torch.complex64), [0] * 4, 1)
    with pytest.raises(TypeError, match="list"):
        estimators.maxpo_advantages([1.0, 0.0, 0.0], [0] * 3, 1)


@pytest.mark.parametrize(
    ("ids", "needle"),
    [
        (np.zeros((3, 2), dtype=np.int64), r"\(3, 2\)"),
        (torch.zeros(3, 2, dtype=torch.int64), r"\(3, 2\)"),
        ([[0], [0], [1], [1], [2], [2]], "list"),
        ([b"a", b"a", b"a", "a", "a", "a"], r"bytes.*str"),
        ([1, 1, 1, 1.0, 1.0, 1.0], "float"),
        (np.array([1, 1, 1, "1", "1", "1"], dtype=object), r"int.*str"),
        (np.array([None] * 6, dtype=object), "NoneType"),
        ({"a": 1}, "group ids"),
    ],
)
def test_bad_group_ids_are_refused_with_a_message(ids, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        estimators.maxpo_advantages(torch.rand(6), ids, 1)


def test_bytes_or_str_labels_alone_are_fine_and_equal() -> None:
    r = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0])
    want = estimators.maxpo_advantages(r, [0, 0, 0, 1, 1, 1], 2)
    for ids in ([b"a"] * 3 + [b"b"] * 3, ["a"] * 3 + ["b"] * 3, np.array(["a"] * 3 + ["b"] * 3, dtype=object)):
        assert torch.equal(estimators.maxpo_advantages(r, ids, 2), want)
    assert want.abs().max() > 0.1


@pytest.mark.parametrize("name", list(verl_adapter.VERL_FUNCTIONS))
def test_registered_functions_accept_verls_batch_keywords(name: str) -> None:
    """verl's open PR 7473 passes batch= and non_tensor_batch= to every estimator: same result."""
    batch = _batch()
    config = {"maxpo": {"k": 2}}
    fn = verl_adapter.VERL_FUNCTIONS[name]
    plain = fn(**batch, config=config)[0]
    extra = fn(**batch, config=config, batch={"x": torch.zeros(1)}, non_tensor_batch={"uid": batch["index"]})[0]
    assert torch.equal(plain, extra) and plain.abs().max() > 0.05


@pytest.mark.parametrize(
    ("estimator", "block", "needles"),
    [
        ("maxpo", {"m": 2}, ["algorithm.maxpo.m", "algorithm.maxpo.objective", "top_m"]),
        ("maxpo", {"objective": "top_m", "m": 9}, ["algorithm.maxpo.m", "9"]),
        ("maxpo", {"objective": "weights", "rank_weights": [1, 2]}, ["algorithm.maxpo.rank_weights", "4"]),
        ("maxpo", {"objective": "weights", "rank_weights": [0, 0, float("nan"), 1]}, ["rank_weights[2]"]),
        ("maxpo", {"objective": "best"}, ["algorithm.maxpo.objective", "best", "top_m", "weights"]),
        ("pkpo", {"objective": "ml"}, ["algorithm.maxpo.objective", "ml", "pkpo"]),
        ("pkpo_loo", {"objective": "top_m", "m": 2}, ["algorithm.maxpo.objective", "pkpo_loo"]),
        ("maxrl", {"norm_by_std": True}, ["algorithm.maxpo.norm_by_std", "maxrl"]),
        ("maxpo", {"kernel": "gpu"}, ["algorithm.maxpo.kernel", "gpu", "scan"]),
    ],
)
def test_adapter_refuses_objective_options_that_do_not_fit(estimator: str, block: dict, needles: list[str]) -> None:
    with pytest.raises(ValueError) as err:
        _call(estimator, {"maxpo": block}, None)
    missing = [n for n in needles if n not in str(err.value)]
    assert not missing, f"OTHER: message lacks {missing}: {err.value}"


def test_adapter_objective_options_reach_the_core() -> None:
    batch = _batch()
    scores = batch["token_level_rewards"].sum(-1)
    got = _call("maxpo", OmegaConf.create({"maxpo": {"k": 3, "objective": "top_m", "m": 2}}), None)[0][:, -1]
    want = estimators.maxpo_advantages(scores, batch["index"], 3, objective="top_m", m=2).float()
    assert torch.equal(got, want)
    weights = OmegaConf.create({"maxpo": {"k": 2, "objective": "weights", "rank_weights": [0.25, 0.75]}})
    got = _call("maxpo", weights, None)[0][:, -1]
    want = estimators.maxpo_advantages(scores, batch["index"], 2, objective="weights", rank_weights=[0.25, 0.75])
    assert torch.equal(got, want.float()) and got.abs().max() > 0.05
    # maxrl reads no option; the recipes' k and norm_by_std=false are accepted
    got = _call("maxrl", {"maxpo": {"k": 4, "norm_by_std": False}}, None)[0][:, -1]
    assert torch.equal(got, estimators.maxrl_advantages(scores, batch["index"]).float())


def test_string_labels_are_compared_exactly_as_given() -> None:
    """ "a" and "a\x00" are two prompts: a fixed-width numpy string array would strip the NUL and merge them."""
    rewards = torch.tensor([0.0, 1.0, 1.0, 1.0, 0.0, 0.0])
    labels = ["a", "a", "a", "a\x00", "a\x00", "a\x00"]
    got = estimators.maxpo_advantages(rewards, labels, 1)
    want = estimators.maxpo_advantages(rewards, [0, 0, 0, 1, 1, 1], 1)
    assert torch.equal(got, want)
    assert torch.equal(estimators.maxpo_advantages(rewards, [s.encode() for s in labels], 1), want)


def test_an_option_set_on_verls_algo_config_itself_is_refused() -> None:
    from verl.trainer.config import AlgoConfig

    algo = AlgoConfig(adv_estimator="maxpo")
    algo.k = 8  # meant algorithm.maxpo.k
    with pytest.raises(ValueError, match=r"algorithm\.maxpo\.k"):
        _call("maxpo", algo, None)
