"""Model sizes and the resolved, hashable hyper-parameters (ModelDims) the modules are built from.

Resolution lives here, not in the modules, so that one config field (`c.model.size`) picks a
consistent architecture while explicit fields > 0 still override single values.
"""

from __future__ import annotations

import dataclasses
from typing import Any

CROSS_LEAD = ("latent", "none", "joint", "align")
LATENT_SCOPES = ("time", "global")
INPUT_NORMS = ("fixed", "record", "lead")
JOINT_DECODERS = ("joint", "lead")

# encoder/decoder widths, depths and heads; latents. `base` is the paper scale (ViT-B encoder).
SIZES: dict[str, dict[str, int]] = {
    "tiny": dict(encoder_width=32, encoder_depth=1, encoder_heads=2, decoder_width=32,
                 decoder_depth=1, decoder_heads=2, num_latents=4, latent_depth=1,
                 time_latents=2),
    # small = CPU demo: sized for ~0.4 s per fwd+bwd step at batch 32 on 2 cores (the full-length
    # decoder dominates: 12 x 50 tokens per ECG).
    "small": dict(encoder_width=128, encoder_depth=3, encoder_heads=4, decoder_width=64,
                  decoder_depth=1, decoder_heads=2, num_latents=16, latent_depth=2,
                  time_latents=2),
    "base": dict(encoder_width=768, encoder_depth=12, encoder_heads=12, decoder_width=256,
                 decoder_depth=4, decoder_heads=8, num_latents=16, latent_depth=2,
                 time_latents=4),
}


@dataclasses.dataclass(frozen=True)
class ModelDims:
    """Everything a module needs; frozen so it can be a Flax module attribute."""

    cross_lead: str = "latent"
    num_leads: int = 12
    patch_size: int = 50
    mask_ratio: float = 0.75
    whole_lead_mask_prob: float = 0.0
    lead_group_mask_prob: float = 0.0  # masking.LEAD_GROUPS: keep one group visible, the rest whole
    aligned_mask_prob: float = 0.0  # per example: the same patch positions masked in every lead
    encoder_width: int = 32
    encoder_depth: int = 2
    encoder_heads: int = 2
    decoder_width: int = 32
    decoder_depth: int = 1
    decoder_heads: int = 2
    num_latents: int = 4  # latent_scope=global: latents per ECG
    latent_depth: int = 1
    # latent_scope=time: `time_latents` latents at every patch position read the leads' visible
    # tokens of that position (a time-resolved cross-lead bottleneck); global: `num_latents`
    # latents read every visible token of every lead (one bottleneck for the whole ECG).
    latent_scope: str = "time"
    time_latents: int = 2
    # The latent module's width and heads (resolve: 0 = encoder width; heads = encoder_heads at the
    # encoder width, decoder_heads at any other). At the decoder width the latents cost ~1/9 of
    # encoder-width latents at `base` (768 -> 256); the key/value projections map tokens down.
    latent_width: int = 0
    latent_heads: int = 0
    # A learnt gain per lead on the latent attention's values (init 1): the latents' read-out is a
    # convex (softmax) mix of one shared value projection, so a signed combination of leads such as
    # III = II - I has to be built inside the encoder; per-lead gains of either sign make it one
    # multiply. False: one value projection for every lead (the params of older runs).
    latent_lead_gain: bool = False
    # The decoder's within-lead self-attention. False (`latent` only): a masked patch sees only
    # the latents, so the cross-lead path is the sole route to its context.
    decoder_self_attention: bool = True
    # cross_lead=joint: "joint" = one decoder self-attention over all leads' tokens; "lead" = each
    # lead decoded on its own (ST-MEM), so leads meet only in the encoder.
    joint_decoder: str = "joint"
    # ST-MEM's tokenizer: LayerNorm(patch) -> linear -> LayerNorm(width) instead of the linear map.
    patch_norm: bool = False
    # Amplitude scaling inside the model, so training, evaluation and embed() see the same:
    # fixed = mV x input_scale (keeps absolute amplitude, which is diagnostic, and the linear
    # relations between leads, e.g. III = II - I; lets nothing cross leads); record = z-score over
    # the present leads of each record (a record-wide statistic crosses leads); lead = z-score
    # each lead. Raw mV (fixed, scale 1) next to unit-size position embeddings does not learn.
    input_norm: str = "fixed"
    input_scale: float = 5.0
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    dtype: str = "float32"
    remat: bool = False
    attention_impl: str | None = None  # None = let JAX choose; 'xla' | 'cudnn'
    projection_dim: int = 128  # `align` only: lead projection head for the contrastive term

    def num_masked(self, num_patches: int) -> int:
        """Exact number of masked patches per lead (round half to even, as Python's round)."""
        return int(round(self.mask_ratio * num_patches))


def resolve(model_config: Any) -> ModelDims:
    """Turn `c.model` (ConfigDict or mapping) into ModelDims, validating every field."""
    get = model_config.get
    size = get("size", "tiny")
    if size not in SIZES:
        raise ValueError(f"model.size={size!r}: use one of {sorted(SIZES)}")
    cross_lead = get("cross_lead", "latent")
    if cross_lead not in CROSS_LEAD:
        raise ValueError(f"model.cross_lead={cross_lead!r}: use one of {CROSS_LEAD}")
    scope = get("latent_scope", "time")
    if scope not in LATENT_SCOPES:
        raise ValueError(f"model.latent_scope={scope!r}: use one of {LATENT_SCOPES}")
    input_norm = get("input_norm", "fixed")
    if input_norm not in INPUT_NORMS:
        raise ValueError(f"model.input_norm={input_norm!r}: use one of {INPUT_NORMS}")
    dims = dict(SIZES[size])
    for name in dims:
        value = get(name, 0) or 0
        if value > 0:
            dims[name] = int(value)
    joint_decoder = get("joint_decoder", "joint")
    if joint_decoder not in JOINT_DECODERS:
        raise ValueError(f"model.joint_decoder={joint_decoder!r}: use one of {JOINT_DECODERS}")
    if joint_decoder != "joint" and cross_lead != "joint":
        raise ValueError(f"model.joint_decoder={joint_decoder!r} applies to cross_lead='joint' only "
                         f"(the decoder of {cross_lead!r} is always lead-wise): leave it 'joint'")
    impl = get("attention_impl", "") or None
    if impl not in (None, "xla", "cudnn"):
        raise ValueError(f"model.attention_impl={impl!r}: use '', 'xla' or 'cudnn'")
    out = ModelDims(
        cross_lead=cross_lead,
        num_leads=int(get("num_leads", 12)),
        patch_size=int(get("patch_size", 50)),
        mask_ratio=float(get("mask_ratio", 0.75)),
        whole_lead_mask_prob=float(get("whole_lead_mask_prob", 0.0)),
        lead_group_mask_prob=float(get("lead_group_mask_prob", 0.0)),
        aligned_mask_prob=float(get("aligned_mask_prob", 0.0)),
        mlp_ratio=float(get("mlp_ratio", 4.0)),
        dropout=float(get("dropout", 0.0)),
        dtype=str(get("dtype", "float32")),
        remat=bool(get("remat", False)),
        attention_impl=impl,
        latent_scope=scope,
        decoder_self_attention=bool(get("decoder_self_attention", True)),
        joint_decoder=joint_decoder,
        patch_norm=bool(get("patch_norm", False)),
        latent_lead_gain=bool(get("latent_lead_gain", False)),
        input_norm=input_norm,
        input_scale=float(get("input_scale", 5.0)),
        **dims,
    )
    if out.latent_lead_gain and out.cross_lead != "latent":
        raise ValueError(f"model.latent_lead_gain=True needs cross_lead='latent' (it scales the "
                         f"latent attention's values); {out.cross_lead!r} has no latents")
    if not out.decoder_self_attention and out.cross_lead != "latent":
        raise ValueError(f"model.decoder_self_attention=False needs cross_lead='latent' (the latents "
                         f"are then the decoder's only context); {out.cross_lead!r} would have none")
    for prefix in ("encoder", "decoder"):
        w, h = getattr(out, f"{prefix}_width"), getattr(out, f"{prefix}_heads")
        if w % h:
            raise ValueError(f"model.{prefix}_width={w} is not divisible by {prefix}_heads={h}")
    if out.encoder_width % 2 or out.decoder_width % 2:
        raise ValueError("model widths must be even (sin-cos position embedding)")
    # after the encoder's own check: its default width is the encoder's
    out = _resolve_latent_width(out, int(get("latent_width", 0) or 0), int(get("latent_heads", 0) or 0))
    if not 0.0 <= out.mask_ratio < 1.0:  # 0: only held-out leads masked (lead reconstruction)
        raise ValueError(f"model.mask_ratio={out.mask_ratio} must lie in [0, 1)")
    if not 0.0 <= out.whole_lead_mask_prob < 1.0:
        raise ValueError(f"model.whole_lead_mask_prob={out.whole_lead_mask_prob} must lie in [0, 1)")
    if not 0.0 <= out.aligned_mask_prob <= 1.0:
        raise ValueError(f"model.aligned_mask_prob={out.aligned_mask_prob} must lie in [0, 1]")
    if not 0.0 <= out.lead_group_mask_prob <= 1.0:
        raise ValueError(f"model.lead_group_mask_prob={out.lead_group_mask_prob} must lie in [0, 1]")
    if not out.input_scale > 0:
        raise ValueError(f"model.input_scale={out.input_scale} must be > 0")
    if out.dtype not in ("float32", "bfloat16", "float16"):
        raise ValueError(f"model.dtype={out.dtype!r}: use float32, bfloat16 or float16")
    return out


def _resolve_latent_width(d: ModelDims, width: int, heads: int) -> ModelDims:
    """latent_width 0 = encoder width; latent_heads 0 = encoder_heads at the encoder width, else
    decoder_heads (the decoder width's head count)."""
    if width < 0 or heads < 0:
        raise ValueError(f"model.latent_width={width} / latent_heads={heads} must be >= 0 (0 = default)")
    width = width or d.latent_width or d.encoder_width
    heads = heads or (d.encoder_heads if width == d.encoder_width else d.decoder_heads)
    if width % heads:
        raise ValueError(f"model.latent_width={width} must be divisible by latent_heads="
                         f"{heads} (set --config.model.latent_heads)")
    return dataclasses.replace(d, latent_width=width, latent_heads=heads)
