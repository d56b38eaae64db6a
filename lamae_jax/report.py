"""`python -m lamae_jax.report JSON...`: the docs' results tables (and plots) from their JSON.

  python -m lamae_jax.report docs/results/*.json                       # print every table
  python -m lamae_jax.report docs/results/*.json --check docs/*.md README.md   # exit 1 on a mismatch
  python -m lamae_jax.report docs/results/*.json --write docs/results.md       # update in place
  python -m lamae_jax.report runs/compare/comparison.json --plot curve.png     # label efficiency

Each table sits in a doc between `<!-- table:ID -->` and `<!-- /table:ID -->`; the schema and the
helper that measuring commands call (`write_results`) are in lamae_jax/results_json.py.
"""

from __future__ import annotations

import argparse
import sys

from lamae_jax import results_json


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m lamae_jax.report", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("json", nargs="+", metavar="JSON",
                    help="results JSONs (docs/results/*.json), or one comparison*.json with --plot")
    ap.add_argument("--check", nargs="+", default=[], metavar="DOC",
                    help="docs whose marked tables must equal the JSONs' rendering (exit 1 if not) "
                         "(default: none)")
    ap.add_argument("--write", nargs="+", default=[], metavar="DOC",
                    help="docs whose marked tables are rewritten from the JSONs (default: none)")
    ap.add_argument("--plot", default=None, metavar="PNG",
                    help="draw the label-efficiency plot of the (first) JSON to PNG (default: no plot)")
    ap.add_argument("--curve", default=None,
                    help="with --plot on a results JSON: the id of its 'curves' entry (default: the first)")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.plot:
            results_json.plot(args.json[0], args.plot, args.curve)
            print(f"wrote {args.plot}")
            return 0
        rendered = results_json.blocks(args.json)
        problems = []
        for doc in args.write:
            changed = results_json.write_doc(doc, rendered)
            print(f"{doc}: {len(changed)} table(s) rewritten {changed if changed else ''}".rstrip())
        for doc in args.check:
            problems += results_json.check_doc(doc, rendered)
        if not (args.write or args.check):
            print("\n\n".join(rendered.values()))
    except (results_json.ResultsError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for p in problems:
        print(p, file=sys.stderr)
    if args.check and not problems:
        print(f"{len(args.check)} doc(s) match their results JSONs")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
