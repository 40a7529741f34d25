"""Shared plumbing of `verl-maxpo prepare`: read hub-format rows, convert, report bad rows, write parquet.

Every output row follows verl's RL parquet schema:
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

from verl_maxpo.runs.outputs import OutputError, check_out, check_separate, owned_files, publish

FILE_SUFFIXES = (".parquet", ".jsonl", ".json")
EXAMPLES_PER_REASON = 3


class BadRow(Exception):
    """A source row that cannot become a training row; `reason` is a short category used in the report."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class SourceError(Exception):
    """A source file (or hub stream) that cannot be read at all; the message names the file and where it failed."""


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

    def add_bad(self, where: str, err: BadRow) -> None:
        self.bad[err.reason] += 1
        shown = self.examples.setdefault(err.reason, [])
        if len(shown) < EXAMPLES_PER_REASON:
            shown.append(f"{where}: {err.detail}" if err.detail else where)

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
    sibling subset (gsm8k's `socratic/`) is never mixed in. Two copies of one split in one folder (`train.jsonl`
    beside `train.parquet`, or a single file beside shards) are refused: reading both would count rows twice.
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
        kinds = {(p.suffix, p.stem == split) for p in found}
        if len(kinds) > 1:
            names = ", ".join(p.name for p in found)
            raise SourceError(f"{folder} holds {split} more than once ({names}); keep one format and remove the rest")
        if found:
            return found
    searched = ", ".join(str(f) for f in folders)
    raise SourceError(f"no {split}.parquet/.jsonl/.json (or {split}-*.parquet shards) in: {searched}")


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _read_json_list(path: Path) -> list[Any]:
    """A .json file holding one list of rows; anything else is a SourceError naming the file and line."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise SourceError(f"{path}: cannot read ({err.strerror})") from None
    try:
        text = data.decode("utf-8-sig")  # a leading byte-order mark (Windows editors) is not part of the JSON
    except UnicodeDecodeError as err:
        raise SourceError(f"{path}: line {_line_of(data, err.start)} is not UTF-8 text") from None
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as err:
        raise SourceError(f"{path}: not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})") from None
    except RecursionError:
        raise SourceError(f"{path}: JSON nested too deeply to read") from None
    except ValueError as err:  # an integer of over 4300 digits
        raise SourceError(f"{path}: {str(err).split(';')[0]}") from None
    if not isinstance(rows, list):
        kind = {dict: "object", str: "string", bool: "boolean", type(None): "null"}.get(type(rows), "number")
        raise SourceError(f"{path}: expected a JSON list of rows, got a JSON {kind}")
    return rows


def _parquet_file(path: Path) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as err:
        raise SourceError(f"{path}: not a readable parquet file ({err})") from None


def count_rows(paths: list[Path]) -> int:
    """Rows in the files, for the progress bar; also the first check that every file can be opened."""
    total = 0
    for path in paths:
        if path.suffix == ".parquet":
            total += _parquet_file(path).metadata.num_rows
        elif path.suffix == ".jsonl":
            try:
                with path.open("rb") as fh:
                    total += sum(1 for line in fh if line.strip())
            except OSError as err:
                raise SourceError(f"{path}: cannot read ({err.strerror})") from None
        else:
            total += len(_read_json_list(path))
    return total


Located = tuple[str, Any]  # (where the row came from, e.g. "train.jsonl:4"; the row or a BadRow)


def _jsonl_rows(path: Path) -> Iterator[Located]:
    """Rows of a .jsonl file; a line that is not UTF-8 or not JSON becomes a BadRow, so it is counted and skipped."""
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            where = f"{path.name}:{lineno}"
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError:
                yield where, BadRow("not_utf8", "line is not UTF-8 text")
                continue
            try:
                yield where, json.loads(line)
            except json.JSONDecodeError as err:
                yield where, BadRow("invalid_json", err.msg)
            except (ValueError, RecursionError) as err:  # an integer of over 4300 digits, or nesting too deep
                yield where, BadRow("invalid_json", str(err).split(";")[0] or "nested too deeply")


def _parquet_rows(path: Path) -> Iterator[Located]:
    done = 0
    try:
        for batch in _parquet_file(path).iter_batches(batch_size=1024):
            for row in batch.to_pylist():
                yield f"{path.name} row {done}", row
                done += 1
    except (OSError, pa.ArrowException) as err:
        raise SourceError(f"{path}: unreadable after row {done} ({err})") from None


def iter_local_rows(paths: list[Path]) -> Iterator[Located]:
    """(where, row) for every row of local files, in order."""
    for path in paths:
        if path.suffix == ".parquet":
            yield from _parquet_rows(path)
        elif path.suffix == ".jsonl":
            yield from _jsonl_rows(path)
        else:
            for index, row in enumerate(_read_json_list(path)):
                yield f"{path.name} item {index}", row


def load_hub_rows(
    repo: str, split: str, subset: str | None = None, streaming: bool = False
) -> tuple[Iterable, int | None]:
    """(rows, row count or None) of a hub split. Needs network access and the `datasets` package."""
    try:
        import datasets
    except ImportError as err:
        raise SystemExit(
            f'loading {repo} from the hub needs `pip install "verl-maxpo[data]"` (or use --local-dir)'
        ) from err
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


def _hub_rows(rows: Iterable, label: str) -> Iterator[Located]:
    index = -1
    try:
        for index, row in enumerate(rows):
            yield f"row {index}", row
    except Exception as err:  # a dropped connection or a corrupt cached shard, mid-stream
        raise SourceError(f"{label}: reading stopped after row {index + 1}: {type(err).__name__}: {err}") from None


def source_rows(
    args: argparse.Namespace, repo: str, split: str, hub_split: str, subset: str | None = None, streaming: bool = False
) -> tuple[Iterable[Located], int | None, str]:
    """(where, row) pairs of one split from --local-dir when given, else from the hub, with a label for messages."""
    if args.local_dir is not None:
        paths = find_split_files(Path(args.local_dir).expanduser(), hub_split, subset)
        return iter_local_rows(paths), count_rows(paths), ", ".join(p.name for p in paths)
    rows, total = load_hub_rows(repo, hub_split, subset, streaming=streaming)
    label = f"hf://{repo}" + (f" [{subset}]" if subset else "") + f" {hub_split}"
    return _hub_rows(rows, label), total, label


# ---------------------------------------------------------------------------------------------- converting


Converter = Callable[[dict[str, Any], str, int], dict[str, Any]]


def convert_rows(
    rows: Iterable[Located],
    convert: Converter,
    split: str,
    total: int | None,
    label: str,
    max_rows: int | None = None,
) -> tuple[list[dict[str, Any]], SplitReport]:
    """Convert every row; bad rows are counted by reason (with examples), never dropped silently.

    A row the converter cannot handle for a reason it did not foresee (an exception other than BadRow) is counted
    as `unexpected` and skipped too: one odd row never costs the whole split.
    """
    report = SplitReport(split)
    out: list[dict[str, Any]] = []
    bar = tqdm(rows, total=total, desc=f"{split} <- {label}", unit="row", file=sys.stderr, mininterval=1.0)
    for index, (where, row) in enumerate(bar):
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
            report.add_bad(where, err)
        except NotSelected as err:
            report.not_selected[err.reason] += 1
        except Exception as err:  # see the docstring
            report.add_bad(where, BadRow("unexpected", f"{type(err).__name__}: {err}"))
    bar.close()
    return out, report


def write_parquet(rows: list[dict[str, Any]], path: Path) -> None:
    """Write atomically, so an interrupted run never leaves a plausible-looking partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        pq.write_table(pa.Table.from_pylist(rows), tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------- command line


def base_parser(description: str, default_out: str, command: str) -> argparse.ArgumentParser:
    """The options every prep script shares; `command` (the script's name) is recorded in its output manifest."""
    prog = f"verl-maxpo prepare {command.removeprefix('prepare_')}"
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.set_defaults(command=command)
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
    parser.add_argument(
        "--force",
        action="store_true",
        help="write into a non-empty --out-dir this script did not write (its files are never removed or overwritten)",
    )
    return parser


def check_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Refuse bad options before any row is read: a missing --local-dir, an --out-dir that is empty, unusable or
    overlaps --local-dir (the same folder, one inside the other, or the same via a symlink)."""
    if args.local_dir is not None and not args.local_dir.strip():
        parser.error("--local-dir is empty; give a folder (. for the current folder), or leave it out to download")
    if args.local_dir is not None and not Path(args.local_dir).expanduser().is_dir():
        parser.error(f"--local-dir {args.local_dir} is not a directory")
    if args.max_rows is not None and args.max_rows < 1:
        parser.error("--max-rows must be at least 1")
    try:
        check_out(args.out_dir, args.command, args.force, what="--out-dir", results=False)  # rebuilt from the source
        if args.local_dir is not None:
            check_separate(args.local_dir, args.out_dir, "--local-dir", "--out-dir")
    except OutputError as err:
        parser.error(str(err))


def finish_split(
    rows: list[dict[str, Any]], report: SplitReport, out_dir: Path, shown: Path | None = None, command: str = ""
) -> int:
    """Print the split's report and write it into `out_dir` (a stage; `shown` is where it will be published);
    returns 1 (failure) when nothing usable was left or writing failed. A split with no usable rows is not in the
    stage, so publishing removes its file from an earlier run: the folder never pairs this run's split with a stale
    one."""
    print(report.summary(), flush=True)
    path = out_dir / f"{report.split}.parquet"
    if not rows:
        print(f"error: no usable {report.split} rows; nothing written for it", file=sys.stderr)
        if shown is not None and path.name in owned_files(shown, command):
            print(
                f"error: removed {shown / path.name} from an earlier run, so it is not mistaken for this one",
                file=sys.stderr,
            )
        return 1
    try:
        write_parquet(rows, path)
    except (OSError, pa.ArrowException) as err:
        print(f"error: could not write {path}: {err}", file=sys.stderr)
        return 1
    print(f"[{report.split}] wrote {(shown or out_dir) / path.name}", flush=True)
    return 0


def convert_splits(
    args: argparse.Namespace,
    splits: Iterable[tuple[str, str, str]],
    convert: Converter,
    subset: str | None = None,
    streaming: bool = False,
) -> int:
    """Read and convert every (split, hub repo, hub split), then write them; returns 1 if any split failed.

    All splits are read before anything is written: a source that cannot be read at all (a corrupt parquet, a
    .json that is not a list) stops the run with the files of an earlier run left exactly as they were.
    """
    out_dir = Path(args.out_dir).expanduser()
    converted = []
    try:
        for split, repo, hub_split in splits:
            rows, total, label = source_rows(args, repo, split, hub_split, subset=subset, streaming=streaming)
            converted.append(convert_rows(rows, convert, split, total, label, args.max_rows))
    except SourceError as err:
        print(f"error: {err}\nnothing written", file=sys.stderr)
        return 1
    # An OutputError here (another writer), Ctrl-C and SIGTERM: the command policy's exit status (1, 130, 143);
    # the output folder is left as it was.
    status = 0
    with publish(out_dir, args.command, args.force, what="--out-dir", results=False) as out:
        for rows, report in converted:
            status |= finish_split(rows, report, out.stage, out.target, args.command)
    return status
