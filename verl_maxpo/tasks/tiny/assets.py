"""`verl-maxpo tiny-assets --out DIR`: a tiny model and task for running verl's trainer on a CPU, built locally.

DIR/model/        a 2-layer Llama (about 0.1M parameters) and its character-level tokenizer, in Hugging Face format,
                  briefly warm-started on the task so the first rewards are neither all 0 nor all 1;
DIR/data/         train.parquet and test.parquet in verl's RL dataset format (data_source, prompt as chat messages,
                  reward_model.ground_truth, extra_info);
DIR/reward.py     the partial-credit reward (`compute_score`) for reward.custom_reward_function.path;
DIR/manifest.json what was built and with which options (a later call with the same options reuses DIR, once
                  `validate_assets` has checked what it reuses).
DIR is published by `verl_maxpo.runs.outputs` (built in a hidden stage, then moved in: Ctrl-C leaves DIR as it was).
The task and policy are `verl_maxpo.tasks.addition`'s (the demo's). Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from verl_maxpo.runs import command, strict_json
from verl_maxpo.runs.args import MAX_PROMPTS, MAX_SEED, int_at_least
from verl_maxpo.runs.outputs import OutputError, check_out, owned_files, publish

DATA_SOURCE = "verl_maxpo/tiny_addition"
MANIFEST = "manifest.json"
COMMAND = "tiny-assets"
FILES = ("model/config.json", "model/tokenizer.json", "data/train.parquet", "data/test.parquet", "reward.py")
PARQUET_COLUMNS = ("data_source", "prompt", "ability", "reward_model", "extra_info")
# RLHFDataset applies the tokenizer's chat template: the prompt is just <s> then the question, as the demo's task.
CHAT_TEMPLATE = "{{ bos_token }}{% for m in messages %}{{ m['content'] }}{% endfor %}"
# Upper bounds: a tiny task for a CPU smoke run; larger values only take memory and time before failing.
MAX_WARM_STEPS = 100_000


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="verl-maxpo tiny-assets", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output folder (created; reused if it holds the same tiny assets)")
    p.add_argument(
        "--force", action="store_true",
        help="replace earlier assets in --out (damaged, or built with other options); write into a non-empty folder",
    )  # fmt: skip
    p.add_argument("--digits", type=int, choices=range(1, 7), default=2, metavar="{1..6}", help="operand digits")
    p.add_argument(
        "--train-prompts", type=int_at_least(1, MAX_PROMPTS), default=64, help=f"training prompts, 1..{MAX_PROMPTS}"
    )
    p.add_argument(
        "--test-prompts", type=int_at_least(1, MAX_PROMPTS), default=16,
        help=f"held-out validation prompts, 1..{MAX_PROMPTS} (and at most half the operand pairs)",
    )  # fmt: skip
    p.add_argument(
        "--warm-steps", type=int_at_least(0, MAX_WARM_STEPS), default=150,
        help=f"supervised warm-start steps, 0..{MAX_WARM_STEPS}",
    )  # fmt: skip
    p.add_argument(
        "--seed", type=int_at_least(0, MAX_SEED), default=0, help=f"seed for data, init and warm start, 0..{MAX_SEED}"
    )
    return p


def options(args: argparse.Namespace) -> dict[str, Any]:
    keys = ("digits", "train_prompts", "test_prompts", "warm_steps", "seed")
    return {"format": 1, **{k: getattr(args, k) for k in keys}}


def _rows(task: Any, pairs: Any, split: str) -> list[dict[str, Any]]:
    prompts, answers = task.prompt_texts(pairs), task.answer_texts(pairs)
    return [
        {
            "data_source": DATA_SOURCE,
            "prompt": [{"role": "user", "content": q}],
            "ability": "math",
            "reward_model": {"style": "rule", "ground_truth": a},
            "extra_info": {"split": split, "index": i, "question": q, "answer": a},
        }
        for i, (q, a) in enumerate(zip(prompts, answers, strict=True))
    ]


def build(out: Path, opts: dict[str, Any]) -> dict[str, Any]:
    """Write every asset into `out` (an empty folder); returns the manifest."""
    import numpy as np
    import pandas as pd
    import torch

    from verl_maxpo.tasks.addition import AdditionTask, build_policy, warm_start

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    task = AdditionTask(opts["digits"], opts["test_prompts"], opts["seed"])
    model = build_policy(task, opts["seed"], torch.device("cpu"))
    loss = warm_start(model, task, steps=opts["warm_steps"], seed=opts["seed"]).loss
    model.generation_config.eos_token_id = task.eos
    model.generation_config.pad_token_id = task.pad
    model.save_pretrained(out / "model")
    task.tokenizer.chat_template = CHAT_TEMPLATE
    task.tokenizer.save_pretrained(out / "model")

    train = task.train_pairs(np.random.default_rng([opts["seed"], 3]), opts["train_prompts"])
    (out / "data").mkdir()
    pd.DataFrame(_rows(task, train, "train")).to_parquet(out / "data/train.parquet")
    pd.DataFrame(_rows(task, task.val_pairs, "test")).to_parquet(out / "data/test.parquet")
    shutil.copyfile(Path(__file__).with_name("reward.py"), out / "reward.py")
    manifest = {
        "options": opts,
        "data_source": DATA_SOURCE,
        "response_length": task.response_len,
        "warm_start_loss": round(loss, 4),
        "build_seconds": round(time.perf_counter() - t0, 2),
    }
    (out / MANIFEST).write_text(strict_json.dumps(manifest, indent=2) + "\n")
    return manifest


def existing_manifest(out: Path) -> dict[str, Any] | None:
    """The manifest.json of tiny assets in `out`, None when `out` holds none (files missing or no manifest)."""
    manifest = strict_json.load_object(out / MANIFEST)
    if manifest is None or not all((out / f).is_file() for f in FILES):
        return None
    return manifest


def validate_assets(folder: str | os.PathLike[str], files: tuple[str, ...] = FILES) -> str | None:
    """Why the tiny assets in `folder` cannot be used, or None when they can: every file of `files` is present,
    the model config and tokenizer load, and both parquet files read with verl's RL columns and at least one row.
    The CPU preflight should call this too before it hands the folder to verl (smol-assets reuses it)."""
    import pyarrow.parquet as pq

    root = Path(folder)
    missing = [f for f in files if not (root / f).is_file()]
    if missing:
        return f"missing {', '.join(missing)}"
    try:
        from transformers import AutoConfig, PreTrainedTokenizerFast

        AutoConfig.from_pretrained(root / "model")
        PreTrainedTokenizerFast(tokenizer_file=str(root / "model" / "tokenizer.json"))
    except Exception as err:  # noqa: BLE001 - transformers raises many types for a bad config; name the file
        return f"model in {root / 'model'} does not load ({type(err).__name__}: {str(err)[:200]})"
    for name in ("data/train.parquet", "data/test.parquet"):
        try:
            parquet = pq.ParquetFile(root / name)
            columns = set(parquet.schema_arrow.names)
            rows = parquet.metadata.num_rows
        except Exception as err:  # noqa: BLE001 - pyarrow's errors (ArrowInvalid, OSError, ...) all mean unreadable
            return f"{root / name} is not a readable parquet file ({type(err).__name__}: {str(err)[:200]})"
        lacking = [c for c in PARQUET_COLUMNS if c not in columns]
        if lacking:
            return f"{root / name} lacks the columns {', '.join(lacking)}"
        if rows < 1:
            return f"{root / name} has no rows"
    return None


def main(argv: list[str] | None = None) -> int:
    """Entry point of `verl-maxpo tiny-assets` (runs/command.py owns the exit status)."""
    return command.run(COMMAND, _main, argv)


def _main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    opts = options(args)
    room = 10 ** (2 * args.digits) // 2  # AdditionTask holds out distinct pairs from at most half of all pairs
    if args.test_prompts > room:
        raise command.UsageError(
            f"--test-prompts {args.test_prompts} is too many for {args.digits}-digit operands (at most {room})"
        )
    # Earlier assets are not replaced here without --force: reused when they match, else refused below.
    out = check_out(args.out, COMMAND, args.force, results=False)
    earlier = [f for f in owned_files(out, COMMAND) if os.path.lexists(out / f)]
    if earlier:
        manifest = existing_manifest(out)
        if manifest is None:
            problem = "incomplete tiny assets (manifest.json or an asset is missing)"
        elif manifest.get("options") != opts:
            problem = f"tiny assets built with other options {manifest.get('options')}"
        else:
            problem = validate_assets(out)
            if problem is None:
                print(f"tiny-assets: reusing {out} (built with the same options)")
                return 0
            problem = f"damaged tiny assets ({problem})"
        if not args.force:
            raise OutputError(
                f"--out {out} holds {problem}; pass --force to replace them (only the "
                "command's files), or choose another --out"
            )
    # An OSError while building exits 1 with nothing half-written (the stage is removed).
    with publish(out, COMMAND, args.force) as staged:
        manifest = build(staged.stage, opts)
    print(f"tiny-assets: wrote {out} in {manifest['build_seconds']} s (warm-start loss {manifest['warm_start_loss']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
