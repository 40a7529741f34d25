"""One definition of a run folder: what the launchers and the demo write, and what `verl-maxpo report` reads.

    RUN_DIR/meta.json         RunMeta: estimator, k, n, seed, config name, validation n, other settings
    RUN_DIR/train_log.jsonl   verl's file logger (VERL_FILE_LOGGER_PATH)
    RUN_DIR/val/<step>.jsonl  validation generations (trainer.validation_data_dir)
    RUN_DIR/console.log       stdout + stderr of the run (launchers only; appended, never truncated)
    RUN_DIR/checkpoints/      verl's checkpoints (trainer.default_local_dir in the A/B recipes)
    RUN_DIR/.claim            the pid of the process that holds the folder (an flock for its lifetime)

A run folder belongs to one set of settings. `claim` creates it, or accepts it again when its meta.json holds the
same settings (a resumed run), and refuses a folder whose meta.json differs, so two runs never mix. Claims take
`verl_maxpo.runs.outputs.output_lock`, so of two simultaneous claims with different settings exactly one succeeds.
`hold` keeps a folder for the life of the process (the recipes' Hydra callback, verl_maxpo.runs.claim, takes it):
a second run into a held folder is refused, whatever its settings. `python -m verl_maxpo.runs.folder claim` is
the same claim from a shell.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from verl_maxpo.runs.outputs import OutputError, output_lock

META_NAME = "meta.json"
TRAIN_LOG_NAME = "train_log.jsonl"
VAL_DIR_NAME = "val"
CONSOLE_LOG_NAME = "console.log"
CLAIM_NAME = ".claim"
CHECKPOINTS_NAME = "checkpoints"
# Written by the launcher or the claim itself before verl starts: they do not make a folder "not ours".
_OWN_NAMES = {META_NAME, CONSOLE_LOG_NAME, CLAIM_NAME, VAL_DIR_NAME}
# Held claims: closing a descriptor would release its lock, so they stay open until the process ends.
_HELD: dict[Path, int] = {}


class RunFolderError(ValueError):
    """A run folder that cannot be read or claimed; the message names the file."""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")  # NaN / Infinity: json.loads accepts them by default


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class RunMeta:
    """The settings that make two runs comparable, or not.

    Attributes:
        adv_estimator: verl's `algorithm.adv_estimator` (maxpo, pkpo, grpo, ...).
        k: the K of max@K for the estimators that read `algorithm.maxpo.k`, else None.
        n: samples per training prompt (`actor_rollout_ref.rollout.n`).
        seed: the seed every RNG of the run is derived from.
        config_name: the recipe (Hydra config name) or the demo's estimator.
        val_n: samples per validation prompt.
        settings: any other setting that changes results (model, data, extra overrides), as strings.
    """

    adv_estimator: str
    k: int | None
    n: int
    seed: int
    config_name: str
    val_n: int
    settings: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.adv_estimator, str) or not self.adv_estimator:
            raise RunFolderError(f"adv_estimator must be a non-empty string, got {self.adv_estimator!r}")
        if not isinstance(self.config_name, str) or not self.config_name:
            raise RunFolderError(f"config_name must be a non-empty string, got {self.config_name!r}")
        if self.k is not None and not (_is_int(self.k) and self.k >= 1):
            raise RunFolderError(f"k must be a positive integer or null, got {self.k!r}")
        for name in ("n", "val_n"):
            value = getattr(self, name)
            if not (_is_int(value) and value >= 1):
                raise RunFolderError(f"{name} must be a positive integer, got {value!r}")
        if not _is_int(self.seed):
            raise RunFolderError(f"seed must be an integer, got {self.seed!r}")
        if not isinstance(self.settings, dict) or not all(
            isinstance(key, str) and isinstance(val, str) for key, val in self.settings.items()
        ):
            raise RunFolderError(f"settings must map strings to strings, got {self.settings!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> RunMeta:
        if not isinstance(data, dict):
            raise RunFolderError(f"expected a JSON object, got {type(data).__name__}")
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise RunFolderError(f"unknown keys {unknown}; a meta.json holds {names}")
        missing = [f.name for f in fields(cls) if f.name not in data and f.name != "settings"]
        if missing:
            raise RunFolderError(f"missing keys {missing}")
        return cls(**data)

    def differences(self, other: RunMeta) -> list[str]:
        """'key: mine != theirs' for every setting that differs."""
        mine, theirs = self.to_dict(), other.to_dict()
        return [f"{key}: {theirs[key]!r} != {mine[key]!r}" for key in mine if mine[key] != theirs[key]]


@dataclass(frozen=True)
class RunFolder:
    """Paths of one run folder, and its meta.json."""

    path: Path

    @property
    def meta_path(self) -> Path:
        return self.path / META_NAME

    @property
    def train_log(self) -> Path:
        return self.path / TRAIN_LOG_NAME

    @property
    def val_dir(self) -> Path:
        return self.path / VAL_DIR_NAME

    @property
    def console_log(self) -> Path:
        return self.path / CONSOLE_LOG_NAME

    @property
    def claim_path(self) -> Path:
        return self.path / CLAIM_NAME

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS_NAME

    def results(self, checkpoints: Path | None = None) -> list[str]:
        """What a run left here that a new run would mix with: validation dumps, a train log, checkpoints."""
        found = [str(p) for p in sorted(self.val_dir.glob("*.jsonl"))[:1]]
        if self.train_log.is_file() and self.train_log.stat().st_size > 0:
            found.append(str(self.train_log))
        for folder in {self.checkpoints, *([checkpoints] if checkpoints else [])}:
            if folder.is_dir() and any(folder.iterdir()):
                found.append(str(folder))
        return found

    def holder(self) -> str | None:
        """The pid of a live process that holds this folder (`hold`), None when nobody does."""
        if self.path in _HELD or not self.claim_path.is_file():
            return None
        try:
            fd = os.open(self.claim_path, os.O_RDONLY)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return None
        except BlockingIOError:
            return self.claim_path.read_text(encoding="utf-8", errors="replace").strip() or "unknown"
        finally:
            os.close(fd)

    def hold(self) -> None:
        """Hold the folder until this process ends; RunFolderError when another live process holds it."""
        if self.path in _HELD:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.claim_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunFolderError(
                f"{self.path} is in use by a running process (pid {self.holder()}); wait for it or use another folder"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        _HELD[self.path] = fd

    def release(self) -> None:
        fd = _HELD.pop(self.path, None)
        if fd is not None:
            os.close(fd)

    def read_meta(self) -> RunMeta | None:
        """The folder's RunMeta, None when it has no meta.json; RunFolderError (naming the file) when invalid."""
        if not self.meta_path.exists():
            return None
        try:
            data = json.loads(self.meta_path.read_text(encoding="utf-8"), parse_constant=_reject_constant)
            return RunMeta.from_dict(data)
        except (OSError, UnicodeDecodeError, ValueError, RecursionError, TypeError) as err:
            raise RunFolderError(f"{self.meta_path}: {err}") from None

    def write_meta(self, meta: RunMeta) -> None:
        """Write meta.json atomically (a reader never sees half a file)."""
        self.path.mkdir(parents=True, exist_ok=True)
        tmp = self.meta_path.with_name(f".{META_NAME}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(meta.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, self.meta_path)

    def claim(self, meta: RunMeta, write: bool = True) -> None:
        """Create the folder (with val/) for `meta`, or accept it again if it already holds the same settings.

        Raises RunFolderError when the folder belongs to other settings, or holds outputs but no meta.json.
        write=False only checks (a dry run): nothing is created.
        """
        if self.path.exists() and not self.path.is_dir():
            raise RunFolderError(f"{self.path} exists and is not a folder")
        if not write:
            self._claim_locked(meta, write=False)
            return
        try:
            with output_lock(self.path):  # read-compare-write as one step: a second claimer sees our meta.json
                self._claim_locked(meta)
        except OutputError as err:
            raise RunFolderError(str(err)) from None

    def _claim_locked(self, meta: RunMeta, write: bool = True) -> None:
        try:
            existing = self.read_meta()
        except RunFolderError as err:
            raise RunFolderError(f"{err}; refusing to reuse {self.path} for another run") from None
        if existing is not None and existing != meta:
            diff = "; ".join(meta.differences(existing))
            raise RunFolderError(
                f"{self.path} holds a run with other settings ({diff}); use another run folder (--out, run_dir=) "
                "or remove that one"
            )
        foreign = [p for p in self.path.iterdir() if p.name not in _OWN_NAMES] if self.path.is_dir() else []
        if existing is None and (foreign or any(self.val_dir.glob("*"))):
            raise RunFolderError(f"{self.path} is not empty and has no {META_NAME}: it is not a run folder of ours")
        if not write:
            return
        self.val_dir.mkdir(parents=True, exist_ok=True)
        if existing is None:
            self.write_meta(meta)


def _parse_setting(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m verl_maxpo.runs.folder",
        description="Create (or re-enter) a run folder with its meta.json; refuse one that holds other settings.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    claim = sub.add_parser("claim", help="create RUN_DIR/val and RUN_DIR/meta.json, or check an existing one")
    claim.add_argument("run_dir", help="the run folder")
    claim.add_argument("--adv-estimator", required=True, help="algorithm.adv_estimator")
    claim.add_argument("--k", type=int, default=None, help="K of max@K (omit for estimators without one)")
    claim.add_argument("--n", type=int, required=True, help="samples per training prompt")
    claim.add_argument("--seed", type=int, required=True, help="the run's seed")
    claim.add_argument("--config-name", required=True, help="recipe (Hydra config name)")
    claim.add_argument("--val-n", type=int, required=True, help="samples per validation prompt")
    claim.add_argument(
        "--setting", type=_parse_setting, action="append", default=[], metavar="KEY=VALUE",
        help="another setting that changes results (repeatable), e.g. model=/ckpt/qwen",
    )  # fmt: skip
    return p


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    if not args.run_dir.strip():  # Path("") is the current folder: never claim it by accident
        parser.error("RUN_DIR is empty; give the run folder")
    try:
        meta = RunMeta(
            adv_estimator=args.adv_estimator,
            k=args.k,
            n=args.n,
            seed=args.seed,
            config_name=args.config_name,
            val_n=args.val_n,
            settings=dict(args.setting),
        )
        RunFolder(Path(args.run_dir)).claim(meta)
    except (RunFolderError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
