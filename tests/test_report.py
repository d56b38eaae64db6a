"""Numbers from files: every results table in the docs is exactly the rendering of its committed
JSON (docs/results/), the renderer round-trips and notices a changed number, and the docs' links
resolve without tracker numbers or paths a clone does not have."""

from __future__ import annotations

import json
import pathlib
import re

import pytest

from lamae_jax import report, results_json

REPO = pathlib.Path(__file__).resolve().parent.parent
RESULTS = sorted((REPO / "docs" / "results").glob("*.json"))
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def test_every_doc_table_is_its_json_rendered():
    assert len(RESULTS) >= 5 and len(DOCS) >= 8
    rendered = results_json.blocks(RESULTS)
    problems, shown = [], set()
    for doc in DOCS:
        problems += results_json.check_doc(doc, rendered)
        shown |= set(results_json.doc_blocks(doc.read_text(encoding="utf-8")))
    assert not problems, "\n".join(problems)
    assert set(rendered) <= shown, f"tables in no doc: {sorted(set(rendered) - shown)}"
    assert report.main([*map(str, RESULTS), "--check", *map(str, DOCS)]) == 0


def test_each_json_says_who_measured_it_when_where_and_how():
    for path in RESULTS:
        meta = json.loads(path.read_text(encoding="utf-8"))["meta"]
        for key in ("commit", "date", "machine", "command"):
            assert meta[key], (path.name, key)
        assert re.match(r"\d{4}-\d\d-\d\d", meta["date"]), path.name


def test_write_results_round_trip_and_a_changed_number_is_caught(tmp_path):
    tables = [{"id": "t1", "title": "x", "columns": ["a", "b", "c"],
               "rows": [["row", 0.12345, [0.5, 0.75]], ["n", 3, None]], "notes": ["a note"]}]
    path = results_json.write_results(tmp_path / "r.json", tables, command=["python", "-m", "x", "--y"])
    doc = results_json.load(path)
    assert doc["meta"]["command"] == "python -m x --y" and doc["meta"]["commit"]
    assert doc["meta"]["machine"] and doc["meta"]["date"].endswith("UTC")
    block = results_json.render_block(doc["tables"][0], doc["meta"])
    assert "| row | 0.123 | 0.500 / 0.750 |" in block and "| n | 3 |  |" in block and "- a note" in block
    md = tmp_path / "doc.md"
    md.write_text("intro\n\n<!-- table:t1 -->\n<!-- /table:t1 -->\n\nafter\n")
    rendered = results_json.blocks([path])
    assert results_json.check_doc(md, rendered)  # empty block: differs
    assert report.main([str(path), "--write", str(md)]) == 0
    assert results_json.check_doc(md, rendered) == [] and md.read_text().endswith("\n\nafter\n")
    md.write_text(md.read_text().replace("0.123", "0.124"))
    assert report.main([str(path), "--check", str(md)]) == 1
    assert report.main([str(path), "--write", str(md)]) == 0 and "0.123" in md.read_text()


@pytest.mark.parametrize("bad, match", [
    ({"meta": {"commit": "c", "date": "d", "machine": "m"}, "tables": []}, "meta lacks"),
    ({"meta": {"commit": "c", "date": "d", "machine": "m", "command": "x"},
      "tables": [{"id": "t", "columns": ["a", "b"], "rows": [["1"]]}]}, "row 0 has 1 cells"),
    ({"meta": {"commit": "c", "date": "d", "machine": "m", "command": "x"},
      "tables": [{"id": "Bad Id", "columns": ["a"], "rows": []}]}, "needs an 'id'"),
])
def test_schema_errors_name_the_problem(bad, match):
    with pytest.raises(results_json.ResultsError, match=match):
        results_json.validate(bad)


def test_unclosed_marker_is_an_error():
    with pytest.raises(results_json.ResultsError, match="unclosed"):
        results_json.doc_blocks("<!-- table:a -->\n| x |\n")


def _comparison():
    rows = {}
    for name, a, ci in (("latent/mean", {"0.1": 0.8, "1.0": 0.9}, {"0.1": [0.7, 0.85], "1.0": [0.85, 0.95]}),
                        ("none/mean", {"0.1": 0.7, "1.0": 0.88}, {"0.1": [0.6, 0.75], "1.0": [0.8, 0.9]})):
        rows[name] = {"macro_auroc": a, "macro_auroc_ci": ci, "init": "pretrained", "params": 10,
                      "val_loss": 0.5, "train_seconds": 12.4}
    rows["latent/mean random init"] = {**rows["none/mean"], "init": "random", "train_seconds": None}
    diffs = {"latent - none (mean)": {"0.1": {"auroc": {"diff": 0.1, "ci": [0.05, 0.15]}},
                                       "1.0": {"auroc": {"diff": 0.02, "ci": [-0.01, 0.05]}}}}
    return {"variants": rows, "paired_differences": diffs}


def test_comparison_tables_and_plot(tmp_path):
    tables, curves = results_json.tables_from_comparison(_comparison(), prefix="cmp")
    auroc, paired = tables
    assert auroc["columns"][-2:] == ["@ 10 %", "@ 100 %"]
    assert auroc["rows"][0][-1] == "0.900 [0.850, 0.950]" and auroc["rows"][0][3] == 12
    assert paired["rows"][0][1] == "**+0.100 [+0.050, +0.150]**"  # CI excludes 0: bold
    assert paired["rows"][0][2] == "+0.020 [-0.010, +0.050]"  # includes 0: plain
    assert set(curves[0]["series"]) == {"latent/mean", "none/mean"}  # no control curve
    path = results_json.write_results(tmp_path / "c.json", tables, curves=curves, command="x")
    comp = tmp_path / "comparison.json"
    comp.write_text(json.dumps(_comparison()))
    for src in (comp, path):
        png = tmp_path / f"{src.stem}.png"
        assert report.main([str(src), "--plot", str(png)]) == 0
        assert png.stat().st_size > 5_000


_LINK = re.compile(r"\]\(([^)\s]+)\)")


def _anchors(path: pathlib.Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    out = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        m = re.match(r"#{1,6} (.+)", line)
        if m and not line.startswith("#!"):
            out.add(re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-"))
    return out


def test_docs_links_resolve_and_name_no_tracker_or_local_path():
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for target in _LINK.findall(text):
            if re.match(r"[a-z]+:", target):
                continue
            file, _, anchor = target.partition("#")
            path = (doc.parent / file).resolve() if file else doc
            assert path.exists(), f"{doc.name}: broken link {target}"
            if anchor and path.suffix == ".md":
                assert anchor in _anchors(path), f"{doc.name}: no heading #{anchor} in {path.name}"
        assert "../shared" not in text, f"{doc.name} names ../shared (a clone does not have it)"
        assert not re.search(r"\bissues? \d+|\(#\d+\)", text, re.I), f"{doc.name} names a tracker number"


def test_readme_is_a_front_door():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200
    first = text.split("\n## ", 2)
    assert "2603.26475" in first[0]
    for needle in ("## Quickstart", "## Recipes", "## Paper scale", "## Results", "## Documentation",
                   "## Citation", "## License", "python -m lamae_jax.train --config=configs/base.py:demo"):
        assert needle in text, needle
    assert "Apache License" in (REPO / "LICENSE").read_text()[:200]
    assert 'license = "Apache-2.0"' in (REPO / "pyproject.toml").read_text()


def test_compare_results_json_is_the_docs_schema(tmp_path):
    """compare --results-json: comparison_NAME.json of OUT -> a results JSON report renders."""
    import argparse

    from lamae_jax.studies import compare_cli

    (tmp_path / "comparison_x.json").write_text(json.dumps(_comparison()))
    args = argparse.Namespace(out=str(tmp_path), name="x", results_json=str(tmp_path / "r" / "cmp.json"))
    compare_cli.write_results_json(args, ["--out", str(tmp_path), "--name", "x"])
    doc = results_json.load(tmp_path / "r" / "cmp.json")
    assert doc["meta"]["command"] == f"python -m lamae_jax.compare --out {tmp_path} --name x"
    assert [t["id"] for t in doc["tables"]] == ["comparison-x-auroc", "comparison-x-paired"]
    assert doc["curves"][0]["id"] == "comparison-x"
    assert "comparison-x-auroc" in results_json.blocks([tmp_path / "r" / "cmp.json"])


def test_meta_names_a_package_run_by_its_package(monkeypatch):
    """`python -m lamae_jax.bench` runs lamae_jax.bench.__main__; the recorded command (which the
    docs show, and whose --help is tested) is the one a user types."""
    import sys
    import types

    from lamae_jax import results_json

    main = types.SimpleNamespace(__spec__=types.SimpleNamespace(name="lamae_jax.bench.__main__"))
    monkeypatch.setitem(sys.modules, "__main__", main)
    monkeypatch.setattr(sys, "argv", ["bench", "--quick"])
    assert results_json.make_meta()["command"] == "python -m lamae_jax.bench --quick"
