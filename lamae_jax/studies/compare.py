"""The paper's comparison (`python -m lamae_jax.compare --out runs/compare`) as a library.

Pretrains `latent` (LAMAE), `none` (independent leads), `joint` (ST-MEM style) and `align`
(CLOCS-style contrastive alignment of the leads) from the same config with identical budgets (steps, batch, optimiser, seed) and the same preprocessed data, then
evaluates each with the same linear-probe protocol (same label fractions, subject draws, bootstrap
replicates) on every readout the variant has (mean and concat for all, latent for latent), so a
gain can be told apart from the pool; beside each row its parameters and FLOPs, and below it
the control (same architecture and readout, random weights) with the paired difference. Each variant's
lead reconstruction (whole leads held out on the test split) is reported too. Checkpoints: the
last step of every variant (validation MSE is not comparable across variants). Writes
OUT/comparison.md, OUT/comparison.json and OUT/comparison_label_efficiency.png.
Each variant's run lives in OUT/<variant>/ (rerunning resumes or reuses it). Pretraining is
passed in (`train_fn`), so evaluation never imports the training loop.
"""

from __future__ import annotations

import json
import os
import pathlib
import time

VARIANTS = ("latent", "none", "joint", "align")


from lamae_jax.eval.protocol import paired_differences  # noqa: E402,F401  (re-exported)


def _cell(s: dict | None) -> str:
    if not s or not s.get("n_seeds"):
        return "skipped"
    lo, hi = s["macro_auroc_ci"]
    out = f"{s['macro_auroc']:.3f} [{lo:.3f}, {hi:.3f}]"
    spread = s.get("per_fold_macro_auroc")  # cross-fold: the folds' spread beside the pooled figure
    if spread and spread.get("mean") is not None:
        out += f"; folds {spread['mean']:.3f} ± {spread['std']:.3f} [{spread['min']:.3f}, {spread['max']:.3f}]"
    return out


def row_name(variant: str, readout: str, init: str = "pretrained") -> str:
    return f"{variant}/{readout}" + ("" if init == "pretrained" else f" {init} init")


def model_flops(model_config, num_samples: int) -> dict:
    """XLA's FLOP count of one ECG through encode() (what a probe or an embedding export costs)
    and through the masked pretraining forward pass; lowered, never compiled."""
    import jax
    import jax.numpy as jnp

    from lamae_jax import models

    model = models.build(model_config)
    sig = jax.ShapeDtypeStruct((1, 12, num_samples), jnp.float32)
    mask = jax.ShapeDtypeStruct((1, 12), jnp.bool_)
    keys = {"params": jax.random.key(0), "mask": jax.random.key(1)}
    params = jax.eval_shape(lambda: model.init(keys, jnp.zeros(sig.shape), jnp.ones(mask.shape, bool)))

    def gflops(fn):  # None where the backend does not count FLOPs
        f = models.cost_flops(jax.jit(fn).lower(params, sig, mask))
        return None if f is None else f / 1e9

    return {"encode_gflops": gflops(lambda p, x, m: model.apply(p, x, m, method="encode")),
            "pretrain_forward_gflops": gflops(lambda p, x, m: model.apply(
                p, x, m, rngs={"mask": jax.random.key(0)}, train=False))}


def comparison_markdown(rows: dict, fractions, meta: dict, diffs: dict | None = None,
                        leads: dict | None = None) -> str:
    """rows: name ('variant/readout', or a bare variant) -> {results, val_loss, train_seconds,
    params, gflops...}; diffs from paired_differences; leads: variant -> lead reconstruction."""
    from lamae_jax.studies import lead_reconstruction

    lines = ["# LAMAE vs baselines at equal budget", "",
             f"Config `{meta['config']}`, {meta['total_steps']} steps of batch {meta['batch_size']} each, "
             f"pretraining data `{meta['data_dir']}`, probed on `{meta.get('eval_data_dir')}`, "
             f"codes: {meta['codes']}, seeds {meta['seeds']}, checkpoint: the last step, "
             f"scored on: {meta.get('test', 'test split')}"
             + ("" if "cross-fold" not in str(meta.get("test")) else " (pooled AUROC; after `folds`: "
                "mean ± sd [min, max] of each test fold's own macro AUROC)") + "; "
             f"test macro AUROC of a linear probe [95 % bootstrap CI over test subjects]. "
             f"Readouts: mean (of the present leads), concat (12 lead embeddings), latent (latent mean); "
             f"rows marked `random init` are the control: the same architecture and readout with random "
             f"weights, same protocol.", "",
             "| variant/readout | params | encode GFLOPs/ECG | pretrain fwd GFLOPs/ECG | final val loss | "
             "train time (s) | " + " | ".join(f"AUROC @ {f:g}" for f in fractions) + " | AUPRC @ "
             + f"{max(fractions):g} |",
             "|---|---|---|---|---|---|" + "---|" * (len(fractions) + 1)]
    for v, r in rows.items():
        summ = r["results"]["summary"]
        top = summ.get(f"{max(fractions):g}", {})
        auprc = f"{top['macro_auprc']:.3f}" if top.get("n_seeds") else "–"
        val = r.get("val_loss")
        secs = r.get("train_seconds")
        gf = [r.get(k) for k in ("encode_gflops", "pretrain_forward_gflops")]
        shown = v if not r.get("shared_with") else f"{v} (= {r['shared_with']})"
        lines.append(f"| {shown} | {r.get('params', '–')} | "
                     + " | ".join("–" if g is None else f"{g:.3g}" for g in gf)
                     + f" | {'–' if val is None else f'{val:.4f}'} | {'–' if secs is None else f'{secs:.0f}'} | "
                     + " | ".join(_cell(summ.get(f"{f:g}")) for f in fractions) + f" | {auprc} |")
    if meta.get("align"):
        a = meta["align"]
        lines += ["", f"`align`: the `none` MAE plus a contrastive term aligning the leads of one ECG "
                  f"(weight {a['contrastive_weight']:g}, temperature {a['contrastive_temperature']:g})."]
    for lever, info in (meta.get("levers") or {}).items():
        changed = ", ".join(f"{k} {a!r} → {b!r}" for k, (a, b) in info["differs_from_latent"].items())
        lines += ["", f"Lever `{lever}` ({info['workdir']}, probed, not trained here): latent with "
                  f"{changed or 'the same settings'}."]
    if diffs:
        lines += ["", "Paired difference in test macro AUROC (same test subjects resampled; a CI "
                  "excluding 0 is a significant difference):", "",
                  "| difference | " + " | ".join(f"@ {f:g}" for f in fractions) + " |",
                  "|---|" + "---|" * len(fractions)]
        for name, per in diffs.items():
            cells = []
            for f in fractions:
                e = per.get(f"{f:g}")
                if e is None or e["auroc"]["ci"][0] is None:
                    cells.append("–")
                else:
                    d, (lo, hi) = e["auroc"]["diff"], e["auroc"]["ci"]
                    cells.append(f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    codes = sorted({c for r in rows.values() for c in r["results"].get("codes", [])})
    if codes and len(rows) > 1:
        for f in fractions:
            lines += ["", f"Per-code test AUROC @ {f:g}:", "",
                      "| variant/readout | " + " | ".join(codes) + " |", "|---|" + "---|" * len(codes)]
            for v, r in rows.items():
                per = (r["results"]["summary"].get(f"{f:g}") or {}).get("per_code") or {}
                lines.append(f"| {v} | " + " | ".join(
                    f"{per[c]['auroc']:.3f}" if c in per else "–" for c in codes) + " |")
    if leads:
        lines += ["", "Lead reconstruction on the test split (whole leads held out, the other leads fully "
                  "visible; Pearson r per record, mean / explained variance, pooled; `none` only has its "
                  "mask token: the floor):", "", lead_reconstruction.markdown(leads)]
    return "\n".join(lines) + "\n"


def readout_differences(rows: dict) -> dict:
    """latent minus each other variant with the same readout, plus latent's latent pool minus
    each other's lead mean (each variant's own ECG embedding)."""
    by_readout: dict = {}
    for name, r in rows.items():
        if r.get("init", "pretrained") == "pretrained":
            by_readout.setdefault(r["readout"], {})[r["variant"]] = r
    out = {}
    for ro, per in by_readout.items():
        for key, d in paired_differences(per).items():
            out[f"{key} ({ro})"] = d
    if "latent" in by_readout:
        for v, r in by_readout.get("mean", {}).items():
            if v != "latent":
                pair = {"latent": by_readout["latent"]["latent"], v: r}
                for key, d in paired_differences(pair).items():
                    out[f"{key} (latent pool vs {v}'s lead mean)"] = d
    return out


def control_differences(rows: dict) -> dict:
    """Each pretrained row minus its control (the same variant and readout, random weights)."""
    out = {}
    for name, r in rows.items():
        control = rows.get(row_name(r["variant"], r["readout"], "random"))
        if r.get("init", "pretrained") == "pretrained" and control is not None:
            d = paired_differences({"pretrained": r, "random": control}, reference="pretrained")
            if d:
                out[f"{name} - random init"] = d["pretrained - random"]
    return out


def per_lead_control_key(config) -> str:
    """Identity of the random-init per-lead readouts (mean, concat) of config's architecture: the
    random tokenizer and encoder weights and every model field but cross_lead, plus whether the
    encoder attends across leads (`joint`). `latent`, `none` and `align` built from one config
    share it (same seed, same per-lead encoder), so their controls are probed once."""
    import hashlib

    import jax
    import numpy as np

    from lamae_jax.eval.evaluate import random_params

    params = random_params(config)
    h = hashlib.sha1()
    for part in ("tokenizer", "encoder"):
        for path, leaf in jax.tree_util.tree_flatten_with_path(params[part])[0]:
            h.update(jax.tree_util.keystr(path).encode())
            h.update(np.asarray(leaf).tobytes())
    model = {k: v for k, v in config.model.to_dict().items() if k != "cross_lead"}
    h.update(json.dumps({"joint": config.model.cross_lead == "joint", "seed": config.seed,
                         "model": model}, sort_keys=True, default=str).encode())
    return h.hexdigest()


def _config_differences(reference, other) -> dict:
    """{key: [reference value, other value]} over model fields and the budget ({} without a
    reference): what a lever row changed."""
    if reference is None:
        return {}
    ref, oth = reference.to_dict(), other.to_dict()
    out = {f"model.{k}": [ref["model"].get(k), v] for k, v in oth["model"].items()
           if ref["model"].get(k) != v}
    for k in ("total_steps", "batch_size", "seed"):
        if ref.get(k) != oth.get(k):
            out[k] = [ref.get(k), oth.get(k)]
    return out


def _run_config(workdir: pathlib.Path):
    """The config a run in `workdir` trained with, or None when there is no run."""
    from lamae_jax.train.checkpoints import load_config

    return load_config(str(workdir)) if (workdir / "config.json").is_file() else None


def _finished_run(workdir: pathlib.Path) -> dict:
    """data_dir, last val_loss and step of an existing workdir (for --eval-only)."""
    if not (workdir / "config.json").is_file():
        raise FileNotFoundError(f"--eval-only: {workdir} has no config.json (pretrain it first)")
    config = json.loads((workdir / "config.json").read_text())
    val_loss, step = None, None
    metrics = workdir / "metrics.jsonl"
    if metrics.is_file():
        for line in metrics.read_text().splitlines():
            rec = json.loads(line)
            if "val_loss" in rec:
                val_loss, step = rec["val_loss"], rec.get("step")
    return {"data_dir": config["data"]["root"], "val_loss": val_loss, "step": step,
            "total_steps": config["total_steps"], "batch_size": config["batch_size"]}


def compare_variants(configs: dict, out, *, train_fn=None, data=None, fractions=(0.01, 0.1, 1.0),
                     codes: str = "all", seeds: int = 3, n_boot: int = 200, eval_data=None,
                     name: str = "", meta_config: str = "", lead_recon: bool = True,
                     random_control: bool = True, cross_fold: bool = False,
                     levers: dict | None = None) -> int:
    """Pretrains (train_fn(config, workdir) -> summary; None: --eval-only) and probes each
    {variant: config} on every readout it has, and (random_control) the same architecture with
    random weights on each readout as the control; writes OUT/comparison[_NAME].{md,json} and the
    label-efficiency plot. levers {name: workdir}: finished runs of other settings (a design
    lever of `latent`, say) probed beside the variants under the same protocol, never trained
    here; their rows pair with latent's ("latent - NAME (readout)"). Returns 0, or 3 when a
    pretraining run was preempted (rerun to resume)."""
    import jax

    from lamae_jax.data.lengths import eval_samples
    from lamae_jax.eval import evaluate, report as eval_report
    from lamae_jax.studies import lead_reconstruction
    from lamae_jax.eval.embed import readouts_of

    out = pathlib.Path(out).expanduser()
    data_dir = data
    rows, leads, meta = {}, {}, None
    probed_controls = {}  # (per_lead_control_key, readout) -> the row that holds those results
    from lamae_jax.train.checkpoints import load_config

    runs = [(v, config, out / v, False) for v, config in configs.items()]
    runs += [(name, load_config(str(w)), pathlib.Path(w).expanduser(), True)
             for name, w in (levers or {}).items()]
    for v, config, workdir, is_lever in runs:
        if data_dir and not is_lever:
            config.data.root = data_dir  # identical data for every variant
        if train_fn is None or is_lever:
            summary, train_seconds = _finished_run(workdir), None
        else:
            print(f"=== {v}: pretraining {config.total_steps} steps in {workdir}", flush=True)
            t0 = time.time()
            summary = train_fn(config, str(workdir))
            train_seconds = time.time() - t0
            if summary.get("preempted"):
                print(f"=== {v}: pretraining was interrupted at step {summary.get('step')} (checkpoint "
                      "saved); rerun the same command to resume", flush=True)
                return 3
        data_dir = data_dir or summary["data_dir"]
        flops = {**model_flops(config.model, eval_samples(config)), "eval_samples": eval_samples(config)}
        inits = ("pretrained", "random") if random_control else ("pretrained",)
        # the per-lead readouts first: their embedding pass serves the latent readout too
        ordered = sorted(readouts_of(config.model.cross_lead), key=lambda r: r == "latent")
        control_key = per_lead_control_key(config) if random_control else None
        for init, ro in ((i, ro) for i in inits for ro in ordered):
            shared = probed_controls.get((control_key, ro)) if init == "random" else None
            if shared is not None:  # the same random features as an earlier variant's control
                print(f"=== {v}: the {ro} readout with random weights is {shared}'s (same random "
                      "per-lead encoder): reusing its results", flush=True)
                if jax.process_index() == 0:  # params: this variant's own (its pretrained row's)
                    rows[row_name(v, ro, init)] = {
                        **rows[shared], "variant": v, "workdir": str(workdir), "shared_with": shared,
                        "params": rows[row_name(v, ro)]["params"], **flops}
                continue
            eval_dir = workdir / (f"eval_{name}" if name else "eval") / (
                ro if init == "pretrained" else f"random-{ro}")
            print(f"=== {v}: probing the {ro} readout ({init} weights) on {eval_data or data_dir}", flush=True)
            results = evaluate.evaluate_workdir(str(workdir), data=eval_data or data_dir, best=False,
                                                codes=codes, fractions=fractions, readout=ro, init=init,
                                                seeds=seeds, n_boot=n_boot, out_dir=str(eval_dir),
                                                cross_fold=cross_fold)
            if jax.process_index() == 0:
                rows[row_name(v, ro, init)] = {
                    "results": results, "variant": v, "readout": ro, "init": init,
                    "val_loss": summary.get("val_loss") if init == "pretrained" else None,
                    "train_seconds": train_seconds if init == "pretrained" else None,
                    "params": results["meta"]["num_params"],
                    "step": results["meta"]["step"], "workdir": str(workdir), "eval_dir": str(eval_dir),
                    **flops}
            if init == "random" and ro in ("mean", "concat"):
                probed_controls[(control_key, ro)] = row_name(v, ro, init)
        if lead_recon and jax.process_index() == 0:
            print(f"=== {v}: lead reconstruction on the test split", flush=True)
            leads[v] = lead_reconstruction.evaluate_workdir(
                str(workdir), data=eval_data or data_dir,
                out_dir=workdir / (f"lead_reconstruction_{name}" if name else "lead_reconstruction"))
        if is_lever:
            meta["levers"] = {**meta.get("levers", {}),
                              v: {"workdir": str(workdir), "differs_from_latent": _config_differences(
                                  _run_config(out / "latent"), config)}}
            continue
        meta = {"config": meta_config, "total_steps": int(summary.get("total_steps", config.total_steps)),
                "batch_size": int(summary.get("batch_size", config.batch_size)), "data_dir": data_dir,
                "codes": codes, "seeds": seeds, "fractions": list(fractions), "size": config.model.size,
                "eval_data_dir": eval_data or data_dir, "checkpoint": "last step",
                "test": "every fold once (cross-fold)" if cross_fold else "test split",
                "whole_lead_mask_prob": config.model.whole_lead_mask_prob,
                "eval_samples": eval_samples(config),  # every row's FLOPs, probe and leads read this
                "align": (meta or {}).get("align"), "levers": (meta or {}).get("levers", {})}
        if v == "align":
            meta["align"] = {k: config.model[k] for k in
                             ("contrastive_weight", "contrastive_temperature")}
    if jax.process_index() != 0:
        return 0
    table = {v: {"macro_auroc": {k: s.get("macro_auroc") for k, s in r["results"]["summary"].items()},
                 "macro_auroc_ci": {k: s.get("macro_auroc_ci") for k, s in r["results"]["summary"].items()},
                 "macro_auprc": {k: s.get("macro_auprc") for k, s in r["results"]["summary"].items()},
                 **({"per_fold_macro_auroc": {k: s.get("per_fold_macro_auroc")
                                              for k, s in r["results"]["summary"].items()}}
                    if any(s.get("per_fold_macro_auroc") for s in r["results"]["summary"].values()) else {}),
                 "per_code_auroc": {k: {c: e.get("auroc") for c, e in (s.get("per_code") or {}).items()}
                                    for k, s in r["results"]["summary"].items()},
                 **{k: r.get(k) for k in ("variant", "readout", "init", "val_loss", "params", "train_seconds",
                                          "step", "encode_gflops", "pretrain_forward_gflops",
                                          "eval_samples", "shared_with")},
                 "results": os.path.join(r["eval_dir"], "results.json")}
             for v, r in rows.items()}
    diffs = {**readout_differences(rows), **control_differences(rows)}
    out.mkdir(parents=True, exist_ok=True)
    stem = f"comparison_{name}" if name else "comparison"
    (out / f"{stem}.json").write_text(json.dumps(
        {"meta": meta, "variants": table, "paired_differences": diffs,
         "lead_reconstruction": {v: r["scenarios"] for v, r in leads.items()}}, indent=1))
    md = comparison_markdown(rows, fractions, meta, diffs, leads)
    (out / f"{stem}.md").write_text(md)
    eval_report.plot_label_efficiency({v: r["results"]["summary"] for v, r in rows.items()
                                       if r["init"] == "pretrained"},
                                      out / f"{stem}_label_efficiency.png")
    print(md)
    print(f"wrote {out}/{stem}.md, {stem}.json, {stem}_label_efficiency.png")
    return 0
