"""Every list of arm names in the docs, recipes, scripts and the package's text agrees with the estimator table.

A list is checked in one of two ways:
  - marked: `<!-- arms -->maxpo, maxpo_top2, ...<!-- /arms -->` (it may span lines, a table or a code block;
    a table lists the first name of each row). The names inside, in order, must equal the list its kind names
    (see `sources`): `arms` alone is every arm of `ARMS`, `arms:estimators` our estimators, ...; `arms:subset`
    declares a deliberate selection (a recorded command, a result table, an argument about some arms), whose
    names are only checked to be arms.
  - unmarked: a run of 4 or more distinct arm names joined only by commas, spaces, "and"/"or", backticks, table
    bars or comment marks (it may cross lines) must be exactly the arms of `ARMS`, in table order; anything else
    is a list nothing checks, so it fails.
Commands that choose arms (`ARMS="..."`, `verl-maxpo demo|bench|variance --estimators ...`) do not list them:
their values are cut out first, and those of ARMS and the demo are checked to be arms (and to be all of them when
the rest of the line says "every arm", "all arms" or "whole family").
CHANGELOG.md (history), tests/ and the generated records under docs/results/ and docs/variance/ are not read.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from verl_maxpo.core.table import ARMS, ESTIMATORS, OPTION_KEYS, arm_reads_k

ROOT = Path(__file__).resolve().parents[2]
SKIPPED = ("CHANGELOG.md", "tests/", "docs/results/", "docs/variance/", "build/", ".")
SUFFIXES = (".md", ".yaml", ".yml", ".sh", ".py", ".toml", ".cfg")
# An arm name standing alone: not part of an identifier, a path or a file name (verl_maxpo, tiny_maxpo_k2,
# estimator/maxpo.yaml, grpo_vectorized, maxpo_demo/ are not names of arms).
NAME = re.compile(r"(?<![\w/.-])(" + "|".join(sorted(ARMS, key=len, reverse=True)) + r")(?![\w/-])")
JOIN = re.compile(r"[\s,`'\"|#*]*(?:\b(?:and|or)\b[\s,`'\"|#*]*)?")  # what may stand between two names of one list
MARK = re.compile(r"<!--\s*arms(?::([\w-]+))?\s*-->(.*?)<!--\s*/arms\s*-->", re.S)
STRAY_MARK = re.compile(r"<!--\s*/?arms\b")
# Commands that choose arms: ARMS="a b", RUN_ARMS=a, `verl-maxpo launch ... --arms a,b`,
# `verl-maxpo demo ... --estimators a,b c` (bench and
# variance take other names too: cut out, not checked).
CHOICE = re.compile(
    r"(?:\b(?:RUN_)?ARMS=|--arms[ =])(?P<arms>\"[^\"]*\"|'[^']*'|[\w,]+)"
    r"|verl-maxpo (?P<tool>demo|bench|variance)\b[^\n]*?--estimators[ =](?P<values>(?:[\w,]+[ \n]?)+)"
)
EVERY = re.compile(r"every arm|all (?:the )?arms|whole family")  # a choice said, later on its line, to be all arms
MIN_NAMES = 4


def sources() -> dict[str, list[str]]:
    """Each kind of marked list, read from the code that defines it."""
    from verl_maxpo.launch.main import DEFAULT_ARMS as LAUNCH_DEFAULT
    from verl_maxpo.tools.demo.config import DEFAULT_ARMS as DEMO_DEFAULT

    return {
        "": list(ARMS),  # `<!-- arms -->`: every arm
        "estimators": list(ESTIMATORS),  # our estimators, registered in verl
        "ours": [name for name, arm in ARMS.items() if arm.estimator in ESTIMATORS],  # arms of our estimators
        "reads-k": [name for name, arm in ARMS.items() if arm_reads_k(arm)],
        "demo-default": list(DEMO_DEFAULT),
        "launch-default": list(LAUNCH_DEFAULT),
    } | {  # our estimators that read an option: `arms:estimators-reading-norm_by_std`
        f"estimators-reading-{key}": [name for name, spec in ESTIMATORS.items() if key in spec.options]
        for key in OPTION_KEYS
    }


def text_files() -> Iterator[Path]:
    for path in sorted(ROOT.rglob("*")):
        rel = path.relative_to(ROOT).as_posix()
        if path.is_file() and path.suffix in SUFFIXES and not rel.startswith(SKIPPED):
            yield path


def names(text: str) -> list[str]:
    return NAME.findall(text)


def listed(span: str) -> list[str]:
    """The names a marked span lists: of a Markdown table, the first name of each row (one arm per row)."""
    rows = [line for line in span.splitlines() if line.lstrip().startswith("|")]
    if len(rows) >= 2:
        return [found[0] for row in rows if (found := names(row))]
    return names(span)


def runs(text: str) -> Iterator[tuple[int, list[str]]]:
    """(offset, names) of each run of arm names that reads as one list."""
    run: list[re.Match[str]] = []
    for match in NAME.finditer(text):
        if run and not JOIN.fullmatch(text, run[-1].end(), match.start()):
            yield run[0].start(), [m.group(1) for m in run]
            run = []
        run.append(match)
    if run:
        yield run[0].start(), [m.group(1) for m in run]


def scan(path: Path, root: Path = ROOT) -> tuple[list[tuple[str, list[str]]], list[str]]:
    """(kind, names) of each marked list, and one problem string per unchecked or bad list."""
    rel = path.relative_to(root).as_posix()
    text = path.read_text(encoding="utf-8")
    marked = [(m.group(1) or "", listed(m.group(2))) for m in MARK.finditer(text)]
    problems = []

    def line_of(offset: int) -> int:
        return text.count("\n", 0, offset) + 1

    def blank(match: re.Match[str]) -> str:  # keep offsets, drop the names
        return re.sub(r"[^\n]", "~", match.group(0))

    rest = MARK.sub(blank, text)
    if stray := STRAY_MARK.search(rest):
        problems.append(f"{rel}:{line_of(stray.start())}: an arms marker without its pair")

    def cut(match: re.Match[str]) -> str:
        group = "arms" if match.group("arms") is not None else "values"
        if match.group("tool") in (None, "demo"):
            words = [w for w in re.split(r"[\s,\"']+", match.group(group)) if w]
            if bad := [w for w in words if w not in ARMS]:
                problems.append(f"{rel}:{line_of(match.start())}: {', '.join(bad)} chosen as arms, not in ARMS")
            line_end = rest.find("\n", match.end())
            if EVERY.search(rest, match.end(), None if line_end < 0 else line_end) and words != list(ARMS):
                problems.append(f"{rel}:{line_of(match.start())}: {words} said to be every arm; ARMS: {list(ARMS)}")
        cut_at = match.start(group) - match.start()
        return match.group(0)[:cut_at] + re.sub(r"[^\n]", "~", match.group(group))

    rest = CHOICE.sub(cut, rest)
    for offset, found in runs(rest):
        if len(set(found)) >= MIN_NAMES and found != list(ARMS):
            problems.append(f"{rel}:{line_of(offset)}: an unchecked list of arms {found} (mark it: see this test)")
    return marked, problems


def test_every_list_of_arms_is_marked_or_complete() -> None:
    problems = [problem for path in text_files() for problem in scan(path)[1]]
    assert not problems, "\n".join(problems)


def marked_problem(kind: str, found: list[str], known: dict[str, list[str]]) -> str | None:
    """Why a marked list of this kind is wrong, or None."""
    if kind == "subset":
        return None if found else "names no arm"
    if kind not in known:
        return f"unknown kind; kinds: {', '.join(k or '(none)' for k in known)}, subset"
    return None if found == known[kind] else f"lists {found}, the code says {known[kind]}"


def test_every_marked_list_equals_its_source() -> None:
    known = sources()
    seen, problems = 0, []
    for path in text_files():
        for kind, found in scan(path)[0]:
            seen += 1
            if (problem := marked_problem(kind, found, known)) is not None:
                problems.append(f"{path.relative_to(ROOT)}: <!-- arms{':' + kind if kind else ''} --> {problem}")
    assert not problems, "\n".join(problems)
    assert seen >= 10, f"only {seen} marked lists found: is the marker syntax still the one this test reads?"


def test_marked_problem() -> None:
    known = sources()
    assert marked_problem("", list(ARMS), known) is None
    assert marked_problem("", [arm for arm in ARMS if arm != "maxrl"], known) is not None  # the stale list
    assert marked_problem("estimators", list(ESTIMATORS), known) is None
    assert marked_problem("demo-default", ["maxpo", "grpo"], known) is not None
    assert marked_problem("everything", ["maxpo"], known) is not None
    assert marked_problem("subset", ["maxrl", "grpo"], known) is None


def test_a_marked_table_lists_one_arm_per_row() -> None:
    table = "| arm | trains |\n|---|---|\n| `maxpo` | `maxpo` |\n| `maxpo_top2` | `maxpo` |\n| `grpo` | verl's |\n"
    assert listed(table) == ["maxpo", "maxpo_top2", "grpo"]
    assert listed("`maxpo`, `pkpo`") == ["maxpo", "pkpo"]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("arms: maxpo, maxpo_top2, maxpo_ml, pkpo, maxrl, grpo", "unchecked"),  # one arm missing
        ("<!-- arms -->maxpo, grpo<!-- /arms -->", None),  # wrong, but for the other test
        ('ARMS="maxpo maxpo_top3 grpo" bash scripts/ab_launch.sh tiny', "not in ARMS"),
        ("verl-maxpo demo --estimators maxpo,pkpo,pkpo_loo,grpo --seeds 5", None),
        ('ARMS="maxpo maxpo_top2 maxpo_ml pkpo maxrl grpo"  # the whole family', "every arm"),
        ("arms:\n  maxpo, maxpo_top2, maxpo_ml,\n  pkpo, pkpo_loo, maxrl and grpo", None),  # one list over lines
        ("<!-- arms -->maxpo", "without its pair"),
        (", ".join(ARMS), None),
        ("verl_maxpo tiny_maxpo_k2 estimator/maxpo.yaml grpo_vectorized pkpo_loo_x maxrl", None),
    ],
)
def test_scan_finds_what_it_should(tmp_path: Path, text: str, problem: str | None) -> None:
    path = tmp_path / "page.md"
    path.write_text(text + "\n")
    problems = scan(path, tmp_path)[1]
    assert (problems == []) if problem is None else (len(problems) == 1 and problem in problems[0]), problems
