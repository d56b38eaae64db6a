"""The hardware's own ceiling: FLOP/s of a large square matmul on the same device, same run.

Model FLOP utilisation (MFU) divides a train step's XLA-counted FLOP/s by this figure, so MFU is a
ratio that holds on any machine. f32 on CPU (what the CPU benchmark trains in), bf16 on GPU.
"""

from __future__ import annotations

import time


def default_matmul(backend: str) -> tuple[int, str]:
    """(n, dtype) for the peak matmul: large enough to saturate the device, quick to run."""
    if backend == "gpu":
        return 8192, "bfloat16"
    if backend == "tpu":
        return 8192, "bfloat16"
    return 2048, "float32"


def matmul_peak(n: int | None = None, dtype: str | None = None, repeats: int = 5,
                calls: int | None = None, device=None) -> dict:
    """Best FLOP/s of `calls` back-to-back n×n @ n×n products over `repeats` timings.

    Back-to-back calls hide dispatch latency on fast devices; the best repeat is the peak (noise
    from other processes only ever slows a timing down).
    """
    import jax
    import jax.numpy as jnp

    device = device or jax.local_devices()[0]
    d_n, d_dtype = default_matmul(device.platform)
    n = n or d_n
    dtype = dtype or d_dtype
    calls = calls or (20 if device.platform != "cpu" else 2)
    ka, kb = jax.random.split(jax.random.key(0))
    a = jax.device_put(jax.random.normal(ka, (n, n), jnp.float32).astype(dtype), device)
    b = jax.device_put(jax.random.normal(kb, (n, n), jnp.float32).astype(dtype) / n**0.5, device)
    # float32 accumulation on bf16 inputs is what the model's matmuls do.
    mm = jax.jit(lambda x, y: jnp.matmul(x, y, preferred_element_type=jnp.float32).astype(x.dtype))
    compiled = mm.lower(a, b).compile()
    compiled(a, b).block_until_ready()  # warm-up
    flops_per_call = 2.0 * n**3
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = None
        for _ in range(calls):
            out = compiled(a, b)
        out.block_until_ready()
        times.append((time.perf_counter() - t0) / calls)
    best = min(times)
    return {
        "flops_per_s": flops_per_call / best,
        "median_flops_per_s": flops_per_call / sorted(times)[len(times) // 2],
        "n": n,
        "dtype": str(dtype),
        "seconds_per_matmul": best,
        "device": f"{device.platform}:{device.device_kind}",
    }
