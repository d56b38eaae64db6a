"""Shared test helpers (importable as tests.helpers.*): tiny model configs, preprocessed fixtures, train runs."""
