"""`python -m lamae_jax.evaluate --workdir W`: frozen-encoder ICD-10 linear probing with label efficiency.

Restores W's checkpoint (the latest by default, as every tool; --step N, or --best for the lowest
validation loss), embeds every record of train/val/test with no masking (sharded over all devices
and hosts, each record once), then for each label fraction of training subjects and each seed fits the linear probe
(L2 chosen on val) and scores test with a subject-level bootstrap. Writes
  W/eval/results.json   summary[fraction].macro_auroc (+ CI, sd over seeds, AUPRC, per code),
                        settings (one entry per fraction x seed), skipped draws, excluded codes
  W/eval/results.md     the same as Markdown tables
  W/eval/label_efficiency.png, W/eval/lead_attention.png (latent variant)
--init random probes the same architecture with random weights (the control, W/eval-random).
Unlabelled records (manifest labelled=0) take no part; codes whose label columns are identical on
every split count once (results['aliases']). Fine-tuning: python -m lamae_jax.finetune.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import pathlib
import sys
import time
from typing import Sequence

import numpy as np

from lamae_jax.jsonio import json_default, write_json_atomic
from lamae_jax.cli_help import HelpFormatter

from lamae_jax.eval import probe

SPLITS = ("train", "val", "test")


def label_fractions(text: str) -> list[float]:
    try:
        values = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values or any(not 0 < v <= 1 for v in values):
        raise argparse.ArgumentTypeError(f"label fractions must be in (0, 1], got {text!r}")
    return values



def embed_all(model, params, data_dir: str, *, batch_size: int = 64, lead_embeddings: bool = False,
              num_samples: int | None = None) -> dict:
    """{split: embed_split result} for train/val/test (first num_samples samples of each record)."""
    from lamae_jax.eval import embed as embedding

    out = {}
    for split in SPLITS:
        t0 = time.time()
        out[split] = embedding.embed_split(model, params, data_dir, split, per_host_batch_size=batch_size,
                                           lead_embeddings=lead_embeddings, num_samples=num_samples)
        print(f"embedded {split}: {out[split]['embeddings'].shape} in {time.time() - t0:.1f} s", flush=True)
    return out


def check_labels(data_dir: str) -> None:
    """ValueError, before any embedding, when the data has no label vocabulary to probe."""
    from lamae_jax.data.dataset import PreprocessedECG

    if not list(PreprocessedECG(data_dir, "train").vocabulary):
        raise ValueError(
            f"{data_dir}/labels.json has an empty vocabulary: there are no labels to probe. Preprocess "
            "with labels and pass that directory with --data: MIMIC-IV-ECG with `python -m "
            "lamae_jax.preprocess --mimic-root ROOT --labels records_w_diag_icd10.csv --out DIR` "
            "(MIMIC-IV-ECG-Ext-ICD), other WFDB collections with `--wfdb-dir ROOT --labels-format` "
            "(PTB-XL, Challenge, CSV)")


def evaluate_embeddings(embedded: dict, data_dir: str, *, codes: str = "all",
                        fractions: Sequence[float] = (0.01, 0.1, 1.0), seeds: int = 3,
                        n_boot: int = 200, l2_grid: Sequence[float] = probe.DEFAULT_L2_GRID,
                        cross_fold: bool = False) -> dict:
    """The protocol on embeddings already computed (shared by evaluate and compare). cross_fold:
    every fold of the data is the test fold once (protocol.run_cross_fold), all records scored."""
    from lamae_jax.eval import protocol as label_efficiency
    from lamae_jax.data.dataset import PreprocessedECG

    from lamae_jax.data.tasks import task_columns

    ds = {s: PreprocessedECG(data_dir, s) for s in SPLITS}
    check_labels(data_dir)
    vocab = list(ds["train"].vocabulary)
    # Unlabelled records (no label row) are not negatives: they take no part in probing.
    rows = {s: np.asarray(ds[s].labelled, bool) for s in SPLITS}
    labels = {s: ds[s].label_matrix()[rows[s]] for s in SPLITS}
    subjects = {s: np.asarray(ds[s].manifest["subject_id"], np.int64)[rows[s]] for s in SPLITS}
    subset = None
    if codes != "all":
        subset = task_columns(data_dir, codes).names  # ValueError naming the tasks on offer
        if not subset:
            raise ValueError(f"{data_dir}/labels.json: label task {codes!r} has no codes")
    if cross_fold:  # one pool: the folds, not the splits, decide who trains, tunes and tests
        folds = np.concatenate([np.asarray(ds[s].manifest["fold"], np.int64)[rows[s]] for s in SPLITS])
        y_all = np.concatenate([labels[s] for s in SPLITS])
        keep, dropped = label_efficiency.select_codes(vocab, y_all, y_all, subset)
    else:
        keep, dropped = label_efficiency.select_codes(vocab, labels["train"], labels["test"], subset)
    if not keep:
        reasons = {}
        for why in dropped.values():
            reasons[why] = reasons.get(why, 0) + 1
        raise ValueError(f"no code can be evaluated in {data_dir}: of {len(vocab)} codes, "
                         + "; ".join(f"{n} {why}" for why, n in reasons.items())
                         + " (a larger dataset or --codes all may help)")
    # ancestor codes with identical labels (I45 / I451 / I4510) count once, listing the aliases
    kept, aliases = label_efficiency.collapse_identical([vocab[j] for j in keep],
                                                        {s: labels[s][:, keep] for s in SPLITS})
    keep = [keep[i] for i in kept]
    names = [vocab[j] for j in keep]
    emb = {s: embedded[s]["embeddings"][rows[s]] for s in SPLITS}
    if cross_fold:
        results = label_efficiency.run_cross_fold(
            np.concatenate([emb[s] for s in SPLITS]), y_all[:, keep],
            np.concatenate([subjects[s] for s in SPLITS]), folds, names, fractions=fractions,
            seeds=seeds, n_boot=n_boot, l2_grid=l2_grid, where=str(data_dir))
    else:
        results = label_efficiency.run(emb, {s: labels[s][:, keep] for s in SPLITS}, subjects, names,
                                       fractions=fractions, seeds=seeds, n_boot=n_boot, l2_grid=l2_grid)
    results["excluded_codes"] = dropped
    results["aliases"] = aliases
    return results


def write_reports(results: dict, out_dir: pathlib.Path, embedded: dict | None = None,
                  data_dir: str | None = None, title: str = "") -> None:
    from lamae_jax.eval import report as eval_report

    out_dir.mkdir(parents=True, exist_ok=True)
    if embedded is not None and data_dir is not None:
        att = embedded["test"]["lead_attention"]
        if np.isfinite(att).any():
            from lamae_jax.eval import attention as attention_plots
            from lamae_jax.data.dataset import PreprocessedECG

            ds = PreprocessedECG(data_dir, "test")
            results["lead_attention"] = attention_plots.plot_lead_attention(
                att, out_dir / "lead_attention.png", lead_mask=ds.manifest["lead_mask"],
                labels=ds.label_matrix(), code_names=ds.vocabulary,
                title="Per-lead latent attention, test split")
    write_json_atomic(out_dir / "results.json", {k: v for k, v in results.items() if k != "replicates"}, indent=1)
    (out_dir / "results.md").write_text(eval_report.markdown(results, title or "Linear probe"))
    eval_report.plot_label_efficiency({results.get("meta", {}).get("cross_lead", "model"):
                                       results["summary"]}, out_dir / "label_efficiency.png")


def evaluate_workdir(workdir: str, *, data: str | None = None, step: int | None = None,
                     best: bool = False, codes: str = "all", fractions=(0.01, 0.1, 1.0), seeds: int = 3,
                     n_boot: int = 200, batch_size: int = 64, out_dir: str | None = None,
                     cache_embeddings: bool = True, init: str = "pretrained",
                     readout: str = "default", cross_fold: bool = False) -> dict:
    """Everything the CLI does; returns the results dict (written by process 0 only).

    init="random": the control every representation figure needs: the same architecture
    (W's config) with freshly initialised weights (seed config.seed), under the same protocol;
    written to W/eval-random by default. Embeddings are cached in W/embeddings/ per (step or
    'random', data dir): re-probing with other codes or fractions does not re-embed.
    readout: the probe's features (eval.embed.readout_features): default | mean | concat | latent;
    written to W/eval[-random] for default, W/eval[-random]-READOUT otherwise. cross_fold: every
    fold of the data is the test fold once (evaluate_embeddings)."""
    import jax

    from lamae_jax import models
    from lamae_jax.data.lengths import eval_samples
    from lamae_jax.eval import embed as embedding

    from lamae_jax.train import checkpoints

    if init not in ("pretrained", "random"):
        raise ValueError(f"init must be 'pretrained' or 'random', got {init!r}")
    config = checkpoints.load_config(workdir)  # a clear error when W is not a training workdir
    if init == "pretrained":
        used_step = _step_of(workdir, step, best)  # clear errors: not a workdir, no checkpoint
    data_dir = embedding.resolve_data_dir(workdir, config, data)
    if cross_fold and init == "pretrained":  # random weights saw nothing: their control is honest
        from lamae_jax.eval import leakage
        leakage.check_cross_fold(workdir, config, data_dir)
    if init == "random":
        used_step = "random"
        check_labels(data_dir)
        model = models.build(config.model)
        params = random_params(config)
    else:
        check_labels(data_dir)  # before restoring or embedding anything
        model, params, config = embedding.load_model(workdir, step=used_step)
    embedding.check_readout(readout, config.model.cross_lead)
    leads = readout in ("mean", "concat")
    cache = _cache_path(workdir, used_step, data_dir, config, leads) if cache_embeddings else None
    embedded = _load_cache(cache, data_dir) if cache else None
    if embedded is None and cache and not leads:  # the per-lead cache holds the ECG embeddings too
        lead_cache = _cache_path(workdir, used_step, data_dir, config, True)
        with_leads = _load_cache(lead_cache, data_dir)
        if with_leads is not None:
            cache, embedded = lead_cache, {s: {k: v for k, v in e.items() if k != "lead_embeddings"}
                                           for s, e in with_leads.items()}
    if embedded is None:
        embedded = embed_all(model, params, data_dir, batch_size=batch_size, lead_embeddings=leads,
                             num_samples=eval_samples(config))
        if cache and jax.process_index() == 0:
            from lamae_jax.eval.export import write_npz_atomic
            write_npz_atomic(cache, {f"{s}_{k}": v for s in SPLITS for k, v in embedded[s].items()})
    else:
        print(f"using cached embeddings {cache}", flush=True)
    if jax.process_index() != 0:
        return {}
    if readout != "default":
        from lamae_jax.data.dataset import PreprocessedECG

        embedded = {s: {**e, "embeddings": embedding.readout_features(
            e, PreprocessedECG(data_dir, s).manifest["lead_mask"], readout)} for s, e in embedded.items()}
    results = evaluate_embeddings(embedded, data_dir, codes=codes, fractions=fractions, seeds=seeds,
                                  n_boot=n_boot, cross_fold=cross_fold)
    results["meta"] = {"workdir": str(workdir), "data_dir": str(data_dir), "step": used_step,
                       "cross_lead": config.model.cross_lead, "size": config.model.size, "codes": codes,
                       "n_boot": n_boot, "seeds": seeds, "fractions": list(fractions),
                       "embedding_dim": int(embedded["test"]["embeddings"].shape[1]),
                       "num_params": models.param_count(params), "init": init, "readout": readout,
                       "eval_samples": eval_samples(config),
                       "test": "every fold once (cross-fold)" if cross_fold else "test split"}
    default_out = ("eval" if init == "pretrained" else "eval-random") + (
        "" if readout == "default" else f"-{readout}")
    out = pathlib.Path(out_dir) if out_dir else pathlib.Path(workdir).expanduser() / default_out
    write_reports(results, out, embedded, data_dir,
                  title=f"Linear probe: {config.model.cross_lead} ({config.model.size}), "
                        f"{'step ' + str(used_step) if init == 'pretrained' else 'random init'}")
    return results


def evaluate_with_control(workdir: str, *, out_dir: str | None = None, **kw) -> dict:
    """The pretrained encoder and its control (same architecture, random weights) under the same
    protocol and bootstrap resamples; writes W/eval/control.{json,md} with the paired differences
    pretrained - random (macro AUROC/AUPRC, 95 % CI) per label fraction."""
    from lamae_jax.eval.protocol import paired_differences

    rows = {}
    suffix = "" if kw.get("readout", "default") == "default" else f"-{kw['readout']}"
    for init in ("pretrained", "random"):
        sub = None if out_dir is None else os.path.join(out_dir, ("eval" if init == "pretrained"
                                                                  else "eval-random") + suffix)
        rows[init] = {"results": evaluate_workdir(workdir, init=init, out_dir=sub, **kw)}
    if not rows["pretrained"]["results"]:  # not process 0
        return {}
    diffs = paired_differences(rows, reference="pretrained").get("pretrained - random", {})
    out = pathlib.Path(out_dir) if out_dir else pathlib.Path(workdir).expanduser() / f"eval{suffix}"
    summary = {init: {k: {m: v.get(m) for m in ("macro_auroc", "macro_auroc_ci", "n_seeds")}
                      for k, v in r["results"]["summary"].items()} for init, r in rows.items()}
    control = {"meta": rows["pretrained"]["results"]["meta"], "summary": summary,
               "pretrained_minus_random": diffs}
    (out / "control.json").write_text(json.dumps(control, indent=1, default=json_default))
    lines = ["# Pretrained encoder vs its random-init control", "",
             f"Same architecture, same protocol and bootstrap resamples; codes: {kw.get('codes', 'all')}; "
             f"checkpoint step {control['meta']['step']}.", "",
             "| labels | pretrained | random init | pretrained - random [95 % CI] |",
             "|---|---|---|---|"]
    for key, d in diffs.items():
        p, r = summary["pretrained"][key], summary["random"][key]
        lo, hi = d["auroc"]["ci"]
        lines.append(f"| {key} | {p['macro_auroc']:.3f} | {r['macro_auroc']:.3f} | "
                     f"{d['auroc']['diff']:+.3f} [{lo:+.3f}, {hi:+.3f}] |")
    (out / "control.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[4:]), flush=True)
    return control


def random_params(config):
    """Freshly initialised parameters of config's model (seed config.seed): the control."""
    import jax

    from lamae_jax.train import state

    return jax.jit(functools.partial(state.init_params, config))()


def _cache_path(workdir: str, step, data_dir: str, config, lead_embeddings: bool = False) -> pathlib.Path:
    """W/embeddings/step{S}-{checkpoint}-{data}.npz, keyed on the checkpoint's identity (a retrained
    run saving the same step is another file; random init: the seed and model config), on the
    data directory and its manifest and on the evaluation length, so stale embeddings are never
    reused."""
    import hashlib
    import json

    from lamae_jax.train import checkpoints

    if step == "random":
        model = json.dumps(config.model.to_dict() if hasattr(config.model, "to_dict") else
                           dict(config.model), sort_keys=True)
        ckpt = hashlib.sha1(f"seed{config.seed}|{model}".encode()).hexdigest()[:10]
    else:
        ckpt = checkpoints.checkpoint_identity(workdir, step)
    manifest = pathlib.Path(data_dir) / "manifest.csv"
    st = manifest.stat() if manifest.is_file() else None
    from lamae_jax.data.lengths import eval_samples

    # the evaluation length too: embeddings of another window are other embeddings
    data = f"{os.path.abspath(data_dir)}|{st and (st.st_size, st.st_mtime_ns)}|T{eval_samples(config)}"
    tag = hashlib.sha1(data.encode()).hexdigest()[:10]
    leads = "-leads" if lead_embeddings else ""
    return pathlib.Path(workdir).expanduser() / "embeddings" / f"step{step}-{ckpt}-{tag}{leads}.npz"


def _load_cache(path: pathlib.Path, data_dir: str) -> dict | None:
    """The cached embeddings if they still match the data's record counts, else None."""
    from lamae_jax.data.dataset import PreprocessedECG

    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as z:
        out = {s: {k[len(s) + 1:]: z[k] for k in z.files if k.startswith(s + "_")} for s in SPLITS}
    for s in SPLITS:
        if out[s].get("embeddings") is None or len(out[s]["embeddings"]) != len(PreprocessedECG(data_dir, s)):
            return None
    return out


def _step_of(workdir: str, step: int | None, best: bool) -> int:
    """The checkpoint step to evaluate: `step`, else the latest (best=True: the lowest val loss)."""
    from lamae_jax.train import checkpoints

    checkpoints.load_config(workdir)  # a clear error when W is not a training workdir
    return checkpoints.resolve_step(workdir, step, best)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lamae_jax.evaluate", description=__doc__,
                                 formatter_class=HelpFormatter)
    ap.add_argument("--workdir", required=True, help="training workdir (config.json + checkpoints/)")
    ap.add_argument("--data", default=None, help="preprocessed directory (default: the training data)")
    ap.add_argument("--step", type=int, default=None,
                    help="checkpoint step (default: the latest, as export, Embedder and attention_plots)")
    ap.add_argument("--best", action="store_true",
                    help="the lowest validation loss instead (not comparable across variants or data)")
    ap.add_argument("--label-fractions", type=label_fractions, default=[0.01, 0.1, 1.0],
                    help="fractions of training subjects with labels (default 0.01,0.1,1.0)")
    ap.add_argument("--task", "--codes", dest="codes", metavar="TASK", default="all",
                    help="label task: all, salient (MIMIC), or a group of the data's labels.json "
                         "(PTB-XL: diagnostic, subclass, form, rhythm; Challenge: scored); --codes is "
                         "the old name")
    ap.add_argument("--init", choices=("pretrained", "random"), default="pretrained",
                    help="random: the same architecture with random weights (the control), "
                         "written to W/eval-random")
    ap.add_argument("--seeds", type=int, default=3, help="subsampling seeds per fraction < 1")
    ap.add_argument("--bootstrap", type=int, default=200, help="bootstrap replicates for the CIs")
    ap.add_argument("--batch-size", type=int, default=64, help="records per host per embedding step")
    ap.add_argument("--out", default=None, help="output folder (default W/eval)")
    ap.add_argument("--no-cache", action="store_true", help="re-embed even if W/embeddings/ has them")
    ap.add_argument("--readout", choices=("default", "mean", "concat", "latent", "all"), default="default",
                    help="probe features: default (the ECG embedding: latent mean for latent, lead mean "
                         "otherwise), mean (of the present leads' embeddings, every variant), concat (the "
                         "12 lead embeddings; keeps lead identity), latent (latent only), all (each the "
                         "variant has); outputs W/eval-READOUT"),
    ap.add_argument("--cross-fold", action="store_true",
                    help="every fold of the data is the test fold once, the fold before it tunes the "
                         "probe (PTB-XL strat_fold, CPSC folds): all records scored, for small sets")
    ap.add_argument("--control", action="store_true",
                    help="also probe the random-init control and write W/eval/control.{json,md} "
                         "(paired bootstrap differences pretrained - random)")
    ap.add_argument("--results-json", default=None, metavar="PATH",
                    help="with --control: also write the docs' results JSON (demo-probe table: commit, "
                         "date, machine, this command) to PATH (default: none)")
    args = ap.parse_args(argv)
    if args.results_json and (not args.control or args.readout == "all"):
        ap.error("--results-json needs --control and one --readout")
    if args.seeds < 1 or args.bootstrap < 0 or args.batch_size < 1:
        ap.error("--seeds and --batch-size must be >= 1, --bootstrap >= 0")

    from lamae_jax.parallel import distributed
    distributed.maybe_initialize()
    kw = dict(data=args.data, step=args.step, best=args.best, codes=args.codes,
              fractions=args.label_fractions, seeds=args.seeds, n_boot=args.bootstrap,
              batch_size=args.batch_size, cache_embeddings=not args.no_cache,
              cross_fold=args.cross_fold)
    try:
        readouts = [args.readout]
        if args.readout == "all":
            from lamae_jax.eval.embed import readouts_of
            from lamae_jax.train.checkpoints import load_config

            readouts = list(readouts_of(load_config(args.workdir).model.cross_lead))
        for readout in readouts:
            out_dir = args.out if len(readouts) == 1 or not args.out else os.path.join(args.out, readout)
            if args.control:
                control = evaluate_with_control(args.workdir, out_dir=out_dir, readout=readout, **kw)
                if control and args.results_json:
                    from lamae_jax import results_json

                    argv_ = sys.argv[1:] if argv is None else list(argv)
                    path = results_json.write_results(
                        args.results_json, results_json.tables_from_control(control),
                        command=["python", "-m", "lamae_jax.evaluate", *argv_])
                    print(f"wrote {path}")
                continue
            results = evaluate_workdir(args.workdir, out_dir=out_dir, init=args.init, readout=readout, **kw)
            if results:
                _print_summary(results, out_dir or os.path.join(
                    args.workdir, ("eval" if args.init == "pretrained" else "eval-random")
                    + ("" if readout == "default" else f"-{readout}")))
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def _print_summary(results: dict, out: str) -> None:
    print(f"wrote {out}/results.json, results.md, label_efficiency.png "
          f"(readout {results['meta'].get('readout', 'default')})")
    for key, s in results["summary"].items():
        if s.get("n_seeds"):
            print(f"  fraction {key}: macro AUROC {s['macro_auroc']:.4f} "
                  f"[{s['macro_auroc_ci'][0]:.4f}, {s['macro_auroc_ci'][1]:.4f}] over {s['n_seeds']} seed(s)")
            if s.get("per_fold_macro_auroc"):
                from lamae_jax.eval.report import fold_cell
                print(f"    per-fold macro AUROC {fold_cell(s['per_fold_macro_auroc'])}")
        else:
            print(f"  fraction {key}: skipped ({s.get('note')})")


if __name__ == "__main__":
    sys.exit(main())
