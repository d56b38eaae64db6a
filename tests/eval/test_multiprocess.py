"""Two JAX processes x 4 CPU devices embed a split: every record exactly once, same as one process."""

import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from tests.helpers.preprocessed import make_records, write_preprocessed

SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    from lamae_jax.parallel import distributed
    distributed.maybe_initialize()
    import jax, ml_collections
    from lamae_jax.eval import embed as embedding
    from lamae_jax.models import build
    data_dir, out = sys.argv[1], sys.argv[2]
    model = build(ml_collections.ConfigDict(dict(size="tiny", cross_lead="latent", dtype="float32")))
    x = np.zeros((1, 12, 500), np.float32)
    params = jax.jit(lambda r: model.init(r, x, np.ones((1, 12), bool), train=True),
                     out_shardings=jax.sharding.SingleDeviceSharding(jax.local_devices()[0]))(
        {"params": jax.random.key(0), "mask": jax.random.key(1), "dropout": jax.random.key(2)})["params"]
    r = embedding.embed_split(model, params, data_dir, "train", per_host_batch_size=4)
    np.save(out + f".{jax.process_index()}.npy", r["embeddings"])
    print("process", jax.process_index(), "of", jax.process_count(), "devices", jax.device_count())
""")


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.multiprocess
@pytest.mark.slow
def test_two_process_embedding_matches_single_process(tmp_path):
    # 13 train records: 7 on host 0, 6 on host 1 (+ padding), 2 batches of 4 per host
    records = make_records(13, num_samples=500, seed=2, splits=("train",))
    data_dir = write_preprocessed(tmp_path / "pp", records, chunk_size=5)
    script = tmp_path / "embed.py"
    script.write_text(SCRIPT)
    port = _free_port()
    procs = []
    for pid in range(2):
        env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES="4",
                   LAMAE_COORDINATOR=f"localhost:{port}", LAMAE_NUM_PROCESSES="2", LAMAE_PROCESS_ID=str(pid))
        procs.append(subprocess.Popen([sys.executable, str(script), str(data_dir), str(tmp_path / "multi")],
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outs = [p.communicate(timeout=240)[0] for p in procs]
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES="1")
    for k in ("LAMAE_COORDINATOR", "LAMAE_NUM_PROCESSES", "LAMAE_PROCESS_ID"):
        env.pop(k, None)
    single = subprocess.run([sys.executable, str(script), str(data_dir), str(tmp_path / "single")],
                            env=env, capture_output=True, text=True, timeout=240)
    assert single.returncode == 0, single.stdout + single.stderr
    ref = np.load(tmp_path / "single.0.npy")
    assert ref.shape[0] == 13
    for pid in range(2):  # both hosts hold the full, identical result
        np.testing.assert_allclose(np.load(tmp_path / f"multi.{pid}.npy"), ref, rtol=1e-5, atol=1e-5)
