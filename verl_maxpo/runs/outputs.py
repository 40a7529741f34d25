"""One output-folder policy for every command that writes a folder (report, tiny-assets, demo, variance, prep).

    with publish(args.out, command="report", force=args.force) as out:
        (out.stage / "report.md").write_text(...)      # write everything into the hidden stage
    print(f"wrote {out.target}")                       # published once the `with` block ends without an error

- Staged write: files go to a hidden `.verl_maxpo-partial-*` folder on the target's filesystem (beside a new
  target, inside an existing one), never straight into the target.
- Publish: a new target is the stage renamed (atomic). An existing folder (`.`, a folder of the user's, an earlier
  output) is never renamed or removed: each file is moved in with os.replace, so nothing outside the command's
  files changes.
- Manifest: TARGET/.verl_maxpo_outputs.json names the command and the files it wrote. A rerun of the same command
  replaces exactly those files (and only those), so two runs never mix.
- Results are data: a rerun into a folder that still holds the command's earlier outputs is refused unless
  `force` (the message names --force and the --out option). Commands whose outputs are rebuilt from their inputs
  (the prep scripts) pass `results=False` and replace their earlier files without it.
- Symlinks: a file is never written or removed through a symlinked folder inside the target (a subfolder of an
  earlier output replaced by a link to the user's folder), with or without force.
- Refusals (OutputError, checked by `check_out` before any work and again under the lock): an empty path, a target
  or parent that is a file, an unwritable place, a folder holding another command's outputs (even with --force),
  a non-empty folder with no manifest (unless force), and a file the command would overwrite that it did not write
  (even with force: force only lets it write beside files it does not own).
- Lock: publishing (and `run_folder claim`) hold an flock on the target's parent folder, so two writers of one
  target take turns; the lock is held only while files move, not while they are computed.
- Ctrl-C / SIGTERM while writing: the stage is removed, the target is untouched, KeyboardInterrupt propagates
  (SIGTERM arrives as `Interrupted`, a KeyboardInterrupt). During the short move into an existing folder both
  signals are held back until the move is complete, then delivered.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

__all__ = [
    "MANIFEST_NAME",
    "Interrupted",
    "OutputError",
    "Published",
    "check_out",
    "check_separate",
    "output_lock",
    "owned_files",
    "publish",
    "through_link",
]

MANIFEST_NAME = ".verl_maxpo_outputs.json"
PARTIAL_PREFIX = ".verl_maxpo-partial-"
_FORMAT = 1


class OutputError(ValueError):
    """An output folder that cannot be used; the message names it and says what to do."""


class Interrupted(KeyboardInterrupt):
    """SIGTERM (or SIGINT) while a command was writing its outputs."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@dataclass(frozen=True)
class Published:
    """`stage`: where the command writes; `target`: the folder it lands in (absolute)."""

    stage: Path
    target: Path


def _target(out: str | os.PathLike[str], what: str) -> Path:
    text = os.fspath(out)
    if not text.strip():
        raise OutputError(f"{what} is empty; give a folder (use {what} . to write into the current folder)")
    return Path(os.path.abspath(os.path.expanduser(text)))


def _read_manifest(target: Path) -> dict[str, Any] | None:
    """The manifest of `target`, None when there is none; OutputError when it is unreadable."""
    path = target / MANIFEST_NAME
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not (
            isinstance(data, dict) and isinstance(data.get("command"), str) and isinstance(data.get("files"), list)
        ):
            raise ValueError("expected {'command': ..., 'files': [...]}")
        files = [f for f in data["files"] if isinstance(f, str) and _safe_relative(f)]
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as err:
        raise OutputError(f"{path} is damaged ({err}); remove it and the outputs it listed by hand") from None
    return {"command": data["command"], "files": files}


def _safe_relative(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return bool(parts) and not PurePosixPath(name).is_absolute() and ".." not in parts and name != MANIFEST_NAME


def owned_files(target: str | os.PathLike[str], command: str) -> list[str]:
    """The files (relative posix paths) `command` wrote into `target` last time; [] when it wrote none there."""
    manifest = _read_manifest(Path(target))
    return manifest["files"] if manifest is not None and manifest["command"] == command else []


def _foreign(target: Path, earlier: list[str]) -> list[str]:
    """Top-level entries of `target` the command did not write (its manifest and stages aside)."""
    ours = {PurePosixPath(f).parts[0] for f in earlier} | {MANIFEST_NAME}
    return sorted(e.name for e in target.iterdir() if e.name not in ours and not e.name.startswith(PARTIAL_PREFIX))


def check_out(
    out: str | os.PathLike[str],
    command: str,
    force: bool = False,
    what: str = "--out",
    *,
    results: bool = True,
) -> Path:
    """Check that `command` may publish into `out`; returns the absolute target. Call it before any slow work.

    `results`: the command's earlier outputs there are replaced only with `force`. Raises OutputError.
    """
    target = _target(out, what)
    _earlier_files(target, command, force, what, results)
    return target


def through_link(target: Path, name: str) -> bool:
    """Whether a folder on the way from `target` to its file `name` is a symlink (it may lead anywhere)."""
    folder = target
    for part in PurePosixPath(name).parts[:-1]:
        folder = folder / part
        if folder.is_symlink():
            return True
    return False


def check_makeable(target: Path, what: str) -> bool:
    """OutputError unless `target` is a writable folder or can be made (its nearest existing parent is a writable
    folder); returns whether it exists already."""
    probe = target
    while not probe.exists() and not probe.is_symlink():
        probe = probe.parent
    if probe == target and not target.is_dir():
        raise OutputError(f"{what} {target} exists and is not a folder")
    if not probe.is_dir():
        raise OutputError(f"{what} {target}: {probe} is a file, not a writable folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f"{what} {target}: {probe} is not writable")
    return probe == target


def _earlier_files(
    target: Path,
    command: str,
    force: bool,
    what: str,
    results: bool = True,
) -> list[str]:
    """The files to replace in `target` (those the command wrote before); OutputError when it may not write."""
    if not check_makeable(target, what):
        return []
    manifest = _read_manifest(target)
    if manifest is not None and manifest["command"] != command:
        raise OutputError(
            f"{what} {target} holds the outputs of `verl-maxpo {manifest['command']}`; give {command} a folder "
            "of its own (one folder holds one command's outputs)"
        )
    earlier = manifest["files"] if manifest is not None else []
    foreign = _foreign(target, earlier)
    if foreign and manifest is None and not earlier and not force:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise OutputError(
            f"{what} {target} is not empty and was not written by {command} ({shown}); refusing to write there: "
            "choose another folder, or pass --force to write beside those files (they are never removed or overwritten)"
        )
    linked = sorted({PurePosixPath(f).parts[0] for f in earlier if through_link(target, f)})
    if linked:
        raise OutputError(
            f"{what} {target}: {', '.join(linked[:3])} is a symlink where {command} wrote a folder; it may lead to "
            "files that are not the command's, so nothing is replaced through it (even with --force): remove the "
            f"link or choose another {what}"
        )
    present = [f for f in earlier if os.path.lexists(target / f) and f != MANIFEST_NAME]
    if results and present and not force:
        shown = ", ".join(present[:3]) + (", ..." if len(present) > 3 else "")
        raise OutputError(
            f"{what} {target} holds earlier results of `verl-maxpo {command}` ({shown}); results are kept: pass "
            f"--force to replace them (only those files), or choose another {what}"
        )
    return earlier


@contextlib.contextmanager
def output_lock(target: str | os.PathLike[str]) -> Iterator[None]:
    """Exclusive flock on `target`'s parent folder (created if missing): writers of one target take turns."""
    parent = Path(os.path.abspath(target)).parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(parent, os.O_RDONLY)
    except OSError as err:
        raise OutputError(f"{target}: cannot create or open {parent} ({err.strerror or err})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


@contextlib.contextmanager
def _signals(defer: bool) -> Iterator[list[int]]:
    """SIGINT/SIGTERM raise Interrupted (defer=False), or are recorded in the yielded list (defer=True)."""
    pending: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield pending  # only the main thread may set handlers; elsewhere the defaults stay
        return

    def handler(signum: int, _frame: Any) -> None:
        if defer:
            pending.append(signum)
        else:
            raise Interrupted(signum)

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield pending
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _remove_stale_stages(folder: Path, prefix: str) -> None:
    """Stages of killed writers (SIGKILL, power loss): a live writer holds an flock on its stage."""
    with contextlib.suppress(OSError):
        for entry in folder.iterdir():
            if entry.name.startswith(prefix) and entry.is_dir() and not entry.is_symlink():
                fd = os.open(entry, os.O_RDONLY)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    continue  # someone is writing it
                finally:
                    os.close(fd)
                shutil.rmtree(entry, ignore_errors=True)


def _stage_files(stage: Path) -> list[str]:
    files = []
    for root, dirs, names in os.walk(stage):
        dirs.sort()
        for name in sorted(names):
            files.append((Path(root) / name).relative_to(stage).as_posix())
    return [f for f in files if f != MANIFEST_NAME]


def _write_manifest(folder: Path, command: str, files: list[str]) -> None:
    data = {"format": _FORMAT, "command": command, "files": sorted(set(files))}
    tmp = folder / f"{MANIFEST_NAME}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, folder / MANIFEST_NAME)


def _prune_empty_parents(path: Path, top: Path) -> None:
    parent = path.parent
    while parent != top and top in parent.parents:
        try:
            parent.rmdir()  # fails (kept) when anything is left in it
        except OSError:
            return
        parent = parent.parent


def _move_in(stage: Path, target: Path, command: str, earlier: list[str], what: str) -> list[int]:
    """Replace `earlier` (the command's previous files) in the existing folder `target` by the stage's files;
    returns the signals that arrived meanwhile."""
    new = _stage_files(stage)
    linked = [f for f in new if through_link(target, f)]
    if linked:
        raise OutputError(
            f"{what} {target}: {linked[0]} would be written through a symlinked folder; remove the link or choose "
            f"another {what}"
        )
    clashes = [f for f in new if f not in earlier and os.path.lexists(target / f)]
    if clashes:
        shown = ", ".join(clashes[:3]) + (", ..." if len(clashes) > 3 else "")
        raise OutputError(
            f"{what} {target}: would overwrite {shown}, which {command} did not write; move it away or choose "
            "another folder"
        )
    with _signals(defer=True) as pending:
        # The manifest lists old and new files while they move, so even a killed move leaves no unlisted file.
        _write_manifest(target, command, earlier + new)
        for name in new:
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            os.replace(stage / name, target / name)
        for name in sorted(set(earlier) - set(new)):
            path = target / name
            if path.is_symlink() or path.is_file():
                path.unlink()
                _prune_empty_parents(path, target)
        _write_manifest(target, command, new)
    return pending


@contextlib.contextmanager
def publish(
    out: str | os.PathLike[str],
    command: str,
    force: bool = False,
    *,
    what: str = "--out",
    results: bool = True,
) -> Iterator[Published]:
    """Stage the command's files, then publish them into `out` (see the module docstring for the policy).

    Args:
        out: the target folder (`.` is the current folder: files are moved into it, nothing else changes).
        command: the command's name, recorded in the manifest ("report", "variance", ...).
        force: allow a non-empty folder that holds no outputs of `command` (its files are left alone), and replace
            the command's own earlier outputs there.
        what: the option's name in messages ("--out", "--out-dir").
        results: see `check_out` (False: a rerun replaces the command's earlier files without `force`).

    Raises:
        OutputError: the folder cannot be used (nothing was written); KeyboardInterrupt/Interrupted on Ctrl-C or
        SIGTERM (the stage is removed, the target is as it was); any error of the `with` body (likewise).
    """
    from verl_maxpo.runs.command import started  # lazy: command imports this module

    target = check_out(out, command, force, what, results=results)
    pending: list[int] = []
    with _signals(defer=False):
        home, prefix = (
            (target, PARTIAL_PREFIX) if target.is_dir() else (target.parent, f".{target.name}{PARTIAL_PREFIX}")
        )
        try:
            home.mkdir(parents=True, exist_ok=True)
            _remove_stale_stages(home, prefix)
            stage = Path(tempfile.mkdtemp(prefix=prefix, dir=home))
        except OSError as err:
            raise OutputError(f"{what} {target}: cannot write there ({err.strerror or err})") from None
        stage_fd = os.open(stage, os.O_RDONLY)
        try:
            fcntl.flock(stage_fd, fcntl.LOCK_EX)  # marks the stage as live for _remove_stale_stages
            umask = os.umask(0)
            os.umask(umask)
            stage.chmod(0o777 & ~umask)  # mkdtemp makes it private; outputs are ordinary folders
            started()  # an OutputError from here on exits 1 under runs.command
            yield Published(stage, target)
            try:
                with output_lock(target):
                    # again: another writer may have won
                    earlier = _earlier_files(target, command, force, what, results)
                    if target.is_dir():
                        pending = _move_in(stage, target, command, earlier, what)
                    else:
                        _write_manifest(stage, command, _stage_files(stage))
                        os.rename(stage, target)
            except OSError as err:
                raise OutputError(f"{what} {target}: cannot publish the outputs ({err.strerror or err})") from None
        finally:
            os.close(stage_fd)
            shutil.rmtree(stage, ignore_errors=True)
    for signum in pending:  # held back while files moved; the outputs are complete, now act on it
        os.kill(os.getpid(), signum)


def check_separate(
    source: str | os.PathLike[str], out: str | os.PathLike[str], source_what: str, out_what: str
) -> None:
    """Refuse an output folder that is the source folder, inside it, or holds it (symlinks resolved)."""
    src, dst = Path(source).expanduser().resolve(), Path(out).expanduser().resolve()
    if src == dst or src in dst.parents or dst in src.parents:
        relation = "is" if src == dst else ("is inside" if src in dst.parents else "holds")
        raise OutputError(f"{out_what} {out} {relation} {source_what} {source}; write the output somewhere else")
