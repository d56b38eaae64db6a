"""LAMAE pretraining configuration.

  --config=configs/base.py          paper scale (ViT-B encoder), MIMIC-IV-ECG
  --config=configs/base.py:demo     small model, embedded synthetic data, ~10 min of training on 2 CPU cores
  --config=configs/base.py:smoke    tiny, for tests
Overrides: --config.model.cross_lead=none --config.total_steps=1000 --config.data.root=/shards
"""

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variant = arg or "paper"
    if variant not in ("paper", "demo", "smoke"):
        raise ValueError(f"unknown config variant {variant!r}: use one of paper, demo, smoke")
    c = ml_collections.ConfigDict()
    c.variant = variant
    c.seed = 0
    c.total_steps = 100_000
    c.batch_size = 256  # global, across all hosts and devices
    c.log_every = 50
    c.eval_every = 2_000
    c.eval_batches = 20

    c.model = ml_collections.ConfigDict()
    c.model.size = "base"  # tiny | small | base; widths below override when > 0
    c.model.cross_lead = "latent"  # latent (LAMAE) | none | joint (ST-MEM) | align (CLOCS-style)
    c.model.num_leads = 12
    c.model.num_samples = 2500  # record length of the data (10 s at 250 Hz): crop_samples <= it; not a model input
    c.model.patch_size = 50
    c.model.mask_ratio = 0.75
    c.model.whole_lead_mask_prob = 0.0
    # per example: keep one lead group visible (I+II | limb | V1-V6), mask the others whole
    c.model.lead_group_mask_prob = 0.0
    # per example: mask the same patch positions in every lead, so the leads not masked whole are
    # visible together at each visible instant (what rebuilding a lead from III = II - I needs)
    c.model.aligned_mask_prob = 0.0
    # latent attention (cross_lead=latent): "time" = `time_latents` latents at every patch position
    # read that position's tokens of all leads; "global" = `num_latents` latents read every token.
    c.model.latent_scope = "time"
    c.model.time_latents = 0  # 0 = size default (2 tiny/small, 4 base)
    c.model.num_latents = 0  # latent_scope=global; 0 = size default (16 for small/base)
    c.model.latent_depth = 0  # latent self-attention blocks; 0 = size default (2)
    c.model.latent_width = 0  # latent module width; 0 = encoder width (e.g. 256 = base's decoder width: cheaper)
    c.model.latent_heads = 0  # 0 = encoder_heads at the encoder width, decoder_heads otherwise
    # a learnt gain per lead (init 1, either sign) on the latent attention's values, so signed lead
    # combinations (III = II - I, aVR = -(I + II) / 2) are one multiply away
    c.model.latent_lead_gain = False
    # the decoder's within-lead self-attention; False (latent only): masked patches read only the
    # latents, so the decoder cannot bypass the cross-lead path
    c.model.decoder_self_attention = True
    # cross_lead=joint only: "joint" = the decoder self-attends over all leads' tokens together;
    # "lead" = each lead decoded separately (ST-MEM's lead-wise decoder; weights shared).
    c.model.joint_decoder = "joint"
    # ST-MEM's patch embedding: LayerNorm over each patch's samples, the linear map, a LayerNorm
    # over the width (False: the linear map alone). Targets stay the un-normalised patches.
    c.model.patch_norm = False
    # amplitude scaling inside the model (training, evaluation and embed() alike): fixed (mV x
    # input_scale; keeps absolute amplitude) | record | lead (z-scores). Raw mV (scale 1) next to
    # unit-size position embeddings does not learn; 5 brings a typical lead (0.2 mV std) to ~1.
    c.model.input_norm = "fixed"
    c.model.input_scale = 5.0
    c.model.encoder_width = 0
    c.model.encoder_depth = 0
    c.model.encoder_heads = 0
    c.model.decoder_width = 0
    c.model.decoder_depth = 0
    c.model.decoder_heads = 0
    c.model.mlp_ratio = 4.0
    c.model.dropout = 0.0
    c.model.dtype = "bfloat16"  # compute dtype; parameters stay float32
    c.model.remat = False
    c.model.attention_impl = ""  # "" = JAX chooses | xla | cudnn (jax.nn.dot_product_attention)
    c.model.norm_pix_loss = False
    # weight each lead's masked-patch error by 1 / (its variance in the record + 5 % of the
    # record's mean lead variance): small leads (III, aVL) count as much as large ones
    c.model.lead_balanced_loss = False
    c.model.contrastive_weight = 1.0  # cross_lead=align only (losses.pretraining_loss)
    c.model.contrastive_temperature = 0.1

    c.data = ml_collections.ConfigDict()
    c.data.root = ""  # preprocessed shards (python -m lamae_jax.preprocess); "" = embedded synthetic
    # the paper variant with root "" refuses to pretrain `base` on the 2,000 synthetic ECGs unless True
    c.data.allow_synthetic_at_paper_scale = False
    c.data.cache_dir = "~/.cache/lamae_jax"
    c.data.synthetic_records = 2000
    c.data.synthetic_seed = 0
    c.data.num_workers = 0  # Grain worker processes per host
    c.data.crop_samples = 2500
    c.data.amplitude_jitter = 0.1  # relative gain augmentation, 0 disables
    # "record": one gain per record, keeps III = II - I and aVR/aVL/aVF | "lead": one gain per lead
    c.data.amplitude_jitter_mode = "record"
    c.data.noise_std_mv = 0.01
    # "derived": III/aVR/aVL/aVF noise from I's and II's (lead physics kept) | "lead": independent
    c.data.noise_mode = "derived"
    c.data.shuffle_seed = 0

    c.optim = ml_collections.ConfigDict()
    c.optim.base_lr = 1.5e-4  # scaled by batch_size / 256
    c.optim.warmup_steps = 2_000
    c.optim.b1 = 0.9
    c.optim.b2 = 0.95
    c.optim.weight_decay = 0.05
    c.optim.grad_clip = 1.0

    c.mesh = ml_collections.ConfigDict()
    c.mesh.fsdp = 1  # devices per fsdp group; data axis = devices / fsdp

    c.checkpoint = ml_collections.ConfigDict()
    c.checkpoint.every = 1_000
    c.checkpoint.keep = 3
    c.checkpoint.keep_best = 1

    if variant == "demo":
        c.model.size = "small"
        c.model.latent_depth = 1
        # float32: bf16 is emulated on CPU, slower and coarser there.
        c.model.dtype = "float32"
        c.total_steps = 600
        c.batch_size = 32
        c.log_every = 20
        c.eval_every = 200
        c.eval_batches = 4
        # peak lr 1e-3 (= base_lr x 32 / 256): the paper rate scaled to batch 32 (1.9e-5) leaves a
        # 600-step run at the zero predictor. 400 steps reach masked-patch EV ~0.48 only.
        c.optim.base_lr = 8e-3
        c.optim.warmup_steps = 50
        c.checkpoint.every = 200
    elif variant == "smoke":
        c.model.size = "tiny"
        c.model.dtype = "float32"
        c.total_steps = 20
        c.batch_size = 8
        c.log_every = 5
        c.eval_every = 10
        c.eval_batches = 1
        c.optim.base_lr = 0.1  # peak 3e-3 at batch 8
        c.optim.warmup_steps = 2
        c.checkpoint.every = 10
        c.data.synthetic_records = 96  # seed 0: 86 train, 8 val, 2 test ECGs (train -> evaluate works)

    c.lock()
    return c
