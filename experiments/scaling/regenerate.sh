#!/usr/bin/env bash
# Regenerate the figures and tables of experiments/scaling/README.md from the 2026-12-05 results on: the enc-vs-dec
# sweeps at 300, 600 and 1,200 steps (ID + OOD), the Moirai-style encoder sweep, the Chronos-2 and Moirai family
# sweeps (300 ... 5,000 steps), the learning-rate transfer grids (the muP tuning sweeps, base width 64, the ladder's
# depths), and every fit. About 4 hours on 2 CPU cores (3 h 45 min of sweeps, 8 min of fits); a quiet machine.
#
#   bash experiments/scaling/regenerate.sh [--dry-run] [WORK] [STEP ...]
#
# WORK (default logs/scaling/<time>; a relative path is taken from the current directory) holds the sweeps' runs
# (checkpoints, exports, logs); a sweep about to run starts from an empty directory. What the fits read of a
# finished sweep (each job's .hydra/{config,overrides}.yaml, csv/version_*/metrics.csv, final_eval/results.json;
# ~40 kB a job) is copied to the RECORD, a directory kept in git (default experiments/scaling/sweeps; `RECORD=dir`
# for another, relative to the current directory), with RECORD/<sweep>/DONE (wall time, jobs, date, the commit it
# was trained at). A sweep with a DONE in the RECORD is never run again, so the study can be run in sittings, on
# several machines and in fresh clones; delete RECORD/<sweep> (or point RECORD elsewhere) to rerun it. The run is
# made of named steps (`--list` prints them); STEPs given run only those (a first argument naming a step is one:
# WORK then defaults). `fits` reads the RECORD only (`regenerate.sh fits` needs no WORK) and refits every figure
# and table without training; a fit whose sweeps are not all recorded is named and skipped, and the step then fails.
# `--dry-run` prints the commands (tests/experiments/test_regenerate.py composes every job they launch).
set -euo pipefail
SCRIPT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")
CALLER=$PWD
cd "$(dirname "$SCRIPT")/../.."
if [[ -z "${PY:-}" ]]; then
  PY=.venv/bin/python
  [[ -x $PY ]] || PY=python  # no `make install` virtualenv: the python on PATH
fi
OUT=experiments/scaling/results
if [[ -z "${RECORD:-}" ]]; then RECORD=$PWD/experiments/scaling/sweeps; elif [[ $RECORD != /* ]]; then RECORD=$CALLER/$RECORD; fi
REC=${RECORD#"$PWD"/}  # what the fits are given: relative inside the repository, so their outputs name no machine
ENCODERS="baseline_enc_nano,baseline_enc_micro,baseline_enc_tiny,baseline_enc_mini,baseline_enc_small,baseline_enc_base"
JOINT=(--form pure --joint-points final --joint-grid small --joint-top-k 50 --bootstrap 300)
DRY=0
MISSING=()

record() {  # $1 = finished sweep dir, $2 = its wall time, $3 = the commit it ran at: what the fits read to
  local name rec tmp n  # RECORD/<name>, through a hidden .partial directory renamed once DONE is in it
  name=$(basename "$1")
  rec=$RECORD/$name
  tmp=$RECORD/.$name.partial
  rm -rf "$tmp"
  mkdir -p "$tmp"
  [[ -d $1 ]] && (cd "$1" && find . -type f \( -path '*/.hydra/config.yaml' -o -path '*/.hydra/overrides.yaml' \
    -o -path '*/csv/version_*/metrics.csv' -o -path '*/final_eval/results.json' \) -print0 |
    xargs -0 -r cp --parents -t "$tmp")
  n=$(find "$tmp" -path '*/.hydra/config.yaml' | wc -l)
  if ((n == 0)); then
    rm -rf "$tmp"
    echo "regenerate.sh: $1 holds no Hydra job (no */.hydra/config.yaml); nothing recorded" >&2
    return 1
  fi
  echo "$2, $n jobs, $(date +%Y-%m-%d), commit $3" >"$tmp/DONE"
  rm -rf "$rec"
  mv "$tmp" "$rec"
  echo "   sweep $name: recorded in $rec ($(cat "$rec/DONE"))"
}

train() {  # one sweep into WORK, then into RECORD; skipped when RECORD/<its directory's name>/DONE exists
  if ((DRY)); then printf 'train'; printf ' %q' "$@"; echo; return; fi
  local a dir="" name
  for a in "$@"; do [[ $a == hydra.sweep.dir=* ]] && dir=${a#hydra.sweep.dir=}; done
  name=$(basename "$dir")
  if [[ -e $RECORD/$name/DONE ]]; then echo "   sweep $name: recorded ($(cat "$RECORD/$name/DONE")), skipped"; return; fi
  local t0=$SECONDS commit
  commit=$(git describe --always --dirty 2>/dev/null || echo unknown)
  rm -rf "$dir"  # the sweep starts over: no job or metrics.csv of an earlier try may be recorded with it
  $PY -m tsfm.train "$@"
  record "$dir" "$((SECONDS - t0)) s" "$commit"
}
# the fits at one BLAS thread: the same numbers (every output byte for byte, 2026-12-07), half the CPU, and no spinning
# threads when sweeps share the cores (a joint fit took 25 min beside two sweep jobs at the default threads; 37 s alone)
scaling() { if ((DRY)); then printf 'scaling'; printf ' %q' "$@"; echo; else OMP_NUM_THREADS=1 $PY -m tsfm.scaling "$@"; fi; }
# two jobs side by side, one thread each, the biggest sizes first (the long family sweeps)
train2() { OMP_NUM_THREADS=1 train "$@" hydra/launcher=local; }

# --- sweeps ------------------------------------------------------------------------------------------------------
step_enc_dec_600() { train experiment=scaling_enc_vs_dec hydra.sweep.dir="$WORK/s600"; }
step_enc_random_600() {
  train experiment=scaling_enc_vs_dec model.module.encoder_mask=random "hydra.sweeper.params.model='$ENCODERS'" \
    hydra.sweep.dir="$WORK/r600"
}
step_enc_dec_1200() {
  train experiment=scaling_enc_vs_dec trainer.max_steps=1200 trainer.val_check_interval=300 hydra.sweep.dir="$WORK/s1200"
}
step_enc_dec_300() {
  train experiment=scaling_enc_vs_dec trainer.max_steps=300 trainer.val_check_interval=75 hydra.sweep.dir="$WORK/s300"
}
families() {  # $1 = chronos2 | moirai: 600, 300 and 1,200 steps
  train experiment=scaling_$1 hydra.sweep.dir="$WORK/${1}600"
  train experiment=scaling_$1 trainer.max_steps=300 trainer.val_check_interval=75 hydra.sweep.dir="$WORK/${1}300"
  train experiment=scaling_$1 trainer.max_steps=1200 trainer.val_check_interval=300 hydra.sweep.dir="$WORK/${1}1200"
}
step_chronos2_short() { families chronos2; }
step_moirai_short() { families moirai; }
long() {  # $1 = chronos2 | moirai at 5,000 / 2,500 / 1,250 steps (Chronos-2 ~41 min, Moirai ~1.5 h)
  local s
  for s in 5000 2500 1250; do
    train2 experiment=scaling_$1 size=base,small,mini,tiny,micro,nano trainer.max_steps=$s \
      trainer.val_check_interval=$((s / 4)) hydra.sweep.dir="$WORK/${1}_$s"
  done
}
step_chronos2_long() { long chronos2; }
step_moirai_long() { long moirai; }
step_lr_transfer() {
  train experiment=scaling_lr_transfer hydra.sweep.dir="$WORK/lr"
  train experiment=scaling_lr_transfer optim.lr=3.2e-2,6.4e-2,1.28e-1 hydra.sweep.dir="$WORK/lr_high"
}
step_mup_tune() {  # muP's multipliers at width 32 (session 22), then the transfer with them
  train experiment=scaling_mup_tune hydra.sweep.dir="$WORK/mup_tune"
  train experiment=scaling_mup_tune model.module.config.output_mult=2,8 hydra.sweep.dir="$WORK/mup_tune2"
  train experiment=scaling_mup_tune model.module.config.output_mult=4 model.module.config.init_std=0.01,0.04,0.08 \
    hydra.sweep.dir="$WORK/mup_std"
  train experiment=scaling_mup_tune model.module.config.output_mult=4 model.module.config.attn_mult=0.5,2 \
    hydra.sweep.dir="$WORK/mup_attn"
  train experiment=scaling_lr_transfer model.module.config.parametrization=mup model.module.config.output_mult=4 \
    model.module.config.d_model=32,64,128,256,512 optim.lr=4e-3,8e-3,1.6e-2,3.2e-2,6.4e-2,1.28e-1 \
    hydra.sweep.dir="$WORK/lr_mup4"
}
step_mup_base64() {  # muP from base width 64: the multipliers at 64, the transfer to 1,024, sp at 1,024 (~17 min)
  local m=(experiment=scaling_mup_tune hydra/launcher=local model.module.config.d_model=64 model.module.config.base_width=64)
  train "${m[@]}" model.module.config.output_mult=2,4,8 optim.lr=1.6e-2,3.2e-2,6.4e-2 hydra.sweep.dir="$WORK/mup64_tune"
  train "${m[@]}" model.module.config.output_mult=1,2 optim.lr=4e-3,8e-3 hydra.sweep.dir="$WORK/mup64_tune2"
  train "${m[@]}" model.module.config.output_mult=1 optim.lr=1.6e-2,3.2e-2 hydra.sweep.dir="$WORK/mup64_tune3"
  train experiment=scaling_lr_transfer hydra/launcher=local model.module.config.parametrization=mup \
    model.module.config.base_width=64 model.module.config.output_mult=2 model.module.config.d_model=1024,512,256,128,64 \
    optim.lr=4e-3,8e-3,1.6e-2,3.2e-2,6.4e-2 hydra.sweep.dir="$WORK/mup64"
  train experiment=scaling_lr_transfer hydra/launcher=local model.module.config.parametrization=sp \
    model.module.config.d_model=1024 optim.lr=1.25e-4,2.5e-4,5e-4,1e-3 hydra.sweep.dir="$WORK/sp1024"
}
step_ladder_depth() {  # the ladder's own shapes (rungs 0-4: widths 32-512, depths 2-10) x lr, 300 steps of batch 32
  # without the depth rule (optim.lr = ladder_lr at every rung): what the rule was measured on (20 min)
  OMP_NUM_THREADS=1 train -m experiment=scaling_ladder hydra/launcher=local rung=4,3,2,1,0 'optim.lr=${ladder_lr}' \
    ladder_lr=4e-3,8e-3,1.6e-2,3.2e-2,6.4e-2 data.batch_size=32 trainer.max_steps=300 trainer.val_check_interval=300 \
    optim.warmup_steps=30 hydra.sweep.dir="$WORK/ladder_depth"
  # out of sample: depth 12 (no rung has it) at widths 128 and 256; the rule puts the optimum at ladder_lr x 4/12
  OMP_NUM_THREADS=1 train experiment=scaling_lr_transfer hydra/launcher=local model.module.config.parametrization=mup \
    model.module.config.base_width=64 model.module.config.output_mult=2 model.module.config.num_layers=12 \
    model.module.config.d_model=256,128 optim.lr=2e-3,4e-3,8e-3,1.6e-2,3.2e-2 hydra.sweep.dir="$WORK/depth12"
}

# --- fits ---------------------------------------------------------------------------------------------------------
# a fit runs when every sweep it reads is recorded; else it is named in MISSING (the step fails after the rest)
recorded() {
  local a missing=()
  for a in "$@"; do
    [[ $a == "$REC"/* && ! -e $a/DONE ]] && missing+=("$(basename "$a")")
  done
  ((DRY || ${#missing[@]} == 0)) && return 0
  MISSING+=("$(printf '%s ' "$@" | grep -o -- '--out [^ ]*') (needs ${missing[*]})")
  return 1
}
fit() { if recorded "$@"; then scaling fit "$@"; fi; }
transfer() { if recorded "$@"; then scaling lr-transfer "$@"; fi; }
tune() { if recorded "$@"; then scaling tune "$@"; fi; }
step_fits() {
  fit "$REC/s600" "$REC/r600" --form pure --no-joint --out "$OUT/id_ood_pure"
  fit "$REC/s1200" --form pure --no-joint --out "$OUT/id_ood_1200_pure"
  fit "$REC/s600" "$REC/s1200" "${JOINT[@]}" --out "$OUT/joint_600_1200"
  fit "$REC/s300" "$REC/s600" "$REC/s1200" "${JOINT[@]}" --out "$OUT/joint_300_600_1200"
  fit "$REC/s600" "$REC/r600" "$REC/chronos2600" "$REC/moirai600" --form pure --no-joint \
    --out "$OUT/families_600"
  fit "$REC"/chronos2{300,600,1200} "$REC"/moirai{300,600,1200} "${JOINT[@]}" \
    --out "$OUT/families_joint_300_600_1200"
  fit "$REC"/chronos2_{1250,2500,5000} "${JOINT[@]}" --out "$OUT/chronos2_joint_1250_2500_5000"
  fit "$REC"/moirai_{1250,2500,5000} "${JOINT[@]}" --out "$OUT/moirai_joint_1250_2500_5000"
  # the same laws on the points trained on at least 10 tokens per parameter only (the sizes up to ~130k)
  fit "$REC"/chronos2_{1250,2500,5000} "${JOINT[@]}" --joint-min-tokens-per-param 10 \
    --out "$OUT/chronos2_joint_dn10"
  fit "$REC"/moirai_{1250,2500,5000} "${JOINT[@]}" --joint-min-tokens-per-param 10 --out "$OUT/moirai_joint_dn10"
  transfer "$REC/lr" "$REC/lr_high" --out "$OUT"
  tune "$REC"/mup_{tune,tune2,std,attn} --out "$OUT/mup_tune"  # muP's multipliers x lr at base width 32
  transfer "$REC/lr_mup4" --out "$OUT/mup_output_mult4"
  tune "$REC"/mup64_tune{,2,3} --out "$OUT/mup64_tune"  # and at base width 64
  transfer "$REC/mup64" --out "$OUT/mup_base64"
  transfer "$REC/ladder_depth" --out "$OUT/ladder_depth"
  transfer "$REC/depth12" --out "$OUT/ladder_depth12"
  scaling ladder
  if ((${#MISSING[@]})); then
    printf 'regenerate.sh: %d fit(s) skipped, their sweeps not in %s yet:\n' "${#MISSING[@]}" "$RECORD" >&2
    printf '  %s\n' "${MISSING[@]}" >&2
    return 1
  fi
}

STEPS=(enc_dec_600 enc_random_600 enc_dec_1200 enc_dec_300 chronos2_short moirai_short chronos2_long moirai_long
  lr_transfer mup_tune mup_base64 ladder_depth fits)

case "${1:-}" in
  --list) printf '%s\n' "${STEPS[@]}"; exit 0 ;;
  --dry-run) DRY=1; shift ;;
  -h | --help) sed -n '2,19p' "$SCRIPT" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac
if (($# > 0)) && [[ " ${STEPS[*]} " != *" $1 "* ]]; then  # a first argument that names a step is a step
  WORK=$1
  shift
  if [[ $WORK == -* ]]; then
    echo "regenerate.sh: '$WORK' is not a work directory; usage: regenerate.sh [--dry-run] [WORK] [STEP ...]" >&2
    exit 2
  fi
  [[ $WORK == /* ]] || WORK=$CALLER/$WORK
else
  WORK=$PWD/logs/scaling/$(date +%Y-%m-%d_%H-%M-%S)
fi
SELECTED=("$@")
((${#SELECTED[@]})) || SELECTED=("${STEPS[@]}")
for s in "${SELECTED[@]}"; do
  [[ " ${STEPS[*]} " == *" $s "* ]] || { echo "regenerate.sh: unknown step '$s'; the steps are: ${STEPS[*]}" >&2; exit 2; }
done
((DRY)) || echo "runs under $WORK, sweeps recorded in $RECORD, fits under $OUT"
for s in "${SELECTED[@]}"; do
  if ((DRY)); then echo "# step $s"; else echo "== $s ($(date +%H:%M:%S))"; fi
  "step_$s"
done
