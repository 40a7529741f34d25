#!/usr/bin/env bash
# One run of a recipe in this folder (gsm8k or math) through verl, with its run folder under OUT_DIR:
#
#   bash recipes/math/run.sh gsm8k [estimator=<arm>] [hydra overrides...]     # arm: maxpo unless estimator=...
#   DRY_RUN=1 bash recipes/math/run.sh gsm8k estimator=grpo                   # print the exact command; run nothing
#
# Settings come from the environment, as for scripts/ab_launch.sh (`python -m verl_maxpo.launch.main --help`).
# All the logic is in verl_maxpo/launch/main.py (`verl-maxpo launch --one`); this wrapper only runs it from this checkout.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}
exec "${PYTHON:-python3}" -m verl_maxpo.launch.main --one --folder math "$@"
