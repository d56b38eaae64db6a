"""Data: synthetic MIMIC-IV-ECG, preprocessing, shard format, readers and Grain pipelines."""


def __getattr__(name):
    if name == "PreprocessedECG":
        from lamae_jax.data.dataset import PreprocessedECG

        return PreprocessedECG
    raise AttributeError(name)
