#!/usr/bin/env bash
# Run one tiny recipe with verl's own trainer on a CPU (recipes/tiny/tiny_{maxpo,grpo,pkpo}.yaml): a 0.1M-parameter
# Llama on 2-digit addition, 2 training steps and validation in about 1.5 minutes on 2 cores (docs/cpu-backend.md).
#
#   bash recipes/tiny/run.sh tiny_maxpo [hydra overrides...]
#   OUT_DIR=runs bash scripts/ab_launch.sh tiny            # every arm, then the report
#   DRY_RUN=1 bash recipes/tiny/run.sh tiny_grpo           # print the exact command; run nothing
#
# The tiny model, tokenizer, data and reward are built locally on first use (`verl-maxpo tiny-assets`, ~10 s, no
# downloads) into TINY_ASSETS, then `python -m verl_maxpo.cpu.preflight` checks that Ray can place verl's workers,
# so a run fails with a message instead of waiting forever.
set -euo pipefail

# ---- user-adjustable block: edit here or set in the environment ------------------------------------------------
# (numbers: set but empty is an error, not the default)
OUT_DIR=${OUT_DIR:-$PWD/outputs/verl-maxpo} # one folder per run, read by `verl-maxpo report`
TINY_ASSETS=${TINY_ASSETS:-$OUT_DIR/tiny_assets} # model/, data/, reward.py (built here when missing)
K=${K-2}                                         # max@K; maxpo/pkpo_loo need N >= K + 1
N=${N-4}                                         # samples per training prompt
VAL_N=${VAL_N-4}                                 # samples per validation prompt
SEED=${SEED-1}                                   # same seed in every arm = same prompts in the same order
CKPT_DIR=${CKPT_DIR:-$OUT_DIR/checkpoints}       # verl's checkpoint folder (the tiny recipe saves none)
PYTHON=${PYTHON:-python3}
# -----------------------------------------------------------------------------------------------------------------
NGPUS=1  # one FSDP rank, on a fake Ray GPU slot (the CPU platform uses gloo)
NNODES=1

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../launch_lib.sh
source "$HERE/../launch_lib.sh"

_vm_check_path TINY_ASSETS "$TINY_ASSETS"
[[ $TINY_ASSETS == /* ]] || TINY_ASSETS=$PWD/$TINY_ASSETS
MODEL_PATH=$TINY_ASSETS/model
DATA_DIR=$TINY_ASSETS/data
VM_TRAIN_FILE=$DATA_DIR/train.parquet
VM_VAL_FILE=$DATA_DIR/test.parquet
VM_PREPARE_HINT="build it with: verl-maxpo tiny-assets --out $TINY_ASSETS"
VM_EXTRA_OVERRIDES=("tiny_assets=$TINY_ASSETS")
# VERL_PLATFORM=cpu selects verl-maxpo's CPU platform; one BLAS thread per process keeps ~17 processes from
# fighting over 2 cores; RAY_ADDRESS=local starts a private Ray cluster instead of joining one on this machine.
VM_EXTRA_ENV=(VERL_PLATFORM=cpu OMP_NUM_THREADS=1 RAY_ADDRESS=local)

if [[ ${DRY_RUN:-0} != 1 && ${VERL_MAXPO_PRINT_RUN_DIR:-0} != 1 ]]; then
  # The run needs this checkout's verl_maxpo (the CPU backend), whichever one the interpreter has installed.
  "$PYTHON" -m verl_maxpo tiny-assets --out "$TINY_ASSETS" || exit 2
  "$PYTHON" -m verl_maxpo.cpu.preflight --assets "$TINY_ASSETS" || exit 2
fi
verl_maxpo_launch "$HERE" "$@"
