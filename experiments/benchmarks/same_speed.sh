#!/bin/bash
# Training speed of the default run (`python -m tsfm.train`, Chronos-2 mini, bf16, 2 threads) at an
# earlier commit and at the working tree, interleaved A B A B, 300 steps each; prints steps/s of the
# last 200 steps (the console line at step 300 covers steps 201-300, at step 200 steps 101-200).
#   experiments/benchmarks/same_speed.sh <commit>          (the corpus cache under ./data is shared)
set -euo pipefail
REV=${1:?usage: same_speed.sh <commit>}
HERE=$(cd "$(dirname "$0")/../.." && pwd)
WT=$(mktemp -d /tmp/tsfm-speed-XXXX)
git -C "$HERE" worktree add -f -q "$WT" "$REV"
ln -sfn "$HERE/data" "$WT/data"
trap 'git -C "$HERE" worktree remove --force "$WT"' EXIT
for round in 1 2; do
  for side in "$WT" "$HERE"; do
    out=$(cd "$side" && PROJECT_ROOT="$side" OMP_NUM_THREADS=2 "$HERE/.venv/bin/python" -m tsfm.train trainer.max_steps=300 \
          trainer.val_check_interval=10000 final_eval=null export=false ckpt_path=null \
          callbacks.progress_bar.refresh_rate=0 hydra.run.dir="$WT/run_$(basename "$side")_$round" 2>&1 \
          | grep -o "step [23]00/300 .*steps/s" | sed 's/.*| \([0-9.]*\) steps\/s/\1/' | tr '\n' ' ')
    echo "round $round $( [ "$side" = "$HERE" ] && echo "now      " || echo "$REV") steps/s at 200, 300: $out"
  done
done
