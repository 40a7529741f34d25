"""The smol task: problems are reproducible from a seed and their answers are right; the rewards parse the
`Answer: N` form from free text and grade exact and partial answers."""

from __future__ import annotations

import re

import pytest

from verl_maxpo.tasks.smol import reward as smol_reward
from verl_maxpo.tasks.smol import task as smol_task


def evaluate(question: str) -> int:
    expression = re.fullmatch(r"What is ([0-9+\-* ]+)\?", question)
    assert expression, question
    return int(eval(expression.group(1)))  # noqa: S307 - digits and + - * only, matched above


@pytest.mark.parametrize("kind", smol_task.ALL_KINDS)
def test_every_kind_has_the_right_answer_and_a_worked_reply(kind: str) -> None:
    items = smol_task.problems(7, 50, (kind,))
    assert all(p.kind == kind and p.answer == evaluate(p.question) and p.answer >= 0 for p in items)
    assert all(smol_reward.parse_answer(smol_task.reply(p)) == p.answer for p in items)
    assert len({p.question for p in items}) > 40


def test_problems_are_reproducible_and_seeds_differ() -> None:
    assert smol_task.problems(3, 20) == smol_task.problems(3, 20)
    assert smol_task.problems(3, 20) != smol_task.problems(4, 20)
    assert [p.kind for p in smol_task.problems(3, 4)] == [*smol_task.KINDS, *smol_task.KINDS][:4]
    with pytest.raises(ValueError, match="unknown kind"):
        smol_task.make_problem(__import__("random").Random(0), "div")


def test_rows_are_verl_chat_rows_with_the_worked_examples_first() -> None:
    (row,) = smol_task.rows(smol_task.problems(1, 1), "train")
    roles = [m["role"] for m in row["prompt"]]
    assert roles == ["user", "assistant"] * len(smol_task.SHOTS) + ["user"]
    assert row["reward_model"]["ground_truth"] == str(row["extra_info"]["answer"])
    assert row["data_source"] == smol_task.DATA_SOURCE


@pytest.mark.parametrize(
    ("reply", "exact", "partial"),
    [
        ("47 + 38 = 85\nAnswer: 85", 1.0, 1.0),
        ("Answer: 80\nwait. answer: 85", 1.0, 1.0),  # the last answer counts
        ("**Answer:** 1,085", 0.0, 0.5),  # 1085 vs 85: two digits in place of four
        ("Answer: 84", 0.0, 0.5),
        ("Answer: -85", 0.0, 0.5),  # digits right, sign wrong: halved
        ("47 + 38 = 85", 0.0, 0.0),  # no answer line
        ("", 0.0, 0.0),
    ],
)
def test_rewards_parse_and_grade_free_text(reply: str, exact: float, partial: float) -> None:
    assert smol_reward.compute_score("s", reply, "85") == exact
    assert smol_reward.partial_credit("s", reply, "85") == pytest.approx(partial)
