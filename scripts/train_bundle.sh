#!/usr/bin/env bash
# The bundle shipped with pepx (src/pepx/serving/bundles/pepx-resnet-focal-cxr-real): train PEPX-ResNet + focal
# loss on ../shared/data/cxr-real (settings: scripts/bundle-pepx-resnet-focal-cxr-real.yaml), then bundle it:
# fp16 weights, temperature and COVID-19 operating point on the validation split, the input gate (+ cxr-ood's dev
# part), test evaluation with CIs,
# model card. Run from the repository root. One CPU thread: ~10-20 min on a shared 2-core machine.
set -euo pipefail
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}"
RUN="${RUN:-runs/bundle}"
NAME=pepx-resnet-focal-cxr-real
CONFIG=scripts/bundle-$NAME.yaml
pepx train --config "$CONFIG" --out "$RUN"
pepx export "$RUN" --out "src/pepx/serving/bundles/$NAME" --id "$NAME" --version "${VERSION:-2.0.0}" \
    --target COVID-19=0.95 --report docs/results/bundle --recipe "scripts/train_bundle.sh ($CONFIG)" \
    --gate-ood ../shared/data/cxr-ood --history scripts/bundle-history.json
