#!/usr/bin/env bash
# Run one code recipe with verl: MaxPO or its GRPO twin (recipes/code/code_maxpo.yaml, code_grpo.yaml).
#
#   bash recipes/code/run.sh code_maxpo [hydra overrides...]
#   SANDBOX_URL=http://sandbox:8080/run_code bash recipes/code/run.sh code_grpo
#   DRY_RUN=1 bash recipes/code/run.sh code_maxpo          # print the exact command; run nothing
#
# WARNING: the reward executes model-written programs. Without SANDBOX_URL they run on the training nodes, in
# subprocesses of verl's reward workers (prime_code). On shared machines, point SANDBOX_URL at a SandboxFusion
# service (https://github.com/bytedance/SandboxFusion) or run inside a container you can throw away.
#
# Data first: python scripts/prepare_code.py --out-dir "$DATA_DIR/code".
# Multi-node, the verl way: start a Ray cluster (`ray start --head` on one node, `ray start --address=<head>:6379`
# on the others), then run this on the head node with NNODES set; OUT_DIR must be on storage all nodes share.
set -euo pipefail

# ---- user-adjustable block: edit here or set in the environment ------------------------------------------------
MODEL_PATH=${MODEL_PATH:-Qwen/Qwen2.5-Coder-1.5B-Instruct} # hub id or local checkpoint
DATA_DIR=${DATA_DIR:-$HOME/data/verl-maxpo}                # holds code/train.parquet and code/test.parquet
NGPUS=${NGPUS:-8}                                          # GPUs per node
NNODES=${NNODES:-1}                                        # nodes in the Ray cluster
K=${K:-4}                                                  # MaxPO's K (max@K); GRPO ignores it
N=${N:-16}                                                 # samples per prompt; MaxPO needs N >= K + 1
VAL_N=${VAL_N:-16}                                         # samples per validation prompt
SEED=${SEED:-1}                                            # same seed in both A/B arms = same prompt order
OUT_DIR=${OUT_DIR:-$PWD/outputs/verl-maxpo}                # one folder per run, read by `verl-maxpo report`
CKPT_DIR=${CKPT_DIR:-$OUT_DIR/checkpoints}                 # checkpoints (large); resume_mode=auto picks them up
SANDBOX_URL=${SANDBOX_URL:-}                               # SandboxFusion run_code endpoint; empty = local prime_code
PYTHON=${PYTHON:-python3}
# -----------------------------------------------------------------------------------------------------------------

VM_EXTRA_OVERRIDES=()
if [[ -n $SANDBOX_URL ]]; then
  [[ $SANDBOX_URL =~ ^https?://[A-Za-z0-9._:/@%+~-]+$ ]] || { echo "error: SANDBOX_URL must be an http(s) URL" >&2; exit 2; }
  VM_EXTRA_OVERRIDES+=("reward.sandbox_fusion.url=$SANDBOX_URL")
fi

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../launch_lib.sh
source "$HERE/../launch_lib.sh"
verl_maxpo_launch "$HERE" "$@"
