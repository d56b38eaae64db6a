"""Checkpoint retention: the best validation step survives rotation (BestN) while the latest
steps stay for resume (LatestN), under one AnyPreservationPolicy."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lamae_jax.train import checkpoints


def test_best_step_survives_rotation_and_the_latest_is_kept_for_resume(tmp_path):
    # Validation loss falls to its minimum at step 3, then rises; steps 7-8 carry no metric (a
    # final or preemption save). keep=2, keep_best=1: kept = latest {7, 8} + best {3}.
    val = {1: 5.0, 2: 3.0, 3: 1.0, 4: 2.0, 5: 4.0, 6: 6.0, 7: None, 8: None}
    mgr = checkpoints.make_manager(str(tmp_path), keep=2, keep_best=1)
    try:
        for step, loss in val.items():
            checkpoints.save(mgr, step, {"w": jnp.full((3,), float(step))}, None, loss)
            mgr.wait_until_finished()
        assert mgr.all_steps() == [3, 7, 8]
        assert mgr.latest_step() == 8 and checkpoints.best_step(mgr) == 3
    finally:
        mgr.close()
    assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()) == [3, 7, 8]
    assert checkpoints.resolve_step(str(tmp_path), best=True) == 3
    assert checkpoints.resolve_step(str(tmp_path)) == 8
    mgr = checkpoints.make_manager(str(tmp_path), read_only=True)
    try:
        target = {"w": jax.ShapeDtypeStruct((3,), jnp.float32,
                                            sharding=jax.sharding.SingleDeviceSharding(jax.devices()[0]))}
        for step in (3, 8):  # the best restores (evaluation), the latest restores (resume)
            state, _ = checkpoints.restore(mgr, step, target, None)
            np.testing.assert_array_equal(np.asarray(state["w"]), float(step))
    finally:
        mgr.close()
