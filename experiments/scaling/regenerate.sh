#!/usr/bin/env bash
# Regenerate every figure and table of experiments/scaling/README.md (sessions of 2026-12-05 and 2026-12-07):
# the enc-vs-dec sweeps at 300, 600 and 1,200 steps (ID + OOD), the Moirai-style encoder sweep, the
# Chronos-2 and Moirai family sweeps, the learning-rate transfer grids (muP multipliers included), and every fit. About 4.5 hours on 2 CPU cores; run it on a quiet machine.
#   bash experiments/scaling/regenerate.sh [work dir, default logs/scaling/<time>]
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
WORK=${1:-logs/scaling/$(date +%Y-%m-%d_%H-%M-%S)}
OUT=experiments/scaling/results
ENCODERS="baseline_enc_nano,baseline_enc_micro,baseline_enc_tiny,baseline_enc_mini,baseline_enc_small,baseline_enc_base"
mkdir -p "$WORK"
echo "sweeps under $WORK, fits under $OUT"

$PY -m tsfm.train experiment=scaling_enc_vs_dec hydra.sweep.dir="$WORK/s600"
$PY -m tsfm.train experiment=scaling_enc_vs_dec model.module.encoder_mask=random \
  "hydra.sweeper.params.model='$ENCODERS'" hydra.sweep.dir="$WORK/r600"
$PY -m tsfm.train experiment=scaling_enc_vs_dec trainer.max_steps=1200 trainer.val_check_interval=300 \
  hydra.sweep.dir="$WORK/s1200"
$PY -m tsfm.train experiment=scaling_enc_vs_dec trainer.max_steps=300 trainer.val_check_interval=75 \
  hydra.sweep.dir="$WORK/s300"
for fam in chronos2 moirai; do
  $PY -m tsfm.train experiment=scaling_$fam hydra.sweep.dir="$WORK/${fam}600"
  $PY -m tsfm.train experiment=scaling_$fam trainer.max_steps=300 trainer.val_check_interval=75 hydra.sweep.dir="$WORK/${fam}300"
  $PY -m tsfm.train experiment=scaling_$fam trainer.max_steps=1200 trainer.val_check_interval=300 hydra.sweep.dir="$WORK/${fam}1200"
done
# Chronos-2 at 1,250 / 2,500 / 5,000 steps (2026-12-07; ~41 min, two jobs side by side at one thread each)
for S in 5000 2500 1250; do
  $PY -m tsfm.train experiment=scaling_chronos2 hydra/launcher=local size=base,small,mini,tiny,micro,nano \
    trainer.max_steps=$S trainer.val_check_interval=$((S / 4)) hydra.sweep.dir="$WORK/chronos2_$S"
done
$PY -m tsfm.train experiment=scaling_lr_transfer hydra.sweep.dir="$WORK/lr"
$PY -m tsfm.train experiment=scaling_lr_transfer optim.lr=3.2e-2,6.4e-2,1.28e-1 hydra.sweep.dir="$WORK/lr_high"
# muP's multipliers at the base width (session 22; the tables are in the README), then the transfer with them
$PY -m tsfm.train experiment=scaling_mup_tune hydra.sweep.dir="$WORK/mup_tune"
$PY -m tsfm.train experiment=scaling_mup_tune model.module.config.output_mult=2,8 hydra.sweep.dir="$WORK/mup_tune2"
$PY -m tsfm.train experiment=scaling_mup_tune model.module.config.output_mult=4 \
  model.module.config.init_std=0.01,0.04,0.08 hydra.sweep.dir="$WORK/mup_std"
$PY -m tsfm.train experiment=scaling_mup_tune model.module.config.output_mult=4 \
  model.module.config.attn_mult=0.5,2 hydra.sweep.dir="$WORK/mup_attn"
$PY -m tsfm.train experiment=scaling_lr_transfer model.module.config.parametrization=mup \
  model.module.config.output_mult=4 model.module.config.d_model=32,64,128,256,512 \
  optim.lr=4e-3,8e-3,1.6e-2,3.2e-2,6.4e-2,1.28e-1 hydra.sweep.dir="$WORK/lr_mup4"
# muP from base width 64 (2026-12-07; ~17 min): the multipliers at width 64, the transfer to 1,024, sp at 1,024
$PY -m tsfm.train experiment=scaling_mup_tune hydra/launcher=local model.module.config.d_model=64 \
  model.module.config.base_width=64 model.module.config.output_mult=2,4,8 optim.lr=1.6e-2,3.2e-2,6.4e-2 \
  hydra.sweep.dir="$WORK/mup64_tune"
$PY -m tsfm.train experiment=scaling_mup_tune hydra/launcher=local model.module.config.d_model=64 \
  model.module.config.base_width=64 model.module.config.output_mult=1,2 optim.lr=4e-3,8e-3 hydra.sweep.dir="$WORK/mup64_tune2"
$PY -m tsfm.train experiment=scaling_mup_tune hydra/launcher=local model.module.config.d_model=64 \
  model.module.config.base_width=64 model.module.config.output_mult=1 optim.lr=1.6e-2,3.2e-2 hydra.sweep.dir="$WORK/mup64_tune3"
$PY -m tsfm.train experiment=scaling_lr_transfer hydra/launcher=local model.module.config.parametrization=mup \
  model.module.config.base_width=64 model.module.config.output_mult=2 model.module.config.d_model=1024,512,256,128,64 \
  optim.lr=4e-3,8e-3,1.6e-2,3.2e-2,6.4e-2 hydra.sweep.dir="$WORK/mup64"
$PY -m tsfm.train experiment=scaling_lr_transfer hydra/launcher=local model.module.config.parametrization=sp \
  model.module.config.d_model=1024 optim.lr=1.25e-4,2.5e-4,5e-4,1e-3 hydra.sweep.dir="$WORK/sp1024"

$PY -m tsfm.scaling fit "$WORK/s600" "$WORK/r600" --form pure --no-joint --out "$OUT/id_ood_pure"
$PY -m tsfm.scaling fit "$WORK/s1200" --form pure --no-joint --out "$OUT/id_ood_1200_pure"
$PY -m tsfm.scaling fit "$WORK/s600" "$WORK/s1200" --form pure --joint-points final --joint-grid small \
  --joint-top-k 50 --bootstrap 300 --out "$OUT/joint_600_1200"
$PY -m tsfm.scaling fit "$WORK/s300" "$WORK/s600" "$WORK/s1200" --form pure --joint-points final --joint-grid small \
  --joint-top-k 50 --bootstrap 300 --out "$OUT/joint_300_600_1200"
$PY -m tsfm.scaling fit "$WORK/s600" "$WORK/r600" "$WORK/chronos2600" "$WORK/moirai600" --form pure --no-joint \
  --out "$OUT/families_600"
$PY -m tsfm.scaling fit "$WORK"/chronos2{300,600,1200} "$WORK"/moirai{300,600,1200} --form pure --joint-points final \
  --joint-grid small --joint-top-k 50 --bootstrap 300 --out "$OUT/families_joint_300_600_1200"
$PY -m tsfm.scaling fit "$WORK"/chronos2_{1250,2500,5000} --form pure --joint-points final --joint-grid small \
  --joint-top-k 50 --bootstrap 300 --out "$OUT/chronos2_joint_1250_2500_5000"
$PY -m tsfm.scaling lr-transfer "$WORK/lr" "$WORK/lr_high" --out "$OUT"
$PY -m tsfm.scaling lr-transfer "$WORK/lr_mup4" --out "$OUT/mup_output_mult4"
$PY -m tsfm.scaling lr-transfer "$WORK/mup64" --out "$OUT/mup_base64"
$PY -m tsfm.scaling ladder
