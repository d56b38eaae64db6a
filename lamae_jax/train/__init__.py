"""Pretraining: `state` (TrainState, optimizer, schedule), `loop` (train_and_evaluate),
`checkpoints` (Orbax; `restore_params` reads parameters only), metrics and reconstruction plots.

Nothing is imported here: `python -m lamae_jax.train` must initialise jax.distributed before any
module touches a device.
"""
