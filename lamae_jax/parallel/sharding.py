"""One global mesh ('data', 'fsdp') with Auto axes, parameter shardings and per-host batch assembly.

Auto (not Explicit) axes: the MAE's gather/scatter of visible tokens fails under Explicit sharding.
The batch is split over every device (both axes); with fsdp > 1 each parameter (and its optimizer
moments) is split along its largest dimension divisible by the fsdp size.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

BATCH_AXES = ("data", "fsdp")
# Parameters smaller than this stay replicated: sharding them saves nothing and costs collectives.
MIN_FSDP_SIZE = 2 ** 12


def make_mesh(fsdp: int = 1, devices=None) -> Mesh:
    devices = list(devices if devices is not None else jax.devices())
    n = len(devices)
    if fsdp < 1 or n % fsdp:
        raise ValueError(f"config.mesh.fsdp={fsdp} must divide the device count {n}: "
                         f"set --config.mesh.fsdp to one of {[d for d in range(1, n + 1) if n % d == 0]}")
    return jax.make_mesh((n // fsdp, fsdp), ("data", "fsdp"), axis_types=(AxisType.Auto, AxisType.Auto),
                         devices=devices)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over all devices."""
    return NamedSharding(mesh, P(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def _leaf_spec(shape: tuple[int, ...], fsdp: int) -> P:
    if fsdp == 1 or int(np.prod(shape, dtype=np.int64)) < MIN_FSDP_SIZE:
        return P()
    for dim in sorted(range(len(shape)), key=lambda d: -shape[d]):
        if shape[dim] % fsdp == 0:
            spec = [None] * len(shape)
            spec[dim] = "fsdp"
            return P(*spec)
    return P()


def state_shardings(mesh: Mesh, abstract_tree: Any) -> Any:
    """NamedShardings for a pytree of arrays/ShapeDtypeStructs: fsdp-split when mesh fsdp > 1."""
    fsdp = mesh.shape["fsdp"]
    return jax.tree.map(lambda x: NamedSharding(mesh, _leaf_spec(tuple(x.shape), fsdp)), abstract_tree)


def global_batch(local: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Per-host numpy batch -> global jax.Arrays (works across processes, unlike device_put)."""
    sharding = batch_sharding(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in local.items()}
