"""Facts shared by every stage: lead names and orders, sampling rates, WFDB conventions."""

# Canonical order used everywhere inside lamae_jax (model input, shards, embeddings).
LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
NUM_LEADS = len(LEADS)
# Order on disk in MIMIC-IV-ECG: aVF comes before aVL. Never index by position; match by name.
MIMIC_LEADS = ("I", "II", "III", "aVR", "aVF", "aVL", "V1", "V2", "V3", "V4", "V5", "V6")

MIMIC_FS = 500
MIMIC_NUM_SAMPLES = 5000
MIMIC_ADC_GAIN = 200.0  # ADC units per mV
MIMIC_INVALID_SAMPLE = -32768  # format-16 "invalid" value, read back as NaN

TARGET_FS = 250
DURATION_S = 10.0
TARGET_NUM_SAMPLES = int(TARGET_FS * DURATION_S)


def canonical_lead_name(name: str) -> str | None:
    """Maps a lead name as spelt by any dataset ('AVR', 'avr', 'i', 'v1') to LEADS, or None."""
    return _LOOKUP.get(name.strip().lower())


_LOOKUP = {lead.lower(): lead for lead in LEADS}
