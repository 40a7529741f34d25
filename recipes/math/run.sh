#!/usr/bin/env bash
# Run one math recipe with verl: GSM8K or MATH, MaxPO or its GRPO twin (recipes/math/*_maxpo.yaml, *_grpo.yaml).
#
#   bash recipes/math/run.sh gsm8k_maxpo [hydra overrides...]
#   K=8 N=16 SEED=2 bash recipes/math/run.sh math_maxpo trainer.total_epochs=1
#   DRY_RUN=1 bash recipes/math/run.sh gsm8k_grpo          # print the exact command; run nothing
#
# Data first: python scripts/prepare_gsm8k.py (or prepare_math.py) --out-dir "$DATA_DIR/gsm8k" (or /math).
# Multi-node, the verl way: start a Ray cluster (`ray start --head` on one node, `ray start --address=<head>:6379`
# on the others), then run this on the head node with NNODES set; OUT_DIR must be on storage all nodes share.
# scripts/ab_launch.sh runs a recipe and its twin back to back and prints the report command.
set -euo pipefail

# ---- user-adjustable block: edit here or set in the environment ------------------------------------------------
# (numbers: set but empty is an error, not the default)
MODEL_PATH=${MODEL_PATH:-Qwen/Qwen2.5-1.5B-Instruct} # hub id or local checkpoint
DATA_DIR=${DATA_DIR:-$HOME/data/verl-maxpo}          # holds <task>/train.parquet and <task>/test.parquet
NGPUS=${NGPUS-8}                                     # GPUs per node
NNODES=${NNODES-1}                                   # nodes in the Ray cluster
K=${K-4}                                             # MaxPO's K (max@K); GRPO ignores it
N=${N-16}                                            # samples per prompt; MaxPO needs N >= K + 1
VAL_N=${VAL_N-16}                                    # samples per validation prompt: pass@k measurable up to k = VAL_N
SEED=${SEED-1}                                       # same seed in both A/B arms = same prompts in the same order
OUT_DIR=${OUT_DIR:-$PWD/outputs/verl-maxpo}          # one folder per run, read by `verl-maxpo report`
CKPT_DIR=${CKPT_DIR:-$OUT_DIR/checkpoints}           # checkpoints (large); resume_mode=auto picks them up
PYTHON=${PYTHON:-python3}
# -----------------------------------------------------------------------------------------------------------------

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../launch_lib.sh
source "$HERE/../launch_lib.sh"
verl_maxpo_launch "$HERE" "$@"
