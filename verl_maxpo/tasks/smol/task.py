"""The smol task: arithmetic problems generated from a seed, answered as `Answer: <integer>`.

Each prompt is a short chat: two worked examples (user question, assistant reply ending in `Answer: N`), then the
question. Without the examples SmolLM2-135M-Instruct rarely writes a parseable answer; with them most replies end
in one, so the reward measures arithmetic more than format (docs/cpu-backend.md, the smol recipe, has the
calibration). Problem kinds (`KINDS` is the mix the data uses):
  add     a + b           two-digit operands
  sub     a - b           two-digit operands, a >= b
  add33   a + b           three-digit operands
  add3    a + b + c       two-digit operands
  addsub  a + b - c       two-digit operands, positive result
  mul     a * m           a two-digit, m one-digit (3-9)
Rewards: `verl_maxpo.tasks.smol.reward` (exact 0/1 and partial credit). Calibration against the real model is in
docs/cpu-backend.md ("The smol task").
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

DATA_SOURCE = "verl_maxpo/smol_arith"
ALL_KINDS = ("add", "add33", "sub", "add3", "addsub", "mul")
# The data's mix, calibrated on SmolLM2-135M-Instruct (docs/cpu-backend.md): two-digit sums and differences, where
# errors are chancy (pass@8 about 3x pass@1); the three-operand and three-digit kinds solve ~0% and the
# multiplications are bimodal per prompt (solved always or never), which leaves max@K nothing to gain.
KINDS = ("add", "sub")


@dataclass(frozen=True)
class Problem:
    kind: str
    question: str
    answer: int
    work: str  # the worked solution, e.g. "12 * 4 = 48\n48 + 7 = 55"


def make_problem(rng: random.Random, kind: str) -> Problem:
    """One problem of `kind`, drawn from `rng`."""
    if kind in ("add", "add33"):
        low, high = (10, 99) if kind == "add" else (100, 999)
        a, b = rng.randint(low, high), rng.randint(low, high)
        return Problem(kind, f"What is {a} + {b}?", a + b, f"{a} + {b} = {a + b}")
    if kind == "sub":
        a, b = sorted((rng.randint(10, 99), rng.randint(10, 99)), reverse=True)
        return Problem(kind, f"What is {a} - {b}?", a - b, f"{a} - {b} = {a - b}")
    a, b, c = rng.randint(11, 99), rng.randint(11, 99), rng.randint(11, 99)
    if kind == "add3":
        work = f"{a} + {b} = {a + b}\n{a + b} + {c} = {a + b + c}"
        return Problem(kind, f"What is {a} + {b} + {c}?", a + b + c, work)
    if kind == "addsub":
        c = rng.randint(11, a + b - 1)
        work = f"{a} + {b} = {a + b}\n{a + b} - {c} = {a + b - c}"
        return Problem(kind, f"What is {a} + {b} - {c}?", a + b - c, work)
    if kind == "mul":
        m = rng.randint(3, 9)
        return Problem(kind, f"What is {a} * {m}?", a * m, f"{a} * {m} = {a * m}")
    raise ValueError(f"unknown kind {kind!r}; kinds: {', '.join(ALL_KINDS)}")


def reply(problem: Problem) -> str:
    """The assistant reply a worked example shows: the steps, then `Answer: N`."""
    return f"{problem.work}\nAnswer: {problem.answer}"


# Two worked examples, fixed (seed 12345, never a data seed's draw) and shown before every question.
_SHOT_RNG = random.Random(12345)
SHOTS = (make_problem(_SHOT_RNG, "addsub"), make_problem(_SHOT_RNG, "mul"))


def messages(problem: Problem) -> list[dict[str, str]]:
    """The chat verl's dataset applies the model's chat template to."""
    turns: list[dict[str, str]] = []
    for shot in SHOTS:
        turns += [{"role": "user", "content": shot.question}, {"role": "assistant", "content": reply(shot)}]
    return [*turns, {"role": "user", "content": problem.question}]


def problems(seed: int, count: int, kinds: tuple[str, ...] = KINDS) -> list[Problem]:
    """`count` problems, kinds in turn, from `seed` (the same seed gives the same list)."""
    rng = random.Random(seed)
    return [make_problem(rng, kinds[i % len(kinds)]) for i in range(count)]


def rows(items: list[Problem], split: str) -> list[dict[str, Any]]:
    """verl's RL dataset rows: data_source, prompt (chat messages), ability, reward_model, extra_info."""
    return [
        {
            "data_source": DATA_SOURCE,
            "prompt": messages(p),
            "ability": "math",
            "reward_model": {"style": "rule", "ground_truth": str(p.answer)},
            "extra_info": {"split": split, "index": i, "kind": p.kind, "question": p.question, "answer": p.answer},
        }
        for i, p in enumerate(items)
    ]
