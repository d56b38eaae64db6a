"""python -m lamae_jax.data.synthetic --out DIR --num-records N --seed S [--num-subjects M] [--workers W]"""

from __future__ import annotations

import argparse
import json

from lamae_jax.cli_help import HelpFormatter
from lamae_jax.data.synthetic.generate import generate_dataset


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m lamae_jax.data.synthetic", description=__doc__,
                                 formatter_class=HelpFormatter)
    ap.add_argument("--out", required=True, help="output root (MIMIC-IV-ECG v1.0 layout)")
    ap.add_argument("--num-records", type=int, required=True, help="ECGs (studies) to generate")
    ap.add_argument("--seed", type=int, default=0, help="same arguments -> identical bytes")
    ap.add_argument("--num-subjects", type=int, default=None, help="default: drawn (median ~2 studies/subject)")
    ap.add_argument("--workers", type=int, default=1, help="processes; output is identical for any value")
    ap.add_argument("--writer", choices=("direct", "wfdb"), default="direct",
                    help="'wfdb' calls wfdb.wrsamp (same bytes, ~5x slower)")
    args = ap.parse_args(argv)
    summary = generate_dataset(args.out, args.num_records, args.seed, args.num_subjects,
                               writer=args.writer, workers=args.workers)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
