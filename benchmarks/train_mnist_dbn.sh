#!/usr/bin/env bash
# Greedy layer-wise pretraining of the MNIST DBNs of issue 5 (Algorithm 1, NumPyro SA-MLE).
# Layer 1 is the committed 784-500 CD-k-ramp RBM (benchmarks/checkpoints/rbm_cdramp.safetensors,
# test log-likelihood -85.3). Every layer: CD-k with k raised 1 -> 25 over 50 epochs, lr 0.01
# decayed linearly, momentum 0.5 -> 0.9, weight decay 2e-4, minibatch 100, seed 0, fresh
# draws of the layer data every epoch. Resumable: run it again to continue.
#   bash benchmarks/train_mnist_dbn.sh [OUT] [DATA_ROOT]
set -euo pipefail
OUT=${1:-benchmarks/runs}
DATA=${2:-${EBM_PPL_DATA:-../shared/data}}
PY=${PYTHON:-python}
L1=benchmarks/checkpoints/rbm_cdramp.safetensors
common=(--method cdramp --k-max 25 --epochs 50 --lr 0.01 --lr-decay linear --out "$OUT" --data-root "$DATA")
# 784-500-500-2000 (Hinton et al. 2006; Hinton & Salakhutdinov 2006)
"$PY" benchmarks/train_mnist_rbm.py "${common[@]}" --hidden 500 --below "$L1" --name dbn_l2_500
"$PY" benchmarks/train_mnist_rbm.py "${common[@]}" --hidden 2000 \
  --below "$L1,$OUT/dbn_l2_500/rbm_dbn_l2_500.safetensors" --name dbn_l3_2000
# 784-500-2000 (the two-hidden-layer DBN of Salakhutdinov & Murray 2008)
"$PY" benchmarks/train_mnist_rbm.py "${common[@]}" --hidden 2000 --below "$L1" --name dbn_l2_2000
