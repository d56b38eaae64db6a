"""The LAMAE module: tokenize -> mask -> lead encoder -> cross-lead mixing -> decoder.

`cross_lead` switches the cross-lead mechanism: `latent` (LAMAE), `none` (independent-lead MAE),
`joint` (ST-MEM-style single transformer), `align` (independent-lead MAE whose per-lead projections
are aligned across the leads of one ECG by a CLOCS-style contrastive term, losses.pretraining_loss). Missing leads (lead_mask False) are zeroed on entry and
padded out of every key set, so their values cannot influence any output. So are the patches past
the end of a record shorter than the window (`valid_length`): never targets, never keys.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from lamae_jax.models.decoder import Decoder
from lamae_jax.models.latent import LatentAttention
from lamae_jax.models.masking import gather_tokens, sample_masking, scatter_with_mask_token
from lamae_jax.models.sizes import ModelDims
from lamae_jax.models.tokenizer import LeadTokenizer, patchify
from lamae_jax.models.transformer import Transformer


class LAMAE(nn.Module):
    dims: ModelDims

    def setup(self):
        d = self.dims
        dtype = jnp.dtype(d.dtype)
        self.tokenizer = LeadTokenizer(d.encoder_width, d.num_leads, dtype, d.patch_norm)
        self.encoder = Transformer(d.encoder_depth, d.encoder_heads, d.mlp_ratio, d.dropout, dtype,
                                   remat=d.remat, attention_impl=d.attention_impl)
        if d.cross_lead == "latent":
            k = d.time_latents if d.latent_scope == "time" else d.num_latents
            self.latent = LatentAttention(k, d.latent_depth, d.latent_heads,
                                          d.mlp_ratio, d.dropout, dtype, d.remat, d.attention_impl,
                                          width=d.latent_width)
            if d.latent_lead_gain:
                self.latent_lead_gain = self.param("latent_lead_gain", nn.initializers.ones,
                                                   (d.num_leads, d.latent_width))
        if d.cross_lead == "align":
            xavier = nn.initializers.xavier_uniform()
            self.projection = nn.Sequential([nn.Dense(d.encoder_width, kernel_init=xavier), nn.gelu,
                                             nn.Dense(d.projection_dim, kernel_init=xavier)])
        self.decoder = Decoder(d.cross_lead, d.decoder_width, d.decoder_depth, d.decoder_heads,
                               d.num_leads, d.patch_size, d.mlp_ratio, d.dropout, dtype, d.remat,
                               d.attention_impl, d.latent_scope, d.decoder_self_attention,
                               d.joint_decoder)

    def _normalise(self, signal, lead_mask, visible, sample_valid):
        """Amplitude scaling (model.input_norm, input_scale) -> (scaled signal, offset, scale),
        where signal_mv = scaled * scale + offset ([B, L, 1] each).

        Statistics use the samples inside `sample_valid` [B, 1, T] of the `visible` [B, L] leads
        only (present and not masked whole), so a held-out lead's values change neither how the
        visible leads are scaled nor its own offset / scale (no leakage into the inputs, the
        targets of the other leads or lead reconstruction's de-normalisation). `lead`: a present
        lead that is not visible has no statistics of its own to use; it takes the record-wide
        ones of the visible leads (its target and its mV are in the visible leads' units).
        Statistics cross leads only under `record` and that fallback, so `none` stays
        independent-lead in its inputs under fixed or lead. encode() passes visible = lead_mask."""
        d = self.dims
        weight = visible[..., None].astype(jnp.float32) * sample_valid.astype(jnp.float32)  # [B, L, T]

        def stats(axis):
            count = jnp.maximum(weight.sum(axis=axis, keepdims=True), 1.0)
            mean = (signal * weight).sum(axis=axis, keepdims=True) / count
            var = (((signal - mean) ** 2) * weight).sum(axis=axis, keepdims=True) / count
            return mean, var

        shape = lead_mask.shape + (1,)
        if d.input_norm in ("record", "lead"):
            mean, var = (jnp.broadcast_to(x, shape) for x in stats((1, 2)))
            if d.input_norm == "lead":  # visible leads: their own; the others: the fallback
                own_mean, own_var = stats(-1)
                mean = jnp.where(visible[..., None], own_mean, mean)
                var = jnp.where(visible[..., None], own_var, var)
        else:  # fixed: mV x input_scale
            mean = jnp.zeros(shape, jnp.float32)
            var = jnp.ones(shape, jnp.float32)
        # A flat record must not blow up: floor the std at 10 uV.
        scale = jnp.sqrt(jnp.maximum(var, 1e-4)) / d.input_scale
        scaled = jnp.where(lead_mask[..., None] & sample_valid, (signal - mean) / scale, 0.0)
        return scaled, mean * lead_mask[..., None].astype(jnp.float32), scale

    def _inputs(self, signal, lead_mask, lead_ids, valid_length=None):
        """-> (signal [B, L, T] float32 mV with missing leads zeroed, lead_mask, lead_ids,
        sample_valid [B, 1, T] bool, patch_valid [B, N] bool or None). valid_length [B] (samples
        of real signal; the rest is zero padding): a patch is valid when it lies wholly inside it.
        None: every patch is real. Scaling (_normalise) comes after masking: it reads visible
        leads only."""
        b, l = signal.shape[:2]
        if signal.ndim != 3 or l != self.dims.num_leads:
            raise ValueError(f"signal must be [B, {self.dims.num_leads}, T], got {signal.shape}")
        if lead_mask.shape != (b, l):
            raise ValueError(f"lead_mask must be [{b}, {l}], got {lead_mask.shape}")
        lead_mask = lead_mask.astype(bool)
        t, p = signal.shape[-1], self.dims.patch_size
        if t % p:
            raise ValueError(f"signal length {t} is not a multiple of model.patch_size={p}")
        if valid_length is None:
            sample_valid, patch_valid = jnp.ones((b, 1, t), bool), None
        else:
            if valid_length.shape != (b,):
                raise ValueError(f"valid_length must be [{b}], got {valid_length.shape}")
            valid_length = valid_length.astype(jnp.int32)[:, None]
            sample_valid = (jnp.arange(t, dtype=jnp.int32)[None] < valid_length)[:, None, :]
            patch_valid = (jnp.arange(1, t // p + 1, dtype=jnp.int32)[None] * p) <= valid_length
        signal = jnp.where(lead_mask[..., None], signal.astype(jnp.float32), 0.0)
        if lead_ids is None:
            lead_ids = jnp.broadcast_to(jnp.arange(l, dtype=jnp.int32), (b, l))
        elif lead_ids.shape != (b, l):
            raise ValueError(f"lead_ids must be [{b}, {l}], got {lead_ids.shape}")
        return signal, lead_mask, lead_ids.astype(jnp.int32), sample_valid, patch_valid

    def _encode_tokens(self, tokens, valid, deterministic, token_valid=None):
        """tokens [B, L, n, D], valid [B, L] (leads whose tokens may be read), token_valid
        [B, L, n] (tokens that are real signal; None: all) -> [B, L, n, D]."""
        b, l, n, w = tokens.shape
        if self.dims.cross_lead == "joint":
            keys = jnp.repeat(valid, n, axis=1)
            if token_valid is not None:
                keys = keys & token_valid.reshape(b, l * n)
            h = self.encoder(tokens.reshape(b, l * n, w), keys, deterministic=deterministic)
        else:  # per lead, weights shared: fold leads into the batch
            keys = None if token_valid is None else token_valid.reshape(b * l, n)
            h = self.encoder(tokens.reshape(b * l, n, w), keys, deterministic=deterministic)
        return h.reshape(b, l, n, w)

    def _latents(self, h, visible, deterministic, ids_restore=None, lead_ids=None):
        """h [B, L, n, D] encoder tokens (n = N, or the visible ones with ids_restore [B, L, N]),
        visible [B, L, N] (positions with a readable token) -> latents ([B, N, K, D] for
        latent_scope=time, [B, K, D] for global) and each lead's share of what the latents read
        [B, L] (time: averaged over the positions with a readable token). lead_ids [B, L]
        (default: the standard order) pick each lead's value gain under latent_lead_gain."""
        b, l, _, w = h.shape
        n = visible.shape[2]
        gain = None
        if self.dims.latent_lead_gain:
            if lead_ids is None:
                lead_ids = jnp.broadcast_to(jnp.arange(l, dtype=jnp.int32), (b, l))
            gain = self.latent_lead_gain[lead_ids]  # [B, L, W]

        def full(x):  # [B, L, n, F] -> [B, L, N, F], zeros where nothing was encoded
            if ids_restore is None:
                return x
            return scatter_with_mask_token(x, ids_restore, ~visible,
                                           jnp.zeros((x.shape[-1],), x.dtype))

        if self.dims.latent_scope == "global":
            if gain is not None:  # [B, L*n, W]: every token of a lead shares its gain
                gain = jnp.repeat(gain, n, axis=1)
            lat, weights = self.latent(full(h).reshape(b, l * n, w), visible.reshape(b, l * n),
                                       deterministic=deterministic, value_gain=gain)
            return lat, weights.reshape(b, l, n).sum(-1)

        # time: at every patch position, the latents read that position's tokens of every lead
        def regroup(x):  # [B, L, n, F] -> [B*N, L, F]
            x = full(x)
            return x.transpose(0, 2, 1, 3).reshape(b * n, l, x.shape[-1])

        lat, weights = self.latent(h, visible.transpose(0, 2, 1).reshape(b * n, l),
                                   deterministic=deterministic, regroup=regroup,
                                   value_gain=None if gain is None else gain[:, :, None, :])
        weights = weights.reshape(b, n, l)
        seen = jnp.any(visible, axis=1).astype(jnp.float32)  # [B, N]
        share = (weights * seen[..., None]).sum(1) / jnp.maximum(seen.sum(1), 1.0)[:, None]
        return lat.reshape(b, n, -1, lat.shape[-1]), share

    def __call__(self, signal, lead_mask, train: bool = True, lead_ids=None, held_out=None,
                 valid_length=None):
        """Masked pretraining pass (needs the 'mask' RNG; 'dropout' too when dropout > 0 and train).

        held_out [B, L] bool (optional): leads masked whole, on top of the random masking (lead
        reconstruction: rebuild them from the others). valid_length [B] (optional): samples of
        real signal in each row; patches past it are neither targets nor keys. Returns recon
        [B, L, N, P] float32 in the
        model's scaled units and aux: target (scaled patches), loss_mask, target_valid (present
        leads' real patches), patch_mask,
        whole_lead_mask, latent_attention ([B, L] or None), input_offset / input_scale [B, L, 1]
        (mV = scaled * input_scale + input_offset); `align` adds lead_projection [B, L, E] and
        projection_mask [B, L] (leads with visible tokens).
        """
        d = self.dims
        signal, lead_mask, lead_ids, sample_valid, patch_valid = self._inputs(
            signal, lead_mask, lead_ids, valid_length)
        b, l, n = signal.shape[0], signal.shape[1], signal.shape[2] // d.patch_size
        # the mask first (it does not read the signal), then scaling from the visible leads only
        m = sample_masking(self.make_rng("mask"), lead_mask, n, d.num_masked(n),
                           d.whole_lead_mask_prob, held_out, patch_valid,
                           d.lead_group_mask_prob, lead_ids, d.aligned_mask_prob)
        scaled, offset, scale = self._normalise(signal, lead_mask, lead_mask & ~m.whole_lead,
                                                sample_valid)
        patches = patchify(scaled, d.patch_size)
        tokens = gather_tokens(self.tokenizer(patches, lead_ids), m.ids_keep)
        valid_patches = (jnp.ones((b, l, n), bool) if patch_valid is None
                         else jnp.broadcast_to(patch_valid[:, None, :], (b, l, n)))
        token_valid = None if patch_valid is None else jnp.take_along_axis(
            valid_patches, m.ids_keep, axis=2)
        visible_valid = lead_mask & ~m.whole_lead
        h = self._encode_tokens(tokens, visible_valid, not train, token_valid)
        latents, lead_attention = None, None
        if d.cross_lead == "latent":
            # masked and padded positions: not readable
            visible = ~m.patch_mask & visible_valid[..., None] & valid_patches
            if d.latent_scope == "global":  # the visible tokens themselves are the key set
                visible = jnp.repeat(visible_valid[..., None], h.shape[2], axis=2)
                if token_valid is not None:
                    visible = visible & token_valid
                latents, lead_attention = self._latents(h, visible, not train, lead_ids=lead_ids)
            else:
                latents, lead_attention = self._latents(h, visible, not train, m.ids_restore,
                                                        lead_ids)
        recon = self.decoder(h, m.ids_restore, m.patch_mask, lead_ids, lead_mask, latents,
                             deterministic=not train, patch_valid=patch_valid)
        target_valid = lead_mask[..., None] & valid_patches
        aux = dict(target=patches, loss_mask=m.patch_mask & target_valid, target_valid=target_valid,
                   patch_mask=m.patch_mask, whole_lead_mask=m.whole_lead,
                   latent_attention=lead_attention, input_offset=offset, input_scale=scale)
        if d.cross_lead == "align":
            if token_valid is None:
                pooled = h.mean(axis=2)
            else:
                tv = token_valid[..., None].astype(h.dtype)
                pooled = (h * tv).sum(axis=2) / jnp.maximum(tv.sum(axis=2), 1.0)
            aux["lead_projection"] = self.projection(pooled).astype(jnp.float32)
            aux["projection_mask"] = visible_valid
        return recon, aux

    def encode(self, signal, lead_mask, lead_ids=None, valid_length=None):
        """No masking, deterministic. Returns (ecg_embedding [B, D], aux) with aux
        lead_embeddings [B, L, D] (zeros for missing leads) and lead_attention [B, L] or None.
        valid_length [B] (optional): patches past it are neither read nor pooled."""
        signal, lead_mask, lead_ids, sample_valid, patch_valid = self._inputs(
            signal, lead_mask, lead_ids, valid_length)
        patches = patchify(self._normalise(signal, lead_mask, lead_mask, sample_valid)[0],
                           self.dims.patch_size)
        b, l, n = patches.shape[:3]
        token_valid = None if patch_valid is None else jnp.broadcast_to(
            patch_valid[:, None, :], (b, l, n))
        h = self._encode_tokens(self.tokenizer(patches, lead_ids), lead_mask, True, token_valid)
        present = lead_mask[..., None].astype(jnp.float32)
        if token_valid is None:
            lead_emb = h.mean(axis=2) * present
        else:
            tv = token_valid[..., None].astype(h.dtype)
            lead_emb = (h * tv).sum(axis=2) / jnp.maximum(tv.sum(axis=2), 1.0) * present
        lead_attention = None
        if self.dims.cross_lead == "latent":
            visible = jnp.repeat(lead_mask[..., None], h.shape[2], axis=2)
            if token_valid is not None:
                visible = visible & token_valid
            latents, lead_attention = self._latents(h, visible, True, lead_ids=lead_ids)
            emb = latents.reshape(latents.shape[0], -1, latents.shape[-1]).mean(axis=1)
        else:  # mean over present leads (= over present tokens: every lead has N tokens)
            emb = lead_emb.sum(axis=1) / jnp.maximum(present.sum(axis=1), 1.0)
        return emb, dict(lead_embeddings=lead_emb, lead_attention=lead_attention)
