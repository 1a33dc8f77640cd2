"""Probes: small proxy language models trained per pool to measure how each pool's loss falls
with data and repetition (design, data, training, validation)."""
