#!/usr/bin/env bash
# Runs a sam_jax config on a Cloud TPU VM (pod): create, set up, train, follow, stop, delete.
# See launch/README.md. Every worker runs the same command; JAX finds the other workers
# itself (sam_jax.main's --multihost defaults to auto).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO_ROOT
readonly PROGRAM="launch/tpu_vm.sh"
# shellcheck source=launch/lib.sh
source "${REPO_ROOT}/launch/lib.sh"
readonly ACTIONS="create setup train logs stop delete"
readonly REMOTE_DIR="sam_jax"   # Checkout on each worker, relative to the home directory.
readonly REMOTE_VENV="venv"
readonly REMOTE_LOG="train.log"
readonly REMOTE_PID="train.pid"

usage() {
  cat <<EOF
Usage: launch/tpu_vm.sh [--dry-run] ACTION... [OPTIONS] [-- MAIN_FLAGS...]

Before create or train, the preflight compiles the run for the slice here (needs libtpu,
not a TPU: pip install -e '.[tpu-compile]') and stops if it does not fit:
  python -m sam_jax.preflight --config --topology=ACCELERATOR_TYPE [--config.* MAIN_FLAGS]

Actions (run in the order given):
  create   gcloud compute tpus tpu-vm create
  setup    on every worker: git clone/fetch --repo at --ref, venv, pip install -e .[tpu]
  train    on every worker: python -m sam_jax.main --config --workdir MAIN_FLAGS, in the
           background (log ~/${REMOTE_LOG}, process group id ~/${REMOTE_PID})
  logs     follow the log of --log-worker
  stop     end the training run on every worker
  delete   gcloud compute tpus tpu-vm delete

Options:
  --name NAME              TPU VM name (default \$TPU_NAME)                     [all]
  --zone ZONE              e.g. us-central2-b (default \$TPU_ZONE)              [all]
  --project PROJECT        default: gcloud's configured project                 [all]
  --accelerator-type TYPE  default v4-32; the slice the preflight compiles for   [create, train]
  --version VERSION        TPU VM runtime, default tpu-ubuntu2204-base          [create]
  --spot                   use spot capacity                                    [create]
  --repo URL               git URL of this repository                           [setup]
  --ref REF                branch, tag or commit, default main                  [setup]
  --python EXE             Python >= 3.11 for the venv, default python3.11      [setup]
  --config FILE            config path inside the repository             [create, train]
  --skip-preflight         create or train without compiling the run here first [create, train]
  --local-python EXE       Python with sam_jax[tpu-compile] here, default python3 [create, train]
  --workdir gs://...       checkpoints and summaries, shared by all workers     [train]
  --tfds-data-dir gs://... TFDS data dir (TFDS_DATA_DIR), default TFDS's own    [train]
  --log-worker N           worker whose log 'logs' follows, default 0           [logs]
  --dry-run                print the commands instead of running them
  -h, --help               this message
After --, flags for sam_jax.main, e.g. --config.sam.rho=0.
EOF
}

dry_run=0
skip_preflight=0
local_python="python3"
actions=()
name="${TPU_NAME:-}"
zone="${TPU_ZONE:-}"
project=""
accelerator_type="v4-32"
version="tpu-ubuntu2204-base"
spot=0
repo=""
ref="main"
python="python3.11"
config=""
workdir=""
tfds_data_dir=""
log_worker=0
main_flags=()

while [[ $# -gt 0 ]]; do
  case "$1" in
    create | setup | train | logs | stop | delete) actions+=("$1"); shift ;;
    --dry-run) dry_run=1; shift ;;
    --spot) spot=1; shift ;;
    --skip-preflight) skip_preflight=1; shift ;;
    -h | --help) usage; exit 0 ;;
    --*=*) set -- "${1%%=*}" "${1#*=}" "${@:2}" ;;  # --option=value -> --option value
    --name | --zone | --project | --accelerator-type | --version | --repo | --ref | --python | \
      --config | --workdir | --tfds-data-dir | --log-worker | --local-python)
      need_value "$@"
      option="${1#--}"
      printf -v "${option//-/_}" '%s' "$2"
      shift 2
      ;;
    --) shift; main_flags=("$@"); break ;;
    *) die "unknown argument '$1' (actions: ${ACTIONS})." ;;
  esac
done

has_action() {
  [[ " ${actions[*]} " == *" $1 "* ]]
}

((${#actions[@]})) || die "no action given; choose from: ${ACTIONS}."
[[ -n "$name" ]] || die "--name (or \$TPU_NAME) is required."
[[ -n "$zone" ]] || die "--zone (or \$TPU_ZONE) is required."
if has_action setup; then
  [[ -n "$repo" ]] || die "setup needs --repo (the git URL of this repository)."
fi
if has_action train; then
  [[ -n "$config" ]] || die "train needs --config, e.g. configs/vit_b16.py."
  [[ -f "$REPO_ROOT/${config%%:*}" ]] || die "--config: no file ${config%%:*} in ${REPO_ROOT}."
  [[ "$workdir" == gs://* ]] ||
    die "train needs --workdir gs://BUCKET/DIR (every worker writes to it), got '${workdir}'."
fi
if ((${#main_flags[@]})) && ! has_action train; then
  die "flags after -- are for sam_jax.main and need the train action."
fi
[[ "$log_worker" =~ ^[0-9]+$ ]] || die "--log-worker must be a worker index, got '${log_worker}'."
preflight=0
if ((!skip_preflight)) && { has_action create || has_action train; }; then
  preflight=1
  [[ -n "$config" ]] ||
    die "create and train first run the preflight, which needs --config (or --skip-preflight)."
  [[ -f "$REPO_ROOT/${config%%:*}" ]] || die "--config: no file ${config%%:*} in ${REPO_ROOT}."
fi

# Compiles the run for the slice here; stops unless it fits (sam_jax/preflight.py).
run_preflight() {
  local overrides=() flag status=0
  for flag in "${main_flags[@]}"; do
    [[ "$flag" == --config.* ]] && overrides+=("$flag")
  done
  cd "$REPO_ROOT"  # --config is a path inside the repository.
  run "$local_python" -m sam_jax.preflight "--config=$config" \
    "--topology=$accelerator_type" "${overrides[@]}" || status=$?
  ((status == 0)) || {
    echo "${PROGRAM}: the preflight of ${config} on ${accelerator_type} failed (exit ${status}:" \
      "6 is 'does not fit', see its remedies); nothing was created or started." \
      "--skip-preflight goes ahead anyway." >&2
    exit "$status"
  }
}

where=("$name" "--zone=$zone")
[[ -n "$project" ]] && where+=("--project=$project")

# Runs the shell commands "$@", joined by "; ", on every worker.
ssh_all() {
  local command="$1" step
  for step in "${@:2}"; do
    command+="; ${step}"
  done
  run gcloud compute tpus tpu-vm ssh "${where[@]}" --worker=all "--command=${command}"
}

((preflight)) && run_preflight
for action in "${actions[@]}"; do
  case "$action" in
    create)
      flags=("--accelerator-type=$accelerator_type" "--version=$version")
      ((spot)) && flags+=(--spot)
      run gcloud compute tpus tpu-vm create "${where[@]}" "${flags[@]}"
      ;;
    setup)
      ssh_all "set -e" "sudo apt-get -qq update" \
        "sudo apt-get -qq install -y git $(quote "${python}-venv")" \
        "[ -d ${REMOTE_DIR}/.git ] || git clone -q $(quote "$repo") ${REMOTE_DIR}" \
        "git -C ${REMOTE_DIR} fetch -q origin $(quote "$ref")" \
        "git -C ${REMOTE_DIR} checkout -q --detach FETCH_HEAD" \
        "[ -x ${REMOTE_VENV}/bin/python ] || $(quote "$python") -m venv ${REMOTE_VENV}" \
        "${REMOTE_VENV}/bin/pip install -q -U pip" \
        "${REMOTE_VENV}/bin/pip install -q -e './${REMOTE_DIR}[tpu]'"
      ;;
    train)
      env_prefix=""
      [[ -n "$tfds_data_dir" ]] && env_prefix="TFDS_DATA_DIR=$(quote "$tfds_data_dir") "
      main=("../${REMOTE_VENV}/bin/python" -m sam_jax.main "--config=$config" "--workdir=$workdir"
            "${main_flags[@]}")
      detached="${env_prefix}setsid nohup $(quote "${main[@]}") > ../${REMOTE_LOG} 2>&1 < /dev/null"
      ssh_all "cd ${REMOTE_DIR} || exit 1" "${detached} & echo \$! > ../${REMOTE_PID}"
      ;;
    logs)
      run gcloud compute tpus tpu-vm ssh "${where[@]}" "--worker=$log_worker" \
        "--command=tail -n +1 -F ${REMOTE_LOG}"
      ;;
    stop)
      ssh_all "[ -f ${REMOTE_PID} ] || exit 0" "kill -- -\"\$(cat ${REMOTE_PID})\" || true" \
        "rm -f ${REMOTE_PID}"
      ;;
    delete)
      run gcloud compute tpus tpu-vm delete "${where[@]}" --quiet
      ;;
  esac
done
