"""The one record length every evaluation reads, defined here only.

Trainer validation, probe embeddings (evaluate, export, attention plots), fine-tuning, lead
reconstruction and compare's FLOPs all take the first `eval_samples(config)` samples of each record:
`data.crop_samples`, the window the encoder was pretrained on (0 there means the whole record:
`model.num_samples`). So validation loss, AUROCs, lead-reconstruction r and GFLOPs/ECG describe one
input, and an encoder is never scored on a length it did not see. A record stored shorter than that
is read whole, its padding marked by valid_length (pipeline.make_eval_batches takes the minimum).
Each result's metadata names the length (`eval_samples`).
"""

from __future__ import annotations


def eval_samples(config) -> int:
    """Samples per record at evaluation: config.data.crop_samples, or model.num_samples if 0."""
    n = int(config.data.crop_samples) or int(config.model.num_samples)
    if n <= 0:
        raise ValueError(f"config.data.crop_samples={config.data.crop_samples} and model.num_samples="
                         f"{config.model.num_samples}: the evaluation length must be positive")
    return n
