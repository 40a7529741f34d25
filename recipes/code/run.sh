#!/usr/bin/env bash
# Run one code recipe with verl: MaxPO, its PKPO twin or its GRPO twin (recipes/code/code_*.yaml).
#
#   SANDBOX_URL=http://sandbox:8080/run_code bash recipes/code/run.sh code_maxpo [hydra overrides...]
#   SANDBOX_URL=http://sandbox:8080/run_code DRY_RUN=1 bash recipes/code/run.sh code_grpo   # print; run nothing
#
# The reward executes model-written programs, so this launcher refuses to start without SANDBOX_URL (a
# SandboxFusion run_code endpoint: https://github.com/bytedance/SandboxFusion). ALLOW_LOCAL_CODE_EXEC=1 runs
# them on the training nodes instead, through verl_maxpo.code_reward (prime_code in a child with memory / CPU /
# file-size limits and no inherited environment): not a sandbox; see "Security" in recipes/code/README.md.
#
# Data first: python scripts/prepare_code.py --out-dir "$DATA_DIR/code".
# Multi-node, the verl way: start a Ray cluster (`ray start --head` on one node, `ray start --address=<head>:6379`
# on the others), then run this on the head node with NNODES set; OUT_DIR must be on storage all nodes share.
set -euo pipefail

# ---- user-adjustable block: edit here or set in the environment ------------------------------------------------
# (numbers: set but empty is an error, not the default)
MODEL_PATH=${MODEL_PATH:-Qwen/Qwen2.5-Coder-1.5B-Instruct} # hub id or local checkpoint
DATA_DIR=${DATA_DIR:-$HOME/data/verl-maxpo}                # holds code/train.parquet and code/test.parquet
NGPUS=${NGPUS-8}                                           # GPUs per node
NNODES=${NNODES-1}                                         # nodes in the Ray cluster
K=${K-4}                                                   # MaxPO's K (max@K); GRPO ignores it
N=${N-16}                                                  # samples per prompt; MaxPO needs N >= K + 1
VAL_N=${VAL_N-16}                                          # samples per validation prompt
SEED=${SEED-1}                                             # same seed in both A/B arms = same prompt order
OUT_DIR=${OUT_DIR:-$PWD/outputs/verl-maxpo}                # one folder per run, read by `verl-maxpo report`
CKPT_DIR=${CKPT_DIR:-$OUT_DIR/checkpoints}                 # checkpoints (large); resume_mode=auto picks them up
SANDBOX_URL=${SANDBOX_URL:-}                               # SandboxFusion run_code endpoint (required, or:)
ALLOW_LOCAL_CODE_EXEC=${ALLOW_LOCAL_CODE_EXEC:-0}          # 1 = run programs on the training nodes (guarded)
PYTHON=${PYTHON:-python3}
# -----------------------------------------------------------------------------------------------------------------

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../launch_lib.sh
source "$HERE/../launch_lib.sh"

# Where model-written programs run: checked before anything else, in every mode (DRY_RUN included).
VM_CODE_EXEC=1
VM_EXTRA_OVERRIDES=()
if [[ -n $SANDBOX_URL ]]; then
  # Hydra must carry it unquoted: user:password may hold letters, digits and . _ ~ % + - (percent-encode the rest).
  [[ $SANDBOX_URL =~ ^https?://([A-Za-z0-9._~%+:-]+@)?[A-Za-z0-9._-]+(:[0-9]+)?(/[A-Za-z0-9._/%+~-]*)?$ ]] ||
    _vm_die "SANDBOX_URL must be an http(s) URL like http://host:8080/run_code (percent-encode other characters" \
      "of a user:password part), got '$(_vm_redact_url "$SANDBOX_URL")'"
  VM_EXTRA_OVERRIDES+=("reward.sandbox_fusion.url=$SANDBOX_URL")
  VM_CODE_EXEC_MODE=sandbox
elif [[ $ALLOW_LOCAL_CODE_EXEC == 1 ]]; then
  if [[ ${VERL_MAXPO_PRINT_RUN_DIR:-0} != 1 ]]; then
    cat >&2 <<'WARN'
############################################################################################################
WARNING: ALLOW_LOCAL_CODE_EXEC=1: model-written programs will run ON THE TRAINING NODES, as your user.
verl_maxpo.code_reward limits each one (memory 1 GiB address space, CPU time, file size, no core dumps, and a
process ceiling for non-root users) and gives it an empty environment (no WANDB_API_KEY, HF_TOKEN, AWS_*,
...), but this is NOT a sandbox. Still exposed to the programs:
  - network: any host this machine can reach (internal services, cloud metadata endpoints, the internet);
  - filesystem: every file your user can read (keys, checkpoints, data), and writes where your user can write;
  - processes: other processes of your user (signals); for root, no process-count limit; a program that starts
    its own session can outlive the scorer;
  - memory and CPU: bounded per program, but many run in parallel (reward workers);
  - its own score: a program can forge the result it reports.
Use a SandboxFusion server (SANDBOX_URL) on any machine you share or care about.
############################################################################################################
WARN
  fi
  VM_EXTRA_OVERRIDES+=(
    "reward.custom_reward_function.path=pkg://verl_maxpo.code_reward"
    "reward.custom_reward_function.name=compute_score"
  )
  VM_CODE_EXEC_MODE=local-guarded
else
  [[ $ALLOW_LOCAL_CODE_EXEC == 0 ]] ||
    _vm_die "ALLOW_LOCAL_CODE_EXEC must be 0 or 1, got '$ALLOW_LOCAL_CODE_EXEC'"
  cat >&2 <<'REFUSE'
error: the code reward executes model-written programs, and SANDBOX_URL is not set. Nothing was started.
  Run them in a sandbox: start a SandboxFusion server, e.g.
      docker run -d --rm -p 8080:8080 volcengine/sandbox-fusion:server-20241202   (newer tags: its README)
  (https://github.com/bytedance/SandboxFusion), then
      SANDBOX_URL=http://<host>:8080/run_code bash recipes/code/run.sh <recipe>
  Or, on a machine you can throw away, run them locally with limits (not a sandbox; see recipes/code/README.md,
  "Security"):
      ALLOW_LOCAL_CODE_EXEC=1 bash recipes/code/run.sh <recipe>
REFUSE
  exit 2
fi

verl_maxpo_launch "$HERE" "$@"
