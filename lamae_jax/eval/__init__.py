"""Evaluation primitives: embeddings, the linear probe and fine-tuning, metrics with bootstrap
intervals, the label-fraction protocol, reports and the npz export."""
