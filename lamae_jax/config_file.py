"""The one config loader: `load_config("configs/base.py:demo", ["--config.total_steps=3"])`.

Same semantics as `python -m lamae_jax.train --config=PATH[:variant] --config.KEY=VALUE`
(ml_collections.config_flags): PATH is relative to the current directory, never to the package,
so an installed (non-editable) lamae_jax reads the repository's configs/ from where it is run;
overrides are parsed and type-checked against the field they set.
"""

from __future__ import annotations

import os
import warnings
from typing import Sequence

from absl import flags
from ml_collections import config_flags


def is_override(arg: str) -> bool:
    """True for a `--config.KEY=VALUE` command-line argument."""
    return arg.startswith("--config.")


def parse_args_with_overrides(parser, argv: Sequence[str] | None = None):
    """(args, overrides) of a command line mixing argparse flags and `--config.KEY=VALUE`
    overrides (which argparse would reject); argv None: sys.argv[1:]."""
    import sys

    argv = sys.argv[1:] if argv is None else list(argv)
    overrides = [a for a in argv if is_override(a)]
    return parser.parse_args([a for a in argv if not is_override(a)]), overrides


def load_config(spec: str, overrides: Sequence[str] = (), *, lock: bool = False):
    """The ConfigDict of `spec` ('PATH[:variant]') with `--config.KEY=VALUE` overrides applied.

    Raises flags.Error (or KeyError/TypeError/ValueError from ml_collections) on a missing file,
    an unknown field or a value of the wrong type.
    """
    bad = [o for o in overrides if not is_override(o)]
    if bad:
        raise ValueError(f"overrides must look like --config.KEY=VALUE, got {bad}")
    path = spec.partition(":")[0]
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file {path!r} not found (relative to {os.getcwd()}): "
                                f"run from the repository root or give its path")
    argv = ["load_config", f"--config={spec}", *overrides]
    fv = flags.FlagValues()
    with warnings.catch_warnings():  # config_flags still imports the file with load_module()
        warnings.filterwarnings("ignore", "the load_module", DeprecationWarning)
        # config_flags defines one flag per override found in sys_argv, then parses them with fv.
        config_flags.DEFINE_config_file("config", None, "config file[:variant]", flag_values=fv,
                                        lock_config=lock, sys_argv=argv)
        fv(argv)
        return fv["config"].value


def field_docs(path: str) -> dict[str, str]:
    """{'model.size': 'tiny | small | base; ...'} from the comments of a config file's assignments
    `c.KEY = VALUE  # comment` (and the `#` lines right above the first assignment of a field)."""
    import io
    import re
    import tokenize

    with open(path, encoding="utf-8") as f:
        source = f.read()
    comments = {tok.start[0]: tok.string.lstrip("#").strip()
                for tok in tokenize.generate_tokens(io.StringIO(source).readline)
                if tok.type == tokenize.COMMENT}
    lines = source.splitlines()
    docs: dict[str, str] = {}
    for number, line in enumerate(lines, start=1):
        m = re.match(r"\s*c\.([\w.]+)\s*=(?!=)", line)
        if not m or m.group(1) in docs:
            continue
        above, k = [], number - 1
        while k >= 1 and lines[k - 1].strip().startswith("#"):
            above.insert(0, comments.get(k, ""))
            k -= 1
        docs[m.group(1)] = " ".join(p for p in [*above, comments.get(number, "")] if p)
    return docs


# One line for the fields whose assignment in configs/base.py carries no comment.
_FALLBACK_DOCS = {
    "variant": "paper | demo | smoke (set by --config=PATH:VARIANT)",
    "seed": "model initialisation and per-step RNG (fold_in(seed, step))",
    "total_steps": "optimizer steps of the run",
    "log_every": "steps between metrics.jsonl lines",
    "eval_every": "steps between validations (val_loss, reconstruction plot)",
    "eval_batches": "validation batches per validation",
    "model.num_leads": "leads per record (12)",
    "model.num_samples": "record length of the data (10 s at 250 Hz): crop_samples <= it; not read by the model",
    "model.patch_size": "samples per patch token",
    "model.mask_ratio": "fraction of patches masked for reconstruction",
    "model.whole_lead_mask_prob": "probability of masking a whole lead",
    "model.lead_group_mask_prob": "probability that an example keeps only one lead group visible (I+II, limb, V1-V6)",
    "model.input_scale": "factor after input_norm",
    "model.encoder_width": "0 = size default", "model.encoder_depth": "0 = size default",
    "model.encoder_heads": "0 = size default", "model.decoder_width": "0 = size default",
    "model.decoder_depth": "0 = size default", "model.decoder_heads": "0 = size default",
    "model.mlp_ratio": "MLP hidden width / model width",
    "model.dropout": "dropout rate",
    "model.remat": "rematerialise transformer blocks (less memory, more compute)",
    "model.norm_pix_loss": "normalise each target patch before the loss",
    "model.contrastive_temperature": "cross_lead=align only",
    "data.cache_dir": "where the embedded synthetic dataset is generated and preprocessed",
    "data.synthetic_records": "records of the synthetic dataset",
    "data.synthetic_seed": "seed of the synthetic dataset",
    "data.crop_samples": "random crop length in samples at training",
    "data.noise_std_mv": "Gaussian noise augmentation in mV, 0 disables",
    "data.shuffle_seed": "Grain shuffle seed",
    "optim.b1": "AdamW beta1", "optim.b2": "AdamW beta2",
    "optim.warmup_steps": "linear warmup steps, then cosine decay",
    "optim.weight_decay": "AdamW weight decay (matrices only)",
    "optim.grad_clip": "global-norm gradient clipping",
    "checkpoint.every": "steps between checkpoints",
    "checkpoint.keep": "latest checkpoints kept",
    "checkpoint.keep_best": "lowest-val_loss checkpoints kept in addition",
}


def describe_config(config, path: str) -> str:
    """One line per leaf field of `config`: `--config.KEY=DEFAULT  comment` (comments from `path`,
    else a short built-in description)."""
    docs = {**_FALLBACK_DOCS, **{k: v for k, v in (field_docs(path) if os.path.isfile(path) else {}).items()
                                 if v}}

    def leaves(node, prefix):
        for key in node.keys():
            value = node[key]
            if hasattr(value, "keys"):
                yield from leaves(value, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}", value

    rows = [(f"--config.{key}={value!r}", docs.get(key, "")) for key, value in leaves(config, "")]
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"  {flag:<{width}}  {doc}".rstrip() for flag, doc in rows)
