"""python -m lamae_jax.bench [--quick] [--json OUT] [--sections preprocess,loader,train,finetune] [--gpu]
                          [--flops-to-quality WORKDIR,...]

Prints one table of figures, each beside a baseline measured in the same run, with PASS/MISS
against the targets of BENCHMARKS.md. Sections that fail are reported in the table, never fatal.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

from lamae_jax.cli_help import HelpFormatter

SECTIONS = ("preprocess", "loader", "train", "finetune")
LOADER_BATCH = 256  # configs/base.py's global batch: what one host's loader feeds a paper-scale run


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m lamae_jax.bench", description=__doc__.split("\n\n")[1],
                                formatter_class=HelpFormatter)
    p.add_argument("--config", default="configs/base.py:paper",
                   help="PATH[:variant] whose model and optimiser the train section times (relative to the cwd)")
    p.add_argument("--quick", action="store_true", help="small data and batches (293-306 s on 2 CPU cores, 2026-11-29; the test limit is 15 min)")
    p.add_argument("--json", metavar="OUT", help="also write every figure and raw result to this JSON file")
    p.add_argument("--results-json", metavar="PATH", default=None,
                   help="also write the docs' tables (ID-summary: figures with a target; ID-full: "
                        "every figure) as a results JSON with commit, date, machine and command, "
                        "for python -m lamae_jax.report")
    p.add_argument("--results-id", metavar="ID", default="bench",
                   help="table-id prefix for --results-json (docs/benchmarks.md shows bench-*)")
    p.add_argument("--sections", default=None,
                   help=f"comma-separated subset of {','.join(SECTIONS)} (default: all; with "
                        f"--flops-to-quality: none)")
    p.add_argument("--flops-to-quality", metavar="WORKDIR[,WORKDIR...]", default="",
                   help="finished training runs: XLA FLOPs of one train step x steps to reach "
                        "--quality-target val EV (metrics.jsonl); the first is the baseline")
    p.add_argument("--quality-target", type=float, default=0.6, help="val_ev for --flops-to-quality")
    p.add_argument("--gpu", action="store_true", help="train step in bf16 on the GPU (base at the largest batch)")
    p.add_argument("--max-size", default="base", choices=("tiny", "small", "base"),
                   help="largest model size the train section runs; what only larger sizes measure "
                        "runs at this one (a CPU rehearsal of the GPU check: launch/gpu_check.sh --cpu-dry-run)")
    p.add_argument("--records", type=int, default=0, help="synthetic records (default 1000 quick, 4000 full)")
    p.add_argument("--workers", type=int, default=0, help="N for the 1 -> N scaling (default: CPU count)")
    p.add_argument("--keep", metavar="DIR", help="keep the generated data in DIR instead of a temp dir")
    args = p.parse_args(argv)
    args.quality_runs = [w.strip() for w in args.flops_to_quality.split(",") if w.strip()]
    if args.sections is None:
        args.sections = "" if args.quality_runs else ",".join(SECTIONS)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    bad = [s for s in sections if s not in SECTIONS]
    if bad or not (sections or args.quality_runs):
        p.error(f"--sections: unknown {bad or 'empty'}; choose from {','.join(SECTIONS)}")
    args.sections = sections
    if args.records < 0 or args.workers < 0:
        p.error("--records and --workers must be >= 0")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if not args.gpu:
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    from absl import flags

    if not flags.FLAGS.is_parsed():  # Grain's worker processes read absl flags
        flags.FLAGS.mark_as_parsed()
    from lamae_jax.bench import bench_finetune, bench_loader, bench_preprocess, bench_train, report
    from lamae_jax.bench.peak import matmul_peak

    t_start = time.perf_counter()
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    import jax

    if args.gpu and jax.default_backend() != "gpu":
        print(f"--gpu: no GPU visible to JAX (backend {jax.default_backend()!r})", file=sys.stderr)
        return 2
    meta = report.machine_info() | {"args": vars(args)}
    workers = args.workers or (os.cpu_count() or 1)
    # 1000 records: at least 3 loader batches of 256 per epoch of the train split.
    records = args.records or (1000 if args.quick else 4000)
    raw: dict = {}

    log("peak: large matmul on the same device")
    raw["peak"] = matmul_peak()
    tmp = args.keep or tempfile.mkdtemp(prefix="lamae-bench-")
    os.makedirs(tmp, exist_ok=True)
    try:
        if "preprocess" in args.sections or "loader" in args.sections:
            measure = "preprocess" in args.sections
            log(f"preprocess: {records} synthetic records, workers 1 and {workers}" if measure
                else f"loader data: {records} synthetic records")
            raw["preprocess"] = _guard(lambda: bench_preprocess.run_section(
                tmp, num_records=records, workers=sorted({1, workers}), measure=measure), "preprocess")
        if "train" in args.sections:
            log("train: one child process per configuration")
            raw["train"] = _guard(lambda: bench_train.run_section(args.quick, args.gpu, log=log, config=args.config,
                                                                  max_size=args.max_size), "train")
        if "finetune" in args.sections:
            log(f"finetune: {bench_finetune.DEFAULT_CONFIG} model, full and linear vs pretraining")
            raw["finetune"] = _guard(lambda: bench_finetune.run_section(args.quick), "finetune")
        data_dir = raw.get("preprocess", {}).get("data_dir")
        if "loader" in args.sections and data_dir:
            log(f"loader: 0 and {workers} workers")
            raw["loader"] = _guard(lambda: bench_loader.run_section(
                data_dir, batch_size=LOADER_BATCH, workers=sorted({0, workers}),
                seconds=3.0 if args.quick else 10.0), "loader")
        if args.quality_runs:
            from lamae_jax.bench import flops_to_quality

            log(f"quality: training FLOPs to val EV {args.quality_target} of {len(args.quality_runs)} run(s)")
            raw["quality"] = _guard(lambda: flops_to_quality.run_section(
                args.quality_runs, args.quality_target), "quality")
        log("peak: again at the end (load from other processes shows up as a gap)")
        raw["peak_end"] = matmul_peak()
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    figures = make_figures(raw, args)
    meta["wall_s"] = time.perf_counter() - t_start
    print(f"\nlamae_jax benchmark — {meta['cpu_model']}, {meta['cpu_count']} cores, "
          f"{meta.get('backend')}, {meta['date_utc']}, {meta['wall_s']:.0f} s")
    print(report.text_table(figures))
    if args.json:
        report.write_json(args.json, figures, meta, raw)
        print(f"wrote {args.json}")
    if args.results_json:
        from lamae_jax import results_json

        path = results_json.write_results(
            args.results_json, report.results_tables(figures, args.results_id),
            wall_s=round(meta["wall_s"], 1))
        print(f"wrote {path}")
    return 0


def make_figures(raw: dict, args: argparse.Namespace) -> list:
    """All figures, in table order. MFU divides by the higher of the two peak measurements (so a
    machine loaded at one of them can only understate MFU)."""
    from lamae_jax.bench import bench_finetune, bench_loader, bench_preprocess, bench_train
    from lamae_jax.bench.report import Figure

    start, end = raw["peak"], raw.get("peak_end") or raw["peak"]
    peak = max(start["flops_per_s"], end["flops_per_s"])
    figs = [Figure("peak", f"matmul {start['n']}^2 {start['dtype']}, end of run", end["flops_per_s"],
                   "FLOP/s", "start of run", start["flops_per_s"],
                   note=f"{start['device']}; ~1.0x = machine equally loaded throughout")]
    if "preprocess" in args.sections:
        figs += _figs(lambda: bench_preprocess.figures(raw["preprocess"]), "preprocess", raw)
    if "loader" in args.sections:
        if "loader" in raw:
            figs += _figs(lambda: bench_loader.figures(raw["loader"], raw.get("train")), "loader", raw)
        else:
            figs.append(Figure("loader", "ECG/s/core", None, target=">= 10k/core",
                               note="no preprocessed data (see the preprocess section's error)"))
    if "train" in args.sections:
        figs += _figs(lambda: bench_train.figures(raw["train"], peak, args.gpu), "train", raw)
    if "finetune" in args.sections:
        figs += _figs(lambda: bench_finetune.figures(raw["finetune"]), "finetune", raw)
    if args.quality_runs:
        from lamae_jax.bench import flops_to_quality

        figs += _figs(lambda: flops_to_quality.figures(raw["quality"]["runs"]), "quality", raw)
    return figs


def _guard(fn, name: str) -> dict:
    try:
        return fn()
    except Exception as e:  # one broken section must not hide the others' figures
        return {"error": f"{name}: {type(e).__name__}: {str(e)[:400]}"}


def _figs(fn, name: str, raw: dict) -> list:
    from lamae_jax.bench.report import Figure

    if "error" in raw.get(name, {}):
        return [Figure(name, "section failed", None, note=raw[name]["error"])]
    try:
        return fn()
    except Exception as e:
        return [Figure(name, "figures failed", None, note=f"{type(e).__name__}: {e}")]


if __name__ == "__main__":
    sys.exit(main())
