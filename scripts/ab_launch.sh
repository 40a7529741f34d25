#!/usr/bin/env bash
# A/B(/C/D) run: several arms (advantage estimators) on one task, with the same seed, data and prompt order, each
# in its own folder under OUT_DIR; ends by printing the `verl-maxpo report` command (tiny: runs it).
#
#   bash scripts/ab_launch.sh gsm8k [hydra overrides for every arm...]      # tasks: gsm8k, math, code, tiny
#   OUT_DIR=runs bash scripts/ab_launch.sh tiny                              # verl's trainer on a CPU, minutes
#   ARMS="maxpo pkpo pkpo_loo grpo" K=8 SEED=2 OUT_DIR=/shared/ab bash scripts/ab_launch.sh math
#   DRY_RUN=1 bash scripts/ab_launch.sh math                                 # print every command; run nothing
#
# ARMS (default "maxpo grpo"): arms of verl_maxpo.core.table.ARMS (maxpo maxpo_top2 maxpo_ml pkpo pkpo_loo
# maxrl grpo); an estimator override on the command line is refused. On several node sets (one Ray cluster each),
# run a part of ARMS per cluster with the same ARMS and OUT_DIR on shared storage:
#   cluster A:  RUN_ARMS=maxpo OUT_DIR=/shared/ab bash scripts/ab_launch.sh gsm8k
#   cluster B:  RUN_ARMS=grpo  OUT_DIR=/shared/ab bash scripts/ab_launch.sh gsm8k
# Settings (environment): MODEL_PATH DATA_DIR NGPUS NNODES K N VAL_N SEED OUT_DIR CKPT_DIR TINY_ASSETS DRY_RUN
# VERBOSE PYTHON, SANDBOX_URL or ALLOW_LOCAL_CODE_EXEC for code; `python -m verl_maxpo.launch.main --help` lists them.
# All the logic is in verl_maxpo/launch/main.py (`verl-maxpo launch`); this wrapper only runs it from this checkout.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}
exec "${PYTHON:-python3}" -m verl_maxpo.launch.main "$@"
