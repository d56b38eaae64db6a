"""Fine-tuning throughput beside pretraining: the steps `python -m lamae_jax.finetune` runs (full and
linear, eval.finetune_loop.Runner) and the pretraining step of the same model, alternated in one
process so that the ratios are measured under the same load."""

from __future__ import annotations

import time

DEFAULT_CONFIG = "configs/base.py:demo"
NUM_CODES = 9  # CPSC's classes; the head's size barely matters next to the encoder


def measure(config, batch_size: int = 32, *, rounds: int = 3, readout: str = "mean",
            seed: int = 0) -> dict:
    """Median step times (s) of pretraining and of full / linear fine-tuning at `batch_size` on
    every local device, and each fine-tuning step's ECG/s and ratio to the pretraining step."""
    import jax
    import numpy as np

    from lamae_jax.bench import bench_train
    from lamae_jax.eval import finetune_loop as ft
    from lamae_jax.parallel import sharding
    from lamae_jax.train import state as train_state

    model = train_state.build_model(config)
    pre = bench_train._prepare(config, batch_size, None, seed)
    params = jax.device_get(pre["state"].params)
    mesh = sharding.make_mesh(1, pre["devices"])
    rng = np.random.default_rng(seed)
    loader = bench_train.random_batch(batch_size, int(config.data.crop_samples), seed)
    data = {"signal": loader["signal"].astype(np.float32) / 1000.0, "lead_mask": loader["lead_mask"],
            "valid_length": loader["valid_length"],
            "labels": (rng.random((batch_size, NUM_CODES)) < 0.2).astype(np.float32)}
    d = model.dims
    runs = {"pretrain": lambda: bench_train._timed_step(pre)}
    compile_s = {"pretrain": pre["compile_s"]}
    for mode in ("full", "linear"):
        runner = ft.Runner(model, mesh, readout, mode, batch_size)
        head = ft.init_head(seed, ft.feature_dim(d.encoder_width, d.num_leads, readout),
                            data["labels"].mean(0))
        tree = {"encoder": params, "head": head}
        tx, _ = ft.make_optimizer(tree, lr=1e-4, total_steps=1000, warmup_steps=10,
                                  weight_decay=0.05, layer_decay=0.75, depth=d.encoder_depth, mode=mode)
        init, step = runner.make_train_step(tx)
        state = {"params": runner.place(tree)}
        state["opt"] = init(state["params"])
        batch = runner.batch(data, np.arange(batch_size), data["labels"])

        def one(state=state, step=step, batch=batch):
            t = time.perf_counter()
            state["params"], state["opt"], loss = step(state["params"], state["opt"], batch)
            jax.block_until_ready(loss)
            return time.perf_counter() - t

        compile_s[mode] = one()  # first call: compile + one step
        runs[mode] = one
    for run in runs.values():  # warm
        run()
    times = {k: [] for k in runs}
    for _ in range(rounds):  # interleaved: a load change hits every kind alike
        for k, run in runs.items():
            times[k].append(run())
    med = {k: float(np.median(v)) for k, v in times.items()}
    out = {"size": config.model.size, "cross_lead": config.model.cross_lead, "batch": batch_size,
           "devices": len(pre["devices"]), "readout": readout, "rounds": rounds,
           "pretrain_step_s": med["pretrain"], "compile_s": compile_s}
    for mode in ("full", "linear"):
        out[f"{mode}_step_s"] = med[mode]
        out[f"{mode}_ecg_per_s"] = batch_size / med[mode]
        out[f"{mode}_ratio"] = med[mode] / med["pretrain"]
    return out


def run_section(quick: bool, config: str = DEFAULT_CONFIG) -> dict:
    from lamae_jax.config_file import load_config

    cfg = load_config(config, [])
    return measure(cfg, 8 if quick else 32, rounds=2 if quick else 3)


def figures(res: dict) -> list:
    from lamae_jax.bench.report import Figure

    tag = f"{res['size']}/{res['cross_lead']} b={res['batch']}"
    return [Figure("finetune", f"{tag} fine-tune step ({mode}, {res['readout']} readout)",
                   res[f"{mode}_step_s"], "s", "pretraining step", res["pretrain_step_s"],
                   note=f"{res[f'{mode}_ecg_per_s']:.1f} ECG/s; same process, alternated")
            for mode in ("full", "linear")]
