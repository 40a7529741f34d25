"""The addition task's partial-credit reward (`verl-maxpo demo --reward partial`): the fraction of response tokens
right, 1.0 only for an exact answer, so pass@k (exact answers) means the same under either reward."""

from __future__ import annotations

import pytest
import torch

from verl_maxpo.tasks.addition import AdditionTask
from verl_maxpo.tools.demo.config import parse_config


def test_partial_credit_counts_right_tokens_and_exact_stays_one() -> None:
    task = AdditionTask(2, 4, seed=0, reward="partial")
    _, target = task.encode(task.val_pairs[:1], torch.device("cpu"))  # 3 answer digits and </s>
    responses = target.repeat(4, 1)
    responses[1, 0] = task.eos  # one token wrong
    responses[2, :2] = task.eos  # two wrong
    responses[3, :] = task.pad  # all wrong
    targets = target.expand(4, -1)
    assert task.reward(responses, targets).tolist() == [1.0, 0.75, 0.5, 0.0]
    assert task.score(responses, targets).tolist() == [1.0, 0.0, 0.0, 0.0]  # pass@k counts exact answers
    exact = AdditionTask(2, 4, seed=0)
    assert exact.reward(responses, targets).tolist() == [1.0, 0.0, 0.0, 0.0]
    with pytest.raises(ValueError):
        AdditionTask(2, 4, seed=0, reward="half")


def test_reward_option() -> None:
    assert parse_config(["--quick"]).reward == "exact"
    assert parse_config(["--quick", "--reward", "partial"]).reward == "partial"
    with pytest.raises(SystemExit):
        parse_config(["--quick", "--reward", "half"])
