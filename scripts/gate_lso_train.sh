#!/usr/bin/env bash
# Leave-source-out with a network that never saw the source (issue 16): train the shipped bundle's recipe
# (PEPX-ResNet width 0.5, focal, 160 px) on cxr-real version 1 WITHOUT one source (default hannover), small
# and short (250 / 40 / 40 films per class, 3 epochs: ~2 CPU-minutes), export it (the gate is fitted on its
# own train / val films + cxr-ood's dev part), then ask its gate about the held-out source's films:
#     scripts/gate_lso_train.sh [SOURCE]      -> docs/results/gate-lso/SOURCE/report.md
# Run from the repository root, one thread.
set -euo pipefail
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}"
SOURCE="${1:-hannover}"
RUN="runs/lso-$SOURCE"
DATA="csv:../shared/data/cxr-real/metadata.csv"
mkdir -p "$RUN"
python - "$SOURCE" "$RUN/split.csv" <<'PY'
import sys
from pepx.data import balanced_split, load_source, save_split
source, out = sys.argv[1], sys.argv[2]
manifest = load_source("csv:../shared/data/cxr-real/metadata.csv").manifest
kept = manifest[~manifest["source"].isin(["rsna", source])].reset_index(drop=True)  # version 1, less SOURCE
save_split(balanced_split(kept, 250, 40, n_val=40, seed=0), out)
PY
pepx train --config scripts/bundle-pepx-resnet-focal-cxr-real.yaml --out "$RUN/run" split="$RUN/split.csv" \
    epochs=3 n_train=250 n_val=40 n_test=40
pepx export "$RUN/run" --out "$RUN/bundle" --id "lso-without-$SOURCE" --n-boot 500 --gate-ood ../shared/data/cxr-ood
pepx gate evaluate "$RUN/bundle" --split "$RUN/split.csv" --unseen "$DATA" --unseen-source "$SOURCE" \
    --out "docs/results/gate-lso/$SOURCE" --n-boot 1000
