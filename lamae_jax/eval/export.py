"""`python -m lamae_jax.export --workdir W --split test --out emb.npz`: embeddings of one split.

The npz holds only plain arrays (fixed-width unicode, no objects), so `np.load(path)` works with the
default allow_pickle=False; rows are exactly the split's records in manifest order; the file is
written to a temporary name and renamed, so a reader never sees half a file.
  embeddings float32 [N, D] (--readout: default, mean, latent [N, D]; concat [N, 12 D]), readout <U
  (0-d), study_id int64 [N], subject_id int64 [N], split <U5 [N],
  lead_embeddings float32 [N, 12, D] (--lead-embeddings), lead_names <U3 [12],
  lead_attention float32 [N, 12] (NaN for variants without latents),
  labels uint8 [N, V] and label_names <U [V] (when the data has a label vocabulary).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import tempfile

import numpy as np

from lamae_jax.cli_help import HelpFormatter

from lamae_jax.constants import LEADS


def _unicode(values) -> np.ndarray:
    values = [str(v) for v in values]
    width = max((len(v) for v in values), default=1)
    return np.asarray(values, dtype=f"<U{max(width, 1)}")


def write_npz_atomic(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> pathlib.Path:
    """np.savez to a temporary file in the destination folder, then os.replace (atomic on POSIX)."""
    path = pathlib.Path(path).expanduser()
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")  # np.savez would append it to the temp name
    path.parent.mkdir(parents=True, exist_ok=True)
    for k, v in arrays.items():
        if np.asarray(v).dtype == object:
            raise TypeError(f"array {k!r} has dtype object: it would need pickle to load")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def export_arrays(dataset, result: dict, split: str) -> dict[str, np.ndarray]:
    """Arrays of the npz from a PreprocessedECG of the split and embedding.embed_split's result."""
    n = len(dataset)
    if result["embeddings"].shape[0] != n:
        raise ValueError(f"{result['embeddings'].shape[0]} embeddings for {n} records of {split!r}")
    out = {
        "embeddings": np.asarray(result["embeddings"], np.float32),
        "study_id": np.asarray(dataset.manifest["study_id"], np.int64),
        "subject_id": np.asarray(dataset.manifest["subject_id"], np.int64),
        "split": np.full(n, split, dtype="<U5"),
        "lead_names": _unicode(LEADS),
        "lead_attention": np.asarray(result["lead_attention"], np.float32),
    }
    if "lead_embeddings" in result:
        out["lead_embeddings"] = np.asarray(result["lead_embeddings"], np.float32)
    if len(dataset.vocabulary):
        out["labels"] = dataset.label_matrix(np.uint8)
        out["label_names"] = _unicode(dataset.vocabulary)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lamae_jax.export", description=__doc__,
                                 formatter_class=HelpFormatter)
    ap.add_argument("--workdir", required=True, help="training workdir (config.json + checkpoints/)")
    ap.add_argument("--data", default=None, help="preprocessed directory (default: the training data)")
    ap.add_argument("--split", default="test", choices=("train", "val", "test"), help="records to export")
    ap.add_argument("--out", required=True, help="output .npz path")
    ap.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    ap.add_argument("--best", action="store_true", help="use the lowest-validation-loss checkpoint")
    ap.add_argument("--lead-embeddings", action="store_true", help="also store [N, 12, D] lead embeddings")
    ap.add_argument("--readout", choices=("default", "mean", "concat", "latent"), default="default",
                    help="what `embeddings` holds (as evaluate --readout): default the ECG embedding, "
                         "mean of the present leads, concat of the 12 leads [N, 12 D], latent mean")
    ap.add_argument("--batch-size", type=int, default=64, help="records per host per step")
    args = ap.parse_args(argv)

    from lamae_jax.parallel import distributed
    distributed.maybe_initialize()
    import jax

    from lamae_jax.eval import embed as embedding
    from lamae_jax.data.dataset import PreprocessedECG

    try:
        model, params, config = embedding.load_model(args.workdir, step=args.step, best=args.best)
        data_dir = embedding.resolve_data_dir(args.workdir, config, args.data)
        embedding.check_readout(args.readout, config.model.cross_lead)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    ds = PreprocessedECG(data_dir, args.split)
    leads = args.lead_embeddings or args.readout in ("mean", "concat")
    from lamae_jax.data.lengths import eval_samples

    result = embedding.embed_split(model, params, data_dir, args.split,
                                   per_host_batch_size=args.batch_size, lead_embeddings=leads,
                                   num_samples=eval_samples(config))
    result["embeddings"] = embedding.readout_features(result, ds.manifest["lead_mask"], args.readout)
    if not args.lead_embeddings:
        result.pop("lead_embeddings", None)
    arrays = export_arrays(ds, result, args.split)
    arrays["readout"] = np.asarray(args.readout)
    arrays["eval_samples"] = np.asarray(eval_samples(config), np.int64)  # the length embedded
    if jax.process_index() == 0:
        path = write_npz_atomic(args.out, arrays)
        print(f"wrote {path}: {len(ds)} records of split {args.split!r}, "
              f"embeddings {arrays['embeddings'].shape}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
