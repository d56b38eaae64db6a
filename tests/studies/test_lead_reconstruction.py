"""Lead reconstruction metric: r = 1 for a reconstructor that follows the true signal path (limb
leads are exact combinations of I and II), the floor for one that cannot, padding ignored; and the
model path: `none` cannot read a held-out lead's neighbours, `latent` does."""

import ml_collections
import numpy as np
import pytest

from lamae_jax.studies import lead_reconstruction as lr

T = 500


def limb_consistent(rng, batch: int) -> np.ndarray:
    """[B, 12, T] mV: I, II and V1-V6 random smooth signals; III, aVR, aVL, aVF from I and II."""
    t = np.arange(T) / 250.0
    x = np.zeros((batch, 12, T), np.float32)
    for b in range(batch):
        for lead in (0, 1, *range(6, 12)):
            f, ph = rng.uniform(0.5, 5.0, 3), rng.uniform(0, 2 * np.pi, 3)
            x[b, lead] = (rng.uniform(0.1, 1.0, 3)[:, None] * np.sin(2 * np.pi * f[:, None] * t + ph[:, None])).sum(0)
    i, ii = x[:, 0], x[:, 1]
    x[:, 2], x[:, 3], x[:, 4], x[:, 5] = ii - i, -(i + ii) / 2, i - ii / 2, ii - i / 2
    return x


def einthoven(signal, lead_mask, held, length):
    """Rebuilds held-out limb leads from I and II (Einthoven/Goldberger); knows nothing else."""
    i, ii = signal[:, 0], signal[:, 1]
    derived = np.stack([i, ii, ii - i, -(i + ii) / 2, i - ii / 2, ii - i / 2], axis=1)
    out = np.where(held[..., None], 0.0, signal)
    out[:, :6] = np.where(held[:, :6, None], derived, out[:, :6])
    return out


def batches(x, **extra):
    return [{"signal": x, "lead_mask": np.ones(x.shape[:2], bool),
             "valid_length": np.full(len(x), T), **extra}]


def test_exact_combination_scores_r_1_and_the_floor_0():
    x = limb_consistent(np.random.default_rng(0), 6)
    res = lr.lead_reconstruction(einthoven, batches(x), scenarios=("limb_from_I_II", "precordial_from_limb"))
    limb = res["limb_from_I_II"]
    assert set(limb) == {"III", "aVR", "aVL", "aVF", "mean"}
    for lead in ("III", "aVR", "aVL", "aVF"):
        assert limb[lead]["r"] == pytest.approx(1.0, abs=1e-6) and limb[lead]["ev"] == pytest.approx(1.0, abs=1e-6)
        assert limb[lead]["n"] == 6
    prec = res["precordial_from_limb"]  # nothing to read them from: a flat guess, r 0, EV <= 0
    assert all(prec[v]["r"] == 0.0 and prec[v]["ev"] <= 0.0 for v in ("V1", "V6"))


def test_r_is_scale_free_but_ev_is_not_and_padding_is_ignored():
    x = limb_consistent(np.random.default_rng(1), 4)

    def scaled(signal, lead_mask, held, length):
        out = 2.0 * einthoven(signal, lead_mask, held, length) + 0.3
        out[..., 400:] = 1e3  # past valid_length below: must not count
        return out

    res = lr.lead_reconstruction(scaled, [{"signal": x, "lead_mask": np.ones((4, 12), bool),
                                           "valid_length": np.full(4, 400)}], scenarios=("limb_from_I_II",))
    m = res["limb_from_I_II"]["mean"]
    assert m["r"] == pytest.approx(1.0, abs=1e-6) and m["ev"] < 0.5


def test_missing_or_invalid_records_are_not_scored_and_one_lead_covers_every_lead():
    x = limb_consistent(np.random.default_rng(2), 3)
    lead_mask = np.ones((3, 12), bool)
    lead_mask[0, 2] = False  # III absent in record 0: not scored there
    lead_mask[1, :2] = False  # I and II absent: nothing visible for limb_from_I_II
    res = lr.lead_reconstruction(einthoven, [{"signal": x, "lead_mask": lead_mask, "valid_length": np.full(3, T),
                                              "valid": np.array([True, True, False])}],
                                 scenarios=("limb_from_I_II", "one_lead"))
    assert "III" not in res["limb_from_I_II"]  # absent where I and II are: never scored
    assert res["limb_from_I_II"]["aVF"]["n"] == 1  # record 0 only (1 lacks I/II, 2 is padding)
    assert set(res["one_lead"]) == {*lr.LEADS, "mean"}
    with pytest.raises(ValueError, match="unknown lead-reconstruction scenario"):
        lr.scenario_masks("limb_from_V1")


@pytest.mark.parametrize("cross_lead, reads_others", [("none", False), ("latent", True)])
def test_model_reconstruction_of_a_held_out_lead_reads_the_others_only_across_leads(cross_lead, reads_others):
    """none's output for a held-out lead is its mask token's: changing the visible leads cannot
    change it (the floor); latent's changes. mask_ratio 0 keeps every other patch visible."""
    x, lead_mask, recon = _tiny_reconstructor(cross_lead, seed=3)
    held = np.zeros((2, 12), bool)
    held[:, 2] = True  # III
    a = recon(x, lead_mask, held, np.full(2, T))
    y = x.copy()
    y[:, :2] *= -1.5  # other visible leads
    b = recon(y, lead_mask, held, np.full(2, T))
    assert a.shape == x.shape
    changed = float(np.abs(a[:, 2] - b[:, 2]).max())
    assert (changed > 1e-4) == reads_others, changed


@pytest.mark.parametrize("input_norm", ["record", "lead"])
def test_reconstruction_in_mv_never_reads_the_held_out_leads_own_values(input_norm):
    """The model's scaling statistics come from the visible leads (lead norm: the held-out lead
    falls back to their record-wide ones), so the rebuilt mV of a held-out lead, offset and
    scale included, is the same whatever that lead held; the visible leads' too."""
    x, lead_mask, recon = _tiny_reconstructor("latent", seed=4, input_norm=input_norm)
    held = np.zeros((2, 12), bool)
    held[:, 6:] = True  # V1-V6 from the limb leads
    a = recon(x, lead_mask, held, np.full(2, T))
    y = x.copy()
    y[:, 6:] = 30.0 * y[:, 6:] + 5.0
    b = recon(y, lead_mask, held, np.full(2, T))
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4)
    z = x.copy()
    z[:, :2] = 3.0 * z[:, :2] + 1.0  # a visible lead: the reconstruction does follow it
    assert not np.allclose(recon(z, lead_mask, held, np.full(2, T))[:, 6:], a[:, 6:], atol=1e-3)


def _tiny_reconstructor(cross_lead: str, *, seed: int, **model_fields):
    """(2 limb-consistent ECGs, all-present lead mask, a random-init tiny model's reconstructor)."""
    import jax

    from lamae_jax import models

    c = ml_collections.ConfigDict(dict(size="tiny", cross_lead=cross_lead, dtype="float32",
                                       num_samples=T, mask_ratio=0.0, **model_fields))
    model = models.build(c)
    x = limb_consistent(np.random.default_rng(seed), 2)
    lead_mask = np.ones((2, 12), bool)
    params = model.init({"params": jax.random.key(0), "mask": jax.random.key(1)}, x, lead_mask)["params"]
    return x, lead_mask, lr.model_reconstructor(model, params)


def test_cli_results_json_is_the_docs_table_of_what_it_measured(tmp_path, capsys):
    """--results-json: one row per (workdir, data), each cell the mean r / EV the run wrote to its
    results.json; random init needs no checkpoint, so a config-only workdir is enough."""
    import json

    from lamae_jax import results_json
    from tests.helpers.train import config_only_workdir

    w, data, _ = config_only_workdir(tmp_path, records=40, num_samples=T, crop_samples=T, seed=2)
    path = tmp_path / "lead_reconstruction.json"
    argv = ["--workdir", str(w), "--init", "random", "--data", str(data), f"again={data}",
            "--out", str(tmp_path / "out"), "--results-json", str(path)]
    assert lr.main(argv) == 0
    doc = results_json.load(path)
    assert doc["meta"]["command"] == "python -m lamae_jax.studies.lead_reconstruction " + " ".join(argv)
    (table,) = doc["tables"]
    assert table["id"] == "lead-recon-budget" and table["columns"][2:] == [
        "limb from I + II", "V1–V6 from limb", "limb from V1–V6", "each lead from the other 11"]
    assert [row[:2] for row in table["rows"]] == [["random init (the floor)", "data"],
                                                  ["random init (the floor)", "again"]]
    for row, label in zip(table["rows"], ("data", "again")):
        written = json.loads((tmp_path / "out" / f"{label}-random" / "run" / "results.json").read_text())
        for cell, s in zip(row[2:], ("limb_from_I_II", "precordial_from_limb", "limb_from_precordial", "one_lead")):
            m = written["scenarios"][s]["mean"]
            assert cell == f"{m['r']:.3f} / {m['ev']:.2f}", s
    assert table["rows"][0][2:] == table["rows"][1][2:]  # same data, same weights: same numbers
    assert abs(float(table["rows"][0][2].split(" / ")[0])) < 0.2  # random weights: the floor
    assert "| random init (the floor) | again |" in results_json.blocks([path])["lead-recon-budget"]
