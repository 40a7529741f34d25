#!/usr/bin/env bash
# A/B run: MaxPO and its GRPO twin on one task, with the same seed, data and prompt order, written side by side
# under one OUT_DIR; ends by printing the `verl-maxpo report` command that compares them.
#
#   bash scripts/ab_launch.sh gsm8k [hydra overrides for both arms...]      # tasks: gsm8k, math, code
#   K=8 SEED=2 OUT_DIR=/shared/ab bash scripts/ab_launch.sh code
#   DRY_RUN=1 bash scripts/ab_launch.sh math                                 # print both commands; run nothing
#
# The arms run one after the other by default. On two node sets (two Ray clusters), run one arm per cluster,
# from each head node, with the same OUT_DIR on shared storage:
#   cluster A:  ARMS=maxpo OUT_DIR=/shared/ab bash scripts/ab_launch.sh gsm8k
#   cluster B:  ARMS=grpo  OUT_DIR=/shared/ab bash scripts/ab_launch.sh gsm8k
# Settings (MODEL_PATH DATA_DIR NGPUS NNODES K N VAL_N SEED OUT_DIR CKPT_DIR, SANDBOX_URL for code) come from the
# environment and default as in recipes/<task>/run.sh, which this script calls for each arm.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
usage="usage: bash scripts/ab_launch.sh <gsm8k|math|code> [hydra overrides...]"
[[ $# -ge 1 ]] || {
  echo "$usage" >&2
  exit 2
}
task=$1
shift
case $task in
  gsm8k | math) runner=$ROOT/recipes/math/run.sh ;;
  code) runner=$ROOT/recipes/code/run.sh ;;
  *)
    echo "error: unknown task '$task'; $usage" >&2
    exit 2
    ;;
esac

ARMS=${ARMS:-maxpo grpo}
for arm in $ARMS; do
  [[ $arm == maxpo || $arm == grpo ]] || {
    echo "error: ARMS may hold maxpo and grpo, got '$arm'" >&2
    exit 2
  }
done

# Name (and validate) both arms before starting either, so a bad setting fails now, not after hours of training.
maxpo_dir=$(VERL_MAXPO_PRINT_RUN_DIR=1 bash "$runner" "${task}_maxpo" "$@")
grpo_dir=$(VERL_MAXPO_PRINT_RUN_DIR=1 bash "$runner" "${task}_grpo" "$@")

for arm in $ARMS; do
  echo "=== ${task}_${arm} ==="
  bash "$runner" "${task}_${arm}" "$@"
done

out_root=$(dirname "$maxpo_dir")
echo
echo "# compare the arms (run once both have finished):"
echo "verl-maxpo report $(printf '%q' "$maxpo_dir") $(printf '%q' "$grpo_dir") --out $(printf '%q' "$out_root/report")"
