# Shared by recipes/*/run.sh (sourced, not run): checks the user block, builds verl's command for one recipe
# and lays out its output the way `verl-maxpo report` reads it:
#   $OUT_DIR/<run_name>/val/<step>.jsonl   validation generations (trainer.validation_data_dir)
#   $OUT_DIR/<run_name>/train_log.jsonl    verl's file logger (VERL_FILE_LOGGER_PATH)
#   $OUT_DIR/<run_name>/meta.json          estimator, k, n, seed, config name, validation n
#   $OUT_DIR/<run_name>/console.log        stdout + stderr of the run
# run_name: <task>_<estimator>[_k<K>]_seed<SEED>, e.g. gsm8k_maxpo_k4_seed1, gsm8k_grpo_seed1.
#
# A run folder belongs to one set of settings: meta.json is written by `python -m verl_maxpo.run_folder claim`,
# which accepts the folder again for identical settings (a resume) and refuses it when they differ (N, VAL_N, K,
# MODEL_PATH, data files, extra overrides), so two runs never mix. console.log is appended to, never truncated.
#
# Modes (environment): DRY_RUN=1 prints the command and touches nothing; VERL_MAXPO_PRINT_RUN_DIR=1 prints only
# the run folder (scripts/ab_launch.sh uses it to name every arm before starting any).

VM_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

_vm_die() {
  echo "error: $*" >&2
  exit 2
}

# Hydra parses override values, so paths must avoid its special characters (and spaces).
_vm_check_path() {
  local name=$1 value=$2
  [[ -n $value ]] || _vm_die "$name is empty"
  [[ $value =~ ^[A-Za-z0-9._/~+:@%-]+$ ]] ||
    _vm_die "$name='$value' has characters a Hydra override cannot carry unquoted (spaces, = , [ ] { } quotes)"
}

# A launcher number must be a plain decimal integer: bash reads a leading zero as octal (08 is an error, 010 is 8)
# and Hydra reads it as a string. Nine digits at most keeps bash arithmetic far from overflow.
_vm_check_int() {
  local name=$1 value=$2
  [[ $value =~ ^(0|[1-9][0-9]{0,8})$ ]] ||
    _vm_die "$name must be a plain decimal integer (digits only, no sign, no leading zero, at most 9 digits), got '$value'"
}

# SANDBOX_URL with its user:password@ part masked, for everything this launcher prints or writes.
_vm_redact_url() {
  local url=$1
  if [[ $url =~ ^([A-Za-z]+://)[^/@]*@(.*)$ ]]; then
    echo "${BASH_REMATCH[1]}***@${BASH_REMATCH[2]}"
  else
    echo "$url"
  fi
}

# Copies stdin to stdout with every occurrence of $1 (a credential) replaced by ***; cat when $1 is empty.
_vm_redact_stream() {
  local secret=$1 line
  if [[ -z $secret ]]; then
    cat
    return
  fi
  while IFS= read -r line || [[ -n $line ]]; do
    printf '%s\n' "${line//"$secret"/***}"
  done
}

_vm_recipes() {
  local f names=()
  for f in "$1"/*.yaml; do
    f=$(basename "$f" .yaml)
    [[ $f == *_common ]] || names+=("$f")
  done
  echo "${names[*]}"
}

# Keys the user block owns; overriding them on the command line would desynchronize meta.json and run names.
_vm_managed_key() {
  case $1 in
    data.train_files | data.val_files) echo "DATA_DIR" ;;
    actor_rollout_ref.model.path) echo "MODEL_PATH" ;;
    actor_rollout_ref.rollout.n) echo "N" ;;
    actor_rollout_ref.rollout.val_kwargs.n) echo "VAL_N" ;;
    algorithm.maxpo.k) echo "K" ;;
    seed) echo "SEED" ;;
    trainer.n_gpus_per_node) echo "NGPUS" ;;
    trainer.nnodes) echo "NNODES" ;;
    trainer.experiment_name | trainer.validation_data_dir) echo "OUT_DIR" ;;
    trainer.default_local_dir) echo "CKPT_DIR" ;;
    tiny_assets) echo "TINY_ASSETS" ;;
    reward.sandbox_fusion.url) echo "SANDBOX_URL" ;;
    reward.custom_reward_function.path | reward.custom_reward_function.name)
      # The code recipes choose the scorer (sandbox or guarded local execution); other tasks may set their own.
      [[ ${VM_CODE_EXEC:-0} == 1 ]] || return 1
      echo "SANDBOX_URL (or ALLOW_LOCAL_CODE_EXEC=1)"
      ;;
    *) return 1 ;;
  esac
}

# verl_maxpo_launch <recipe dir> <recipe name> [hydra overrides...]
# Reads MODEL_PATH DATA_DIR NGPUS NNODES K N VAL_N SEED OUT_DIR CKPT_DIR PYTHON, and optionally from the caller:
# VM_EXTRA_OVERRIDES (array: task-specific hydra overrides), VM_EXTRA_ENV (array: NAME=VALUE for the verl process),
# VM_TRAIN_FILE / VM_VAL_FILE (data outside $DATA_DIR/<task>/) and VM_PREPARE_HINT (how to make missing data).
verl_maxpo_launch() {
  local recipe_dir=$1
  shift
  local available
  available=$(_vm_recipes "$recipe_dir")
  [[ $# -ge 1 ]] || _vm_die "usage: bash $recipe_dir/run.sh <recipe> [hydra overrides...]; recipes: $available"
  local config=$1
  shift
  [[ $config =~ ^[A-Za-z0-9_]+$ && -f $recipe_dir/$config.yaml && $config != *_common ]] ||
    _vm_die "no recipe '$config' in $recipe_dir; recipes: $available"

  [[ $VM_ROOT != *[\'\\]* ]] || _vm_die "the repository path $VM_ROOT contains a quote or backslash; move it"
  local var
  for var in NGPUS NNODES K N VAL_N SEED; do
    _vm_check_int "$var" "${!var}"
  done
  for var in NGPUS NNODES N VAL_N K; do
    ((${!var} >= 1)) || _vm_die "$var must be at least 1"
  done
  for var in MODEL_PATH DATA_DIR OUT_DIR CKPT_DIR; do
    _vm_check_path "$var" "${!var}"
  done

  # The estimator comes from the recipe file unless the command line overrides it.
  local estimator arg key owner
  estimator=$(sed -n 's/^  adv_estimator: *\([A-Za-z0-9_]*\).*/\1/p' "$recipe_dir/$config.yaml" | head -n 1)
  for arg in "$@"; do
    key=${arg%%=*}
    key=${key#++}
    key=${key#+}
    key=${key#\~} # deletion: ~key
    [[ $key != hydra.searchpath ]] ||
      _vm_die "the launcher sets hydra.searchpath (recipes/shared must stay on it); drop the '$key' override"
    if owner=$(_vm_managed_key "$key"); then
      _vm_die "set $owner in the environment instead of overriding '$key' (it names the run and its meta.json)"
    fi
    [[ $key == algorithm.adv_estimator ]] && estimator=${arg#*=}
  done
  [[ $estimator =~ ^[A-Za-z0-9_]+$ ]] || _vm_die "no usable algorithm.adv_estimator in $config.yaml or the overrides"

  local task=${config%_*} uses_k=0
  case $estimator in
    maxpo)
      uses_k=1
      ((N >= K + 1)) || _vm_die "maxpo needs N >= K + 1 samples per prompt, got N=$N K=$K"
      ;;
    pkpo)
      uses_k=1
      ((K >= 2 && N >= K)) || _vm_die "pkpo needs K >= 2 and N >= K, got N=$N K=$K"
      ;;
    pkpo_loo)
      uses_k=1
      ((N >= K + 1)) || _vm_die "pkpo_loo needs N >= K + 1 samples per prompt, got N=$N K=$K"
      ;;
    *)
      ((N >= 2)) || _vm_die "$estimator compares samples within a group: N must be at least 2"
      ;;
  esac
  if ((uses_k)) && ! grep -q '^  maxpo:' "$recipe_dir/$config.yaml"; then
    _vm_die "$estimator reads algorithm.maxpo, which $config.yaml does not declare; start from ${task}_maxpo"
  fi

  [[ $OUT_DIR == /* ]] || OUT_DIR=$PWD/$OUT_DIR
  [[ $CKPT_DIR == /* || $CKPT_DIR == *://* ]] || CKPT_DIR=$PWD/$CKPT_DIR
  local run_name=${task}_${estimator}
  ((uses_k)) && run_name+=_k${K}
  run_name+=_seed${SEED}
  local run_dir=$OUT_DIR/$run_name

  if [[ ${VERL_MAXPO_PRINT_RUN_DIR:-0} == 1 ]]; then
    echo "$run_dir"
    return 0
  fi

  # A task whose data does not live at $DATA_DIR/<task>/ (the tiny CPU task) sets VM_TRAIN_FILE / VM_VAL_FILE.
  local train_file=${VM_TRAIN_FILE:-$DATA_DIR/$task/train.parquet} val_file=${VM_VAL_FILE:-$DATA_DIR/$task/test.parquet}
  local cmd=(
    "$PYTHON" -m verl.trainer.main_ppo
    --config-path "$recipe_dir" --config-name "$config"
    # The recipes find recipes/shared (the A/B base) relative to the repository root; this works from anywhere.
    "hydra.searchpath=['pkg://verl.trainer.config','file://$VM_ROOT/recipes/shared']"
    "data.train_files=$train_file"
    "data.val_files=$val_file"
    "actor_rollout_ref.model.path=$MODEL_PATH"
    "trainer.n_gpus_per_node=$NGPUS"
    "trainer.nnodes=$NNODES"
    "actor_rollout_ref.rollout.n=$N"
    "actor_rollout_ref.rollout.val_kwargs.n=$VAL_N"
    "seed=$SEED"
  )
  ((uses_k)) && cmd+=("algorithm.maxpo.k=$K")
  cmd+=(
    "trainer.experiment_name=$run_name"
    "trainer.validation_data_dir=$run_dir/val"
    "trainer.default_local_dir=$CKPT_DIR/$run_name"
    # Ray workers on other nodes do not inherit this shell's environment; the job's runtime_env reaches them all.
    "++ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH=$run_dir/train_log.jsonl"
  )
  cmd+=(${VM_EXTRA_OVERRIDES[@]+"${VM_EXTRA_OVERRIDES[@]}"} "$@")

  # Credentials inside SANDBOX_URL reach verl on its command line, but nothing this launcher prints or writes.
  local secret=""
  if [[ ${SANDBOX_URL:-} =~ ^[A-Za-z]+://([^/@]*)@ ]]; then
    secret=${BASH_REMATCH[1]}
  fi
  local shown
  shown=$(printf '%q ' "${cmd[@]}")
  shown=${shown% }
  [[ -n $secret ]] && shown=${shown//"$secret"/***}

  # Environment the verl process needs beyond the file logger (VM_EXTRA_ENV, e.g. VERL_PLATFORM=cpu for the tiny task).
  local env_shown="" pair
  for pair in ${VM_EXTRA_ENV[@]+"${VM_EXTRA_ENV[@]}"}; do
    env_shown+="$(printf '%q' "$pair") "
  done

  if [[ ${DRY_RUN:-0} == 1 ]]; then
    echo "# run dir: $run_dir"
    [[ -n $secret ]] && echo "# SANDBOX_URL credentials shown as ***; the real run passes them to verl"
    echo "${env_shown}VERL_FILE_LOGGER_PATH=$(printf '%q' "$run_dir/train_log.jsonl") $shown"
    return 0
  fi

  local file
  for file in "$train_file" "$val_file"; do
    if [[ $file != *://* && ! -f ${file/#\~/$HOME} ]]; then
      _vm_die "missing $file; ${VM_PREPARE_HINT:-prepare it with: python scripts/prepare_$task.py --out-dir $DATA_DIR/$task}"
    fi
  done

  # meta.json: every setting that changes results. A relaunch with the same settings resumes in the same folder;
  # one with other settings is refused by `claim` before anything starts.
  local claim=(
    -m verl_maxpo.run_folder claim "$run_dir"
    --adv-estimator "$estimator" --n "$N" --seed "$SEED" --config-name "$config" --val-n "$VAL_N"
    --setting "model=$MODEL_PATH" --setting "train_files=$train_file" --setting "val_files=$val_file"
  )
  ((uses_k)) && claim+=(--k "$K")
  [[ -n ${VM_CODE_EXEC_MODE:-} ]] && claim+=(--setting "code_exec=$VM_CODE_EXEC_MODE")
  local i=0 arg
  for arg in "$@"; do
    claim+=(--setting "override.$i=$arg")
    i=$((i + 1))
  done
  # The run_folder module of this checkout, whichever verl_maxpo the interpreter has installed.
  PYTHONPATH=$VM_ROOT${PYTHONPATH:+:$PYTHONPATH} "$PYTHON" "${claim[@]}" || exit 2

  for pair in ${VM_EXTRA_ENV[@]+"${VM_EXTRA_ENV[@]}"}; do
    export "${pair?}"
  done
  export VERL_FILE_LOGGER_PATH=$run_dir/train_log.jsonl
  echo "run dir: $run_dir"
  {
    echo "=== $(date -u +%Y-%m-%dT%H:%M:%SZ) launch ==="
    echo "${env_shown}$shown"
  } | tee -a "$run_dir/console.log"
  local status=0
  "${cmd[@]}" 2>&1 | _vm_redact_stream "$secret" | tee -a "$run_dir/console.log" || status=$? # pipefail: verl's status
  return "$status"
}
