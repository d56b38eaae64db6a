#!/usr/bin/env bash
# Pretrain on a Cloud TPU pod slice: the same command runs on every worker (--worker=all).
# LAMAE_JAX_DISTRIBUTED=1 makes every worker call jax.distributed.initialize(), which finds the slice
# through the GCE metadata server (an ssh shell has no TPU_WORKER_HOSTNAMES); if it cannot, the
# run stops with an error instead of training one model per worker.
#
#   TPU_NAME=my-v5p-64 ZONE=us-east5-a WORKDIR=gs://my-bucket/runs/lamae \
#   DATA_ROOT=/mnt/gcs/mimic_shards launch/tpu_pod.sh [--config.total_steps=200000 ...]
#
# The workdir may be gs://; the data must be a local path on every worker (gcsfuse mount of the
# bucket: ArrayRecord reads local files only).
# Env: TPU_NAME, ZONE, WORKDIR, DATA_ROOT (required); PROJECT, CONFIG (configs/base.py),
# REPO_DIR (where the repo is checked out on the workers, default ~/lamae_jax), VENV (.venv).
# Preemption (spot/queued resources): rerun this script; training resumes from WORKDIR.
set -euo pipefail
: "${TPU_NAME:?set TPU_NAME}" "${ZONE:?set ZONE}" "${WORKDIR:?set WORKDIR}" "${DATA_ROOT:?set DATA_ROOT}"
CONFIG="${CONFIG:-configs/base.py}"
REPO_DIR="${REPO_DIR:-~/lamae_jax}"
VENV="${VENV:-.venv}"
extra=$(printf ' %q' "$@")

gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" ${PROJECT:+--project="$PROJECT"} --worker=all \
  --command="cd $REPO_DIR && . $VENV/bin/activate && LAMAE_JAX_DISTRIBUTED=1 python -m lamae_jax.train \
    --config=$CONFIG --config.data.root=$DATA_ROOT --workdir=$WORKDIR $extra"
