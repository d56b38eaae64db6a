"""The comparison table: paired bootstrap differences between variants, config overrides."""

import numpy as np
import pytest
from absl import flags

from lamae_jax.eval import protocol as label_efficiency
from lamae_jax.studies import compare
from tests.helpers.train import REPO_ROOT

CONFIG = str(REPO_ROOT / "configs" / "base.py")


def _results(emb_noise, seed=0):
    rng = np.random.default_rng(0)  # same records and labels for every "variant"
    w = rng.normal(size=(8, 3))
    out = {}
    for split, n in (("train", 300), ("val", 100), ("test", 200)):
        x = rng.normal(size=(n, 8))
        y = (x @ w > 0.5).astype(np.float32)
        out[split] = (x + emb_noise * np.random.default_rng(seed + n).normal(size=x.shape), y,
                      np.arange(n) // 2)
    return label_efficiency.run({s: v[0] for s, v in out.items()}, {s: v[1] for s, v in out.items()},
                                {s: v[2] for s, v in out.items()}, ["a", "b", "c"], fractions=(0.2, 1.0),
                                seeds=2, n_boot=100, l2_grid=(1e-2,))


def test_paired_difference_favours_better_embeddings():
    rows = {v: {"results": _results(noise), "val_loss": 0.5, "train_seconds": 1.0, "params": 10}
            for v, noise in (("latent", 0.1), ("none", 3.0))}
    diffs = compare.paired_differences(rows)
    d = diffs["latent - none"]["1"]["auroc"]
    assert d["diff"] > 0.1 and d["ci"][0] > 0  # a clear win: the CI excludes 0
    assert d["diff"] == pytest.approx(rows["latent"]["results"]["summary"]["1"]["macro_auroc"]
                                      - rows["none"]["results"]["summary"]["1"]["macro_auroc"])
    md = compare.comparison_markdown(rows, [0.2, 1.0], {"config": "c", "total_steps": 5, "batch_size": 2,
                                                        "data_dir": "d", "codes": "all", "seeds": 2}, diffs)
    assert "| latent |" in md and "| none |" in md and "| latent - none |" in md
    md = compare.comparison_markdown(rows, [0.1, 1.0], {"config": "c", "total_steps": 1, "batch_size": 8,
                                                        "data_dir": "d", "codes": "all", "seeds": 2,
                                                        "align": {"contrastive_weight": 1.0,
                                                                  "contrastive_temperature": 0.1}}, diffs)
    assert "weight 1, temperature 0.1" in md  # align's contrastive settings beside the table
    assert compare.paired_differences({"none": rows["none"]}) == {}


def test_overrides_are_typed_and_checked():
    from lamae_jax.studies.compare_cli import variant_configs

    from lamae_jax.studies.compare_cli import VARIANTS

    assert VARIANTS == ("latent", "none", "joint", "align")
    c = variant_configs(CONFIG + ":smoke", ["--config.model.num_latents=8", "--config.optim.base_lr=0.01",
                                            "--config.data.root=/x"], ["none"], total_steps=5)["none"]
    assert c.model.num_latents == 8 and isinstance(c.model.num_latents, int)
    assert c.optim.base_lr == 0.01 and c.data.root == "/x"
    assert c.model.cross_lead == "none" and c.total_steps == 5
    with pytest.raises(AttributeError, match="num_latents"):  # "did you mean"
        variant_configs(CONFIG + ":smoke", ["--config.model.num_latent=8"], ["none"])
    with pytest.raises(flags.IllegalFlagValueError):
        variant_configs(CONFIG + ":smoke", ["--config.model.num_latents=many"], ["none"])
    with pytest.raises(ValueError, match="KEY=VALUE"):
        variant_configs(CONFIG + ":smoke", ["model.num_latents=8"], ["none"])


def test_compare_help_and_bad_override_exit_2(capsys):
    from lamae_jax.studies.compare_cli import main

    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0 and "--config" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        main(["--out", "/tmp/unused", f"--config={CONFIG}:smoke", "--config.total_stepz=3"])
    assert e.value.code == 2 and "total_steps" in capsys.readouterr().err
    for spec, why in (("none=/tmp", "not one of"), ("novel", "NAME=WORKDIR"),
                      ("novel=/nonexistent/run", "has no config.json")):
        with pytest.raises(SystemExit) as e:
            main(["--out", "/tmp/unused", "--eval-only", "--lever", spec])
        assert e.value.code == 2 and why in capsys.readouterr().err


def test_readout_differences_pair_rows_with_the_same_readout():
    rows = {}
    for v, ro, noise in (("latent", "mean", 0.1), ("latent", "latent", 0.2), ("none", "mean", 3.0)):
        rows[compare.row_name(v, ro)] = {"results": _results(noise), "variant": v, "readout": ro}
    d = compare.readout_differences(rows)
    assert set(d) == {"latent - none (mean)", "latent - none (latent pool vs none's lead mean)"}
    same = d["latent - none (mean)"]["1"]["auroc"]["diff"]
    assert same == pytest.approx(rows["latent/mean"]["results"]["summary"]["1"]["macro_auroc"]
                                 - rows["none/mean"]["results"]["summary"]["1"]["macro_auroc"])


def test_control_differences_pair_each_row_with_its_own_random_init():
    rows = {}
    for v, ro, init, noise in (("latent", "mean", "pretrained", 0.1), ("latent", "mean", "random", 3.0),
                               ("none", "mean", "pretrained", 3.0), ("none", "concat", "pretrained", 0.1)):
        rows[compare.row_name(v, ro, init)] = {"results": _results(noise), "variant": v, "readout": ro,
                                               "init": init}
    assert set(compare.readout_differences(rows)) == {"latent - none (mean)"}  # controls are not variants
    d = compare.control_differences(rows)
    assert set(d) == {"latent/mean - random init"}  # none has no control row here
    e = d["latent/mean - random init"]["1"]["auroc"]
    assert e["diff"] > 0.1 and e["ci"][0] > 0


def test_compare_codes_must_name_a_task_of_the_probed_data(tmp_path, capsys):
    from lamae_jax.studies.compare_cli import main
    from tests.helpers.preprocessed import make_records, write_preprocessed

    with pytest.raises(SystemExit) as e:  # synthetic pretraining data offers all and salient only
        main(["--out", str(tmp_path / "o"), f"--config={CONFIG}:smoke", "--codes", "diagnostic"])
    assert e.value.code == 2 and "diagnostic" in capsys.readouterr().err
    data = write_preprocessed(tmp_path / "pp", make_records(8, num_samples=500, seed=1), chunk_size=8)
    with pytest.raises(SystemExit) as e:  # before any training: the error names the tasks on offer
        main(["--out", str(tmp_path / "o"), f"--config={CONFIG}:smoke", "--eval-data", str(data),
              "--codes", "rhythm"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "rhythm" in err and "'all'" in err
    with pytest.raises(SystemExit) as e:  # pretraining data given as an override is the probed data too
        main(["--out", str(tmp_path / "o"), f"--config={CONFIG}:smoke", f"--config.data.root={data}",
              "--codes", "rhythm"])
    err = capsys.readouterr().err  # checked against that data's labels.json, not the synthetic tasks
    assert e.value.code == 2 and "this data offers ['all'" in err and "synthetic" not in err
    assert not (tmp_path / "o").exists()


def test_per_lead_control_key_is_shared_exactly_where_the_random_features_coincide():
    """latent, none and align from one config have the same random per-lead encoder (so one control
    serves all three); joint's encoder reads across leads, and another seed or width is another
    encoder."""
    from lamae_jax.config_file import load_config
    from lamae_jax.studies.compare import per_lead_control_key

    def key(cross_lead, *overrides):
        config = load_config(f"{CONFIG}:smoke", list(overrides))
        config.model.cross_lead = cross_lead
        return per_lead_control_key(config)

    latent = key("latent")
    assert key("none") == latent == key("align")
    assert key("joint") != latent
    assert key("latent", "--config.seed=1") != latent
    assert key("latent", "--config.model.encoder_width=16") != latent


@pytest.mark.slow
def test_compare_with_align_runs_tiny_and_reports_readouts_flops_and_leads(tmp_path):
    """compare end to end at toy size: latent and align pretrain 2 steps on the same data; every
    readout each has is probed, FLOPs and lead reconstruction sit beside the rows."""
    import json
    import subprocess
    import sys

    from tests.helpers.preprocessed import make_records, write_preprocessed
    from tests.helpers.train import train_env

    data = write_preprocessed(tmp_path / "pp", make_records(40, num_samples=500, seed=1), chunk_size=16)
    out = tmp_path / "cmp"
    cmd = [sys.executable, "-m", "lamae_jax.compare", "--out", str(out), f"--config={CONFIG}:smoke",
           "--variants", "latent,align", "--total-steps", "2", "--data", str(data), "--label-fractions", "1.0",
           "--seeds", "1", "--bootstrap", "10", "--config.model.num_samples=500",
           "--config.data.crop_samples=500", "--config.eval_every=1", "--config.log_every=1"]
    r = subprocess.run(cmd, cwd=REPO_ROOT, env=train_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr  # 1 device: compiling for 8 fake ones costs ~3x
    res = json.loads((out / "comparison.json").read_text())
    trained = {"latent/latent", "latent/mean", "latent/concat", "align/mean", "align/concat"}
    assert set(res["variants"]) == trained | {f"{n} random init" for n in trained}  # each with its control
    for name, row in res["variants"].items():
        assert row["step"] == (2 if name in trained else "random") and row["params"] > 0
        assert 0 < row["encode_gflops"] < row["pretrain_forward_gflops"] * 4
        assert row["params"] == res["variants"][name.removesuffix(" random init")]["params"]
    assert res["variants"]["align/mean"]["params"] != res["variants"]["latent/mean"]["params"]
    assert "latent - align (concat)" in res["paired_differences"]
    assert "latent/latent - random init" in res["paired_differences"]
    assert not any(k.startswith("latent - ") and "random" in k for k in res["paired_differences"])
    # one embedding pass per variant and init: the latent readout reuses the per-lead pass, and
    # align's random per-lead encoder is latent's (same seed), so its controls are not re-run
    assert r.stdout.count("embedded test:") == 3, r.stdout
    for ro in ("mean", "concat"):
        mine, theirs = res["variants"][f"align/{ro} random init"], res["variants"][f"latent/{ro} random init"]
        assert mine["shared_with"] == f"latent/{ro} random init" and theirs["shared_with"] is None
        assert mine["macro_auroc"] == theirs["macro_auroc"] and mine["params"] != theirs["params"]
    assert set(res["lead_reconstruction"]) == {"latent", "align"}
    assert res["lead_reconstruction"]["align"]["limb_from_I_II"]["mean"]["n"] > 0
    md = (out / "comparison.md").read_text()
    assert "weight 1, temperature 0.1" in md and "| latent/concat |" in md and "limb_from_I_II" in md
    assert "| latent/concat random init |" in md
    assert "| align/mean random init (= latent/mean random init) |" in md
    # a finished run of another setting as a lever: probed beside latent, never trained, paired with it
    lever = [sys.executable, "-m", "lamae_jax.compare", "--out", str(out), f"--config={CONFIG}:smoke",
             "--variants", "latent", "--eval-only", "--lever", f"twin={out / 'align'}", "--data", str(data),
             "--label-fractions", "1.0", "--seeds", "1", "--bootstrap", "10", "--name", "lev",
             "--no-lead-reconstruction", "--config.model.num_samples=500", "--config.data.crop_samples=500"]
    r = subprocess.run(lever, cwd=REPO_ROOT, env=train_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert ": pretraining" not in r.stdout  # eval-only: nothing is trained, the lever neither
    lev = json.loads((out / "comparison_lev.json").read_text())
    assert {"twin/mean", "twin/concat", "twin/mean random init"} <= set(lev["variants"])
    assert lev["variants"]["twin/mean"]["macro_auroc"] == res["variants"]["align/mean"]["macro_auroc"]
    assert lev["variants"]["twin/mean random init"]["shared_with"] == "latent/mean random init"
    assert "latent - twin (concat)" in lev["paired_differences"]
    assert lev["meta"]["levers"]["twin"]["differs_from_latent"] == {"model.cross_lead": ["latent", "align"]}
    assert "Lever `twin`" in (out / "comparison_lev.md").read_text()
    for v in ("latent", "align"):  # each variant's run: one checkpoint per step, metrics with val EV
        rows = [json.loads(x) for x in (out / v / "metrics.jsonl").read_text().splitlines()]
        assert [r["step"] for r in rows if "loss" in r] == [1, 2]
        assert all(np.isfinite(r["val_ev"]) for r in rows if "val_ev" in r)
