#!/usr/bin/env bash
# Runs the CIFAR-10 study, two single-threaded runs at a time (2-core machines).
#   [REGIME=fit] experiments/cifar10/run_all.sh PHASE DATA_DIR ...   (regime: config.py REGIMES,
#   default short)
#   [PER_CLASS=500] run_all.sh pilot DATA_DIR     # fit: the base ViT and Mixer on
#       train[:PER_CLASS/class], its accuracy every 1,000 steps (python -m sam_jax.main;
#       workdirs under $WORKDIR_ROOT/pilot)
#   run_all.sh sweep DATA_DIR                     # seed 0: base + the rho sweep (SWEEP_RHOS)
#   run_all.sh base DATA_DIR                      # seeds 1, 2 without SAM
#   run_all.sh seeds DATA_DIR VIT MIXER RESNET    # seeds 1, 2 at those rhos
#   run_all.sh cheap DATA_DIR MODEL...            # the cheaper SAM kinds,
#       seeds 0-2: LookSAM and AE-SAM at SAM's rho 0.05, Momentum-SAM at 0.75 (15x, the ratio of
#       its authors' MSAM and SAM commands, 3 and 0.2; rho 3 itself did not train here)
#       (docs/paper.md E6); KINDS="looksam msam" picks some
# Each run is the one command printed in its log's first line (see run.py); logs go to
# $LOG_DIR (default /tmp/sam_cifar10_study/logs). A run whose result row exists is skipped,
# so running a phase again finishes what an interrupted one left.
set -euo pipefail
phase=${1:?pilot, sweep, base, seeds or cheap}
data_dir=${2:?the CIFAR-10 folder}
export PYTHON=${PYTHON:-python} DATA_DIR=$data_dir REGIME=${REGIME:-short}
export LOG_DIR=${LOG_DIR:-/tmp/sam_cifar10_study/logs}/$REGIME
export WORKDIR_ROOT=${WORKDIR_ROOT:-/tmp/sam_cifar10_study}
# The seed-0 sweep: the paper's range for ViT and Mixer (docs/paper.md R22; ViT also 0.5, as its
# best fit-regime value was the largest of the range), around the SAM
# paper's 0.05 for ResNet; the short regime's two points (its CPU budget).
declare -A SWEEP_RHOS
if [[ $REGIME == fit ]]; then
  SWEEP_RHOS=([vit]="0.05 0.1 0.2 0.5" [mixer]="0.1 0.2 0.5" [resnet]="0.02 0.05 0.1")
else
  SWEEP_RHOS=([vit]="0.05 0.2" [mixer]="0.05 0.2" [resnet]="0.05")
fi
# Eigen's operations single-threaded; XLA:CPU's intra-op pool still has one thread per core of
# the affinity mask, and that thread count is part of a row's floating-point results
# (benchmarks/RESULTS.md, "one core each"; docs/reproduction.md, Reproduce).
export XLA_FLAGS="--xla_cpu_multi_thread_eigen=false"
mkdir -p "$LOG_DIR"

runs() {  # "MODEL RHO SEED [KIND]" lines of the phase.
  local model rho seed
  if [[ $phase == cheap ]]; then
    local -A rho=([looksam]=0.05 [msam]=0.75 [aesam]=0.05)
    for seed in 0 1 2; do
      for model in "${@:3}"; do
        for kind in ${KINDS:-looksam msam aesam}; do echo "$model ${rho[$kind]} $seed $kind"; done
      done
    done
  elif [[ $phase == sweep ]]; then
    for model in vit mixer resnet; do echo "$model 0 0"; done
    for model in vit mixer resnet; do
      for rho in ${SWEEP_RHOS[$model]}; do echo "$model $rho 0"; done
    done
  elif [[ $phase == base ]]; then
    for seed in 1 2; do for model in vit mixer resnet; do echo "$model 0 $seed"; done; done
  else
    local -A best=([vit]=${3:?} [mixer]=${4:?} [resnet]=${5:?})
    for seed in 1 2; do
      for model in vit mixer resnet; do echo "$model ${best[$model]} $seed"; done
    done
  fi
}

run_one() {  # MODEL RHO SEED [KIND]: one row (run.py's name).
  local kind=${4:-sam}
  local cmd=("$PYTHON" experiments/cifar10/run.py "--config=experiments/cifar10/config.py:$1,$REGIME"
             "--config.sam.rho=$2" "--config.seed=$3" "--config.sam.kind=$kind"
             "--config.data_dir=$DATA_DIR" "--workdir_root=$WORKDIR_ROOT")
  local name="${1}_${4:+${4}_}rho${2}_seed${3}"
  local log="$LOG_DIR/$name.log"
  if [[ -e experiments/cifar10/results/$REGIME/$name.json ]]; then echo "exists: $name"; return; fi
  echo "${cmd[*]}" > "$log"
  if "${cmd[@]}" >> "$log" 2>&1; then echo "done: ${cmd[*]}"; else echo "FAILED ($log): ${cmd[*]}"; fi
}

pilot_one() {  # MODEL PER_CLASS: the base model on train[:PER_CLASS/class], evaluated on it
  # every 1,000 steps.
  local subset="train[:$2/class]" name="pilot_$1_$2"
  local cmd=("$PYTHON" -m sam_jax.main "--config=experiments/cifar10/config.py:$1,fit"
             "--config.sam.rho=0" "--config.data_dir=$DATA_DIR" "--config.train_split=$subset"
             "--config.eval_split=$subset" "--config.eval_every_steps=1000"
             "--workdir=$WORKDIR_ROOT/pilot/$1_$2")
  echo "${cmd[*]}" > "$LOG_DIR/$name.log"
  if "${cmd[@]}" >> "$LOG_DIR/$name.log" 2>&1; then echo "done: ${cmd[*]}"
  else echo "FAILED ($LOG_DIR/$name.log): ${cmd[*]}"; fi
}
export -f run_one pilot_one

if [[ $phase == pilot ]]; then
  for model in vit mixer; do echo "$model ${PER_CLASS:-500}"; done |
      xargs -P 2 -L 1 bash -c 'pilot_one "$@"' _
else
  runs "$@" | xargs -P 2 -L 1 bash -c 'run_one "$@"' _
fi
