"""Every path and module name of the package that the docs, recipes, scripts and docstrings mention exists.

`verl_maxpo/core/table.py`, `verl_maxpo/tools/demo/`, `verl_maxpo.integration.adapter` and
`verl_maxpo.core.estimators.run_estimator` are all read: a file or folder must exist, and a dotted name must be a
module or package of this checkout followed by names that its source defines. CHANGELOG.md (history, which names
old modules on purpose), tests/ and the generated records under docs/results/ and docs/variance/ are not read.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SKIPPED = ("CHANGELOG.md", "tests/", "docs/results/", "docs/variance/", "build/", ".")
SUFFIXES = (".md", ".yaml", ".yml", ".sh", ".py", ".toml", ".cfg")
# A file with a suffix, or a folder ending in "/" (verl_maxpo/smol_arith, a data source name, is neither).
PATH = re.compile(r"(?<![\w/.-])verl_maxpo/(?:[\w.-]+/)*(?:[\w-]+\.\w+)?(?![\w/])")
DOTTED = re.compile(r"(?<![\w/.-])verl_maxpo(?:\.\w+)+")
# Folders the package maps elsewhere: `verl_maxpo.recipes` is the top-level recipes/ folder (setup.py).
MAPPED = {"verl_maxpo/recipes": ROOT / "recipes"}


def text_files() -> list[Path]:
    return [
        p
        for p in sorted(ROOT.rglob("*"))
        if p.is_file() and p.suffix in SUFFIXES and not p.relative_to(ROOT).as_posix().startswith(SKIPPED)
    ]


def where(rel: str) -> Path:
    for prefix, target in MAPPED.items():
        if rel == prefix or rel.startswith(prefix + "/"):
            return target / rel[len(prefix) :].lstrip("/")
    return ROOT / rel


def dotted_problem(name: str) -> str | None:
    """None if `name` is a module of this checkout followed by names its source defines, else why not."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        base = where("/".join(parts[:i]))
        source = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
        if source.is_file() or (base.is_dir() and i == len(parts)):
            text = source.read_text(encoding="utf-8") if source.is_file() else ""
            missing = [
                attr
                for attr in parts[i:]
                if not attr.startswith("__") and not re.search(rf"\b{re.escape(attr)}\b", text)
            ]
            return f"{'.'.join(parts[i:])} not found in {source.relative_to(ROOT)}" if missing else None
    return "no such module"


def test_every_mentioned_path_and_module_exists() -> None:
    problems, checked = [], 0
    for path in text_files():
        rel = path.relative_to(ROOT).as_posix()
        text = path.read_text(encoding="utf-8")
        for match in PATH.finditer(text):
            checked += 1
            mentioned = match.group(0).rstrip(".")
            if "*" not in mentioned and not where(mentioned).exists():
                problems.append(f"{rel}:{text.count(chr(10), 0, match.start()) + 1}: {mentioned} does not exist")
        for match in DOTTED.finditer(text):
            checked += 1
            if (problem := dotted_problem(match.group(0).rstrip("."))) is not None:
                line = text.count("\n", 0, match.start()) + 1
                problems.append(f"{rel}:{line}: {match.group(0)}: {problem}")
    assert not problems, "\n".join(problems)
    assert checked > 100, f"only {checked} mentions found: do the patterns still match the docs?"


def test_the_check_sees_a_stale_name() -> None:
    assert dotted_problem("verl_maxpo.core.table.ARMS") is None
    assert dotted_problem("verl_maxpo.recipes.shared") is None
    assert dotted_problem("verl_maxpo.estimator_table") is not None
    assert dotted_problem("verl_maxpo.tools.demo_config.DEFAULT_ARMS") is not None
    assert [m.group(0) for m in PATH.finditer("verl_maxpo/core/table.py, verl_maxpo/tools/ and verl_maxpo/x_y")] == [
        "verl_maxpo/core/table.py",
        "verl_maxpo/tools/",
    ]
    assert dotted_problem("verl_maxpo.core.table.NO_SUCH_NAME") is not None


LINK = re.compile(r"\]\((?!https?:|mailto:)([^)\s]*?)(?:#([^)\s]*))?\)")


def slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)  # a `# comment` is no heading
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", text, re.M)}


def test_every_relative_link_and_anchor_resolves() -> None:
    problems, checked = [], 0
    for page in text_files():
        if page.suffix != ".md":
            continue
        for match in LINK.finditer(page.read_text(encoding="utf-8")):
            target_name, anchor = match.groups()
            target = (page.parent / target_name).resolve() if target_name else page
            checked += 1
            if not target.exists():
                problems.append(f"{page.relative_to(ROOT)}: link to {target_name}, which does not exist")
            elif anchor and target.suffix == ".md" and anchor not in anchors(target):
                problems.append(f"{page.relative_to(ROOT)}: link to {target_name}#{anchor}, no such heading")
    assert not problems, "\n".join(problems)
    assert checked > 20


def test_slug_is_githubs() -> None:
    assert slug("Versions that `verl[vllm]==0.9.1` brings") == "versions-that-verlvllm091-brings"
    assert (
        slug("Each arm's full composed config, before launching") == "each-arms-full-composed-config-before-launching"
    )
    assert (
        slug("A real model: SmolLM2-135M-Instruct (the smol recipe)")
        == "a-real-model-smollm2-135m-instruct-the-smol-recipe"
    )


def test_readme_commands_table_is_the_cli() -> None:
    from verl_maxpo.cli.main import COMMANDS

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    listed = re.findall(r"^\| `verl-maxpo ([\w-]+)", text, re.M)
    assert sorted(listed) == sorted(COMMANDS)  # every command once, in the order a reader needs them
