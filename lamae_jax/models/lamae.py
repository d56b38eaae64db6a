"""The LAMAE module: tokenize -> mask -> lead encoder -> cross-lead mixing -> decoder.

`cross_lead` switches the cross-lead mechanism: `latent` (LAMAE), `none` (independent-lead MAE),
`joint` (ST-MEM-style single transformer), `align` (independent-lead MAE whose per-lead projections
are aligned across the leads of one ECG by a CLOCS-style contrastive term, losses.pretraining_loss). Missing leads (lead_mask False) are zeroed on entry and
padded out of every key set, so their values cannot influence any output.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from lamae_jax.models.decoder import Decoder
from lamae_jax.models.latent import LatentAttention
from lamae_jax.models.masking import gather_tokens, sample_masking
from lamae_jax.models.sizes import ModelDims
from lamae_jax.models.tokenizer import LeadTokenizer, patchify
from lamae_jax.models.transformer import Transformer


class LAMAE(nn.Module):
    dims: ModelDims

    def setup(self):
        d = self.dims
        dtype = jnp.dtype(d.dtype)
        self.tokenizer = LeadTokenizer(d.encoder_width, d.num_leads, dtype)
        self.encoder = Transformer(d.encoder_depth, d.encoder_heads, d.mlp_ratio, d.dropout, dtype,
                                   remat=d.remat, attention_impl=d.attention_impl)
        if d.cross_lead == "latent":
            self.latent = LatentAttention(d.num_latents, d.latent_depth, d.encoder_heads,
                                          d.mlp_ratio, d.dropout, dtype, d.remat, d.attention_impl)
        if d.cross_lead == "align":
            self.projection = nn.Sequential([nn.Dense(d.encoder_width), nn.gelu,
                                             nn.Dense(d.projection_dim)])
        self.decoder = Decoder(d.cross_lead, d.decoder_width, d.decoder_depth, d.decoder_heads,
                               d.num_leads, d.patch_size, d.mlp_ratio, d.dropout, dtype, d.remat,
                               d.attention_impl)

    def _inputs(self, signal, lead_mask, lead_ids):
        b, l = signal.shape[:2]
        if signal.ndim != 3 or l != self.dims.num_leads:
            raise ValueError(f"signal must be [B, {self.dims.num_leads}, T], got {signal.shape}")
        if lead_mask.shape != (b, l):
            raise ValueError(f"lead_mask must be [{b}, {l}], got {lead_mask.shape}")
        lead_mask = lead_mask.astype(bool)
        signal = jnp.where(lead_mask[..., None], signal.astype(jnp.float32), 0.0)
        if lead_ids is None:
            lead_ids = jnp.broadcast_to(jnp.arange(l, dtype=jnp.int32), (b, l))
        elif lead_ids.shape != (b, l):
            raise ValueError(f"lead_ids must be [{b}, {l}], got {lead_ids.shape}")
        return patchify(signal, self.dims.patch_size), lead_mask, lead_ids.astype(jnp.int32)

    def _encode_tokens(self, tokens, valid, deterministic):
        """tokens [B, L, n, D], valid [B, L] (leads whose tokens may be read) -> [B, L, n, D]."""
        b, l, n, w = tokens.shape
        if self.dims.cross_lead == "joint":
            h = self.encoder(tokens.reshape(b, l * n, w), jnp.repeat(valid, n, axis=1),
                             deterministic=deterministic)
        else:  # per lead, weights shared: fold leads into the batch
            h = self.encoder(tokens.reshape(b * l, n, w), deterministic=deterministic)
        return h.reshape(b, l, n, w)

    def _latents(self, h, valid, deterministic):
        b, l, n, w = h.shape
        lat, weights = self.latent(h.reshape(b, l * n, w), jnp.repeat(valid, n, axis=1),
                                   deterministic=deterministic)
        return lat, weights.reshape(b, l, n).sum(-1)

    def __call__(self, signal, lead_mask, train: bool = True, lead_ids=None):
        """Masked pretraining pass (needs the 'mask' RNG; 'dropout' too when dropout > 0 and train).

        Returns recon [B, L, N, P] float32 and aux: target, loss_mask, patch_mask, whole_lead_mask,
        latent_attention ([B, L] or None); `align` adds lead_projection [B, L, E] and
        projection_mask [B, L] (leads with visible tokens).
        """
        d = self.dims
        patches, lead_mask, lead_ids = self._inputs(signal, lead_mask, lead_ids)
        n = patches.shape[2]
        m = sample_masking(self.make_rng("mask"), lead_mask, n, d.num_masked(n),
                           d.whole_lead_mask_prob)
        tokens = gather_tokens(self.tokenizer(patches, lead_ids), m.ids_keep)
        visible_valid = lead_mask & ~m.whole_lead
        h = self._encode_tokens(tokens, visible_valid, not train)
        latents, lead_attention = None, None
        if d.cross_lead == "latent":
            latents, lead_attention = self._latents(h, visible_valid, not train)
        recon = self.decoder(h, m.ids_restore, m.patch_mask, lead_ids, lead_mask, latents,
                             deterministic=not train)
        aux = dict(target=patches, loss_mask=m.patch_mask & lead_mask[..., None],
                   patch_mask=m.patch_mask, whole_lead_mask=m.whole_lead,
                   latent_attention=lead_attention)
        if d.cross_lead == "align":
            aux["lead_projection"] = self.projection(h.mean(axis=2)).astype(jnp.float32)
            aux["projection_mask"] = visible_valid
        return recon, aux

    def encode(self, signal, lead_mask, lead_ids=None):
        """No masking, deterministic. Returns (ecg_embedding [B, D], aux) with aux
        lead_embeddings [B, L, D] (zeros for missing leads) and lead_attention [B, L] or None."""
        patches, lead_mask, lead_ids = self._inputs(signal, lead_mask, lead_ids)
        h = self._encode_tokens(self.tokenizer(patches, lead_ids), lead_mask, True)
        present = lead_mask[..., None].astype(jnp.float32)
        lead_emb = h.mean(axis=2) * present
        lead_attention = None
        if self.dims.cross_lead == "latent":
            latents, lead_attention = self._latents(h, lead_mask, True)
            emb = latents.mean(axis=1)
        else:  # mean over present leads (= over present tokens: every lead has N tokens)
            emb = lead_emb.sum(axis=1) / jnp.maximum(present.sum(axis=1), 1.0)
        return emb, dict(lead_embeddings=lead_emb, lead_attention=lead_attention)
