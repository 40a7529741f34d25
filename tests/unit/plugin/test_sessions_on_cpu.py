"""Multi-output agent sessions in verl's v1 trainer: our estimators see one sample per session (its final output).

Called through the name verl's v1 trainer calls, `verl.trainer.ppo.v1.trainer_base.
compute_advantage_for_multi_trajectories`, on a batch of several sessions per uid and several rows per session.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import verl  # noqa: F401  # first, as in any verl process: loads the plugin
from omegaconf import OmegaConf
from verl.protocol import DataProto
from verl.trainer.ppo.v1 import trainer_base
from verl.trainer.ppo.v1 import utils as v1_utils

from verl_maxpo.core.estimators import maxpo_advantages, run_estimator
from verl_maxpo.core.table import ESTIMATORS, MaxPOOptions
from verl_maxpo.integration import sessions

# In a fresh verl process the plugin installs the wrapper (tests/integration/plugin/test_no_side_effects_on_cpu.py
# checks that); in
# this shared pytest process another module may have loaded verl before the plugin could, so install it here
# (idempotent: it patches the already-imported modules).
sessions.install()

K = 2
RESPONSE_LEN = 5
CONFIG = OmegaConf.create({"maxpo": {"k": K, "norm_by_std": False}, "use_pf_ppo": False})


def session_batch(seed: int = 0) -> tuple[DataProto, list[str], torch.Tensor, np.ndarray]:
    """3 uids x 4 sessions, each session 1-3 rows in shuffled order; the final reward copied to every row.

    Returns the batch, its keys, each session's final score and uid (one entry per session, first-seen order)."""
    gen = np.random.default_rng(seed)
    keys, uids, final_scores, final_uids = [], [], [], []
    for u in range(3):
        for s in range(4):
            rows = int(gen.integers(1, 4))
            keys += [f"uid{u}_{s}_{i}" for i in gen.permutation(rows)]
            uids += [f"uid{u}"] * rows
            final_scores.append(float(gen.integers(0, 5)) / 4)
            final_uids.append(f"uid{u}")
    order = gen.permutation(len(keys))  # sessions interleaved, as rows arrive from concurrent agent loops
    keys, uids = [keys[i] for i in order], [uids[i] for i in order]
    session_score = {f"uid{u}_{s}": final_scores[u * 4 + s] for u in range(3) for s in range(4)}
    lengths = torch.from_numpy(gen.integers(1, RESPONSE_LEN + 1, size=len(keys)))
    mask = (torch.arange(RESPONSE_LEN)[None] < lengths[:, None]).float()
    rewards = torch.zeros(len(keys), RESPONSE_LEN)
    rewards[torch.arange(len(keys)), lengths - 1] = torch.tensor([session_score[k.rsplit("_", 1)[0]] for k in keys])
    values = torch.from_numpy(gen.standard_normal((len(keys), RESPONSE_LEN))).float()  # for gae
    data = DataProto.from_dict(
        tensors={"token_level_rewards": rewards, "response_mask": mask, "values": values},
        non_tensors={"uid": np.array(uids, dtype=object)},
    )
    # first-seen session order, as verl's GRPO path lists them
    seen = list(dict.fromkeys(k.rsplit("_", 1)[0] for k in keys))
    finals = torch.tensor([session_score[s] for s in seen])
    return data, keys, finals, np.array([s.split("_")[0] for s in seen], dtype=object)


def call(name: str, fn=None) -> tuple[DataProto, list[str]]:
    data, keys, _, _ = session_batch()
    fn = fn or trainer_base.compute_advantage_for_multi_trajectories
    out = fn(
        data, batch_keys=keys, adv_estimator=name, gamma=1.0, lam=0.95, num_repeat=4,
        norm_adv_by_std_in_grpo=False, config=CONFIG,
    )  # fmt: skip
    return out, keys


def test_the_trainer_and_utils_names_are_the_wrapper_of_verls_function() -> None:
    wrapped = trainer_base.compute_advantage_for_multi_trajectories
    assert wrapped is v1_utils.compute_advantage_for_multi_trajectories
    assert getattr(wrapped, "_verl_maxpo_sessions", False)
    assert wrapped.__wrapped__.__module__ == "verl.trainer.ppo.v1.utils"
    assert sessions.wrap(wrapped) is wrapped  # installing twice wraps once


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_ours_score_each_session_once_and_broadcast(name: str) -> None:
    data, keys, finals, final_uids = session_batch()
    assert len(keys) > len(finals) + 4  # the batch really has extra session rows
    out, _ = call(name)
    options = MaxPOOptions(k=K)
    per_session = run_estimator(name, finals, final_uids, options)  # the one call path every caller takes
    seen = list(dict.fromkeys(k.rsplit("_", 1)[0] for k in keys))
    expected_rows = per_session[[seen.index(k.rsplit("_", 1)[0]) for k in keys]]
    expected = expected_rows[:, None] * data.batch["response_mask"]
    torch.testing.assert_close(out.batch["advantages"], expected, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(out.batch["returns"], expected)
    assert per_session.abs().max() > 0.1
    # and the rows-as-samples answer verl would give without the wrapper is really different
    naive = run_estimator(name, data.batch["token_level_rewards"].sum(-1), data.non_tensor_batch["uid"], options)
    assert (naive - expected_rows).abs().max() > 1e-3


def test_maxpo_session_values_by_hand() -> None:
    """Two uids, sessions with 1 and 2 rows: maxpo on the 3 final outputs per uid, not on the 5 rows."""
    keys = ["a_0_0", "a_0_1", "a_1_0", "a_2_0", "a_2_1", "b_0_0", "b_1_1", "b_1_0", "b_2_0"]
    session_reward = {"a_0": 1.0, "a_1": 0.0, "a_2": 0.5, "b_0": 0.0, "b_1": 1.0, "b_2": 1.0}
    rewards = torch.tensor([[session_reward[k.rsplit("_", 1)[0]]] for k in keys])
    data = DataProto.from_dict(
        tensors={"token_level_rewards": rewards, "response_mask": torch.ones(len(keys), 1)},
        non_tensors={"uid": np.array([k[0] for k in keys], dtype=object)},
    )
    out = trainer_base.compute_advantage_for_multi_trajectories(
        data, batch_keys=keys, adv_estimator="maxpo", config=CONFIG
    )
    finals = maxpo_advantages(torch.tensor([1.0, 0.0, 0.5, 0.0, 1.0, 1.0]), np.array(list("aaabbb"), dtype=object), K)
    rows = [0, 0, 1, 2, 2, 3, 4, 4, 5]
    torch.testing.assert_close(out.batch["advantages"][:, 0], finals[rows])


@pytest.mark.parametrize("name", ["grpo", "gae", "rloo"])
def test_verls_estimators_get_exactly_verls_result(name: str) -> None:
    original = trainer_base.compute_advantage_for_multi_trajectories.__wrapped__
    ours, _ = call(name)
    theirs, _ = call(name, original)
    for key in ("advantages", "returns"):
        assert torch.equal(ours.batch[key], theirs.batch[key]), key


def test_other_estimators_reach_the_original_with_the_callers_arguments() -> None:
    import inspect

    seen: list[tuple[tuple, dict]] = []
    sentinel = object()

    def recorder(*args, **kwargs):
        seen.append((args, kwargs))
        return sentinel

    recorder.__signature__ = inspect.signature(v1_utils.compute_advantage_for_multi_trajectories)  # type: ignore[attr-defined]
    via = sessions.wrap(recorder)
    data, keys = object(), ["x_0_0"]
    assert via(data, keys, "grpo", 0.9, norm_adv_by_std_in_grpo=True) is sentinel
    assert via(data, batch_keys=keys, adv_estimator="gae") is sentinel
    assert seen == [
        ((data, keys, "grpo", 0.9), {"norm_adv_by_std_in_grpo": True}),
        ((data,), {"batch_keys": keys, "adv_estimator": "gae"}),
    ]


def test_a_malformed_key_is_refused_with_the_expected_format() -> None:
    with pytest.raises(ValueError, match="uid.*session.*index"):
        sessions.final_rows(["no-underscores"])
    assert sessions.final_rows(["u_a_1", "u_b_0", "u_a_0", "v_a_0"]) == ([0, 1, 3], [0, 1, 0, 2])


def test_a_non_integer_output_index_is_named() -> None:
    with pytest.raises(ValueError) as err:
        sessions.final_rows(["uid0_0_0", "uid0_0_last"])
    assert "uid0_0_last" in str(err.value) and "integer" in str(err.value)


@pytest.mark.parametrize("name", ["maxpo", "maxrl"])
def test_a_short_key_list_is_reported_as_such(name: str) -> None:
    data, keys, _, _ = session_batch()
    with pytest.raises(ValueError) as err:
        trainer_base.compute_advantage_for_multi_trajectories(
            data, batch_keys=keys[:-3], adv_estimator=name, gamma=1.0, lam=0.95, num_repeat=4,
            norm_adv_by_std_in_grpo=False, config=CONFIG,
        )  # fmt: skip
    message = str(err.value)
    assert re.search(rf"\b{len(keys) - 3}\b.*\b{len(keys)}\b", message), message  # both counts named
    assert "samples per group" not in message and "rollout.n" not in message
