#!/usr/bin/env bash
# A/B(/C/D) run: several advantage estimators on one task, with the same seed, data and prompt order, each in its
# own folder (named after its estimator) under one OUT_DIR; ends by printing the `verl-maxpo report` command.
#
#   bash scripts/ab_launch.sh gsm8k [hydra overrides for every arm...]      # tasks: gsm8k, math, code, tiny
#   OUT_DIR=runs bash scripts/ab_launch.sh tiny                              # verl's trainer on a CPU, minutes
#   ARMS="maxpo pkpo pkpo_loo grpo" K=8 SEED=2 OUT_DIR=/shared/ab bash scripts/ab_launch.sh math
#   DRY_RUN=1 bash scripts/ab_launch.sh math                                 # print every command; run nothing
#
# ARMS (default "maxpo grpo") lists the estimators to compare: maxpo, pkpo (PKPO's s^(loo-1)), pkpo_loo (PKPO's
# s^(loo), run from the pkpo recipe with the estimator overridden) and grpo. The estimator belongs to ARMS: an
# algorithm.adv_estimator override on this command line is refused (it would send every arm to one folder).
# The arms run one after the other. On several node sets (one Ray cluster each), run a part of ARMS per cluster,
# from each head node, with the same ARMS and OUT_DIR on shared storage; the report command names every arm:
#   cluster A:  RUN_ARMS=maxpo OUT_DIR=/shared/ab bash scripts/ab_launch.sh gsm8k
#   cluster B:  RUN_ARMS=grpo  OUT_DIR=/shared/ab bash scripts/ab_launch.sh gsm8k
# Settings (MODEL_PATH DATA_DIR NGPUS NNODES K N VAL_N SEED OUT_DIR CKPT_DIR; SANDBOX_URL or
# ALLOW_LOCAL_CODE_EXEC for code) come from the environment and default as in recipes/<dir>/run.sh, which this
# script calls for each arm.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# task -> recipe folder under recipes/ (its run.sh runs <task>_<arm recipe>). A new task is one line here.
declare -A TASK_DIRS=(
  [gsm8k]=math
  [math]=math
  [code]=code
  [tiny]=tiny
)
# arm -> "recipe suffix[ estimator override]"; the run folder is named after the effective estimator.
declare -A ARM_RECIPES=(
  [maxpo]=maxpo
  [pkpo]=pkpo
  [pkpo_loo]="pkpo algorithm.adv_estimator=pkpo_loo"
  [grpo]=grpo
)
KNOWN_ARMS="maxpo pkpo pkpo_loo grpo"

die() {
  echo "error: $*" >&2
  exit 2
}

tasks=$(printf '%s\n' "${!TASK_DIRS[@]}" | sort | paste -sd '|')
usage="usage: bash scripts/ab_launch.sh <$tasks> [hydra overrides...]"
[[ $# -ge 1 ]] || die "no task; $usage"
task=$1
shift
[[ -n ${TASK_DIRS[$task]+set} ]] || die "unknown task '$task'; $usage"
runner=$ROOT/recipes/${TASK_DIRS[$task]}/run.sh

arg=""
for arg in "$@"; do
  key=${arg%%=*}
  key=${key#++}
  key=${key#+}
  [[ $key != algorithm.adv_estimator ]] ||
    die "'$arg': the estimator of each arm comes from ARMS (e.g. ARMS=\"maxpo pkpo_loo\"), not from an override"
done

ARMS=${ARMS-maxpo grpo}
RUN_ARMS=${RUN_ARMS-$ARMS}
read -r -a arms <<<"$ARMS"
read -r -a run_arms <<<"$RUN_ARMS"
((${#arms[@]} >= 1)) || die "ARMS is empty; give one or more of: $KNOWN_ARMS"
((${#run_arms[@]} >= 1)) || die "RUN_ARMS is empty; give one or more of ARMS ($ARMS)"
declare -A seen=()
for arm in "${arms[@]}"; do
  [[ -n ${ARM_RECIPES[$arm]+set} ]] || die "unknown arm '$arm' in ARMS; arms: $KNOWN_ARMS"
  [[ -z ${seen[$arm]+set} ]] || die "arm '$arm' appears twice in ARMS (two arms would share one run folder)"
  seen[$arm]=1
done
for arm in "${run_arms[@]}"; do
  [[ -n ${seen[$arm]+set} ]] || die "RUN_ARMS holds '$arm', which is not in ARMS ($ARMS)"
done

# recipe name and extra overrides of one arm
arm_args() {
  local spec
  read -r -a spec <<<"${ARM_RECIPES[$1]}"
  echo "${task}_${spec[0]}" "${spec[@]:1}"
}

# Name (and validate) every arm before starting any, so a bad setting fails now, not after hours of training.
dirs=()
for arm in "${arms[@]}"; do
  read -r -a a <<<"$(arm_args "$arm")"
  dirs+=("$(VERL_MAXPO_PRINT_RUN_DIR=1 bash "$runner" "${a[@]}" "$@")")
done

for arm in "${run_arms[@]}"; do
  read -r -a a <<<"$(arm_args "$arm")"
  echo "=== ${task}_${arm} ==="
  bash "$runner" "${a[@]}" "$@"
done

out_root=$(dirname "${dirs[0]}")
report=(verl-maxpo report "${dirs[@]}" --out "$out_root/report")
echo
if [[ $task == tiny && ${DRY_RUN:-0} != 1 && $RUN_ARMS == "$ARMS" ]]; then
  # The CPU task finishes in minutes, so its report is made right away.
  echo "# the report over every arm:"
  printf '%q' "${report[0]}"
  printf ' %q' "${report[@]:1}"
  echo
  "${PYTHON:-python3}" -m verl_maxpo "${report[@]:1}"
else
  echo "# compare the arms (run once all have finished):"
  printf '%q' "${report[0]}"
  printf ' %q' "${report[@]:1}"
  echo
fi
