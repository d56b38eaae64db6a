"""Benchmarks: `python -m lamae_jax.bench [--quick]`; every figure beside a same-run baseline.

See BENCHMARKS.md for what each figure means and the targets.
"""
