"""Partial-credit reward for the tiny addition task, in verl's `custom_reward_function` form.

Self-contained (no imports) because `verl-maxpo tiny-assets` copies this file next to the data and verl loads it
by file path (`reward.custom_reward_function.path`). The score is the fraction of answer digits in the right place,
so a warm-started policy gets scores strictly between 0 and 1 and group advantages are not all zero.
"""


def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs):
    """Fraction of positions where the response matches the zero-padded answer (1.0 = exact answer)."""
    answer = str(ground_truth)
    response = str(solution_str).strip()
    right = sum(1 for got, want in zip(response, answer, strict=False) if got == want)
    return right / len(answer) if len(response) == len(answer) else 0.5 * right / len(answer)
