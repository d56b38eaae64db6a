"""Per-lead random patch masking (exact count per lead) and the visible-token gather / scatter.

Everything uses argsort ids and take_along_axis (scenic av_mae style): static shapes, jit- and
sharding-friendly, no boolean indexing.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class Masking(NamedTuple):
    ids_keep: jnp.ndarray  # [B, L, n_keep] int32: patch indices each lead's encoder sees
    ids_restore: jnp.ndarray  # [B, L, N] int32: inverse permutation (shuffled -> original order)
    patch_mask: jnp.ndarray  # [B, L, N] bool: True = masked (to be reconstructed)
    whole_lead: jnp.ndarray  # [B, L] bool: lead entirely masked (rebuilt from the other leads)


# Lead groups for `lead_group_prob` (canonical lead ids 0-11 = I, II, III, aVR, aVL, aVF, V1-V6):
# the visible sets of lead reconstruction's tasks (limb from I + II, V1-V6 from the limb leads and
# the limb leads from V1-V6).
LEAD_GROUPS = ((0, 1), (0, 1, 2, 3, 4, 5), (6, 7, 8, 9, 10, 11))


def sample_masking(rng: jax.Array, lead_mask: jnp.ndarray, num_patches: int, num_masked: int,
                   whole_lead_prob: float = 0.0, held_out: jnp.ndarray | None = None,
                   patch_valid: jnp.ndarray | None = None, lead_group_prob: float = 0.0,
                   lead_ids: jnp.ndarray | None = None, aligned_prob: float = 0.0) -> Masking:
    """Mask exactly `num_masked` of `num_patches` patches in every lead, independently per lead.

    With `whole_lead_prob` > 0 each present lead is also masked entirely with that probability,
    but at least one present lead per example always stays partly visible. `held_out` [B, L]
    bool masks those leads whole as well (evaluation of lead reconstruction; not re-balanced).
    `patch_valid` [B, N] bool (False: zero padding past a short record's end) puts padded patches
    into the masked set first, so the visible set holds real patches whenever there are enough
    (shapes stay static: a short record has fewer of its real patches masked). The caller keeps
    padded patches out of the loss and of every key set.

    `lead_group_prob` > 0: with that probability an example instead keeps one of LEAD_GROUPS
    (drawn uniformly, by `lead_ids` [B, L], default canonical order) visible and masks every other
    lead whole, so pretraining sees the few-visible-leads inputs that lead reconstruction asks
    about (independent whole-lead masks at 0.3 hide ~4 of 12 leads, never 10). An example with no
    present lead in the drawn group keeps its independent masks. The group draw uses its own key
    (fold_in), so lead_group_prob = 0 gives bit-identical masks to before.
    `aligned_prob` > 0: with that probability an example masks the same positions in every lead
    (one draw shared by its leads), so at each visible position every lead not masked whole is
    visible together: the only inputs from which a whole-masked lead can be rebuilt exactly by the
    leads' linear relations (III = II - I needs I and II at the same instant; independent masks at
    75 % show both at a position 1 time in 16). Its own key too: 0 = bit-identical masks.
    """
    b, l = lead_mask.shape
    n_keep = num_patches - num_masked
    if not 0 < n_keep <= num_patches:
        raise ValueError(f"masking {num_masked} of {num_patches} patches leaves {n_keep} visible")
    k_patch, k_lead = jax.random.split(rng)
    noise = jax.random.uniform(k_patch, (b, l, num_patches))
    if aligned_prob > 0:
        k_use, k_noise = jax.random.split(jax.random.fold_in(rng, 11))
        aligned = jax.random.uniform(k_use, (b,)) < aligned_prob
        shared = jax.random.uniform(k_noise, (b, 1, num_patches))
        noise = jnp.where(aligned[:, None, None], jnp.broadcast_to(shared, noise.shape), noise)
    if patch_valid is not None:  # uniform noise is < 1: padded patches sort after every real one
        noise = noise + jnp.where(patch_valid, 0.0, 2.0)[:, None, :]
    ids_shuffle = jnp.argsort(noise, axis=-1).astype(jnp.int32)
    ids_restore = jnp.argsort(ids_shuffle, axis=-1).astype(jnp.int32)
    shuffled_masked = jnp.broadcast_to(jnp.arange(num_patches, dtype=jnp.int32) >= n_keep,
                                       (b, l, num_patches))
    patch_mask = jnp.take_along_axis(shuffled_masked, ids_restore, axis=-1)
    whole = jnp.zeros((b, l), bool)
    if whole_lead_prob > 0:
        u = jax.random.uniform(k_lead, (b, l))
        whole = (u < whole_lead_prob) & lead_mask
        nothing_left = ~jnp.any(lead_mask & ~whole, axis=1)
        spare = jnp.argmin(jnp.where(lead_mask, u, jnp.inf), axis=1)
        spare = jax.nn.one_hot(spare, l, dtype=jnp.int32).astype(bool)
        whole = whole & ~(nothing_left[:, None] & spare)
    if lead_group_prob > 0:
        k_use, k_group = jax.random.split(jax.random.fold_in(rng, 7))
        ids = (jnp.broadcast_to(jnp.arange(l, dtype=jnp.int32), (b, l)) if lead_ids is None
               else lead_ids.astype(jnp.int32))
        member = jnp.stack([jnp.isin(ids, jnp.asarray(g, jnp.int32)) for g in LEAD_GROUPS])  # [G, B, L]
        g = jax.random.randint(k_group, (b,), 0, len(LEAD_GROUPS))
        keep = jnp.take_along_axis(member, g[None, :, None], axis=0)[0] & lead_mask  # [B, L]
        use = (jax.random.uniform(k_use, (b,)) < lead_group_prob) & jnp.any(keep, axis=1)
        whole = jnp.where(use[:, None], lead_mask & ~keep, whole)
    if held_out is not None:
        whole = whole | (held_out.astype(bool) & lead_mask)
    patch_mask = patch_mask | whole[..., None]
    return Masking(ids_shuffle[..., :n_keep], ids_restore, patch_mask, whole)


def gather_tokens(tokens: jnp.ndarray, ids: jnp.ndarray) -> jnp.ndarray:
    """tokens [B, L, N, D], ids [B, L, n] -> [B, L, n, D]."""
    return jnp.take_along_axis(tokens, ids[..., None], axis=2)


def scatter_with_mask_token(visible: jnp.ndarray, ids_restore: jnp.ndarray,
                            patch_mask: jnp.ndarray, mask_token: jnp.ndarray) -> jnp.ndarray:
    """Visible tokens [B, L, n, D] back to full length [B, L, N, D], mask token where masked."""
    b, l, n, d = visible.shape
    num_patches = ids_restore.shape[-1]
    padded = jnp.concatenate([visible, jnp.zeros((b, l, num_patches - n, d), visible.dtype)], axis=2)
    full = jnp.take_along_axis(padded, ids_restore[..., None], axis=2)
    return jnp.where(patch_mask[..., None], mask_token.astype(full.dtype), full)
