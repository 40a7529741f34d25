"""`python -m verl_maxpo.tools.smol_bench {calibrate,rollout} --assets DIR`: measurements of the smol task on this CPU.

calibrate  samples the test prompts n times each from the converted SmolLM2 (batched HF sampling, temperature 1,
           bf16) and prints the share of parseable replies, pass@1, pass@k (unbiased, k <= n), the partial-credit
           mean, per problem kind. Used to pick the task mix (starting pass@1 3-15%, pass@8 >= 3x pass@1).
rollout    generated tokens/s of the hf_cpu rollout's batched sampler against plain HF `generate`, same model,
           batch, prompt and response lengths (EOS off, so every row makes the same number of tokens), same
           process, alternating; in bf16 and fp32, with --threads torch threads.
Both print the machine's load average with the figures (the machine may be shared). Nothing here is a test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from verl_maxpo.runs import command
from verl_maxpo.runs.args import int_at_least


def _load(assets: Path, dtype: str) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(assets / "model")
    model = AutoModelForCausalLM.from_pretrained(assets / "model", dtype=getattr(torch, dtype),
                                                 attn_implementation="eager").eval()  # fmt: skip
    return tokenizer, model


def _prompts(assets: Path, tokenizer: Any, count: int) -> tuple[list[list[int]], list[str], list[str]]:
    import pandas as pd

    rows = pd.read_parquet(assets / "data/test.parquet").head(count)
    ids = [tokenizer.apply_chat_template(list(p), add_generation_prompt=True, tokenize=True) for p in rows.prompt]
    ids = [list(i["input_ids"]) if isinstance(i, dict) or hasattr(i, "keys") else list(i) for i in ids]
    truths = [r["ground_truth"] for r in rows.reward_model]
    kinds = [e["kind"] for e in rows.extra_info]
    return ids, truths, kinds


def pass_at_k(successes: int, n: int, k: int) -> float:
    """Unbiased pass@k from `successes` of `n` samples (1 - C(n-c, k) / C(n, k))."""
    from math import comb

    return 1.0 - comb(n - successes, k) / comb(n, k)


def calibrate(args: argparse.Namespace) -> dict[str, Any]:
    from verl_maxpo.cpu.rollout import HFCPUServer
    from verl_maxpo.tasks.smol.reward import compute_score, parse_answer, partial_credit

    tokenizer, _ = _load(args.assets, "bfloat16")
    server = HFCPUServer({"prompt_length": 256, "response_length": args.response_length, "seed": args.seed,
                          "dtype": "bfloat16"}, {"path": str(args.assets / "model")}, 0)  # fmt: skip
    ids, truths, kinds = _prompts(args.assets, tokenizer, args.prompts)
    t0 = time.perf_counter()
    samples: list[list[str]] = [[] for _ in ids]
    for start in range(0, len(ids), args.batch_prompts):  # bounded batches: logits memory grows with rows
        chunk = list(range(start, min(start + args.batch_prompts, len(ids))))
        rows = [ids[i] for i in chunk for _ in range(args.n)]
        out = server.sample_batch(rows, [args.response_length] * len(rows), (1.0, -1, 1.0))
        for j, (tokens, _) in enumerate(out):
            samples[chunk[j // args.n]].append(tokenizer.decode(tokens, skip_special_tokens=True))
    seconds = time.perf_counter() - t0
    per_kind: dict[str, dict[str, list[float]]] = {}
    for texts, truth, kind in zip(samples, truths, kinds, strict=True):
        wins = sum(compute_score("", t, truth) for t in texts)
        stats = per_kind.setdefault(kind, {"format": [], "partial": [], **{f"pass@{k}": [] for k in args.k}})
        stats["format"].append(sum(parse_answer(t) is not None for t in texts) / args.n)
        stats["partial"].append(sum(partial_credit("", t, truth) for t in texts) / args.n)
        for k in args.k:
            stats[f"pass@{k}"].append(pass_at_k(int(wins), args.n, k))
    every = {key: [v for s in per_kind.values() for v in s[key]] for key in next(iter(per_kind.values()))}
    table = {kind: {key: round(statistics.fmean(v), 4) for key, v in s.items()} for kind, s in
             [("all", every), *per_kind.items()]}  # fmt: skip
    return {"prompts": len(ids), "n": args.n, "response_length": args.response_length, "seconds": round(seconds, 1),
            "table": table, "example": samples[0][:2]}  # fmt: skip


def rollout(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from verl_maxpo.cpu.rollout import HFCPUServer

    torch.set_num_threads(args.threads)
    results: dict[str, Any] = {"threads": args.threads, "batch": args.batch, "response_length": args.response_length}
    for dtype in args.dtypes:
        tokenizer, model = _load(args.assets, dtype)
        server = HFCPUServer({"prompt_length": 256, "response_length": args.response_length, "seed": 0,
                              "dtype": dtype}, {"path": str(args.assets / "model")}, 0)  # fmt: skip
        server.eos_ids = set()  # fixed lengths: every row makes response_length tokens
        ids, _, _ = _prompts(args.assets, tokenizer, args.batch)
        ids = (ids * args.batch)[: args.batch]
        width = max(len(i) for i in ids)
        padded = torch.tensor([[tokenizer.pad_token_id] * (width - len(i)) + i for i in ids])
        mask = torch.tensor([[0] * (width - len(i)) + [1] * len(i) for i in ids])
        tokens = args.batch * args.response_length
        times: dict[str, list[float]] = {"hf_cpu": [], "generate": []}
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            server.sample_batch(ids, [args.response_length] * len(ids), (1.0, -1, 1.0))
            times["hf_cpu"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            with torch.no_grad():
                model.generate(input_ids=padded, attention_mask=mask, do_sample=True, temperature=1.0, top_k=0,
                               top_p=1.0, max_new_tokens=args.response_length, min_new_tokens=args.response_length,
                               pad_token_id=tokenizer.pad_token_id)  # fmt: skip
            times["generate"].append(time.perf_counter() - t0)
        rates = {name: round(tokens / statistics.median(t), 1) for name, t in times.items()}
        results[dtype] = {"tokens_per_s": rates, "ratio": round(rates["hf_cpu"] / rates["generate"], 3),
                          "seconds": {k: [round(x, 2) for x in v] for k, v in times.items()}}  # fmt: skip
        del model, server
    return results


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m verl_maxpo.tools.smol_bench", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="mode", required=True)
    cal = sub.add_parser("calibrate", help="pass@k of the converted model on the test prompts")
    cal.add_argument("--prompts", type=int_at_least(1), default=32)
    cal.add_argument("--n", type=int_at_least(1), default=16)
    cal.add_argument("--k", type=int_at_least(1), nargs="+", default=[1, 4, 8])
    cal.add_argument("--batch-prompts", type=int_at_least(1), default=16, help="prompts per sampling batch")
    cal.add_argument("--seed", type=int_at_least(0), default=0)
    rol = sub.add_parser("rollout", help="hf_cpu sampler against HF generate, tokens/s")
    rol.add_argument("--batch", type=int_at_least(1), default=64)
    rol.add_argument("--repeats", type=int_at_least(1), default=3)
    rol.add_argument("--threads", type=int_at_least(1), default=2)
    rol.add_argument("--dtypes", nargs="+", choices=["bfloat16", "float32"], default=["bfloat16", "float32"])
    for sp in (cal, rol):
        sp.add_argument("--assets", type=Path, default=Path("smol_assets"), help="a `verl-maxpo smol-assets` folder")
        sp.add_argument("--response-length", type=int_at_least(1), default=48)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m verl_maxpo.tools.smol_bench` (runs/command.py owns the exit status)."""
    return command.run("smol_bench", _main, argv, prog="smol_bench")


def _main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from verl_maxpo.tasks.smol.assets import validate_assets

    if (problem := validate_assets(args.assets)) is not None:
        raise command.UsageError(f"--assets {args.assets}: {problem} (build it with verl-maxpo smol-assets)")
    if args.mode == "calibrate" and max(args.k) > args.n:
        raise command.UsageError(f"--k {max(args.k)} needs --n >= {max(args.k)}")
    load_before = os.getloadavg()
    result = calibrate(args) if args.mode == "calibrate" else rollout(args)
    result["loadavg_before_after"] = [round(x, 2) for x in (*load_before, *os.getloadavg())]
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
