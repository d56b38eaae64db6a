#!/usr/bin/env bash
# The paper's comparison in one command: pretrain latent (LAMAE), none, joint and align with identical
# budgets and data, evaluate all with the same linear-probe protocol, write one comparison table.
#   launch/compare_variants.sh [OUT] [extra args for python -m lamae_jax.compare]
# e.g. launch/compare_variants.sh runs/compare --total-steps 300 --seeds 3
set -euo pipefail
# One process on this machine (LAMAE_JAX_DISTRIBUTED=1 with LAMAE_COORDINATOR/... to spread it).
export LAMAE_JAX_DISTRIBUTED="${LAMAE_JAX_DISTRIBUTED:-0}"
OUT="${1:-runs/compare}"
shift || true
exec python -m lamae_jax.compare --out "$OUT" --config="${LAMAE_CONFIG:-configs/base.py:demo}" "$@"
