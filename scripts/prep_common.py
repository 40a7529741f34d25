"""Shared plumbing for the prepare_*.py data scripts: read hub-format rows, convert, report bad rows, write parquet.

The scripts are plain files (`python scripts/prepare_gsm8k.py ...`); Python puts scripts/ on sys.path, which is
how they import this module. Every output row follows verl's RL parquet schema:
    data_source   str   picks the scorer in verl.utils.reward_score.default_compute_score
    prompt        list  chat messages, [{"role": "user", "content": ...}]
    ability       str   "math" or "code"
    reward_model  dict  {"style": "rule", "ground_truth": str}
    extra_info    dict  {"split": ..., "index": <row index in the source split>, ...}
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

FILE_SUFFIXES = (".parquet", ".jsonl", ".json")
EXAMPLES_PER_REASON = 3


class BadRow(Exception):
    """A source row that cannot become a training row; `reason` is a short category used in the report."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class NotSelected(Exception):
    """A well-formed row this dataset deliberately leaves out (e.g. a math row in a mixed math/code set)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class SplitReport:
    split: str
    kept: int = 0
    capped: bool = False
    bad: Counter = field(default_factory=Counter)
    not_selected: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add_bad(self, index: int, err: BadRow) -> None:
        self.bad[err.reason] += 1
        shown = self.examples.setdefault(err.reason, [])
        if len(shown) < EXAMPLES_PER_REASON:
            shown.append(f"row {index}: {err.detail}" if err.detail else f"row {index}")

    def summary(self) -> str:
        lines = [f"[{self.split}] kept {self.kept} rows, skipped {sum(self.bad.values())} malformed"]
        if self.capped:
            lines.append(f"  stopped at --max-rows {self.kept}; later rows were not read")
        for reason, count in sorted(self.bad.items()):
            lines.append(f"  malformed, {reason}: {count}  (e.g. {'; '.join(self.examples[reason])})")
        for reason, count in sorted(self.not_selected.items()):
            lines.append(f"  left out, {reason}: {count}")
        return "\n".join(lines)


def text_field(row: dict[str, Any], key: str) -> str:
    """A required non-empty string field, or BadRow."""
    value = row.get(key)
    if isinstance(value, str) and value.strip():
        return value.strip()
    found = "absent" if value is None else "empty" if isinstance(value, str) else f"a {type(value).__name__}"
    raise BadRow(f"missing_{key}", f"{key!r} is {found}")


def chat_prompt(content: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": content}]


def verl_row(
    data_source: str, prompt: str, ability: str, ground_truth: str, extra_info: dict[str, Any]
) -> dict[str, Any]:
    return {
        "data_source": data_source,
        "prompt": chat_prompt(prompt),
        "ability": ability,
        "reward_model": {"style": "rule", "ground_truth": ground_truth},
        "extra_info": extra_info,
    }


# ---------------------------------------------------------------------------------------------- reading


def find_split_files(local_dir: Path, split: str, subset: str | None = None) -> list[Path]:
    """Files holding `split` in a local copy of a hub dataset.

    Accepts the hub's own layouts (`<subset>/train-00000-of-00001.parquet`, `data/train-*.parquet`, `train.jsonl`)
    and hand-made files (`train.parquet`, `train.jsonl`, `train.json`). The first folder with a match wins, so a
    sibling subset (gsm8k's `socratic/`) is never mixed in.
    """
    folders = [local_dir / subset] if subset else []
    folders += [local_dir / "data", local_dir]
    for folder in folders:
        if not folder.is_dir():
            continue
        found = sorted(
            p
            for p in folder.iterdir()
            if p.is_file() and p.suffix in FILE_SUFFIXES and (p.stem == split or p.stem.startswith(f"{split}-"))
        )
        if found:
            return found
    searched = ", ".join(str(f) for f in folders)
    raise FileNotFoundError(f"no {split}.parquet/.jsonl/.json (or {split}-*.parquet shards) in: {searched}")


def count_rows(paths: list[Path]) -> int:
    total = 0
    for path in paths:
        if path.suffix == ".parquet":
            total += pq.ParquetFile(path).metadata.num_rows
        elif path.suffix == ".jsonl":
            with path.open(encoding="utf-8") as fh:
                total += sum(1 for line in fh if line.strip())
        else:
            total += len(_read_json_list(path))
    return total


def _read_json_list(path: Path) -> list[Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of rows, got {type(data).__name__}")
    return data


def iter_local_rows(paths: list[Path]) -> Iterator[Any]:
    """Rows of local files, in order. A jsonl line that is not valid JSON is yielded as a BadRow instance."""
    for path in paths:
        if path.suffix == ".parquet":
            for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
                yield from batch.to_pylist()
        elif path.suffix == ".jsonl":
            with path.open(encoding="utf-8") as fh:
                for lineno, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError as err:
                        yield BadRow("invalid_json", f"{path.name}:{lineno}: {err.msg}")
        else:
            yield from _read_json_list(path)


def load_hub_rows(
    repo: str, split: str, subset: str | None = None, streaming: bool = False
) -> tuple[Iterable, int | None]:
    """(rows, row count or None) of a hub split. Needs network access and the `datasets` package."""
    try:
        import datasets
    except ImportError as err:
        raise SystemExit(f"loading {repo} from the hub needs `pip install datasets` (or use --local-dir)") from err
    try:
        ds = datasets.load_dataset(repo, subset, split=split, streaming=streaming)
    except Exception as err:  # network, auth or name errors all end the same way for the user
        raise SystemExit(
            f"could not load {repo} ({split}) from the Hugging Face hub: {type(err).__name__}: {err}\n"
            "Without network access, download the dataset elsewhere and pass --local-dir."
        ) from err
    if streaming:
        info = getattr(ds, "info", None)
        splits = getattr(info, "splits", None) or {}
        total = splits[split].num_examples if split in splits else None
        return ds, total
    return ds, len(ds)


def source_rows(
    args: argparse.Namespace, repo: str, split: str, hub_split: str, subset: str | None = None, streaming: bool = False
) -> tuple[Iterable, int | None, str]:
    """Rows of one split from --local-dir when given, else from the hub; also returns a label for messages."""
    if args.local_dir is not None:
        try:
            paths = find_split_files(Path(args.local_dir).expanduser(), hub_split, subset)
        except FileNotFoundError as err:
            raise SystemExit(f"error: {err}") from None
        return iter_local_rows(paths), count_rows(paths), ", ".join(p.name for p in paths)
    rows, total = load_hub_rows(repo, hub_split, subset, streaming=streaming)
    return rows, total, f"hf://{repo}" + (f" [{subset}]" if subset else "") + f" {hub_split}"


# ---------------------------------------------------------------------------------------------- converting


Converter = Callable[[dict[str, Any], str, int], dict[str, Any]]


def convert_rows(
    rows: Iterable[Any], convert: Converter, split: str, total: int | None, label: str, max_rows: int | None = None
) -> tuple[list[dict[str, Any]], SplitReport]:
    """Convert every row; bad rows are counted by reason (with examples), never dropped silently."""
    report = SplitReport(split)
    out: list[dict[str, Any]] = []
    bar = tqdm(rows, total=total, desc=f"{split} <- {label}", unit="row", file=sys.stderr, mininterval=1.0)
    for index, row in enumerate(bar):
        if max_rows is not None and report.kept >= max_rows:
            report.capped = True
            break
        try:
            if isinstance(row, BadRow):
                raise row
            if not isinstance(row, dict):
                raise BadRow("not_an_object", f"row is {type(row).__name__}")
            out.append(convert(row, split, index))
            report.kept += 1
        except BadRow as err:
            report.add_bad(index, err)
        except NotSelected as err:
            report.not_selected[err.reason] += 1
    bar.close()
    return out, report


def write_parquet(rows: list[dict[str, Any]], path: Path) -> None:
    """Write atomically, so an interrupted run never leaves a plausible-looking partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    pq.write_table(pa.Table.from_pylist(rows), tmp)
    tmp.replace(path)


# ---------------------------------------------------------------------------------------------- command line


def base_parser(description: str, default_out: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--local-dir",
        default=None,
        help="read a local copy of the hub dataset (its parquet shards, or train/test .parquet/.jsonl/.json files) "
        "instead of downloading it",
    )
    parser.add_argument(
        "--out-dir", default=default_out, help=f"where train.parquet and test.parquet go ({default_out})"
    )
    parser.add_argument(
        "--max-rows", type=int, default=None, help="keep at most this many rows per split (smoke tests)"
    )
    return parser


def check_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    if args.local_dir is not None and not Path(args.local_dir).expanduser().is_dir():
        parser.error(f"--local-dir {args.local_dir} is not a directory")
    if args.max_rows is not None and args.max_rows < 1:
        parser.error("--max-rows must be at least 1")


def finish_split(rows: list[dict[str, Any]], report: SplitReport, out_dir: Path) -> int:
    """Print the split's report and write it; returns 1 (failure) when nothing usable was left."""
    print(report.summary(), flush=True)
    if not rows:
        print(f"error: no usable {report.split} rows; nothing written", file=sys.stderr)
        return 1
    path = out_dir / f"{report.split}.parquet"
    write_parquet(rows, path)
    print(f"[{report.split}] wrote {path}", flush=True)
    return 0


def convert_splits(
    args: argparse.Namespace,
    splits: Iterable[tuple[str, str, str]],
    convert: Converter,
    subset: str | None = None,
    streaming: bool = False,
) -> int:
    """Read, convert and write each (split, hub repo, hub split); returns 1 if any split had no usable rows."""
    out_dir = Path(args.out_dir).expanduser()
    status = 0
    for split, repo, hub_split in splits:
        rows, total, label = source_rows(args, repo, split, hub_split, subset=subset, streaming=streaming)
        converted, report = convert_rows(rows, convert, split, total, label, args.max_rows)
        status |= finish_split(converted, report, out_dir)
    return status
