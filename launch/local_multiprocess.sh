#!/usr/bin/env bash
# Several JAX processes on this machine (CPU, simulated devices): exercises the multi-host code
# paths (jax.distributed, per-host batches, Orbax multi-process saves) without a cluster.
#
#   NUM_PROCESSES=2 DEVICES_PER_PROCESS=4 launch/local_multiprocess.sh \
#       --config=configs/base.py:smoke --workdir=runs/mp
#
# Every argument goes to `python -m lamae_jax.train`. Env: NUM_PROCESSES (2), DEVICES_PER_PROCESS
# (1), PORT (a free one), PYTHON (python), LOG_DIR (process i writes LOG_DIR/process_i.log; default:
# all output to this terminal). Exits non-zero if any process fails, after stopping the others.
set -euo pipefail

NUM_PROCESSES="${NUM_PROCESSES:-2}"
DEVICES_PER_PROCESS="${DEVICES_PER_PROCESS:-1}"
PYTHON="${PYTHON:-python}"
PORT="${PORT:-$("$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("localhost",0)); print(s.getsockname()[1])')}"

pids=()
# SIGTERM/SIGINT to this script go to every process (they save a checkpoint and exit 0).
forward() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
}
trap forward INT TERM

for ((i = 0; i < NUM_PROCESSES; i++)); do
  if [[ -n "${LOG_DIR:-}" ]]; then
    mkdir -p "$LOG_DIR"
    out="$LOG_DIR/process_$i.log"
  else
    out=/dev/stdout
  fi
  JAX_PLATFORMS=cpu JAX_NUM_CPU_DEVICES="$DEVICES_PER_PROCESS" LAMAE_JAX_DISTRIBUTED=1 \
  LAMAE_COORDINATOR="localhost:$PORT" LAMAE_NUM_PROCESSES="$NUM_PROCESSES" LAMAE_PROCESS_ID="$i" \
    "$PYTHON" -m lamae_jax.train "$@" >"$out" 2>&1 &
  pids+=($!)
done

status=0
for pid in "${pids[@]}"; do
  while true; do
    rc=0
    wait "$pid" || rc=$?
    kill -0 "$pid" 2>/dev/null || break  # else wait was interrupted by a forwarded signal
  done
  if [[ $rc -ne 0 ]]; then
    echo "process with pid $pid failed (exit $rc); stopping the others" >&2
    status=1
    forward
  fi
done
exit "$status"
