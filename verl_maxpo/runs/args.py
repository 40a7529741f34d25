"""Argument types shared by every `verl-maxpo` sub-command, so each option is checked by the parser before any work.

List-valued options take the same form everywhere: space-separated (`--k 1 4 16`), comma-separated (`--k 1,4,16`)
or both mixed; declare them with `nargs="+"` and flatten with `flat_ints` / `flat_names` after parsing.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Iterable
from typing import TypeVar

T = TypeVar("T", int, float)
# The largest seed any command takes: numpy's and torch's generators take it, with room for the offsets the
# commands add (seed + i per run, seed + 3 per stream).
MAX_SEED = 2**32 - 1
# The most prompts an assets command writes per split (tiny-assets, smol-assets): far above any CPU run's need,
# and small enough that the parquet and the generator's memory stay in the hundreds of MB.
MAX_PROMPTS = 100_000


def int_at_least(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """argparse type: a plain decimal integer >= minimum (and <= maximum when given); "010", "1e3", "2.0" and
    booleans are refused. Every numeric option has an upper bound, so a huge value is refused before any work."""

    def parse(text: str) -> int:
        stripped = text.strip()
        body = stripped[1:] if stripped[:1] in "+-" else stripped
        if not body.isdecimal() or (len(body) > 1 and body.startswith("0")) or not body.isascii():
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}")
        value = int(stripped)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be at most {maximum}, got {value}")
        return value

    parse.__name__ = (
        f"integer >= {minimum}" if maximum is None else f"integer in [{minimum}, {maximum}]"
    )  # argparse names the type in its messages
    return parse


def float_in(low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> Callable[[str], float]:
    """argparse type: a finite float in [low, high] (open ends where asked); NaN and infinities are refused."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        if value < low or value > high or (low_open and value == low) or (high_open and value == high):
            lo, hi = ("(" if low_open else "["), (")" if high_open else "]")
            raise argparse.ArgumentTypeError(f"must be in {lo}{low:g}, {high:g}{hi}, got {value:g}")
        return value

    parse.__name__ = "number"
    return parse


def flat_parts(values: Iterable[str]) -> list[str]:
    """["a,b", "c"] -> ["a", "b", "c"]: every comma-separated part, stripped, empties dropped, repeats kept."""
    return [part.strip() for value in values for part in str(value).split(",") if part.strip()]


def flat_names(values: Iterable[str], option: str, choices: Iterable[str] | None = None) -> list[str]:
    """["maxpo,grpo", "pkpo"] -> ["maxpo", "grpo", "pkpo"]; refuses an empty list, duplicates and unknown names."""
    names = flat_parts(values)
    if not names:
        raise argparse.ArgumentTypeError(f"{option} needs at least one name")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise argparse.ArgumentTypeError(f"{option} lists {', '.join(duplicates)} more than once")
    if choices is not None:
        allowed = list(choices)
        unknown = [n for n in names if n not in allowed]
        if unknown:
            known = ", ".join(allowed)
            raise argparse.ArgumentTypeError(f"{option}: unknown {', '.join(unknown)}; choose from {known}")
    return names


def flat_parsed(values: Iterable[str], option: str, parse: Callable[[str], T]) -> list[T]:
    """["1,4", "16"] -> each part through `parse` (an argparse type), sorted, de-duplicated; never empty."""
    out = set()
    for part in flat_parts(values):
        try:
            out.add(parse(part))
        except argparse.ArgumentTypeError as err:
            raise argparse.ArgumentTypeError(f"{option}: {err}") from None
    if not out:
        raise argparse.ArgumentTypeError(f"{option} needs at least one value")
    return sorted(out)


def flat_ints(values: Iterable[str], option: str, minimum: int = 1, maximum: int | None = None) -> list[int]:
    """["1,4", "16"] -> [1, 4, 16] (sorted, de-duplicated); each a whole number in [minimum, maximum]."""
    return flat_parsed(values, option, int_at_least(minimum, maximum))
