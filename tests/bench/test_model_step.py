"""bench.model_step --params_only --results-json: the docs' param-counts table is the counts the
command printed, in the docs' schema, and renders."""

import re

from lamae_jax import results_json
from lamae_jax.bench import model_step
from lamae_jax.models import SIZES


def test_params_only_results_json_is_what_it_printed(tmp_path, capsys):
    out = tmp_path / "model_params.json"
    model_step.main(["--sizes=tiny", "--variants=latent,none", "--params_only",
                     "--config", "configs/base.py:smoke", "--results-json", str(out)])
    printed = {v: int(n.replace(",", "")) for v, n in
               re.findall(r"size=tiny\s+cross_lead=(\w+)\s+params=\s*([\d,]+)", capsys.readouterr().out)}
    assert printed == {"latent": model_step.count("tiny", "latent"), "none": model_step.count("tiny", "none")}
    assert printed["latent"] > printed["none"]  # the latent module has parameters of its own
    doc = results_json.load(out)
    assert doc["meta"]["command"].startswith("python -m lamae_jax.bench.model_step --sizes=tiny")
    table = doc["tables"][0]
    assert table["id"] == "param-counts" and table["columns"][1:] == ["latent", "none"]
    tiny, smoke = table["rows"]
    d = SIZES["tiny"]
    assert tiny[0].startswith(f"tiny ({d['encoder_width']}×{d['encoder_depth']}, ")
    assert tiny[1:] == [f"{printed['latent']:,}", f"{printed['none']:,}"]
    assert smoke[0].startswith("tiny as in `:smoke`") and smoke[1:] == [f"{printed['latent']:,}", None]
    block = results_json.blocks([out])["param-counts"]
    assert f"| {printed['latent']:,} | {printed['none']:,} |" in block
