"""Rewards of the smol arithmetic task, in verl's `custom_reward_function` form.

Self-contained (standard library only) because `verl-maxpo smol-assets` copies this file next to the data and
verl loads it by file path (`reward.custom_reward_function.path`). The answer is the integer on the reply's last
`Answer: <integer>` line (the form the prompt's worked examples show); a reply without one scores 0.
  - `compute_score`: 1.0 for the exact answer, else 0.0 (pass@k);
  - `partial_credit`: the fraction of the answer's digits in place, counted from the right, over the longer of
    the two numbers (a wrong sign halves it); 1.0 only for the exact answer.
"""

import re

_ANSWER = re.compile(r"answer\s*[:=]\s*\**\s*(-?\d[\d,]*)", re.IGNORECASE)


def parse_answer(text):
    """The integer of the last `Answer: N` in `text` (commas allowed), or None."""
    found = _ANSWER.findall(str(text))
    if not found:
        return None
    digits = found[-1].replace(",", "")
    try:
        return int(digits)
    except ValueError:
        return None


def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs):
    """0/1 exact match of the parsed answer."""
    got = parse_answer(solution_str)
    return 1.0 if got is not None and got == int(ground_truth) else 0.0


def partial_credit(data_source, solution_str, ground_truth, extra_info=None, **kwargs):
    """Digits in place (right-aligned) over the longer number's digit count; halved when the sign is wrong."""
    got, want = parse_answer(solution_str), int(ground_truth)
    if got is None:
        return 0.0
    if got == want:
        return 1.0
    a, b = str(abs(got)), str(abs(want))
    right = sum(1 for x, y in zip(reversed(a), reversed(b), strict=False) if x == y)
    score = right / max(len(a), len(b))
    if (got < 0) != (want < 0):
        score *= 0.5
    return min(score, 0.99)  # a wrong answer never scores like the right one
