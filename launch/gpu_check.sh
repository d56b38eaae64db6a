#!/usr/bin/env bash
# GPU readiness check on one H100/H200 (<= 8 min): everything lands in OUT/.
#
#   launch/gpu_check.sh [OUT]                 # default OUT=runs/gpu_check
#   launch/gpu_check.sh [OUT] --cpu-dry-run   # the same steps on CPU, tiny/small for base (no install)
#   launch/gpu_check.sh [OUT] --cpu-dry-run=fast   # the same, tiny only (what the test runs, ~2-3 min)
#
# 1. installs jax[cuda12] (same version as the venv's jax) into the project's venv ($VENV, .venv);
#    nothing else;
# 2. (a) tests/models on the GPU (test_sharded_mesh_matches_single_device needs 8 devices: skipped);
#    (b) 50 training steps of `base` in bf16 with model.attention_impl=cudnn and =xla (synthetic
#        data, same seed): their metrics.jsonl losses must agree (OUT/attention_compare.json);
#    (c) python -m lamae_jax.bench --gpu --sections train --json OUT/bench.json.
# Each step has its own time limit, all within BUDGET (470 s; dry run 600 s); the exit status is non-zero if any step failed
# (OUT/summary.txt lists them). Dry run (rehearses every step on a 2-core CPU in <= 10 min): `smoke`
# (tiny) for 5 steps with "" vs xla (cuDNN does not exist on CPU), tests/models/test_attention_mask.py
# only, bench --quick --max-size small (its base runs, the paired latent-vs-none step among them, at
# small; no simulated 8-device run, which the GPU check has not either; fast: --max-size tiny, 3 train
# steps). The GPU run keeps base bf16, cuDNN and the batch search.
set -uo pipefail
OUT="runs/gpu_check"
DRY=0
for arg in "$@"; do
  case "$arg" in
    --cpu-dry-run) DRY=1 ;;
    --cpu-dry-run=fast) DRY=2 ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) OUT="$arg" ;;
  esac
done
cd "$(dirname "$0")/.."
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
. "${VENV:-.venv}/bin/activate"
export LAMAE_JAX_DISTRIBUTED=0 PYTHONUNBUFFERED=1
SUMMARY="$OUT/summary.txt"
: >"$SUMMARY"
status=0
# seconds for the whole check (dry run: 600); each step gets at most what is left
[[ $DRY -ge 1 ]] && BUDGET="${BUDGET:-600}"
BUDGET="${BUDGET:-470}"
step() {  # step NAME SECONDS CMD...: runs CMD with a time limit, output in OUT/NAME.log
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS rc=0
  limit=$((limit * ${LIMIT_SCALE:-1}))  # LIMIT_SCALE: a loaded machine's allowance (tests)
  (( limit > BUDGET - SECONDS )) && limit=$((BUDGET - SECONDS))
  if (( limit <= 0 )); then
    echo "$name: SKIPPED (time budget of ${BUDGET}s spent)" | tee -a "$SUMMARY"; status=1; return
  fi
  echo "== $name (limit ${limit}s)"
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1 || rc=$?
  tail -n 3 "$OUT/$name.log"
  echo "$name: $([[ $rc -eq 0 ]] && echo ok || echo "FAILED (exit $rc)") in $((SECONDS - t0)) s" | tee -a "$SUMMARY"
  [[ $rc -eq 0 ]] || status=1
}

if [[ $DRY -ge 1 ]]; then
  export JAX_PLATFORMS=cpu
  CONFIG="configs/base.py:smoke"; STEPS=5; IMPLS=("" xla); TESTS=(tests/models/test_attention_mask.py)
  BENCH=(--quick --max-size small); PLATFORM=cpu; SIZE=(--config.model.size=tiny)
  [[ $DRY -eq 2 ]] && STEPS=3 && BENCH=(--quick --max-size tiny)
else
  export JAX_PLATFORMS=cuda
  JAXV="$(python -c 'import jax; print(jax.__version__)')"
  step install 240 pip install --quiet "jax[cuda12]==$JAXV"
  CONFIG="configs/base.py"; STEPS=50; IMPLS=(cudnn xla); TESTS=(tests/models)
  BENCH=(--gpu); PLATFORM=gpu; SIZE=(--config.model.size=base --config.data.allow_synthetic_at_paper_scale=True)
fi
step devices 60 python -c "import jax; d = jax.devices(); print(d); assert jax.default_backend() == '$PLATFORM', d"

# (a) model and masking tests on the accelerator (conftest only defaults JAX_PLATFORMS to cpu).
step tests 150 python -m pytest "${TESTS[@]}" -x -q -p no:cacheprovider \
  -k "not test_sharded_mesh_matches_single_device"

# (b) the same run with each attention implementation; losses from metrics.jsonl.
for impl in "${IMPLS[@]}"; do
  step "train_${impl:-default}" 180 python -m lamae_jax.train --config="$CONFIG" \
    --workdir="$OUT/train_${impl:-default}" "${SIZE[@]}" --config.model.dtype=bfloat16 \
    --config.model.attention_impl="$impl" --config.total_steps="$STEPS" --config.log_every=5 \
    --config.checkpoint.every=100000 --config.eval_every=100000 --config.data.cache_dir="$OUT/cache"
done
step compare 30 python - "$OUT" "${IMPLS[@]/#/train_}" <<'EOF'
import json, pathlib, sys
out, dirs = pathlib.Path(sys.argv[1]), [d if d != "train_" else "train_default" for d in sys.argv[2:]]
runs = {d: {r["step"]: r["loss"] for r in map(json.loads, (out / d / "metrics.jsonl").read_text().splitlines())
            if "loss" in r} for d in dirs}
a, b = (runs[d] for d in dirs)
steps = sorted(set(a) & set(b))
rel = {s: abs(a[s] / b[s] - 1) for s in steps}
# bf16: different kernels round differently; the trajectories must still agree closely.
ok = bool(steps) and max(rel.values()) < 0.05 and rel[steps[-1]] < 0.05
report = {"runs": dirs, "steps": steps, "loss": runs, "max_rel_diff": max(rel.values(), default=None), "ok": ok}
(out / "attention_compare.json").write_text(json.dumps(report, indent=2))
print(f"{dirs[0]} vs {dirs[1]}: max relative loss difference {report['max_rel_diff']} over steps {steps}")
sys.exit(0 if ok else 1)
EOF

# (c) the training benchmark.
step bench "$([[ $DRY -ge 1 ]] && echo 420 || echo 240)" python -m lamae_jax.bench "${BENCH[@]}" --sections train --json "$OUT/bench.json"

echo "summary ($OUT/summary.txt):"
cat "$SUMMARY"
exit "$status"
