"""Data: synthetic MIMIC-IV-ECG, preprocessing, shard format, readers and Grain pipelines."""


def __getattr__(name):
    if name == "PreprocessedECG":
        from lamae_jax.data.dataset import PreprocessedECG

        return PreprocessedECG
    if name in ("task_columns", "TaskColumns"):
        from lamae_jax.data import tasks

        return getattr(tasks, name)
    raise AttributeError(name)
