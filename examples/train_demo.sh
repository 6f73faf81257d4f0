#!/usr/bin/env bash
# Rebuild the bundled demo model from nothing, then measure whether it reads the images.
#
#   examples/train_demo.sh [OUT_DIR] [SEED]
#
# OUT_DIR defaults to ./omnict-demo (use models/omnict-demo to replace the bundled one);
# the phantoms, rows, components, both training stages (metrics.jsonl: the training
# curve) and the caches stay in OUT_DIR.work, so a rerun reuses what is done.
# On a busy machine OMNICT_THREADS=1 (one torch thread) is faster than two threads fighting for cores.
set -euo pipefail

out_dir="${1:-omnict-demo}"
seed="${2:-0}"

omnict train-demo "$out_dir" --seed "$seed" --overwrite ${OMNICT_THREADS:+--threads "$OMNICT_THREADS"}
python "$(dirname "$0")/../benchmarks/demo_model_eval.py" --model "$out_dir" --json "$out_dir.work/eval.json"
