"""Tests, grouped like the lamae_jax packages."""
